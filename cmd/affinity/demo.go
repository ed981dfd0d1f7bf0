package main

import (
	"context"
	"fmt"
	"log"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/profile/membership"
	sdkjs "github.com/affinityhq/affinity/sdk-js"
	"github.com/affinityhq/affinity/tracker"
)

// collectorExtra serves what the collector's listener offers besides the
// event endpoints: the snippet at /sdk.js, and with --demo the demo shop at
// /demo/.
type collectorExtra struct {
	script *sdkjs.Script
	demo   *sdkjs.Demo
	api    *apiVisitors
	site   string // the demo shop's site key; "" without --demo
}

// newCollectorExtra builds the snippet (esbuild, a few ms) and, when demo is
// set, the demo shop for the site "demo" if configured, else the first site.
func newCollectorExtra(demo bool, sites []tracker.Site, token string) (*collectorExtra, error) {
	script, err := sdkjs.Build()
	if err != nil {
		return nil, err
	}
	x := &collectorExtra{script: script}
	if demo && len(sites) > 0 {
		site := &sites[0]
		for i := range sites {
			if sites[i].Key == "demo" {
				site = &sites[i]
			}
		}
		if len(site.Origins) > 0 {
			log.Printf("demo: site %q accepts only origins %s: add the collector's own origin (http://<--listen>) for the demo's events to be stored",
				site.Key, strings.Join(site.Origins, ", "))
		}
		x.api = &apiVisitors{token: "Bearer " + token, client: &fasthttp.Client{Name: "affinity-demo", ReadTimeout: 5 * time.Second}}
		x.site = site.Key
		x.demo, err = sdkjs.NewDemo(sdkjs.DemoOptions{Site: site.Key, Visitors: x.api})
		if err != nil {
			return nil, err
		}
	}
	return x, nil
}

// setAPIAddr tells the demo panel where the internal listener is, once bound.
func (x *collectorExtra) setAPIAddr(addr string) {
	if x.api != nil {
		x.api.addr.Store(&addr)
	}
}

// Handle is the collector's Options.Extra.
func (x *collectorExtra) Handle(ctx *fasthttp.RequestCtx) {
	p := string(ctx.Path())
	switch {
	case p == "/sdk.js":
		x.script.Serve(ctx)
	case x.demo != nil && (p == "/demo" || strings.HasPrefix(p, "/demo/")):
		x.demo.Serve(ctx)
	default:
		ctx.Error("no such path "+p+": the collector serves POST /v1/events, GET /v1/p.gif, GET /sdk.js\n", fasthttp.StatusNotFound)
	}
}

// apiVisitors is the demo panel's VisitorSource: it reads the query API of
// this same process over loopback, with the API token, so that the panel
// shows exactly what GET /v1/visitors/{site}/{visitor} answers and no token
// reaches the page. (The demo handler allows reading only the visitor of the
// browser's own cookie.)
type apiVisitors struct {
	addr   atomic.Pointer[string]
	token  string
	client *fasthttp.Client
}

func (a *apiVisitors) AppendVisitor(ctx context.Context, dst []byte, site, visitor string) ([]byte, error) {
	return a.get(ctx, dst, "/v1/visitors/"+url.PathEscape(site)+"/"+visitor)
}

func (a *apiVisitors) AppendSegments(ctx context.Context, dst []byte, site, visitor string) ([]byte, error) {
	return a.get(ctx, dst, "/v1/visitors/"+url.PathEscape(site)+"/"+visitor+"/segments")
}

func (a *apiVisitors) get(ctx context.Context, dst []byte, path string) ([]byte, error) {
	addr := a.addr.Load()
	if addr == nil {
		return dst, fmt.Errorf("GET %s: the internal listener is not bound yet", path)
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + *addr + path)
	req.Header.Set(fasthttp.HeaderAuthorization, a.token)
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(5 * time.Second)
	}
	if err := a.client.DoDeadline(req, resp, deadline); err != nil {
		return dst, fmt.Errorf("cannot GET %s from the internal listener: %w", path, err)
	}
	body := resp.Body()
	switch status := resp.StatusCode(); {
	case status == fasthttp.StatusOK:
		return append(dst, body...), nil
	case status == fasthttp.StatusNotFound && string(resp.Header.Peek(api.HeaderError)) == api.ErrorNoRoute:
		return dst, fmt.Errorf("GET %s: %w", path, sdkjs.ErrNotServed)
	case status == fasthttp.StatusNotFound:
		return dst, fmt.Errorf("GET %s: %w", path, sdkjs.ErrNoVisitor)
	default:
		return dst, fmt.Errorf("GET %s: status %d: %s", path, status, strings.TrimSpace(string(body)))
	}
}

// demoSegments are the reference cases (profile/segment/GRAMMAR.md) that
// --demo defines on the demo site, so that a click in the shop shows its
// visitor entering segments in the panel and the console. The shop's
// children's ages are 0-1, 1-3 and 3-6.
var demoSegments = []struct{ name, rule string }{
	{"mums-0-3-nutrilon-merries-philips", `(top(age) == "0-1" or top(age) == "1-3") and (interest(brand, "Nutrilon") >= 1 or interest(brand, "Merries") >= 1 or interest(brand, "Philips") >= 1)`},
	{"abandoned-cart-24h", `since(cart) <= 24h and since(purchase) > since(cart)`},
	{"sleeping-customers-90d", `count(purchase) >= 1 and since(purchase) > 90d`},
	{"lifecycle-new", `lifecycle == "new"`},
	{"lifecycle-active", `lifecycle == "active"`},
	{"lifecycle-lapsing", `lifecycle == "lapsing"`},
	{"lifecycle-lost", `lifecycle == "lost"`},
	{"rfm-champions", `rfm.r >= 4 and rfm.f >= 4 and rfm.m >= 4`},
	{"birthday-next-7d", `until_birthday <= 7d`},
}

// defineDemoSegments puts the demo segments that site does not have yet:
// one a user changed or deleted and defined again is left as it is.
func defineDemoSegments(m *membership.Engine, site string) error {
	for _, s := range demoSegments {
		if _, ok, err := m.Definition(site, s.name); err != nil || ok {
			if err != nil {
				return fmt.Errorf("cannot define the demo segment %q: %w", s.name, err)
			}
			continue
		}
		if _, _, err := m.Put(site, s.name, s.rule); err != nil {
			return fmt.Errorf("cannot define the demo segment %q: %w", s.name, err)
		}
	}
	return nil
}

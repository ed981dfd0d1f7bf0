package sdkjs

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"mime"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

//go:embed demo
var demoFS embed.FS

// VisitorSource reads one visitor's live profile for the demo panel. site
// is a configured site key and visitor a canonical lowercase UUID, both
// checked by the caller.
type VisitorSource interface {
	// AppendVisitor appends to dst the visitor's profile as JSON: the body
	// of the query API's GET /v1/visitors/{site}/{visitor}.
	AppendVisitor(ctx context.Context, dst []byte, site, visitor string) ([]byte, error)
	// AppendSegments appends to dst the visitor's segments as JSON: the body
	// of GET /v1/visitors/{site}/{visitor}/segments.
	AppendSegments(ctx context.Context, dst []byte, site, visitor string) ([]byte, error)
}

// Both methods of a VisitorSource return an error wrapping ErrNoVisitor for
// a visitor with no profile (yet), and one wrapping ErrNotServed when the
// read they depend on does not exist in this build or configuration: the
// panel says so instead of pretending the visitor has no interests.
var ErrNotServed = errors.New("not served by this build")

// DemoOptions configures the demo shop.
type DemoOptions struct {
	// Site is the key the demo's pages send events with; it must be one of
	// the collector's sites and allow the collector's own origin.
	Site string
	// Visitors feeds the live panel; nil makes the panel say that no
	// profile reader is wired.
	Visitors VisitorSource
	// Timeout bounds one panel read; 0 means 2 s.
	Timeout time.Duration
}

// Demo serves the demo shop under /demo/. Create it with NewDemo.
type Demo struct {
	opts   DemoOptions
	files  fs.FS
	siteJS []byte
}

// NewDemo returns the demo shop for opts.
func NewDemo(opts DemoOptions) (*Demo, error) {
	if opts.Site == "" {
		return nil, errors.New("cannot serve the demo: no site key")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	files, err := fs.Sub(demoFS, "demo")
	if err != nil {
		return nil, err
	}
	site, _ := json.Marshal(opts.Site)
	// The loader stub of src/loader.html, pointing at this collector.
	js := `window.affinity=window.affinity||function(){(affinity.q=affinity.q||[]).push(arguments)};` +
		`(function(d,s){s=d.createElement("script");s.async=1;s.src="/sdk.js";d.head.appendChild(s)})(document);` +
		`affinity("init",{site:` + string(site) + `});window.DEMO_SITE=` + string(site) + ";\n"
	return &Demo{opts: opts, files: files, siteJS: []byte(js)}, nil
}

// Serve answers every path under /demo (the caller routes them here):
// the embedded pages, /demo/site.js (the loader stub with the site key)
// and GET /demo/api/visitor?v=<visitor id>, the panel's read.
func (d *Demo) Serve(ctx *fasthttp.RequestCtx) {
	p := string(ctx.Path())
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Error("method not allowed: the demo only reads\n", fasthttp.StatusMethodNotAllowed)
		ctx.Response.Header.Set(fasthttp.HeaderAllow, "GET, HEAD") // after Error, which resets headers
		return
	}
	// The pages change with the binary: always revalidate.
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-cache")
	switch p {
	case "/demo":
		ctx.Redirect("/demo/", fasthttp.StatusFound)
		return
	case "/demo/site.js":
		ctx.SetContentType("text/javascript; charset=utf-8")
		ctx.SetBody(d.siteJS)
		return
	case "/demo/api/visitor":
		d.visitor(ctx)
		return
	}
	name := strings.TrimPrefix(p, "/demo/")
	if name == "" || strings.HasSuffix(name, "/") {
		name += "index.html"
	}
	if !fs.ValidPath(name) {
		ctx.Error("no such page\n", fasthttp.StatusNotFound)
		return
	}
	data, err := fs.ReadFile(d.files, name)
	if err != nil {
		ctx.Error("no such page: "+name+"\n", fasthttp.StatusNotFound)
		return
	}
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	ctx.SetContentType(ct)
	ctx.SetBody(data)
}

// visitor answers the panel's read of the current visitor:
// {"visitor":"…","profile":<profile JSON or null>,"segments":<JSON or null>,
// "errors":["…"],"pending":bool}. pending is true when the profile read is
// not served by this build (ErrNotServed) or no reader is wired. It reads only the visitor whose id is in the
// request's own _aff_v cookie (the snippet's, first party on this origin),
// so a page can read its own visitor and no other.
func (d *Demo) visitor(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	v := strings.ToLower(string(ctx.QueryArgs().Peek("v")))
	if !isUUID(v) {
		ctx.Error("invalid visitor id "+strconv.Quote(v)+": want the snippet's UUID in ?v=\n", fasthttp.StatusBadRequest)
		return
	}
	if c := strings.ToLower(string(ctx.Request.Header.Cookie("_aff_v"))); c != v {
		ctx.Error("visitor "+v+" is not this browser's (_aff_v cookie): the demo shows only your own profile\n", fasthttp.StatusForbidden)
		return
	}
	out := append(make([]byte, 0, 1024), `{"visitor":"`...)
	out = append(out, v...)
	out = append(out, '"')
	var errs []string
	pending := false
	read := func(name string, f func(context.Context, []byte, string, string) ([]byte, error)) {
		out = append(out, `,"`+name+`":`...)
		rctx, cancel := context.WithTimeout(context.Background(), d.opts.Timeout)
		defer cancel()
		n := len(out)
		res, err := f(rctx, out, d.opts.Site, v)
		switch {
		case err == nil && json.Valid(res[n:]):
			out = res
			return
		case err == nil:
			err = errors.New("the API answered something that is not JSON")
		case errors.Is(err, ErrNoVisitor):
			err = nil
		case errors.Is(err, ErrNotServed):
			// Without a profile read the panel has nothing to show; without
			// the segments read it still shows the profile.
			pending = pending || name == "profile"
		}
		out = append(out[:n], "null"...)
		if err != nil {
			errs = append(errs, name+": "+err.Error())
		}
	}
	if d.opts.Visitors != nil {
		read("profile", d.opts.Visitors.AppendVisitor)
		read("segments", d.opts.Visitors.AppendSegments)
	} else {
		out = append(out, `,"profile":null,"segments":null`...)
		errs = append(errs, "no profile reader is wired into this binary")
		pending = true
	}
	e, _ := json.Marshal(errs)
	if errs == nil {
		e = []byte("[]")
	}
	out = append(out, `,"errors":`...)
	out = append(out, e...)
	out = append(out, `,"pending":`...)
	out = strconv.AppendBool(out, pending)
	out = append(out, "}\n"...)
	ctx.SetContentType("application/json")
	ctx.SetBody(out)
}

// isUUID reports whether s is a canonical lowercase UUID, 8-4-4-4-12.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
		} else if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

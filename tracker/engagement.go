package tracker

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/tracker/event"
)

// Engagement checks the campaign tokens of the engagement endpoints
// (campaign.Store.EngagementSite).
type Engagement interface {
	// EngagementSite checks tok's form and MAC and returns its campaign's
	// site and the visitor to log its open or click under; ok is false
	// for a malformed, forged or altered token (404, nothing logged), err
	// a failure to read, or a view of the campaigns not yet far enough
	// to tell (503 with Retry-After).
	EngagementSite(tok []byte) (site string, visitor event.UUID, ok bool, err error)
}

// ClickParam is the query parameter the click redirect adds to its
// target: the recipient's token, which the snippet sends on landing
// (a "link" of the browser's visitor to the recipient's email).
const ClickParam = "aff_t"

// Engagement paths: /e/o/{token}.gif, /e/c/{token}?to=URL.
const (
	openPrefix  = "/e/o/"
	clickPrefix = "/e/c/"
	openSuffix  = ".gif"
)

// ParseRedirectOrigins parses --redirect-origin specs, SITE=ORIGIN
// (repeatable, comma-separated), into the RedirectOrigins of sites.
func ParseRedirectOrigins(specs []string, sites []Site) error {
	for _, one := range specItems(specs) {
		key, o, ok := strings.Cut(one, "=")
		if !ok || key == "" {
			return fmt.Errorf("cannot parse --redirect-origin %q: want SITE=ORIGIN, e.g. shop=https://shop.example", one)
		}
		i := 0
		for i < len(sites) && sites[i].Key != key {
			i++
		}
		if i == len(sites) {
			return fmt.Errorf("cannot parse --redirect-origin for site %q: no such site: list it in --site first", key)
		}
		o = strings.TrimRight(o, "/")
		u, err := url.Parse(o)
		if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
			return fmt.Errorf("cannot parse --redirect-origin for site %q: origin %q must be scheme://host[:port], scheme http or https", key, o)
		}
		sites[i].RedirectOrigins = append(sites[i].RedirectOrigins, strings.ToLower(o))
	}
	return nil
}

// redirectAllowed reports whether target is an absolute http(s) URL of
// one of s's redirect origins.
func (s *Site) redirectAllowed(target *url.URL) bool {
	if target.Scheme != "http" && target.Scheme != "https" || target.Host == "" || target.User != nil {
		return false
	}
	origin := strings.ToLower(target.Scheme + "://" + target.Host)
	for _, o := range s.RedirectOrigins {
		if o == origin {
			return true
		}
	}
	return false
}

// handleEngagement serves the open pixel and the click redirect. A
// token that does not check, or of a site this collector does not
// serve, is 404 and logs nothing (the pixel still answers its GIF).
func (c *Collector) handleEngagement(ctx *fasthttp.RequestCtx, path []byte) {
	open := bytes.HasPrefix(path, []byte(openPrefix))
	var tok []byte
	if open {
		tok = bytes.TrimSuffix(path[len(openPrefix):], []byte(openSuffix))
		if len(tok) == len(path)-len(openPrefix) {
			c.refuse(ctx, fasthttp.StatusNotFound, reasonNotFound, "no such path: the open pixel is GET /e/o/{token}.gif")
			return
		}
	} else {
		tok = path[len(clickPrefix):]
	}
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.Set(fasthttp.HeaderAllow, "GET, HEAD")
		c.refuse(ctx, fasthttp.StatusMethodNotAllowed, reasonBadMethod, "method "+string(ctx.Method())+" not allowed: use GET")
		return
	}
	if c.opts.Engagement == nil {
		c.refuse(ctx, fasthttp.StatusServiceUnavailable, reasonEngagementOff,
			"this collector cannot check campaign tokens: it has no state and reads no definitions topic (collect with --defs-topic \"\")")
		return
	}
	siteKey, visitor, ok, err := c.opts.Engagement.EngagementSite(tok)
	if err != nil {
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, strconv.Itoa(int((c.opts.RetryAfter+time.Second-1)/time.Second)))
		c.refuse(ctx, fasthttp.StatusServiceUnavailable, reasonTokenUnchecked, "cannot check campaign token "+strconv.Quote(string(tok))+" now, retry later: "+err.Error())
		return
	}
	site := c.sites[siteKey]
	if !ok || site == nil {
		if open {
			ctx.SetStatusCode(fasthttp.StatusNotFound)
			c.gif(ctx)
			c.m.countStatus(fasthttp.StatusNotFound)
			c.m.batchesRefused(reasonBadToken)
			return
		}
		c.refuse(ctx, fasthttp.StatusNotFound, reasonBadToken, "invalid token "+strconv.Quote(string(tok))+": not a campaign recipient's of a site of this collector")
		return
	}
	var target *url.URL
	if !open {
		to := ctx.QueryArgs().Peek("to")
		if target, err = url.Parse(string(to)); err != nil || !site.redirectAllowed(target) {
			c.refuse(ctx, fasthttp.StatusBadRequest, reasonOpenRedirect,
				"invalid redirect target "+strconv.Quote(string(to))+": its origin is not listed for site "+strconv.Quote(site.Key)+" (--redirect-origin): no open redirect")
			return
		}
	}

	rc := c.ctxPool.Get().(*requestCtx)
	defer c.ctxPool.Put(rc)
	rc.batch.Reset()
	nowMs := c.opts.Now().UnixMilli()
	rc.batch.Site, rc.batch.Visitor, rc.batch.Recv = site.Key, visitor, nowMs
	rc.batch.Events = append(rc.batch.Events[:0], event.Event{Type: event.TypeClick, TS: nowMs, Token: string(tok)})
	e := &rc.batch.Events[0]
	if open {
		e.Type = event.TypeOpen
	} else {
		e.URL = target.String()
	}
	_, _ = rand.Read(e.ID[:]) // the builder counts per recipient, not per id
	rc.record = event.AppendBatch(rc.record[:0], &rc.batch)
	rc.key = event.AppendLogKey(rc.key[:0], site.Key, visitor)
	rc.msgs[0] = storage.Message{Key: rc.key, Value: rc.record}
	logged := c.append(ctx, rc.msgs[:], 1)
	rc.msgs[0] = storage.Message{}
	if open {
		if logged {
			ctx.SetStatusCode(fasthttp.StatusOK)
			c.gif(ctx)
			c.m.countStatus(fasthttp.StatusOK)
		}
		return
	}
	// A click whose log append failed still takes the reader to the shop:
	// it is not counted (the 503 just written is replaced).
	ctx.Response.Reset()
	q := target.Query()
	q.Set(ClickParam, string(tok))
	target.RawQuery = q.Encode()
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	ctx.Response.Header.Set(fasthttp.HeaderLocation, target.String())
	ctx.SetStatusCode(fasthttp.StatusFound)
	c.m.countStatus(fasthttp.StatusFound)
}

// gif writes the 1×1 pixel, never cached.
func (c *Collector) gif(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	ctx.SetContentType("image/gif")
	ctx.SetBody(gif1x1)
}

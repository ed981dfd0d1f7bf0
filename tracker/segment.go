package tracker

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/tracker/event"
)

// The Segment-compatible HTTP Tracking API (event.SegmentDecoder): what
// server-side clients (analytics-node, RudderStack's SDKs …) post, on the
// collector's own listener. A call is authenticated by HTTP Basic auth with
// a site's secret write key as the username; its messages are validated
// whole, split into one log record per visitor, and all of them appended
// in one Log.Append before the answer: 200 {"success":true}, as Segment
// answers, so clients neither retry a stored batch nor give up on one.

// segmentCtx is a requestCtx's scratch for the Segment API, made on the
// first such request the context serves: the snippet's requests never pay
// for it.
type segmentCtx struct {
	dec    *event.SegmentDecoder
	auth   []byte             // the decoded Basic credentials
	view   event.Batch        // one visitor's events, copied from rc.batch's
	group  map[event.UUID]int // visitor → its index in ids
	ids    []event.UUID       // the visitors, in order of first appearance
	order  []int              // event indexes, grouped by visitor
	starts []int              // per visitor, its first index in order
	next   []int              // per visitor, its next free index in order
	buf    []byte             // every record and key of the request
	spans  [][3]int           // per record: its start, its key's start and end in buf
	msgs   []storage.Message  // the records, viewing buf
}

// segmentReplyOK is the answer of a stored call, Segment's own.
var segmentReplyOK = []byte(`{"success":true}`)

// indexWriteKeys maps the sites' write keys to their sites, refusing a key
// that is also a public site key or another site's write key.
func (c *Collector) indexWriteKeys() error {
	for i := range c.opts.Sites {
		s := &c.opts.Sites[i]
		for _, k := range s.WriteKeys {
			if c.sites[k] != nil {
				return fmt.Errorf("cannot create collector: the write key %s of site %q is the public key of a site (--write-key)", quoteSecret(k), s.Key)
			}
			if o := c.writeKeys[k]; o != nil {
				return fmt.Errorf("cannot create collector: the write key %s of site %q is also one of site %q (--write-key)", quoteSecret(k), s.Key, o.Key)
			}
			c.writeKeys[k] = s
		}
	}
	return nil
}

func (c *Collector) handleSegment(ctx *fasthttp.RequestCtx, path []byte) {
	call := event.SegmentBatch // /v1/batch and Segment's older /v1/import
	if p := path[len("/v1/"):]; string(p) != "import" {
		call, _ = event.ParseSegmentCall(p)
	}
	c.m.segmentCall(call)
	if len(c.writeKeys) == 0 {
		c.refuse(ctx, fasthttp.StatusNotFound, reasonSegmentOff,
			"the Segment-compatible API is off: start affinity with --write-key SITE=SECRET to post server-side events to /v1/"+call.String())
		return
	}
	if string(ctx.Method()) != fasthttp.MethodPost {
		ctx.Response.Header.Set(fasthttp.HeaderAllow, fasthttp.MethodPost)
		c.refuse(ctx, fasthttp.StatusMethodNotAllowed, reasonBadMethod, "method "+string(ctx.Method())+" not allowed: use POST")
		return
	}
	rc := c.ctxPool.Get().(*requestCtx)
	defer c.ctxPool.Put(rc)
	if rc.seg == nil {
		rc.seg = &segmentCtx{dec: event.NewSegmentDecoder(c.opts.Decode), group: map[event.UUID]int{}}
	}
	sc := rc.seg

	site, msg := c.writeKeySite(ctx, sc)
	if site == nil {
		ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, `Basic realm="affinity"`)
		c.refuse(ctx, fasthttp.StatusUnauthorized, reasonBadWriteKey, msg)
		return
	}

	limit := event.SegmentMaxMessage
	if call == event.SegmentBatch {
		limit = event.SegmentMaxBatch
	}
	body, ok := c.body(ctx, limit, " of /v1/"+call.String()+" (Segment's)", "application/json")
	if !ok {
		return
	}
	if err := sc.dec.Decode(&rc.batch, call, site.Key, body, c.opts.Now().UnixMilli()); err != nil {
		c.refuseBatch(ctx, err, len(rc.batch.Events))
		return
	}
	c.m.segmentIgnored.Add(sc.dec.Dropped)
	n := len(rc.batch.Events)
	if n > 0 {
		if site.bucket != nil {
			if wait := site.bucket.take(int64(time.Since(c.epoch)), n); wait > 0 {
				c.rateLimited(ctx, site, n, wait)
				return
			}
		}
		ok := c.append(ctx, sc.records(&rc.batch), n)
		clear(sc.msgs)
		if !ok {
			return
		}
	}
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	ctx.SetBody(segmentReplyOK)
	c.m.countStatus(fasthttp.StatusOK)
}

// writeKeySite returns the site whose write key the request's Basic auth
// names, or nil and why not.
func (c *Collector) writeKeySite(ctx *fasthttp.RequestCtx, sc *segmentCtx) (*Site, string) {
	const how = "send HTTP Basic auth with the site's secret write key (--write-key) as the username"
	h := ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)
	if len(h) == 0 {
		return nil, "missing write key: " + how
	}
	if len(h) < 6 || !equalFoldASCII(h[:6], "basic ") {
		return nil, "unsupported authorization " + strconv.Quote(string(h[:min(len(h), 7)])) + "…: " + how
	}
	cred := h[6:]
	sc.auth = append(sc.auth[:0], make([]byte, base64.StdEncoding.DecodedLen(len(cred)))...)
	n, err := base64.StdEncoding.Decode(sc.auth, cred)
	if err != nil {
		return nil, "invalid Basic credentials, not base64: " + how
	}
	user := sc.auth[:n]
	for i, b := range user {
		if b == ':' {
			user = user[:i]
			break
		}
	}
	if len(user) == 0 {
		return nil, "missing write key: the Basic auth username is empty; " + how
	}
	site := c.writeKeys[string(user)]
	if site == nil {
		return nil, "unknown write key " + quoteSecret(string(user)) + ": " + how
	}
	return site, ""
}

// records returns the log records of b, whose events' visitors are in
// sc.dec.Visitors: one record per visitor, its events in the order sent,
// the visitors in order of first appearance. The messages view sc.buf.
func (sc *segmentCtx) records(b *event.Batch) []storage.Message {
	visitors := sc.dec.Visitors
	clear(sc.group)
	sc.ids = sc.ids[:0]
	sc.starts = sc.starts[:0]
	// A counting sort of the events by visitor, stable.
	for _, v := range visitors {
		g, ok := sc.group[v]
		if !ok {
			g = len(sc.ids)
			sc.group[v] = g
			sc.ids = append(sc.ids, v)
			sc.starts = append(sc.starts, 0)
		}
		sc.starts[g]++
	}
	sum := 0
	for g, n := range sc.starts {
		sc.starts[g] = sum
		sum += n
	}
	sc.order = append(sc.order[:0], make([]int, len(visitors))...)
	sc.next = append(sc.next[:0], sc.starts...)
	for i, v := range visitors {
		g := sc.group[v]
		sc.order[sc.next[g]] = i
		sc.next[g]++
	}

	sc.buf = sc.buf[:0]
	sc.spans = sc.spans[:0]
	sc.view.Site, sc.view.Recv = b.Site, b.Recv
	for g, v := range sc.ids {
		end := len(visitors)
		if g+1 < len(sc.ids) {
			end = sc.starts[g+1]
		}
		sc.view.Visitor = v
		sc.view.Events = sc.view.Events[:0]
		for _, i := range sc.order[sc.starts[g]:end] {
			sc.view.Events = append(sc.view.Events, b.Events[i])
		}
		start := len(sc.buf)
		sc.buf = event.AppendBatch(sc.buf, &sc.view)
		key := len(sc.buf)
		sc.buf = event.AppendLogKey(sc.buf, b.Site, v)
		sc.spans = append(sc.spans, [3]int{start, key, len(sc.buf)})
	}
	clear(sc.view.Events) // drop the views of b's items and traits
	sc.msgs = sc.msgs[:0]
	for _, sp := range sc.spans {
		sc.msgs = append(sc.msgs, storage.Message{Key: sc.buf[sp[1]:sp[2]], Value: sc.buf[sp[0]:sp[1]]})
	}
	return sc.msgs
}

package query

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/internal/duration"
	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/tracker/event"
)

// previewName is the path element of the rule preview, in the place of a
// segment name: a segment cannot be called _preview.
const previewName = "_preview"

// maxPreviewSample bounds ?sample= of a preview.
const maxPreviewSample = 100

// maxHistoryPoints bounds the points ?step= may ask for.
const maxHistoryPoints = 10000

// previewRule answers POST /v1/segments/{site}/_preview?sample=N (default
// 10) with the rule text as the body, without storing anything:
//
//	{"site":…,"rule":…,"canonical":…,"terms":[…],"at":…,"count":N,"exact":bool,
//	 "scanned":N,"from_index":bool,"sample":[{"visitor":…,"email":…,"facts":{…}}]}
//
// A rule that does not compile answers 400 with its position, as PUT.
// Options.PreviewMaxScan and PreviewTimeout bound the work; when one
// stops it, count is the members among the profiles scanned ("exact":
// false). At most Options.MaxPreviews run at once; another answers 429.
func (h *Handler) previewRule(ctx *fasthttp.RequestCtx, site string) {
	sample := 10
	if raw := ctx.QueryArgs().Peek("sample"); len(raw) > 0 {
		n, err := strconv.Atoi(string(raw))
		if err != nil || n < 0 || n > maxPreviewSample {
			h.badRequest(ctx, fmt.Sprintf("invalid sample=%s: want 0..%d", quote.Value(raw), maxPreviewSample))
			return
		}
		sample = n
	}
	body := ctx.PostBody()
	if len(body) > maxRuleBytes {
		api.Error(ctx, fasthttp.StatusRequestEntityTooLarge, fmt.Sprintf("rule of %d bytes: at most %d", len(body), maxRuleBytes))
		return
	}
	parts, ok := h.localParts(ctx)
	if !ok {
		return
	}
	src := strings.TrimSpace(string(body))
	if h.clusterOf() != nil && parts == nil {
		h.fanOutPreview(ctx, site, src, sample)
		return
	}
	select {
	case h.previews <- struct{}{}:
		defer func() { <-h.previews }()
	default:
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "1")
		api.Error(ctx, fasthttp.StatusTooManyRequests, fmt.Sprintf("%d previews are running: try again in a second", cap(h.previews)))
		return
	}
	opts := membership.PreviewOptions{
		Sample:   sample,
		MaxScan:  h.opts.PreviewMaxScan,
		Deadline: time.Now().Add(h.opts.PreviewTimeout),
	}
	if parts != nil { // an owner's share of a fan-out, at the asking node's instant
		at, err := strconv.ParseInt(string(ctx.QueryArgs().Peek("at")), 10, 64)
		if err != nil || at <= 0 {
			h.badRequest(ctx, fmt.Sprintf("invalid at=%s of a preview's share: want Unix ms", quote.Value(ctx.QueryArgs().Peek("at"))))
			return
		}
		opts.At = at
		opts.Keep = func(v event.UUID) bool { return h.inParts(parts, site, v) }
	}
	res, err := h.opts.Segments.Preview(site, src, opts)
	if err != nil {
		h.refuse(ctx, err)
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(appendPreview(make([]byte, 0, 1024), site, res, parts != nil))
}

// appendPreview appends the answer of a preview (previewRule); an owner's
// share of a fan-out (share) gives each sample member's place in
// candidate order too, "order" in hex.
func appendPreview(out []byte, site string, res *membership.PreviewResult, share bool) []byte {
	out = append(out, `{"site":`...)
	out = event.AppendJSONString(out, site)
	out = append(out, `,"rule":`...)
	out = event.AppendJSONString(out, res.Rule.Source())
	out = append(out, `,"canonical":`...)
	out = event.AppendJSONString(out, res.Rule.String())
	out = append(out, `,"terms":[`...)
	for i, ref := range res.Rule.Refs() {
		if i > 0 {
			out = append(out, ',')
		}
		out = event.AppendJSONString(out, ref.Name)
	}
	out = append(out, `],"at":`...)
	out = profile.AppendJSONTime(out, res.At)
	out = append(out, `,"count":`...)
	out = strconv.AppendInt(out, int64(res.Count), 10)
	out = append(out, `,"exact":`...)
	out = strconv.AppendBool(out, res.Exact)
	out = append(out, `,"scanned":`...)
	out = strconv.AppendInt(out, int64(res.Scanned), 10)
	out = append(out, `,"from_index":`...)
	out = strconv.AppendBool(out, res.FromIndex)
	out = append(out, `,"sample":[`...)
	for i := range res.Sample {
		if i > 0 {
			out = append(out, ',')
		}
		out = appendPreviewMember(out, &res.Sample[i], share)
	}
	return append(out, "]}\n"...)
}

// appendPreviewMember appends a sample member; with order, its place in
// candidate order in hex first (a share's).
func appendPreviewMember(out []byte, m *membership.PreviewMember, order bool) []byte {
	out = append(out, '{')
	if order {
		out = append(out, `"order":"`...)
		out = hex.AppendEncode(out, m.Order)
		out = append(out, `",`...)
	}
	out = append(out, `"visitor":"`...)
	out = m.Visitor.Append(out)
	out = append(out, `","email":`...)
	out = event.AppendJSONString(out, m.Email)
	out = append(out, `,"facts":`...)
	out = append(out, m.Facts...)
	return append(out, '}')
}

// previewShare is an owner's share of a preview fanned out across a
// build group (appendPreview with orders), as the asking node reads it.
type previewShare struct {
	Count     int  `json:"count"`
	Scanned   int  `json:"scanned"`
	Exact     bool `json:"exact"`
	FromIndex bool `json:"from_index"`
	Sample    []struct {
		Order   string          `json:"order"`
		Visitor string          `json:"visitor"`
		Email   string          `json:"email"`
		Facts   json.RawMessage `json:"facts"`
	} `json:"sample"`
}

// fanOutPreview answers a preview on a node of a build group: every owner
// evaluates the rule over its partitions' candidates at this node's
// instant, and the shares combine as one node's answer: counts and
// scanned add up, exact when every share is, the sample is the first
// members in candidate order of all shares. Each owner bounds its own
// scan (PreviewMaxScan, PreviewTimeout), so a bounded answer ("exact":
// false) is a lower bound as on one node, not one node's number.
func (h *Handler) fanOutPreview(ctx *fasthttp.RequestCtx, site, src string, sample int) {
	rule, err := h.opts.Segments.Compile(src)
	if err != nil {
		h.refuse(ctx, err)
		return
	}
	lc, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	shards, err := h.clusterOf().Shards(lc)
	if err != nil {
		h.unavailable(ctx, err)
		return
	}
	h.m.fanOuts.Inc()
	res := &membership.PreviewResult{Rule: rule, At: h.opts.Now().UnixMilli(), Exact: true}
	type answer struct {
		status int
		body   []byte
		err    error
	}
	answers := make([]answer, len(shards))
	// Read once here: fasthttp parses a request's header and URI lazily,
	// so a Peek from several goroutines at once is a data race.
	path, auth := ctx.Path(), ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)
	var wg sync.WaitGroup
	for i, sh := range shards {
		wg.Go(func() {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.Header.SetMethod(fasthttp.MethodPost)
			req.SetRequestURI(sh.URL)
			req.URI().SetPathBytes(path)
			req.URI().QueryArgs().SetUint("sample", sample)
			req.URI().QueryArgs().Set("at", strconv.FormatInt(res.At, 10))
			req.Header.SetBytesV(fasthttp.HeaderAuthorization, auth)
			req.Header.SetBytesV(api.HeaderPartitions, appendPartitions(nil, sh.Partitions))
			req.Header.SetContentType("text/plain")
			req.SetBodyString(src)
			if err := h.clusterOf().Do(req, resp); err != nil {
				answers[i].err = fmt.Errorf("cannot reach the owner %s of partitions %s: %w", sh.URL, appendPartitions(nil, sh.Partitions), err)
				return
			}
			answers[i] = answer{status: resp.StatusCode(), body: bytes.Clone(resp.Body())}
		})
	}
	wg.Wait()
	type member struct {
		order []byte
		m     membership.PreviewMember
	}
	var members []member
	for i, a := range answers {
		switch {
		case a.err != nil:
			h.unavailable(ctx, a.err)
			return
		case a.status != fasthttp.StatusOK:
			// The owner's refusal as it gave it: a 429 of its previews,
			// a 503 of a partition it no longer serves.
			if a.status == fasthttp.StatusServiceUnavailable || a.status == fasthttp.StatusTooManyRequests {
				ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, retryAfter)
			}
			api.Error(ctx, a.status, fmt.Sprintf("the owner %s of partitions %s answered %d: %s", shards[i].URL, appendPartitions(nil, shards[i].Partitions), a.status, quote.OneLine(string(bytes.TrimSpace(a.body)))))
			return
		}
		var sh previewShare
		if err := json.Unmarshal(a.body, &sh); err != nil {
			h.internalError(ctx, fmt.Errorf("cannot read the preview share of %s: %w", shards[i].URL, err))
			return
		}
		res.Count += sh.Count
		res.Scanned += sh.Scanned
		res.Exact = res.Exact && sh.Exact
		res.FromIndex = res.FromIndex || sh.FromIndex
		for _, s := range sh.Sample {
			order, err1 := hex.DecodeString(s.Order)
			v, ok := event.ParseUUID([]byte(s.Visitor))
			if err1 != nil || !ok {
				h.internalError(ctx, fmt.Errorf("BUG: a preview share of %s has a sample member %q of order %q", shards[i].URL, s.Visitor, s.Order))
				return
			}
			members = append(members, member{order, membership.PreviewMember{Visitor: v, Email: s.Email, Facts: string(s.Facts)}})
		}
	}
	slices.SortFunc(members, func(a, b member) int { return bytes.Compare(a.order, b.order) })
	for _, m := range members[:min(len(members), sample)] {
		res.Sample = append(res.Sample, m.m)
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(appendPreview(make([]byte, 0, 1024), site, res, false))
}

// serveHistory answers GET /v1/segments/{site}/{name}/history with the
// samples of the segment's size (membership.Engine.History):
//
//	{"site":…,"name":…,"from":…,"to":…,"step":"1h"|null,"points":[{"at":…,"size":N}]}
//
// from and to are RFC 3339 (default: the last 24 h); step (a duration such
// as 5m, 1h, 1d) keeps the last sample of each step from from. Samples are
// a minute apart for a day, an hour apart for 30 days, a day apart after.
func (h *Handler) serveHistory(ctx *fasthttp.RequestCtx, site, name string) {
	to, ok, err := parseTimeArg(ctx, "to")
	if err != nil {
		h.refuse(ctx, err)
		return
	}
	if !ok {
		to = h.opts.Now().UnixMilli()
	}
	from, ok, err := parseTimeArg(ctx, "from")
	if err != nil {
		h.refuse(ctx, err)
		return
	}
	if !ok {
		from = to - (24 * time.Hour).Milliseconds()
	}
	if from > to {
		h.badRequest(ctx, fmt.Sprintf("invalid from=%s: after to=%s", quote.Value(ctx.QueryArgs().Peek("from")), quote.Value(ctx.QueryArgs().Peek("to"))))
		return
	}
	var step int64
	if raw := ctx.QueryArgs().Peek("step"); len(raw) > 0 {
		if step, err = duration.ParseMs(string(raw)); err != nil || step <= 0 {
			h.badRequest(ctx, fmt.Sprintf("invalid step=%s: want a duration such as 5m, 1h or 1d", quote.Value(raw)))
			return
		}
		if n := (to - from) / step; n > maxHistoryPoints {
			h.badRequest(ctx, fmt.Sprintf("invalid step=%s: gives %d points from from to to; at most %d", quote.Value(raw), n, maxHistoryPoints))
			return
		}
	}
	if !h.segmentExists(ctx, site, name) {
		return
	}
	var parts []bool // an owner's share of a fan-out: the sum of these partitions
	if h.clusterOf() != nil {
		var ok bool
		if parts, ok = h.localParts(ctx); !ok {
			return
		}
		// A per-person segment's samples are by evaluating partition
		// (SampleByPartition), summed alike.
		if _, ok := h.perPerson(ctx, site, name, parts); !ok {
			return
		}
		if parts == nil {
			h.fanOutHistory(ctx, site, name, from, to, step)
			return
		}
	}
	var points []membership.SizePoint
	err = h.opts.Segments.History(site, name, from, to, step, func(p membership.SizePoint) bool {
		if parts != nil {
			// Only a sample of every asked partition is the share's.
			size, n := 0, 0
			for _, ps := range p.Parts {
				if ps.Partition < len(parts) && parts[ps.Partition] {
					size += ps.Size
					n++
				}
			}
			if n != countTrue(parts) {
				return true
			}
			p.Size = size
		}
		points = append(points, membership.SizePoint{At: p.At, Size: p.Size})
		return true
	})
	if err != nil {
		h.internalError(ctx, err)
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(appendHistory(make([]byte, 0, 4096), site, name, from, to, step, points))
}

// countTrue returns how many of set are true.
func countTrue(set []bool) int {
	n := 0
	for _, ok := range set {
		if ok {
			n++
		}
	}
	return n
}

// appendHistory appends the answer of serveHistory.
func appendHistory(out []byte, site, name string, from, to, step int64, points []membership.SizePoint) []byte {
	out = append(out, `{"site":`...)
	out = event.AppendJSONString(out, site)
	out = append(out, `,"name":`...)
	out = event.AppendJSONString(out, name)
	out = append(out, `,"from":`...)
	out = profile.AppendJSONTime(out, from)
	out = append(out, `,"to":`...)
	out = profile.AppendJSONTime(out, to)
	out = append(out, `,"step":`...)
	if step > 0 {
		out = event.AppendJSONString(out, duration.Format(time.Duration(step)*time.Millisecond))
	} else {
		out = append(out, "null"...)
	}
	out = append(out, `,"points":[`...)
	for i, p := range points {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"at":`...)
		out = profile.AppendJSONTime(out, p.At)
		out = append(out, `,"size":`...)
		out = strconv.AppendInt(out, int64(p.Size), 10)
		out = append(out, '}')
	}
	return append(out, "]}\n"...)
}

// fanOutHistory answers a segment's size history on a node of a build
// group: every owner gives the samples that counted each of its
// partitions (a node samples by partition what it owns then), summed
// over them, and this node sums the owners' samples of one minute (of
// one step with step) into a point, at the latest of their instants. A
// minute some owner has no sample of is left out, not summed partly: so
// a partition's history starts when its owner took it over (the samples
// its former owner took are that node's).
func (h *Handler) fanOutHistory(ctx *fasthttp.RequestCtx, site, name string, from, to, step int64) {
	args := fasthttp.AcquireArgs()
	defer fasthttp.ReleaseArgs(args)
	ctx.QueryArgs().CopyTo(args)
	args.Set("from", time.UnixMilli(from).UTC().Format(time.RFC3339Nano))
	args.Set("to", time.UnixMilli(to).UTC().Format(time.RFC3339Nano))
	f := h.openFanOut(ctx, args)
	if f == nil {
		return
	}
	defer f.close()
	type bucket struct {
		owners int
		point  membership.SizePoint
	}
	buckets := map[int64]*bucket{}
	for i, src := range f.sources() {
		var share struct {
			Points []struct {
				At   time.Time `json:"at"`
				Size int       `json:"size"`
			} `json:"points"`
		}
		body, err := io.ReadAll(io.LimitReader(src.r, maxHistoryShare))
		if err == nil {
			err = json.Unmarshal(body, &share)
		}
		if err != nil {
			h.unavailable(ctx, fmt.Errorf("cannot read the size history of %s: %w", f.owners[i], err))
			return
		}
		for _, p := range share.Points {
			at := p.At.UnixMilli()
			key := at / time.Minute.Milliseconds()
			if step > 0 {
				key = (at - from) / step
			}
			b := buckets[key]
			if b == nil {
				b = &bucket{}
				buckets[key] = b
			}
			b.owners++
			b.point.Size += p.Size
			b.point.At = max(b.point.At, at)
		}
	}
	var points []membership.SizePoint
	for _, key := range slices.Sorted(maps.Keys(buckets)) {
		if b := buckets[key]; b.owners == len(f.owners) {
			points = append(points, b.point)
		}
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(appendHistory(make([]byte, 0, 4096), site, name, from, to, step, points))
}

// maxHistoryShare bounds an owner's answer to a history fan-out: about
// 10 000 points.
const maxHistoryShare = 1 << 20

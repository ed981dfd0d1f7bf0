package query

import (
	"fmt"
	"strconv"
	"strings"
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
	select {
	case h.previews <- struct{}{}:
		defer func() { <-h.previews }()
	default:
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "1")
		api.Error(ctx, fasthttp.StatusTooManyRequests, fmt.Sprintf("%d previews are running: try again in a second", cap(h.previews)))
		return
	}
	res, err := h.opts.Segments.Preview(site, strings.TrimSpace(string(body)), membership.PreviewOptions{
		Sample:   sample,
		MaxScan:  h.opts.PreviewMaxScan,
		Deadline: time.Now().Add(h.opts.PreviewTimeout),
	})
	if err != nil {
		h.refuse(ctx, err)
		return
	}
	out := append(make([]byte, 0, 1024), `{"site":`...)
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
		m := &res.Sample[i]
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"visitor":"`...)
		out = m.Visitor.Append(out)
		out = append(out, `","email":`...)
		out = event.AppendJSONString(out, m.Email)
		out = append(out, `,"facts":`...)
		out = append(out, m.Facts...)
		out = append(out, '}')
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(append(out, "]}\n"...))
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
	out := append(make([]byte, 0, 4096), `{"site":`...)
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
	n := 0
	err = h.opts.Segments.History(site, name, from, to, step, func(p membership.SizePoint) bool {
		if n > 0 {
			out = append(out, ',')
		}
		n++
		out = append(out, `{"at":`...)
		out = profile.AppendJSONTime(out, p.At)
		out = append(out, `,"size":`...)
		out = strconv.AppendInt(out, int64(p.Size), 10)
		out = append(out, '}')
		return true
	})
	if err != nil {
		h.internalError(ctx, err)
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(append(out, "]}\n"...))
}

package query

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/profile/defs"
	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/tracker/event"
)

// The segment API (Options.Segments):
//
//	PUT    /v1/segments/{site}/{name}[?per=person] rule text → 201 (created) / 200, the definition; 400 with position
//	GET    /v1/segments/{site}                   the segments with their sizes
//	GET    /v1/segments/{site}/{name}            definition, size, backfill progress
//	DELETE /v1/segments/{site}/{name}            204, 404
//	GET    /v1/segments/{site}/{name}/members    ?format=ndjson|csv&by=email&cursor=&limit=&holdout=P&salt=S&group=control
//	GET    /v1/segments/{site}/{name}/changes    ?after=<seq>&limit=N → {"changes":[…],"cursor":"<seq>"}
//	PUT    /v1/segments/{site}/{name}/webhook    {"url":…,"secret":…}; GET, DELETE
//	GET    /v1/segments/{site}/{name}/history    ?from=&to=&step= → {"points":[{"at":…,"size":N}]}
//	POST   /v1/segments/{site}/_preview          rule text → count now, exact or not, a sample with facts
//	GET    /v1/visitors/{site}/{visitor}/segments
const segmentsPrefix = "/v1/segments/"

// maxRuleBytes bounds a PUT body (the rule language caps rules at 4096).
const maxRuleBytes = 64 << 10

func (h *Handler) serveSegments(ctx *fasthttp.RequestCtx) {
	if h.opts.Segments == nil {
		api.Error(ctx, fasthttp.StatusServiceUnavailable, "this process keeps no segments: send segment requests to the process running affinity serve or build")
		return
	}
	parts, ok := h.sitePath(ctx, segmentsPrefix, 3, "/v1/segments/{site}[/_preview|/{name}[/members|/changes|/history|/webhook]]")
	if !ok {
		return
	}
	site := parts[0]
	if len(parts) == 1 {
		if !ctx.IsGet() && !ctx.IsHead() {
			methodNotAllowed(ctx, "GET, HEAD")
			return
		}
		h.listSegments(ctx, site)
		return
	}
	name := parts[1]
	if name == previewName && len(parts) == 2 {
		if !ctx.IsPost() {
			methodNotAllowed(ctx, "POST")
			return
		}
		h.previewRule(ctx, site)
		return
	}
	if err := membership.CheckName(name); err != nil {
		h.refuse(ctx, err)
		return
	}
	switch {
	case len(parts) == 2:
		switch {
		case ctx.IsPut():
			h.putSegment(ctx, site, name)
		case ctx.IsGet() || ctx.IsHead():
			h.getSegment(ctx, site, name)
		case ctx.IsDelete():
			h.deleteSegment(ctx, site, name)
		default:
			methodNotAllowed(ctx, "GET, HEAD, PUT, DELETE")
		}
		return
	case len(parts) == 3 && parts[2] == "members":
		if !ctx.IsGet() && !ctx.IsHead() {
			methodNotAllowed(ctx, "GET, HEAD")
			return
		}
		h.serveMembers(ctx, site, name)
		return
	case len(parts) == 3 && parts[2] == "changes":
		if !ctx.IsGet() && !ctx.IsHead() {
			methodNotAllowed(ctx, "GET, HEAD")
			return
		}
		h.serveChanges(ctx, site, name)
		return
	case len(parts) == 3 && parts[2] == "history":
		if !ctx.IsGet() && !ctx.IsHead() {
			methodNotAllowed(ctx, "GET, HEAD")
			return
		}
		h.serveHistory(ctx, site, name)
		return
	case len(parts) == 3 && parts[2] == "webhook":
		h.serveWebhook(ctx, site, name)
		return
	}
	api.NoRoute(ctx, "/v1/segments/{site}[/_preview|/{name}[/members|/changes|/history|/webhook]]")
}

// sitePath splits the path after prefix into its 1..max segments, the
// first a valid site, answering (NoRoute with route, or 400) when it is
// not such a path.
func (h *Handler) sitePath(ctx *fasthttp.RequestCtx, prefix string, max int, route string) ([]string, bool) {
	parts := strings.Split(string(ctx.Path()[len(prefix):]), "/")
	if len(parts) > max || slices.Contains(parts, "") {
		api.NoRoute(ctx, route)
		return nil, false
	}
	if err := checkSite(parts[0]); err != nil {
		h.refuse(ctx, err)
		return nil, false
	}
	return parts, true
}

func (h *Handler) noSegment(ctx *fasthttp.RequestCtx, site, name string) {
	api.Error(ctx, fasthttp.StatusNotFound, fmt.Sprintf("no segment %s of site %s", quote.Value(name), quote.Value(site)))
}

// segmentExists reports whether the segment is defined, answering 404 (or
// 500) when it is not.
func (h *Handler) segmentExists(ctx *fasthttp.RequestCtx, site, name string) bool {
	_, ok, err := h.opts.Segments.Definition(site, name)
	switch {
	case err != nil:
		h.internalError(ctx, err)
	case !ok:
		h.noSegment(ctx, site, name)
	}
	return err == nil && ok
}

func (h *Handler) putSegment(ctx *fasthttp.RequestCtx, site, name string) {
	body := ctx.PostBody()
	if len(body) > maxRuleBytes {
		api.Error(ctx, fasthttp.StatusRequestEntityTooLarge, fmt.Sprintf("rule of %d bytes: at most %d", len(body), maxRuleBytes))
		return
	}
	src := strings.TrimSpace(string(body))
	per, err := membership.ParsePer(string(ctx.QueryArgs().Peek("per")))
	if err != nil {
		h.refuse(ctx, err)
		return
	}
	if h.opts.Definitions != nil { // alone, the store refuses it
		if err := h.opts.Segments.CheckRule(src); err != nil {
			h.refuse(ctx, err)
			return
		}
	}
	v, err := h.writeDefinition(&defs.Record{Kind: defs.KindSegment, Op: defs.OpPut, Site: site, Name: name, Args: []string{per.String()}, Body: []byte(src)})
	if err != nil {
		h.refuseDefinition(ctx, err)
		return
	}
	d, created := v.(segmentPut).d, v.(segmentPut).created
	if created {
		ctx.SetStatusCode(fasthttp.StatusCreated)
	}
	// The write is done: a group that cannot count now answers size null.
	sizes, err := h.groupSizes(ctx, site, name)
	if err != nil {
		h.opts.Logger.Printf("query: the size of segment %s/%s after its PUT: %v", site, name, err)
		sizes = map[string]int{}
	}
	h.writeSegment(ctx, &d, sizes)
}

func (h *Handler) getSegment(ctx *fasthttp.RequestCtx, site, name string) {
	d, ok, err := h.opts.Segments.Definition(site, name)
	if err != nil {
		h.internalError(ctx, err)
		return
	}
	if !ok {
		h.noSegment(ctx, site, name)
		return
	}
	sizes, ok := h.readSizes(ctx, site, name)
	if !ok {
		return
	}
	h.writeSegment(ctx, &d, sizes)
}

func (h *Handler) deleteSegment(ctx *fasthttp.RequestCtx, site, name string) {
	if !h.segmentExists(ctx, site, name) {
		return
	}
	v, err := h.writeDefinition(&defs.Record{Kind: defs.KindSegment, Op: defs.OpDelete, Site: site, Name: name})
	if err != nil {
		h.refuseDefinition(ctx, err)
		return
	}
	if !v.(bool) {
		h.noSegment(ctx, site, name)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

func (h *Handler) listSegments(ctx *fasthttp.RequestCtx, site string) {
	defs, err := h.opts.Segments.Definitions(site)
	if err != nil {
		h.internalError(ctx, err)
		return
	}
	sizes, ok := h.readSizes(ctx, site, "")
	if !ok {
		return
	}
	out := append([]byte(nil), `{"site":`...)
	out = event.AppendJSONString(out, site)
	out = append(out, `,"segments":[`...)
	for i := range defs {
		if i > 0 {
			out = append(out, ',')
		}
		if out, err = h.appendSegment(out, &defs[i], sizes); err != nil {
			h.internalError(ctx, err)
			return
		}
	}
	out = append(out, "]}\n"...)
	ctx.SetContentType("application/json")
	ctx.SetBody(out)
}

// writeSegment answers a definition with sizes (appendSegment).
func (h *Handler) writeSegment(ctx *fasthttp.RequestCtx, d *membership.Definition, sizes map[string]int) {
	out, err := h.appendSegment(nil, d, sizes)
	if err != nil {
		h.internalError(ctx, err)
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(append(out, '\n'))
}

// appendSegment appends the JSON of a definition:
//
//	{"site":…,"name":…,"per":"visitor|person","rule":…,"canonical":…,"terms":[…],"size":N,"generation":N,
//	 "created":…,"updated":…,"backfill":{"state":"running|done|pending","scanned":N,"total":N,"from_index":bool}}
//
// sizes, if not nil, are the segments' sizes summed over the owners of a
// build group (groupSizes); a segment it does not name (created since the
// owners answered) has size null.
func (h *Handler) appendSegment(out []byte, d *membership.Definition, sizes map[string]int) ([]byte, error) {
	m := h.opts.Segments
	// The backfill's progress before the size: a size counted after
	// "done" was seen includes every member the backfill wrote, so a
	// client that waits for "done" reads the complete size.
	bf := m.BackfillOf(d.Site, d.Name)
	var (
		scanned, total int64
		done           bool
	)
	if bf != nil {
		scanned, total, done = bf.Progress()
	}
	size, sized := 0, true
	if sizes != nil {
		size, sized = sizes[d.Name]
	} else {
		var err error
		if size, err = m.Size(d.Site, d.Name); err != nil {
			return out, err
		}
	}
	out = append(out, `{"site":`...)
	out = event.AppendJSONString(out, d.Site)
	out = append(out, `,"name":`...)
	out = event.AppendJSONString(out, d.Name)
	out = append(out, `,"per":"`...)
	out = append(out, d.Per.String()...)
	out = append(out, `","rule":`...)
	out = event.AppendJSONString(out, d.Source)
	if r, ok := m.Rule(d.Site, d.Name); ok {
		out = append(out, `,"canonical":`...)
		out = event.AppendJSONString(out, r.String())
		out = append(out, `,"terms":[`...)
		for i, ref := range r.Refs() {
			if i > 0 {
				out = append(out, ',')
			}
			out = event.AppendJSONString(out, ref.Name)
		}
		out = append(out, ']')
	}
	out = append(out, `,"size":`...)
	if sized {
		out = strconv.AppendInt(out, int64(size), 10)
	} else {
		out = append(out, "null"...)
	}
	out = append(out, `,"generation":`...)
	out = strconv.AppendUint(out, d.Gen, 10)
	out = append(out, `,"created":`...)
	out = profile.AppendJSONTime(out, d.Created)
	out = append(out, `,"updated":`...)
	out = profile.AppendJSONTime(out, d.Updated)
	out = append(out, `,"backfill":{"state":`...)
	switch {
	case bf != nil && bf.Gen == d.Gen:
		if done {
			out = append(out, `"done"`...)
		} else {
			out = append(out, `"running"`...)
		}
		out = append(out, `,"scanned":`...)
		out = strconv.AppendInt(out, scanned, 10)
		out = append(out, `,"total":`...)
		if total < 0 {
			out = append(out, "null"...)
		} else {
			out = strconv.AppendInt(out, total, 10)
		}
		out = append(out, `,"from_index":`...)
		out = strconv.AppendBool(out, bf.FromIndex())
	case d.Backfilled >= d.Gen:
		out = append(out, `"done"`...)
	default:
		out = append(out, `"pending"`...)
	}
	return append(out, "}}"...), nil
}

func (h *Handler) serveWebhook(ctx *fasthttp.RequestCtx, site, name string) {
	m := h.opts.Segments
	switch {
	case ctx.IsPut():
		var req struct {
			URL    string `json:"url"`
			Secret string `json:"secret"`
		}
		if err := json.Unmarshal(ctx.PostBody(), &req); err != nil {
			h.badRequest(ctx, `invalid webhook: want {"url":"https://…","secret":"…"}: `+quote.OneLine(err.Error()))
			return
		}
		if err := membership.CheckWebhook(req.URL, req.Secret); err != nil {
			h.refuse(ctx, err)
			return
		}
		if !h.segmentExists(ctx, site, name) {
			return
		}
		_, err := h.writeDefinition(&defs.Record{Kind: defs.KindWebhook, Op: defs.OpPut, Site: site, Name: name, Args: []string{req.URL, req.Secret}})
		if errors.Is(err, defs.ErrMissing) { // deleted meanwhile
			h.noSegment(ctx, site, name)
			return
		}
		if err != nil {
			h.refuseDefinition(ctx, err)
			return
		}
		h.getWebhook(ctx, site, name)
	case ctx.IsGet() || ctx.IsHead():
		h.getWebhook(ctx, site, name)
	case ctx.IsDelete():
		if _, ok, err := m.GetWebhook(site, name); err != nil || !ok {
			if err != nil {
				h.internalError(ctx, err)
			} else {
				api.Error(ctx, fasthttp.StatusNotFound, fmt.Sprintf("no webhook on segment %s of site %s", quote.Value(name), quote.Value(site)))
			}
			return
		}
		v, err := h.writeDefinition(&defs.Record{Kind: defs.KindWebhook, Op: defs.OpDelete, Site: site, Name: name})
		if err != nil {
			h.refuseDefinition(ctx, err)
			return
		}
		if !v.(bool) {
			api.Error(ctx, fasthttp.StatusNotFound, fmt.Sprintf("no webhook on segment %s of site %s", quote.Value(name), quote.Value(site)))
			return
		}
		ctx.SetStatusCode(fasthttp.StatusNoContent)
	default:
		methodNotAllowed(ctx, "GET, HEAD, PUT, DELETE")
	}
}

// getWebhook answers {"url":…,"delivered":"<seq>"} (never the secret).
func (h *Handler) getWebhook(ctx *fasthttp.RequestCtx, site, name string) {
	w, ok, err := h.opts.Segments.GetWebhook(site, name)
	if err != nil {
		h.internalError(ctx, err)
		return
	}
	if !ok {
		api.Error(ctx, fasthttp.StatusNotFound, fmt.Sprintf("no webhook on segment %s of site %s", quote.Value(name), quote.Value(site)))
		return
	}
	out := append([]byte(nil), `{"url":`...)
	out = event.AppendJSONString(out, w.URL)
	out = append(out, `,"delivered":"`...)
	out = strconv.AppendUint(out, w.Delivered, 10)
	ctx.SetContentType("application/json")
	ctx.SetBody(append(out, "\"}\n"...))
}

// serveVisitorSegments answers GET /v1/visitors/{site}/{visitor}/segments:
//
//	{"visitor":"…","segments":[{"name":…,"entered":…}],"next_change":"…"|null}
//
// next_change is when time alone can next change a membership.
func (h *Handler) serveVisitorSegments(ctx *fasthttp.RequestCtx, site string, visitor event.UUID) {
	if h.opts.Segments == nil {
		api.NoRoute(ctx, "a node that keeps segments (serve or build)")
		return
	}
	ms, due, err := h.opts.Segments.VisitorSegments(site, visitor)
	if err != nil {
		h.internalError(ctx, err)
		return
	}
	out := append([]byte(nil), `{"visitor":"`...)
	out = visitor.Append(out)
	out = append(out, `","segments":[`...)
	for i, m := range ms {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"name":`...)
		out = event.AppendJSONString(out, m.Segment)
		out = append(out, `,"entered":`...)
		out = profile.AppendJSONTime(out, m.Entered)
		out = append(out, '}')
	}
	out = append(out, `],"next_change":`...)
	if due == 0 || due == math.MaxInt64 {
		out = append(out, "null"...)
	} else {
		out = profile.AppendJSONTime(out, due)
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(append(out, "}\n"...))
}

package query

import (
	"fmt"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile/membership"
)

// maxChangesLimit bounds ?limit= of the changes feed; 1000 without it.
const maxChangesLimit = 10000

// serveChanges answers a page of a segment's change records after ?after=
// (a sequence number, 0 or absent: from the start):
//
//	{"changes":[<membership.Change JSON>…],"cursor":"<seq of the last, or after>"}
//
// Pass cursor as the next ?after=: pages neither miss nor repeat a record.
func (h *Handler) serveChanges(ctx *fasthttp.RequestCtx, site, name string) {
	args := ctx.QueryArgs()
	var after uint64
	if raw := args.Peek("after"); len(raw) > 0 {
		v, err := strconv.ParseUint(string(raw), 10, 64)
		if err != nil {
			h.badRequest(ctx, fmt.Sprintf("invalid after=%s: pass the cursor of the previous page", quote.Value(raw)))
			return
		}
		after = v
	}
	limit := 1000
	if raw := args.Peek("limit"); len(raw) > 0 {
		n, err := strconv.Atoi(string(raw))
		if err != nil || n < 1 || n > maxChangesLimit {
			h.badRequest(ctx, fmt.Sprintf("invalid limit=%s: want 1..%d", quote.Value(raw), maxChangesLimit))
			return
		}
		limit = n
	}
	if !h.segmentExists(ctx, site, name) {
		return
	}
	out := append(make([]byte, 0, 4096), `{"changes":[`...)
	n := 0
	cursor := after
	err := h.opts.Segments.Changes(site, name, after, func(c *membership.Change) bool {
		if n > 0 {
			out = append(out, ',')
		}
		out = c.AppendJSON(out)
		cursor = c.Seq
		n++
		return n < limit
	})
	if err != nil {
		h.internalError(ctx, err)
		return
	}
	out = append(out, `],"cursor":"`...)
	out = strconv.AppendUint(out, cursor, 10)
	out = append(out, "\"}\n"...)
	ctx.SetContentType("application/json")
	ctx.SetBody(out)
}

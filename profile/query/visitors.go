package query

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/profile/defs"
	"github.com/affinityhq/affinity/profile/people"
	"github.com/affinityhq/affinity/tracker/event"
)

const visitorsPrefix = "/v1/visitors/"

// serveVisitors serves GET and DELETE /v1/visitors/{site}/{visitor}. On a
// node of a build group a visitor of a partition another node owns is
// answered by that node (routeVisitor).
func (h *Handler) serveVisitors(ctx *fasthttp.RequestCtx) {
	if p := ctx.Path(); bytes.HasSuffix(p, []byte("/segments")) && (ctx.IsGet() || ctx.IsHead()) {
		// GET /v1/visitors/{site}/{visitor}/segments: segments.go.
		if segs, ok := splitPath(p[:len(p)-len("/segments")], visitorsPrefix, 2); ok {
			if v, err := parseVisitor(segs[1]); err == nil && checkSite(segs[0]) == nil {
				if h.routeVisitor(ctx, segs[0], v) {
					return
				}
				h.serveVisitorSegments(ctx, segs[0], v)
				return
			}
		}
	}
	segs, ok := splitPath(ctx.Path(), visitorsPrefix, 2)
	if !ok {
		api.NoRoute(ctx, "/v1/visitors/{site}/{visitor}")
		return
	}
	site := segs[0]
	if err := checkSite(site); err != nil {
		h.refuse(ctx, err)
		return
	}
	visitor, err := parseVisitor(segs[1])
	if err != nil {
		h.refuse(ctx, err)
		return
	}
	if h.routeVisitor(ctx, site, visitor) {
		return // another node owns the visitor
	}
	switch {
	case ctx.IsGet() || ctx.IsHead():
		h.getVisitor(ctx, site, visitor)
	case ctx.IsDelete():
		h.deleteVisitor(ctx, site, visitor)
	default:
		methodNotAllowed(ctx, "GET, HEAD, DELETE")
	}
}

func (h *Handler) getVisitor(ctx *fasthttp.RequestCtx, site string, visitor event.UUID) {
	at, _, err := h.parseAt(ctx)
	if err != nil {
		h.refuse(ctx, err)
		return
	}
	h.m.visitorGets.Inc()
	sc := h.pool.Get().(*scratch)
	defer h.pool.Put(sc)
	var found bool
	sc.buf, found, err = h.opts.State.Profile(site, visitor, sc.buf)
	if err != nil {
		h.internalError(ctx, err)
		return
	}
	if !found {
		h.m.visitorMisses.Inc()
		api.Error(ctx, fasthttp.StatusNotFound, fmt.Sprintf("no visitor %s of site %s: never seen, or deleted", visitor, quote.Value(site)))
		return
	}
	if err := profile.DecodeProfile(&sc.prof, sc.buf); err != nil {
		h.internalError(ctx, fmt.Errorf("cannot decode the profile of visitor %s of site %q: %w", visitor, site, err))
		return
	}
	sc.out = sc.prof.AppendJSON(sc.out[:0], h.opts.Config, at)
	sc.out = append(sc.out, '\n')
	ctx.SetContentType("application/json")
	ctx.SetBody(sc.out) // copied: sc goes back to the pool
}

// deleteVisitor erases the visitor: people.Erase, the path of a person's
// erasure, scrubbing the change records that name it.
func (h *Handler) deleteVisitor(ctx *fasthttp.RequestCtx, site string, visitor event.UUID) {
	if h.opts.Builder == nil {
		noBuilder(ctx)
		return
	}
	deleted, scrubbed, err := people.Erase(h.opts.Builder, h.scrubber(), site, []event.UUID{visitor}, nil, nil)
	if notOwner(ctx, err) {
		return
	}
	if errors.Is(err, defs.ErrNotApplied) { // the erasure's record (groupScrubber)
		h.refuseDefinition(ctx, err)
		return
	}
	if err != nil {
		h.internalError(ctx, err)
		return
	}
	if deleted == 0 && scrubbed == 0 {
		h.m.visitorMisses.Inc()
		api.Error(ctx, fasthttp.StatusNotFound, fmt.Sprintf("no visitor %s of site %s: never seen, or deleted", visitor, quote.Value(site)))
		return
	}
	h.m.visitorDeletes.Inc()
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

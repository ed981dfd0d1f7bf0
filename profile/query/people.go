package query

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/profile/defs"
	"github.com/affinityhq/affinity/profile/people"
	"github.com/affinityhq/affinity/tracker/event"
)

const peoplePrefix = "/v1/people/"

// servePeople serves GET and DELETE /v1/people/{site}/{email-or-customer-id}.
// On a node of a build group the person's visitors are found and read on
// their owners (remoteStore): the answer is one node's holding them all.
func (h *Handler) servePeople(ctx *fasthttp.RequestCtx) {
	segs, ok := splitPath(ctx.Path(), peoplePrefix, 2)
	if !ok {
		api.NoRoute(ctx, "/v1/people/{site}/{email-or-customer-id}")
		return
	}
	site := segs[0]
	if err := checkSite(site); err != nil {
		h.refuse(ctx, err)
		return
	}
	id, err := people.ParseID(segs[1])
	if err != nil {
		h.refuse(ctx, err)
		return
	}
	switch {
	case ctx.IsGet() || ctx.IsHead():
		h.getPerson(ctx, site, id)
	case ctx.IsDelete():
		h.deletePerson(ctx, site, id)
	default:
		methodNotAllowed(ctx, "GET, HEAD, DELETE")
	}
}

func noPerson(ctx *fasthttp.RequestCtx, site string, id people.ID) {
	api.Error(ctx, fasthttp.StatusNotFound, fmt.Sprintf("no person with %s on site %s: no visitor identified with it, or erased", id, quote.Value(site)))
}

func (h *Handler) getPerson(ctx *fasthttp.RequestCtx, site string, id people.ID) {
	at, _, err := h.parseAt(ctx)
	if err != nil {
		h.refuse(ctx, err)
		return
	}
	h.m.personGets.Inc()
	p := h.people.Get().(*people.Person)
	defer h.people.Put(p)
	store, release := h.personStore(ctx)
	defer release()
	found, err := people.Find(store, h.opts.Config, site, id, h.opts.MaxPersonVisitors, p)
	if isUnavailable(err) {
		h.unavailable(ctx, err)
		return
	}
	if err != nil {
		h.internalError(ctx, err)
		return
	}
	if !found {
		noPerson(ctx, site, id)
		return
	}
	sc := h.pool.Get().(*scratch)
	defer h.pool.Put(sc)
	out := p.Profile.AppendJSON(sc.out[:0], h.opts.Config, at)
	out = appendPersonJSON(out[:len(out)-1], p)
	out = append(out, '\n')
	sc.out = out
	ctx.SetContentType("application/json")
	ctx.SetBody(out) // copied: sc goes back to the pool
}

// personStore returns where a person is resolved from: this node's state,
// or on a node of a build group (unless the request was forwarded to it)
// every owner's (remoteStore). Call release when done.
func (h *Handler) personStore(ctx *fasthttp.RequestCtx) (store people.Store, release func()) {
	if h.clusterOf() == nil || forwarded(ctx) {
		return h.opts.State, func() {}
	}
	rs := h.newRemoteStore(ctx)
	return rs, rs.release
}

// appendPersonJSON appends the fields a person adds to a profile object:
// `,"visitors":["<uuid>",…],"truncated":false}`.
func appendPersonJSON(dst []byte, p *people.Person) []byte {
	dst = append(dst, `,"visitors":[`...)
	for i, v := range p.Visitors {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '"')
		dst = v.Append(dst)
		dst = append(dst, '"')
	}
	dst = append(dst, `],"truncated":`...)
	dst = strconv.AppendBool(dst, p.Truncated)
	return append(dst, '}')
}

// deletePerson erases every visitor linked to id, resolving again after
// each round: a person past the resolution bound goes in rounds of it.
func (h *Handler) deletePerson(ctx *fasthttp.RequestCtx, site string, id people.ID) {
	if h.opts.Builder == nil {
		noBuilder(ctx)
		return
	}
	p := h.people.Get().(*people.Person)
	defer h.people.Put(p)
	store, release := h.personStore(ctx)
	defer release()
	var forget people.Forgetter = h.opts.Builder
	if rs, ok := store.(*remoteStore); ok {
		forget = rs
	}
	deleted, scrubbed := 0, 0
	for {
		found, err := people.Find(store, h.opts.Config, site, id, h.opts.MaxPersonVisitors, p)
		if isUnavailable(err) {
			h.unavailable(ctx, err)
			return
		}
		if err != nil {
			h.internalError(ctx, err)
			return
		}
		visitors, emails, customers := p.Visitors, p.Emails, p.Customers
		if !found {
			// Nobody left: scrub by the id still, email or customer id
			// (Find keeps it in p), which finishes an erasure a crash
			// interrupted.
			visitors = nil
			if id.Email {
				customers = nil
			} else {
				emails = nil
			}
		}
		d, s, err := people.Erase(forget, h.scrubber(), site, visitors, emails, customers)
		deleted, scrubbed = deleted+d, scrubbed+s
		if notOwner(ctx, err) {
			return
		}
		if isUnavailable(err) {
			h.unavailable(ctx, err)
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
		if !found || !p.Truncated {
			break
		}
	}
	if deleted == 0 && scrubbed == 0 {
		noPerson(ctx, site, id)
		return
	}
	h.m.personDeletes.Inc()
	ctx.SetContentType("application/json")
	ctx.SetBodyString(fmt.Sprintf("{\"visitors_deleted\":%d,\"changes_scrubbed\":%d}\n", deleted, scrubbed))
}

// scrubber returns erasure's Scrubber: the segment engine, or in a build
// group the definitions topic (groupScrubber); nil without segments (a nil
// *membership.Engine in the interface would not be nil).
func (h *Handler) scrubber() people.Scrubber {
	if h.opts.Segments == nil {
		return nil
	}
	if h.opts.Definitions != nil {
		return groupScrubber{h}
	}
	return h.opts.Segments
}

// groupScrubber scrubs erased visitors in a build group: it writes an
// erasure record to the definitions topic, which every node applies
// (applyErasure: a durable mark that keeps a partition's new owner from
// copying the visitors' records back from the changes topic and from
// applying the visitors' records of before the erasure again, and a scrub
// of the node's own feeds), and answers this node's count once this node
// applied it, so a DELETE answers 2xx only once the record is on the
// topic; the emails and customer ids, which the record does not carry, it
// scrubs here.
// Each visitor goes with where its partition was at the erasure, as this
// node's builder knows it: a visitor erased at its owner (the DELETE is
// forwarded there) is in that owner's record with it.
type groupScrubber struct{ h *Handler }

func (s groupScrubber) Scrub(site string, visitors []event.UUID, emails, customers []string) (int, error) {
	n := 0
	if len(visitors) > 0 {
		erased := make([]defs.Erased, len(visitors))
		for i, v := range visitors {
			erased[i].Visitor = v
			erased[i].Partition, erased[i].Offset = s.h.opts.Builder.ErasedAt(site, v)
		}
		body := defs.AppendErasedBody(nil, erased)
		v, err := s.h.writeDefinition(&defs.Record{Kind: defs.KindErasure, Op: defs.OpPut, Site: site, Name: defs.NewUploadID(), Body: body})
		if err != nil {
			return 0, err
		}
		n = v.(int)
	}
	if len(emails) == 0 && len(customers) == 0 {
		return n, nil
	}
	m, err := s.h.opts.Segments.Scrub(site, nil, emails, customers)
	return n + m, err
}

func noBuilder(ctx *fasthttp.RequestCtx) {
	api.Error(ctx, fasthttp.StatusServiceUnavailable, "this process runs no profile builder: send DELETE to the process running affinity serve or build")
}

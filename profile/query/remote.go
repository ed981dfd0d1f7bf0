package query

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/people"
	"github.com/affinityhq/affinity/tracker/event"
)

// internalPrefix holds the routes one node of a build group reads another
// node's partitions with; only a forwarded request (api.HeaderHop) gets an
// answer there:
//
//	GET /v1/internal/profiles/{site}/{visitor}   the stored profile (profile/FORMAT.md), 404 without one
//	GET /v1/internal/links/{site}/email/{email}  the visitors linked to an email: 16 bytes each,
//	GET /v1/internal/links/{site}/customer/{id}  in visitor order, of the partitions of api.HeaderPartitions
//	GET /v1/internal/campaigns/{site}/{id}/counters  the campaign's counter rows of the partitions of
//	                                             api.HeaderPartitions (campaign.AppendCounterRows)
//	POST /v1/internal/members/{site}/{segment}   the members each email of the body links, of the partitions
//	                                             of api.HeaderPartitions (a by=email join, fanout_email.go; FORMAT.md)
//	POST /v1/internal/persons                    person marks handed to the evaluator of the partition of
//	                                             api.HeaderPartitions (persons.go): 204 once stored
//	GET /v1/internal/sizes/{site}[/{name}]       {"<segment>":N,…}: the members of the partitions of
//	                                             api.HeaderPartitions, of each segment (or the one named)
//
// A person's visitors span partitions: the node asked resolves the person
// with these (remoteStore), so it merges exactly what one node would.
const internalPrefix = "/v1/internal/"

// serveInternal serves internalPrefix.
func (h *Handler) serveInternal(ctx *fasthttp.RequestCtx) {
	if h.clusterOf() == nil || !forwarded(ctx) {
		api.NoRoute(ctx, "")
		return
	}
	rest := ctx.Path()[len(internalPrefix):]
	if string(rest) == "persons" {
		if !ctx.IsPost() {
			methodNotAllowed(ctx, "POST")
			return
		}
		h.servePersons(ctx)
		return
	}
	if bytes.HasPrefix(rest, []byte("members/")) {
		if !ctx.IsPost() {
			methodNotAllowed(ctx, "POST")
			return
		}
		segs, ok := splitPath(ctx.Path(), internalPrefix+"members/", 2)
		if !ok {
			api.NoRoute(ctx, internalPrefix+"members/{site}/{segment}")
			return
		}
		h.serveEmailMembers(ctx, segs[0], segs[1])
		return
	}
	if !ctx.IsGet() {
		methodNotAllowed(ctx, "GET")
		return
	}
	switch {
	case bytes.HasPrefix(rest, []byte("profiles/")):
		segs, ok := splitPath(ctx.Path(), internalPrefix+"profiles/", 2)
		if !ok {
			api.NoRoute(ctx, internalPrefix+"profiles/{site}/{visitor}")
			return
		}
		h.serveRawProfile(ctx, segs[0], segs[1])
	case bytes.HasPrefix(rest, []byte("sizes/")):
		segs, ok := splitPath(ctx.Path(), internalPrefix+"sizes/", 1)
		if !ok {
			api.NoRoute(ctx, internalPrefix+"sizes/{site}[/{name}]")
			return
		}
		site, name, _ := strings.Cut(segs[0], "/")
		h.serveSizes(ctx, site, name)
	case bytes.HasPrefix(rest, []byte("links/")):
		segs, ok := splitPath(ctx.Path(), internalPrefix+"links/", 3)
		if !ok || (segs[1] != "email" && segs[1] != "customer") {
			api.NoRoute(ctx, internalPrefix+"links/{site}/{email|customer}/{id}")
			return
		}
		h.serveLinks(ctx, segs[0], segs[1] == "email", segs[2])
	case bytes.HasPrefix(rest, []byte("campaigns/")):
		segs, ok := splitPath(ctx.Path(), internalPrefix+"campaigns/", 3)
		if !ok || segs[2] != "counters" {
			api.NoRoute(ctx, internalPrefix+"campaigns/{site}/{id}/counters")
			return
		}
		h.serveCampaignCounters(ctx, segs[0], segs[1])
	default:
		api.NoRoute(ctx, "")
	}
}

func (h *Handler) serveRawProfile(ctx *fasthttp.RequestCtx, site, rawVisitor string) {
	if err := checkSite(site); err != nil {
		h.refuse(ctx, err)
		return
	}
	visitor, err := parseVisitor(rawVisitor)
	if err != nil {
		h.refuse(ctx, err)
		return
	}
	if p := h.clusterOf().Partition(site, visitor); !h.clusterOf().Owns(p) {
		h.notOwnedHere(ctx, p)
		return
	}
	sc := h.pool.Get().(*scratch)
	defer h.pool.Put(sc)
	var found bool
	if sc.buf, found, err = h.opts.State.Profile(site, visitor, sc.buf); err != nil {
		h.internalError(ctx, err)
		return
	}
	if !found {
		api.Error(ctx, fasthttp.StatusNotFound, fmt.Sprintf("no visitor %s of site %s: never seen, or deleted", visitor, quote.Value(site)))
		return
	}
	ctx.SetContentType("application/octet-stream")
	ctx.SetBody(sc.buf) // copied: sc goes back to the pool
}

func (h *Handler) serveLinks(ctx *fasthttp.RequestCtx, site string, email bool, id string) {
	if err := checkSite(site); err != nil {
		h.refuse(ctx, err)
		return
	}
	parts, ok := h.partParts(ctx, "links")
	if !ok {
		return
	}
	var out []byte
	fn := func(v [16]byte) bool {
		if h.inParts(parts, site, v) {
			out = append(out, v[:]...)
		}
		return true
	}
	var err error
	if email {
		err = h.opts.State.VisitorsByEmail(site, id, fn)
	} else {
		err = h.opts.State.VisitorsByCustomer(site, id, fn)
	}
	if err != nil {
		h.internalError(ctx, err)
		return
	}
	ctx.SetContentType("application/octet-stream")
	ctx.SetBody(out)
}

// partParts is localParts for an internal route that answers only as a
// part of a fan-out: a request without api.HeaderPartitions is refused.
func (h *Handler) partParts(ctx *fasthttp.RequestCtx, what string) ([]bool, bool) {
	parts, ok := h.localParts(ctx)
	if ok && parts == nil {
		h.refuse(ctx, invalid.Errorf("invalid %s request without %s: it answers for the partitions it names", what, api.HeaderPartitions))
		return nil, false
	}
	return parts, ok
}

// unavailableError is an error of a read another node had to answer: the
// API answers it with 503 (Handler.unavailable), as the partition may have
// an owner again soon.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string { return e.err.Error() }
func (e *unavailableError) Unwrap() error { return e.err }

// remoteStore is people.Store over a build group: a profile is read from
// its partition's owner (this node's state when it owns it), a link index
// from every owner, merged in visitor order — what a *state.DB holding
// every partition answers.
type remoteStore struct {
	h    *Handler
	auth []byte // the Authorization of the request served
	req  *fasthttp.Request
	resp *fasthttp.Response
	ids  [][16]byte
}

var _ people.Store = (*remoteStore)(nil)

func (h *Handler) newRemoteStore(ctx *fasthttp.RequestCtx) *remoteStore {
	return &remoteStore{h: h, auth: bytes.Clone(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)),
		req: fasthttp.AcquireRequest(), resp: fasthttp.AcquireResponse()}
}

func (s *remoteStore) release() {
	fasthttp.ReleaseRequest(s.req)
	fasthttp.ReleaseResponse(s.resp)
}

// get asks url, the owner of partitions parts, for path (with parts in
// api.HeaderPartitions when header) and returns the answer's status and
// body (valid until the next get).
func (s *remoteStore) get(url, path string, parts []int, header bool) (int, []byte, error) {
	s.req.Reset()
	s.req.Header.SetMethod(fasthttp.MethodGet)
	s.req.SetRequestURI(url)
	s.req.URI().SetPath(path)
	s.req.Header.SetBytesV(fasthttp.HeaderAuthorization, s.auth)
	if header {
		s.req.Header.SetBytesV(api.HeaderPartitions, appendPartitions(nil, parts))
	}
	if err := s.h.clusterOf().Do(s.req, s.resp); err != nil {
		return 0, nil, &unavailableError{fmt.Errorf("cannot reach the owner %s of partition %s: %w", url, appendPartitions(nil, parts), err)}
	}
	status, body := s.resp.StatusCode(), s.resp.Body()
	if status == fasthttp.StatusServiceUnavailable {
		return 0, nil, &unavailableError{fmt.Errorf("%s answered %d: %s", url, status, bytes.TrimSpace(body))}
	}
	return status, body, nil
}

// Profile implements people.Store.
func (s *remoteStore) Profile(site string, visitor [16]byte, dst []byte) ([]byte, bool, error) {
	c := s.h.clusterOf()
	p := c.Partition(site, visitor)
	if c.Owns(p) {
		return s.h.opts.State.Profile(site, visitor, dst)
	}
	lc, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	url, err := c.Owner(lc, p)
	if err != nil {
		return dst, false, &unavailableError{err}
	}
	status, body, err := s.get(url, internalPrefix+"profiles/"+site+"/"+event.UUID(visitor).String(), []int{p}, false)
	switch {
	case err != nil:
		return dst, false, err
	case status == fasthttp.StatusNotFound:
		return dst, false, nil
	case status != fasthttp.StatusOK:
		return dst, false, fmt.Errorf("cannot read the profile of visitor %s of site %q from %s: %d %s", event.UUID(visitor), site, url, status, bytes.TrimSpace(body))
	}
	return append(dst[:0], body...), true, nil
}

// VisitorsByEmail implements people.Store.
func (s *remoteStore) VisitorsByEmail(site, email string, fn func(visitor [16]byte) bool) error {
	return s.linked(site, "email", email, fn)
}

// VisitorsByCustomer implements people.Store.
func (s *remoteStore) VisitorsByCustomer(site, customer string, fn func(visitor [16]byte) bool) error {
	return s.linked(site, "customer", customer, fn)
}

// linked asks every owner for its visitors linked to id and calls fn with
// all of them in visitor order.
func (s *remoteStore) linked(site, kind, id string, fn func(visitor [16]byte) bool) error {
	lc, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	shards, err := s.h.clusterOf().Shards(lc)
	if err != nil {
		return &unavailableError{err}
	}
	s.ids = s.ids[:0]
	path := internalPrefix + "links/" + site + "/" + kind + "/" + id
	for _, sh := range shards {
		status, body, err := s.get(sh.URL, path, sh.Partitions, true)
		if err != nil {
			return err
		}
		if status != fasthttp.StatusOK || len(body)%16 != 0 {
			return fmt.Errorf("cannot read the visitors linked to %s %q of site %q from %s: %d %s", kind, id, site, sh.URL, status, quote.Value(bytes.TrimSpace(body)))
		}
		for i := 0; i < len(body); i += 16 {
			s.ids = append(s.ids, [16]byte(body[i:i+16]))
		}
	}
	slices.SortFunc(s.ids, func(a, b [16]byte) int { return bytes.Compare(a[:], b[:]) })
	for _, v := range s.ids {
		if !fn(v) {
			return nil
		}
	}
	return nil
}

// isUnavailable reports whether err is a read another node could not
// answer now.
func isUnavailable(err error) bool {
	var ue *unavailableError
	return errors.As(err, &ue)
}

// DeleteVisitor implements people.Forgetter over a build group: the
// visitor's owner erases it (DELETE /v1/visitors, forwarded), this node's
// builder when it is the owner.
func (s *remoteStore) DeleteVisitor(site string, visitor event.UUID) (bool, error) {
	c := s.h.clusterOf()
	p := c.Partition(site, visitor)
	if c.Owns(p) {
		return s.h.opts.Builder.DeleteVisitor(site, visitor)
	}
	lc, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	url, err := c.Owner(lc, p)
	if err != nil {
		return false, &unavailableError{err}
	}
	s.req.Reset()
	s.req.Header.SetMethod(fasthttp.MethodDelete)
	s.req.SetRequestURI(url)
	s.req.URI().SetPath(visitorsPrefix + site + "/" + visitor.String())
	s.req.Header.SetBytesV(fasthttp.HeaderAuthorization, s.auth)
	if err := c.Do(s.req, s.resp); err != nil {
		return false, &unavailableError{fmt.Errorf("cannot reach the owner %s of partition %d: %w", url, p, err)}
	}
	switch status := s.resp.StatusCode(); status {
	case fasthttp.StatusNoContent:
		return true, nil
	case fasthttp.StatusNotFound:
		return false, nil
	case fasthttp.StatusServiceUnavailable:
		return false, &unavailableError{fmt.Errorf("%s answered %d: %s", url, status, bytes.TrimSpace(s.resp.Body()))}
	default:
		return false, fmt.Errorf("cannot erase visitor %s of site %q at %s: %d %s", visitor, site, url, status, bytes.TrimSpace(s.resp.Body()))
	}
}

// serveSizes answers an owner's share of segment sizes: the members of
// its partitions (api.HeaderPartitions) of each per-visitor segment of
// site, or of the one named.
func (h *Handler) serveSizes(ctx *fasthttp.RequestCtx, site, name string) {
	if err := checkSite(site); err != nil {
		h.refuse(ctx, err)
		return
	}
	parts, ok := h.partParts(ctx, "sizes")
	if !ok {
		return
	}
	if h.opts.Segments == nil {
		api.Error(ctx, fasthttp.StatusServiceUnavailable, "this process keeps no segments")
		return
	}
	ds, err := h.opts.Segments.Definitions(site)
	if err != nil {
		h.internalError(ctx, err)
		return
	}
	keep := func(v event.UUID) bool { return h.inParts(parts, site, v) }
	out := append([]byte(nil), '{')
	n := 0
	for i := range ds {
		d := &ds[i]
		if name != "" && d.Name != name {
			continue
		}
		// A person counts at its evaluating partition (its id's), once
		// restored there.
		if d.Per == membership.PerPerson && !h.personsReady(ctx, parts) {
			return
		}
		size, err := h.opts.Segments.SizeOf(site, d.Name, keep)
		if err != nil {
			h.internalError(ctx, err)
			return
		}
		if n++; n > 1 {
			out = append(out, ',')
		}
		out = event.AppendJSONString(out, d.Name)
		out = append(out, ':')
		out = strconv.AppendInt(out, int64(size), 10)
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(append(out, "}\n"...))
}

// groupSizes returns, on a node of a build group, the sizes of site's
// segments (or of the one named) summed over every owner's
// share (serveSizes); nil elsewhere, where a segment's size is the
// node's count. An error is an unavailableError while a partition has no
// owner, an owner cannot answer or restores a partition's persons.
func (h *Handler) groupSizes(ctx *fasthttp.RequestCtx, site, name string) (map[string]int, error) {
	c := h.clusterOf()
	if c == nil || forwarded(ctx) {
		return nil, nil
	}
	lc, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	shards, err := c.Shards(lc)
	if err != nil {
		return nil, &unavailableError{err}
	}
	rs := h.newRemoteStore(ctx)
	defer rs.release()
	path := internalPrefix + "sizes/" + site
	if name != "" {
		path += "/" + name
	}
	sizes := map[string]int{}
	for _, sh := range shards {
		status, body, err := rs.get(sh.URL, path, sh.Partitions, true)
		if err != nil {
			return nil, err
		}
		var share map[string]int
		if status == fasthttp.StatusServiceUnavailable {
			return nil, &unavailableError{fmt.Errorf("cannot read the segment sizes of site %q from %s: %s", site, sh.URL, quote.Value(bytes.TrimSpace(body)))}
		}
		if status != fasthttp.StatusOK {
			return nil, fmt.Errorf("cannot read the segment sizes of site %q from %s: %d %s", site, sh.URL, status, quote.Value(bytes.TrimSpace(body)))
		}
		if err := json.Unmarshal(body, &share); err != nil {
			return nil, fmt.Errorf("cannot read the segment sizes of site %q from %s: %w", site, sh.URL, err)
		}
		for k, n := range share {
			sizes[k] += n
		}
	}
	return sizes, nil
}

// readSizes is groupSizes for a read: ok is false when it answered ctx
// (503 when a partition has no owner, as any fan-out; else 500).
func (h *Handler) readSizes(ctx *fasthttp.RequestCtx, site, name string) (map[string]int, bool) {
	sizes, err := h.groupSizes(ctx, site, name)
	switch {
	case err == nil:
		return sizes, true
	case isUnavailable(err):
		h.unavailable(ctx, err)
	default:
		h.internalError(ctx, err)
	}
	return nil, false
}

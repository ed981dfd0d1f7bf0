package query

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/internal/codec"
	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/people"
)

// groupPersons is membership.Persons over h's build group: persons are
// resolved with a remoteStore, and handed marks go to the owner of their
// evaluating partition as POST /v1/internal/persons (servePersons).
type groupPersons struct {
	h     *Handler
	parts int
	auth  []byte

	mu    sync.Mutex // one request at a time on req, resp
	store *remoteStore
	req   *fasthttp.Request
	resp  *fasthttp.Response
	body  []byte
}

var _ membership.Persons = (*groupPersons)(nil)

// Persons returns the build group's view the person evaluator of this
// node's membership engine needs (membership.Options.Persons): partitions
// is the events topic's, token the API token its requests to the other
// nodes carry. Until SetCluster it evaluates nothing and hands off
// nothing (an error: the marks wait).
func (h *Handler) Persons(partitions int, token string) membership.Persons {
	auth := []byte("Bearer " + token)
	return &groupPersons{h: h, parts: partitions, auth: auth,
		store: &remoteStore{h: h, auth: auth, req: fasthttp.AcquireRequest(), resp: fasthttp.AcquireResponse()},
		req:   fasthttp.AcquireRequest(), resp: fasthttp.AcquireResponse()}
}

// Store implements membership.Persons.
func (g *groupPersons) Store() people.Store { return g.store }

// Partitions implements membership.Persons.
func (g *groupPersons) Partitions() int { return g.parts }

// Evaluates implements membership.Persons.
func (g *groupPersons) Evaluates(p int) bool {
	c := g.h.clusterOf()
	return c != nil && c.Owns(p)
}

// HandOff implements membership.Persons: it succeeds once p's owner
// answered 204, which it does after storing the marks.
func (g *groupPersons) HandOff(ctx context.Context, p int, marks [][]byte) error {
	c := g.h.clusterOf()
	if c == nil {
		return fmt.Errorf("cannot hand person marks to partition %d: this node has no build group yet", p)
	}
	lc, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	url, err := c.Owner(lc, p)
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.body = appendHandedMarks(g.body[:0], marks)
	g.req.Reset()
	g.req.Header.SetMethod(fasthttp.MethodPost)
	g.req.SetRequestURI(url)
	g.req.URI().SetPath(internalPrefix + "persons")
	g.req.Header.SetBytesV(fasthttp.HeaderAuthorization, g.auth)
	g.req.Header.SetBytesV(api.HeaderPartitions, appendPartitions(nil, []int{p}))
	g.req.SetBody(g.body)
	if err := c.Do(g.req, g.resp); err != nil {
		return fmt.Errorf("cannot reach the owner %s of partition %d: %w", url, p, err)
	}
	if status := g.resp.StatusCode(); status != fasthttp.StatusNoContent {
		return fmt.Errorf("cannot hand %d person marks to the owner %s of partition %d: %d %s", len(marks), url, p, status, quote.Value(bytes.TrimSpace(g.resp.Body())))
	}
	return nil
}

// maxHandedMarks bounds the marks of one hand-off (the evaluator hands
// at most a few per mark of its batch of 256).
const maxHandedMarks = 1 << 16

// handedMarksVersion is the version byte of POST /v1/internal/persons'
// body (FORMAT.md).
const handedMarksVersion = 1

// appendHandedMarks appends the body of POST /v1/internal/persons: the
// version, a uvarint count, then each mark key length-prefixed.
func appendHandedMarks(dst []byte, marks [][]byte) []byte {
	return codec.AppendStrings(append(dst, handedMarksVersion), marks)
}

// decodeHandedMarks reads a body appendHandedMarks wrote; the keys alias
// body.
func decodeHandedMarks(body []byte) ([][]byte, error) {
	r := codec.NewReader("handed person marks", body, 0)
	r.Version(handedMarksVersion)
	n := r.Count(1)
	switch {
	case r.Err() != nil:
	case n == 0:
		r.Failf("no marks")
	case n > maxHandedMarks:
		r.Failf("%d marks, more than %d", n, maxHandedMarks)
	}
	var marks [][]byte
	for i := 0; i < n && r.Err() == nil; i++ {
		r.Item("mark", i)
		marks = append(marks, r.Bytes())
	}
	if err := r.End(); err != nil {
		return nil, invalid.Errorf("invalid handed person marks: %s", err)
	}
	return marks, nil
}

// servePersons stores the person marks another node hands to this one,
// the evaluator of the partition api.HeaderPartitions names: 204 once they
// are durable, 503 while it does not serve that partition, 400 naming a
// bad mark (nothing stored).
func (h *Handler) servePersons(ctx *fasthttp.RequestCtx) {
	if h.opts.Segments == nil {
		noBuilder(ctx)
		return
	}
	if _, ok := h.partParts(ctx, "handed person marks"); !ok {
		return
	}
	marks, err := decodeHandedMarks(ctx.PostBody())
	if err == nil {
		err = h.opts.Segments.AcceptHanded(marks)
	}
	if err != nil {
		h.refuse(ctx, err)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

package query

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/internal/codec"
	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/tracker/event"
)

// A by=email export joins, per row, the members of several partitions: a
// row comes at the lowest member visitor linked to its email
// (membership.JoinEmail) and lists them all. In a build group the node
// asked streams it as one node would (FORMAT.md "by=email in a build
// group"):
//
//  1. every owner streams its candidates — each member of its partitions
//     with an email, after the holdout split, which depends on the email
//     alone — in visitor order, each row written but for its head (the
//     visitors it lists), prefixed with its visitor and email
//     (appendEmailCandidate);
//  2. the node merges the streams by visitor, and for each window of
//     candidates asks every owner, in one request each, which members of
//     its partitions each of the window's emails links
//     (POST /v1/internal/members/…, serveEmailMembers): the union is what
//     one node's link index and memberships give;
//  3. JoinEmail drops a candidate whose email links a lower member, and
//     gives the others their visitors; the node writes the head, the
//     owner's rest, and stops at limit with the cursor of the last row.
//
// A member's membership and links live with its partition, so the union
// of the owners' answers is exactly the one node's, and the rows, their
// order and the cursors are too.

// emailWindow is how many candidates the node joins per round of lookups:
// fewer round trips against a longer wait for the first row.
const emailWindow = 512

// maxEmailLookup bounds the emails of one lookup an owner answers.
const maxEmailLookup = 4096

// emailLookupVersion is the version byte of a lookup's request and answer.
const emailLookupVersion = 1

// appendEmailCandidate appends the prefix of an owner's candidate row:
// the visitor, a space, the email in hex (a stream is split at line
// breaks and, in CSV, at quotes: hex has neither), a space.
func appendEmailCandidate(dst []byte, visitor event.UUID, email []byte) []byte {
	dst = visitor.Append(dst)
	dst = append(dst, ' ')
	dst = hex.AppendEncode(dst, email)
	return append(dst, ' ')
}

// parseEmailCandidate splits an owner's candidate row into its visitor,
// its email (appended to dst) and the rest of the row.
func parseEmailCandidate(dst, row []byte) (visitor event.UUID, email, rest []byte, err error) {
	v, ok := event.ParseUUID(span(row, 0, 36))
	if !ok || len(row) < 37 || row[36] != ' ' {
		return visitor, dst, nil, fmt.Errorf("invalid candidate row %s: want a visitor, the email in hex and the row", quote.Value(span(row, 0, 64)))
	}
	hexEmail, rest, ok := bytes.Cut(row[37:], []byte{' '})
	if !ok || len(hexEmail) == 0 {
		return visitor, dst, nil, fmt.Errorf("invalid candidate row %s: want a visitor, the email in hex and the row", quote.Value(span(row, 0, 64)))
	}
	if email, err = hex.AppendDecode(dst, hexEmail); err != nil {
		return visitor, dst, nil, fmt.Errorf("invalid candidate row %s: the email is not hex: %w", quote.Value(span(row, 0, 64)), err)
	}
	return v, email, rest, nil
}

// appendEmailLookup appends a lookup's request body: the version, then
// the emails (codec strings) after their count.
func appendEmailLookup(dst []byte, emails [][]byte) []byte {
	return codec.AppendStrings(append(dst, emailLookupVersion), emails)
}

// decodeEmailLookup reads a lookup's request body, calling fn with each
// email (viewing body) in order; an *invalid.Error names what is wrong.
func decodeEmailLookup(body []byte, fn func(email string) error) error {
	r := codec.NewReader("email lookup", body, 0)
	r.Version(emailLookupVersion)
	n := r.Count(1)
	if n > maxEmailLookup {
		return invalid.Errorf("invalid email lookup of %d emails: at most %d", n, maxEmailLookup)
	}
	for i := range n {
		r.Item("email", i)
		email := r.String()
		if r.Err() != nil {
			break
		}
		if err := fn(email); err != nil {
			return err
		}
	}
	if err := r.End(); err != nil {
		return invalid.Errorf("invalid email lookup: %v", err)
	}
	return nil
}

// decodeEmailMembers reads an owner's answer to a lookup of n emails:
// the version, then per email in the request's order the count of its
// members and their 16-byte visitor ids. fn gets each with its email's
// index.
func decodeEmailMembers(body []byte, n int, fn func(i int, visitor event.UUID)) error {
	r := codec.NewReader("email lookup answer", body, 0)
	r.Version(emailLookupVersion)
	for i := 0; i < n && r.Err() == nil; i++ {
		r.Item("email", i)
		c := r.Count(16)
		for range c {
			fn(i, event.UUID(r.Fixed("visitor", 16)))
		}
	}
	return r.End()
}

// serveEmailMembers answers a lookup of a by=email join (step 2 above):
// for each email of the body, the members of the segment among the
// visitors it links in the partitions of api.HeaderPartitions.
func (h *Handler) serveEmailMembers(ctx *fasthttp.RequestCtx, site, name string) {
	if err := checkSite(site); err != nil {
		h.refuse(ctx, err)
		return
	}
	parts, ok := h.partParts(ctx, "members lookup")
	if !ok {
		return
	}
	if _, ok := h.opts.Segments.Rule(site, name); !ok {
		h.noSegment(ctx, site, name)
		return
	}
	var emails []string // viewing the body
	if err := decodeEmailLookup(ctx.Request.Body(), func(email string) error { emails = append(emails, email); return nil }); err != nil {
		h.refuse(ctx, err)
		return
	}
	var members []linkedMember
	keep := func(v event.UUID) bool { return h.inParts(parts, site, v) }
	err := h.opts.Segments.EmailsMembers(site, name, emails, keep, func(i int, v event.UUID) {
		members = append(members, linkedMember{ei: int32(i), visitor: v})
	})
	if err != nil {
		h.internalError(ctx, err)
		return
	}
	out := []byte{emailLookupVersion}
	for i := range emails {
		n := 0
		for n < len(members) && members[n].ei == int32(i) {
			n++
		}
		out = codec.AppendUvarint(out, uint64(n))
		for _, m := range members[:n] {
			out = append(out, m.visitor[:]...)
		}
		members = members[n:]
	}
	ctx.SetContentType("application/octet-stream")
	ctx.SetBody(out)
}

// emailCand is a candidate of the window: its byte fields are offsets in
// emailJoin.arena.
type emailCand struct {
	visitor             event.UUID
	email, rest, restTo int32 // arena[email:rest] is the email, arena[rest:restTo] the row's rest
	ei                  int32 // the index of its email among the window's distinct ones
}

// linkedMember is a member an owner found linked to the window's email ei.
type linkedMember struct {
	ei      int32
	visitor event.UUID
}

// emailJoin is the node's side of a by=email export in a build group.
type emailJoin struct {
	h *Handler
	q *membersQuery
	f *fanOut
	m merger

	arena  []byte
	cands  []emailCand
	order  []int32  // cands by email
	emails [][]byte // the window's distinct emails, viewing arena
	from   []int32  // linked[from[ei]:from[ei+1]] are email ei's members
	linked []linkedMember
	lk     []event.UUID // one email's members (linkedOf)
	vis    []event.UUID // a row's visitors (JoinEmail)
	body   []byte       // a lookup's request
	out    []byte
	asks   []emailAsk // one per owner
}

// emailAsk is one owner's lookup of a window.
type emailAsk struct {
	req  *fasthttp.Request
	resp *fasthttp.Response
	err  error
}

// mergeEmailRows writes the by=email export of f's candidate streams to w.
func (h *Handler) mergeEmailRows(w *bufio.Writer, q *membersQuery, f *fanOut) {
	j := &emailJoin{h: h, q: q, f: f, m: merger{srcs: f.sources(), cmp: cmpCSVRows}}
	defer j.release()
	what := fmt.Sprintf("members of %s/%s by email", q.site, q.name)
	if q.csv {
		if err := h.mergeCSVHeader(w, j.m.srcs); err != nil {
			h.mergeFailed(w, q.csv, what, mergeResult{err: err})
			return
		}
	}
	res, last := j.run(w)
	h.m.memberRows.Add(res.n)
	if res.err != nil {
		h.mergeFailed(w, q.csv, what, res)
		return
	}
	if res.more && !q.csv {
		out := append(w.AvailableBuffer(), `{"cursor":"`...)
		out = last.Append(out)
		_, _ = w.Write(append(out, "\"}\n"...))
	}
	_ = w.Flush()
}

// run merges and joins the candidates, window by window, and returns how
// it ended and the (first) visitor of the last row written.
func (j *emailJoin) run(w *bufio.Writer) (res mergeResult, last event.UUID) {
	if res.err = j.m.start(); res.err != nil {
		return res, last
	}
	for {
		want := emailWindow
		if j.q.limit > 0 {
			want = min(want, j.q.limit-res.n+1) // +1: is there a row after the limit?
		}
		j.arena, j.cands = j.arena[:0], j.cands[:0]
		for len(j.cands) < want {
			s, failed := j.m.least()
			if failed != nil {
				res.err, res.failLine = fmt.Errorf("%s failed: %s", failed.name, bytes.TrimSpace(failed.fail)), failed.fail
				return res, last
			}
			if s == nil {
				break
			}
			if res.err = j.add(s); res.err != nil {
				return res, last
			}
			if res.err = s.next(); res.err != nil {
				return res, last
			}
		}
		if len(j.cands) == 0 {
			return res, last
		}
		if res.err = j.lookup(); res.err != nil {
			return res, last
		}
		for i := range j.cands {
			c := &j.cands[i]
			var first bool
			if j.vis, first = membership.JoinEmail(c.visitor, j.linkedOf(c.ei), j.vis); !first {
				continue
			}
			if j.q.limit > 0 && res.n == j.q.limit {
				res.more = true
				return res, last
			}
			email := j.arena[c.email:c.rest]
			j.out = appendRowVisitors(j.out[:0], j.q.csv, unsafe.String(unsafe.SliceData(email), len(email)), j.vis)
			j.out = append(j.out, j.arena[c.rest:c.restTo]...)
			if _, res.err = w.Write(j.out); res.err != nil {
				res.clientGone = true
				return res, last
			}
			res.n++
			last = c.visitor
		}
		if len(j.cands) < want {
			return res, last
		}
	}
}

// add copies the current row of s into the window.
func (j *emailJoin) add(s *lineSource) error {
	start := int32(len(j.arena))
	var (
		c    emailCand
		rest []byte
		err  error
	)
	if c.visitor, j.arena, rest, err = parseEmailCandidate(j.arena, s.row); err != nil {
		return fmt.Errorf("BUG: %s sent %w", s.name, err)
	}
	c.email, c.rest = start, int32(len(j.arena))
	j.arena = append(j.arena, rest...)
	c.restTo = int32(len(j.arena))
	j.cands = append(j.cands, c)
	return nil
}

// linkedOf returns the members of the window's email ei, in visitor
// order, in j.lk.
func (j *emailJoin) linkedOf(ei int32) []event.UUID {
	j.lk = j.lk[:0]
	for _, l := range j.linked[j.from[ei]:j.from[ei+1]] {
		j.lk = append(j.lk, l.visitor)
	}
	return j.lk
}

// lookup asks every owner, at once, for the members of the window's
// distinct emails, and gathers them by email in visitor order.
func (j *emailJoin) lookup() error {
	j.order = j.order[:0]
	for i := range j.cands {
		j.order = append(j.order, int32(i))
	}
	emailOf := func(i int32) []byte { c := &j.cands[i]; return j.arena[c.email:c.rest] }
	slices.SortFunc(j.order, func(a, b int32) int { return bytes.Compare(emailOf(a), emailOf(b)) })
	j.emails = j.emails[:0]
	for _, i := range j.order {
		if e := emailOf(i); len(j.emails) == 0 || !bytes.Equal(j.emails[len(j.emails)-1], e) {
			j.emails = append(j.emails, e)
		}
		j.cands[i].ei = int32(len(j.emails) - 1)
	}
	j.body = appendEmailLookup(j.body[:0], j.emails)
	path := internalPrefix + "members/" + j.q.site + "/" + j.q.name
	c := j.h.clusterOf()
	for len(j.asks) < len(j.f.shards) {
		j.asks = append(j.asks, emailAsk{req: fasthttp.AcquireRequest(), resp: fasthttp.AcquireResponse()})
	}
	var wg sync.WaitGroup
	for i, sh := range j.f.shards {
		a := &j.asks[i]
		a.req.Reset()
		a.req.Header.SetMethod(fasthttp.MethodPost)
		a.req.SetRequestURI(sh.URL)
		a.req.URI().SetPath(path)
		a.req.Header.SetBytesV(fasthttp.HeaderAuthorization, j.f.auth)
		a.req.Header.SetBytesV(api.HeaderPartitions, appendPartitions(nil, sh.Partitions))
		a.req.Header.SetContentType("application/octet-stream")
		a.req.SetBodyRaw(j.body)
		wg.Go(func() { a.err = c.Do(a.req, a.resp) })
	}
	wg.Wait()
	j.linked = j.linked[:0]
	for i, sh := range j.f.shards {
		a := &j.asks[i]
		if a.err != nil {
			return fmt.Errorf("cannot reach the owner %s of partitions %s: %w", sh.URL, appendPartitions(nil, sh.Partitions), a.err)
		}
		if status := a.resp.StatusCode(); status != fasthttp.StatusOK {
			return fmt.Errorf("cannot look up the members of %d emails at %s: %d %s", len(j.emails), sh.URL, status, quote.Value(bytes.TrimSpace(span(a.resp.Body(), 0, 256))))
		}
		err := decodeEmailMembers(a.resp.Body(), len(j.emails), func(ei int, v event.UUID) {
			j.linked = append(j.linked, linkedMember{ei: int32(ei), visitor: v})
		})
		if err != nil {
			return fmt.Errorf("BUG: %s answered a lookup of %d emails with %w", sh.URL, len(j.emails), err)
		}
	}
	slices.SortFunc(j.linked, func(a, b linkedMember) int {
		if a.ei != b.ei {
			return int(a.ei - b.ei)
		}
		return bytes.Compare(a.visitor[:], b.visitor[:])
	})
	j.from = j.from[:0]
	for ei, k := int32(0), 0; ei <= int32(len(j.emails)); ei++ {
		for k < len(j.linked) && j.linked[k].ei < ei {
			k++
		}
		j.from = append(j.from, int32(k))
	}
	return nil
}

func (j *emailJoin) release() {
	for _, a := range j.asks {
		fasthttp.ReleaseRequest(a.req)
		fasthttp.ReleaseResponse(a.resp)
	}
	j.asks = nil
}

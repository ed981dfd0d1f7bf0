package query

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// fanOutMembers answers a members export of a node in a build group: every
// owner streams the rows of its own partitions in visitor order, and the
// merge of those streams is what one node holding every partition would
// send, its cursor included — so any node resumes a cursor any other gave.
// by=email rows join the members of an email across owners
// (fanout_email.go). A per-person segment's rows merge by person id
// (fanout_person.go), by=email or not: each person is a row of the owner
// of its evaluating partition.
func (h *Handler) fanOutMembers(ctx *fasthttp.RequestCtx, q *membersQuery) {
	args := fanOutArgs(ctx, q.at)
	if q.export.ByEmail && !q.person {
		// Owners stream every candidate: which of them make rows, and so
		// where limit falls, only the join knows.
		args.Del("limit")
	}
	f := h.openFanOut(ctx, args)
	fasthttp.ReleaseArgs(args)
	if f == nil {
		return
	}
	if q.csv {
		ctx.SetContentType("text/csv; charset=utf-8")
	} else {
		ctx.SetContentType("application/x-ndjson")
	}
	merge := h.mergeMembers
	if q.export.ByEmail && !q.person {
		merge = h.mergeEmailRows
	}
	ctx.SetBodyStream(&streamBody{write: func(w *bufio.Writer) { merge(w, q, f) }, done: f.close}, -1)
}

// memberRowVisitor is where an NDJSON member row ({"visitor":"<uuid>",…})
// holds its visitor; a CSV row starts with it.
const memberRowVisitor = len(`{"visitor":"`)

// cmpMemberRows orders NDJSON member rows by visitor.
func cmpMemberRows(a, b []byte) int {
	return bytes.Compare(span(a, memberRowVisitor, memberRowVisitor+36), span(b, memberRowVisitor, memberRowVisitor+36))
}

// cmpCSVRows orders CSV member rows by visitor.
func cmpCSVRows(a, b []byte) int { return bytes.Compare(span(a, 0, 36), span(b, 0, 36)) }

// span returns b[i:j], cut to b's length.
func span(b []byte, i, j int) []byte {
	return b[min(i, len(b)):min(j, len(b))]
}

// mergeMembers writes the merged export of f's streams to w.
func (h *Handler) mergeMembers(w *bufio.Writer, q *membersQuery, f *fanOut) {
	m := merger{srcs: f.sources(), cmp: cmpMemberRows, write: writeRow}
	cursorAt := memberRowVisitor // where the last row holds the cursor's visitor
	switch {
	case q.person:
		m.cmp, m.write, cursorAt = cmpPersonRows, writePersonRow, 0
	case q.csv:
		m.cmp = cmpCSVRows
	}
	if q.csv {
		if err := h.mergeCSVHeader(w, m.srcs); err != nil {
			h.mergeFailed(w, q.csv, fmt.Sprintf("members of %s/%s", q.site, q.name), mergeResult{err: err})
			return
		}
	}
	res := m.merge(w, q.limit)
	h.m.memberRows.Add(res.n)
	if res.err != nil {
		h.mergeFailed(w, q.csv, fmt.Sprintf("members of %s/%s", q.site, q.name), res)
		return
	}
	if res.more && !q.csv {
		out := append(w.AvailableBuffer(), `{"cursor":"`...)
		out = append(out, span(m.last, cursorAt, cursorAt+36)...)
		_, _ = w.Write(append(out, "\"}\n"...))
	}
	_ = w.Flush()
}

// mergeCSVHeader reads the header record every owner starts its CSV
// export with, and writes one.
func (h *Handler) mergeCSVHeader(w *bufio.Writer, srcs []*lineSource) error {
	for i, s := range srcs {
		s.csv = true
		err := s.next()
		if err == nil && s.row == nil {
			err = errors.New("no header")
		}
		if err != nil {
			return fmt.Errorf("cannot read the header of %s: %w", s.name, err)
		}
		if i == 0 {
			// A client gone makes the writer's error sticky: the merge's
			// first write finds out.
			_, _ = w.Write(s.row)
		}
	}
	return nil
}

// mergeFailed ends a merged stream that stopped at res.err: with the
// owner's own error line, or one saying which stream broke (NDJSON; CSV
// has no error row, as on one node), unless the client went away.
func (h *Handler) mergeFailed(w *bufio.Writer, csv bool, what string, res mergeResult) {
	if res.clientGone {
		return
	}
	h.m.errors.Inc()
	h.opts.Logger.Printf("query: %s, merged across the build group: %v", what, res.err)
	if !csv {
		line := res.failLine
		if line == nil {
			line = event.AppendJSONString(append(w.AvailableBuffer(), `{"error":`...), res.err.Error())
			line = append(line, "}\n"...)
		}
		_, _ = w.Write(line)
	}
	_ = w.Flush()
}

// sources returns a lineSource per owner of f.
func (f *fanOut) sources() []*lineSource {
	srcs := make([]*lineSource, len(f.resps))
	for i, resp := range f.resps {
		var r io.Reader = resp.BodyStream()
		if r == nil {
			r = bytes.NewReader(resp.Body())
		}
		srcs[i] = newLineSource(f.owners[i], r)
	}
	return srcs
}

// An owner's interest rows in a fan-out start with their order key, which
// the row does not show but the merge orders by: 16 hex digits and a
// space, then the row as one node sends it.
const interestKeyLen = 16 + 1

// appendInterestKey appends the prefix of an owner's interest row.
func appendInterestKey(dst []byte, key uint64) []byte {
	var raw [8]byte
	binary.BigEndian.PutUint64(raw[:], key)
	return append(hex.AppendEncode(dst, raw[:]), ' ')
}

// cmpInterestRows orders an owner's interest rows as ScanInterests does:
// by order key, then by visitor.
func cmpInterestRows(a, b []byte) int {
	if c := bytes.Compare(span(a, 0, 16), span(b, 0, 16)); c != 0 {
		return c
	}
	const v = interestKeyLen + memberRowVisitor
	return bytes.Compare(span(a, v, v+36), span(b, v, v+36))
}

// interestPos reads the position of an owner's interest row.
func interestPos(row []byte) (state.InterestPos, error) {
	var pos state.InterestPos
	key, err := strconv.ParseUint(string(span(row, 0, 16)), 16, 64)
	if err != nil {
		return pos, fmt.Errorf("BUG: interest row %q has no order key", span(row, 0, 64))
	}
	pos.Key = key
	const v = interestKeyLen + memberRowVisitor
	visitor, ok := event.ParseUUID(span(row, v, v+36))
	if !ok {
		return pos, fmt.Errorf("BUG: interest row %q has no visitor", span(row, 0, 64))
	}
	pos.Visitor = visitor
	return pos, nil
}

// fanOutInterests answers an interest list of a node in a build group:
// every owner lists its own partitions' rows, each prefixed with its order
// key, and the merge sends them as one node holding every partition
// would, with that node's cursor.
func (h *Handler) fanOutInterests(ctx *fasthttp.RequestCtx, q *interestQuery) {
	args := fanOutArgs(ctx, q.at)
	f := h.openFanOut(ctx, args)
	fasthttp.ReleaseArgs(args)
	if f == nil {
		return
	}
	ctx.SetContentType("application/x-ndjson")
	ctx.SetBodyStream(&streamBody{write: func(w *bufio.Writer) { h.mergeInterests(w, q, f) }, done: f.close}, -1)
}

func (h *Handler) mergeInterests(w *bufio.Writer, q *interestQuery, f *fanOut) {
	m := merger{srcs: f.sources(), cmp: cmpInterestRows, write: func(w *bufio.Writer, row []byte) error {
		_, err := w.Write(span(row, interestKeyLen, len(row)))
		return err
	}}
	res := m.merge(w, q.limit)
	h.m.interestRows.Add(res.n)
	what := fmt.Sprintf("interests %s/%s/%s", q.site, q.dim, q.value)
	if res.err != nil {
		h.mergeFailed(w, false, what, res)
		return
	}
	if res.more {
		pos, err := interestPos(m.last)
		if err != nil {
			h.mergeFailed(w, false, what, mergeResult{err: err})
			return
		}
		out := append(w.AvailableBuffer(), `{"cursor":"`...)
		out = appendCursor(out, pos, q.at)
		_, _ = w.Write(append(out, "\"}\n"...))
	}
	_ = w.Flush()
}

package query

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
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
	if h.clusterOf() != nil {
		h.serveClusterChanges(ctx, site, name)
		return
	}
	var after uint64
	if raw := args.Peek("after"); len(raw) > 0 {
		v, err := strconv.ParseUint(string(raw), 10, 64)
		if err != nil {
			h.badRequest(ctx, fmt.Sprintf("invalid after=%s: pass the cursor of the previous page", quote.Value(raw)))
			return
		}
		after = v
	}
	limit, ok := h.changesLimit(ctx)
	if !ok {
		return
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

// changesLimit reads ?limit= of the changes feed, answering 400 when it is
// bad.
func (h *Handler) changesLimit(ctx *fasthttp.RequestCtx) (int, bool) {
	raw := ctx.QueryArgs().Peek("limit")
	if len(raw) == 0 {
		return 1000, true
	}
	n, err := strconv.Atoi(string(raw))
	if err != nil || n < 1 || n > maxChangesLimit {
		h.badRequest(ctx, fmt.Sprintf("invalid limit=%s: want 1..%d", quote.Value(raw), maxChangesLimit))
		return 0, false
	}
	return n, true
}

// serveClusterChanges answers the changes feed on a node of a build group:
//
//	{"changes":[<membership.Change JSON>…],"cursor":"<base64url>"}
//
// ?after= is the cursor of the previous page (feedCursor), none: from the
// start. Every owner gives the records of its partitions after the
// cursor's positions (membership.Engine.SourceChanges), and this node
// merges them in that order: each partition's records in source order,
// the partitions' interleaved by "at", then partition. The cursor it
// answers is the one before with the partition of each record given set
// to that record's source, so any node resumes it. A record's "seq" is
// its owner's number, which other nodes do not share: resume with the
// cursor. A per-person segment's records are by the person's evaluating
// partition (membership.Engine.RestorePersons copies an old evaluator's).
func (h *Handler) serveClusterChanges(ctx *fasthttp.RequestCtx, site, name string) {
	var cur feedCursor
	if raw := ctx.QueryArgs().Peek("after"); len(raw) > 0 {
		c, err := decodeFeedCursor(raw)
		if err != nil {
			h.refuse(ctx, invalid.Errorf("invalid after=%s: %w: on a node of a build group pass the cursor of the previous page as it was given", quote.Value(raw), err))
			return
		}
		cur = c
	}
	limit, ok := h.changesLimit(ctx)
	if !ok {
		return
	}
	parts, ok := h.localParts(ctx)
	if !ok {
		return
	}
	if !h.segmentExists(ctx, site, name) {
		return
	}
	// A person's records are by its evaluating partition, as its owner
	// restored them (fanout_person.go).
	if _, ok := h.perPerson(ctx, site, name, parts); !ok {
		return
	}
	if parts != nil {
		h.servePartChanges(ctx, site, name, parts, cur, limit)
		return
	}
	f := h.openFanOut(ctx, ctx.QueryArgs())
	if f == nil {
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBodyStream(&streamBody{write: func(w *bufio.Writer) { h.mergeChanges(w, site, name, f, cur, limit) }, done: f.close}, -1)
}

// servePartChanges answers an owner's part of a fan-out of the changes
// feed: at most limit records of the partitions of parts after cur's
// positions, one a line, in SourceChanges's order, each prefixed with its
// merge key (appendChangeRowKey); an error ends the stream with an error
// line.
func (h *Handler) servePartChanges(ctx *fasthttp.RequestCtx, site, name string, parts []bool, cur feedCursor, limit int) {
	var from []state.Source
	for p, ok := range parts {
		if ok {
			if !h.opts.Segments.HistoryReady(p) {
				h.unavailable(ctx, &membership.HistoryPendingError{Partition: p})
				return
			}
			from = append(from, cur.from(p))
		}
	}
	ctx.SetContentType("application/x-ndjson")
	ctx.SetBodyStream(&streamBody{write: func(w *bufio.Writer) {
		n := 0
		var werr error
		err := h.opts.Segments.SourceChanges(site, name, from, func(c *membership.Change) bool {
			out := appendChangeRowKey(w.AvailableBuffer(), c)
			out = append(c.AppendJSON(out), '\n')
			if _, werr = w.Write(out); werr != nil {
				return false
			}
			n++
			return n < limit
		})
		h.m.changeRows.Add(n)
		if err != nil && werr == nil {
			h.m.errors.Inc()
			h.opts.Logger.Printf("query: changes of %s/%s, partitions %v: %v", site, name, from, err)
			out := event.AppendJSONString(append(w.AvailableBuffer(), `{"error":`...), err.Error())
			_, _ = w.Write(append(out, "}\n"...))
		}
		_ = w.Flush()
	}}, -1)
}

// An owner's change row starts with its merge key and source, which the
// coordinator orders by and makes the cursor of: at (16 hex digits of the
// Unix ms with the sign bit flipped, so the digits order as the numbers),
// partition (8), then offset (16) and ordinal (8), a space, then the
// record's JSON.
const (
	changeRowOrder = 16 + 8
	changeRowKey   = changeRowOrder + 16 + 8 + 1
)

func appendChangeRowKey(dst []byte, c *membership.Change) []byte {
	var raw [changeRowKey / 2]byte
	binary.BigEndian.PutUint64(raw[0:], uint64(c.At)^1<<63)
	binary.BigEndian.PutUint32(raw[8:], uint32(c.Src.Partition))
	binary.BigEndian.PutUint64(raw[12:], uint64(c.Src.Offset))
	binary.BigEndian.PutUint32(raw[20:], c.Src.Ord)
	return append(hex.AppendEncode(dst, raw[:]), ' ')
}

// cmpChangeRows orders owners' change rows as SourceChanges does: by at,
// then partition (each partition is one owner's, in its order).
func cmpChangeRows(a, b []byte) int {
	return bytes.Compare(span(a, 0, changeRowOrder), span(b, 0, changeRowOrder))
}

// changeRowSource reads the source of an owner's change row.
func changeRowSource(row []byte) (state.Source, bool) {
	var raw [changeRowKey / 2]byte
	if len(row) <= changeRowKey || row[changeRowKey-1] != ' ' {
		return state.Source{}, false
	}
	if _, err := hex.Decode(raw[:], row[:changeRowKey-1]); err != nil {
		return state.Source{}, false
	}
	src := state.Source{
		Partition: int32(binary.BigEndian.Uint32(raw[8:])),
		Offset:    int64(binary.BigEndian.Uint64(raw[12:])),
		Ord:       binary.BigEndian.Uint32(raw[20:]),
	}
	return src, src.Partition >= 0 && src.Offset >= 0
}

// changePage writes the merged records of a page and moves its cursor
// past each.
type changePage struct {
	cur     feedCursor
	written int
	bad     error // a row without a source (an owner's bug)
}

// write is a merger's write of an owner's change row: the record without
// the row's key, after a comma but for the first.
func (pg *changePage) write(w *bufio.Writer, row []byte) error {
	src, ok := changeRowSource(row)
	if !ok {
		pg.bad = fmt.Errorf("BUG: change row %q has no source", span(row, 0, 64))
		return pg.bad
	}
	pg.cur = pg.cur.set(src)
	if pg.written > 0 {
		if err := w.WriteByte(','); err != nil {
			return err
		}
	}
	pg.written++
	_, err := w.Write(row[changeRowKey : len(row)-1])
	return err
}

// mergeChanges writes the merged page of f's streams to w, and the cursor
// cur moved past every record written.
func (h *Handler) mergeChanges(w *bufio.Writer, site, name string, f *fanOut, cur feedCursor, limit int) {
	_, _ = w.WriteString(`{"changes":[`)
	pg := &changePage{cur: cur}
	m := merger{srcs: f.sources(), cmp: cmpChangeRows, write: pg.write}
	res := m.merge(w, limit)
	h.m.changeRows.Add(res.n)
	if pg.bad != nil {
		res = mergeResult{err: pg.bad}
	}
	if res.err != nil {
		if res.clientGone {
			return
		}
		h.m.errors.Inc()
		h.opts.Logger.Printf("query: changes of %s/%s, merged across the build group: %v", site, name, res.err)
		// No cursor: the page is cut short, and a client must not
		// resume past what it did not get.
		out := append(w.AvailableBuffer(), `],"error":`...)
		out = event.AppendJSONString(out, res.err.Error())
		_, _ = w.Write(append(out, "}\n"...))
		_ = w.Flush()
		return
	}
	out := append(w.AvailableBuffer(), `],"cursor":"`...)
	out = appendFeedCursor(out, pg.cur)
	_, _ = w.Write(append(out, "\"}\n"...))
	_ = w.Flush()
}

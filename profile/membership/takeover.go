package membership

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/valyala/fastjson"

	"github.com/affinityhq/affinity/internal/codec"
	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// A partition's feed by source across a move (issue 13). At or below a
// partition's emission mark its records went out from the nodes that owned
// it before; a new owner's re-application of those events is not what they
// emitted (its commits are larger: a visitor's entry and exit within one
// commit leave no record). So the sequencer keeps no record the Gate drops,
// and at each assignment (TakeOver) the owner copies the partition's
// records at or below the mark from the changes topic — what the old
// owners produced, ids and content as produced — into the feed by source
// with seq 0 (in no 'F' feed: no webhook delivers them again). Until that
// is done the partition's feed answers HistoryPendingError. The copy is
// idempotent: a record's key is its source, so a crash mid-copy, or a
// record the topic holds twice (the SIGKILL window), writes one entry; a
// record this node emitted itself keeps its seq. When it is done the
// partition's history mark ('A') says up to where the feed is the topic's,
// and a later assignment with a mark no higher copies nothing.

// importBatch is how many records one transaction of a copy writes.
const importBatch = 1024

// HistoryPendingError says a partition's changes feed is not answerable yet:
// its owner is still copying the records emitted before it took the
// partition over from the changes topic. The query API answers 503.
type HistoryPendingError struct{ Partition int }

func (e *HistoryPendingError) Error() string {
	return fmt.Sprintf("the changes feed of partition %d is not ready: its new owner is still reading the records emitted before the move from the changes topic", e.Partition)
}

// TakeOver starts copying, in the background, the history of each
// partition of marks (its emission mark at this assignment) whose feed by
// source is not yet the changes topic's up to its mark; HistoryReady
// reports false for those partitions until their copy is done. ctx ends
// the copy (the generation ended): the partitions stay not ready until a
// later TakeOver. Without Options.History (no changes topic) it does
// nothing: the feed below a mark is then this node's re-application. A
// cluster member calls it at each assignment, beside the builder's
// catch-up.
func (e *Engine) TakeOver(ctx context.Context, marks map[int]int64) {
	if e.opts.History == nil {
		return
	}
	todo, floors := map[int]int64{}, map[int]int64{}
	for p, mark := range marks {
		through, err := e.historyMark(p)
		if err == nil && through > mark {
			// Marks only grow, and this one was committed: Kafka lost it.
			floors[p] = through
			e.m.errors.Inc()
			e.logf("membership: the group's committed offset of events partition %d is %d, below %d, the mark at an earlier assignment here: "+
				"Kafka dropped the group's committed offsets (offsets.retention.minutes passed with the whole group down?); "+
				"this node emits no record of the partition at or below %d again, but a node without its history would: raise offsets.retention.minutes (README \"Running a cluster\")",
				p, mark, through, through)
		}
		if mark <= 0 {
			continue // nothing emitted yet
		}
		if err != nil || through < mark {
			todo[p] = mark
		}
	}
	e.histMu.Lock()
	e.histGen++
	gen := e.histGen
	e.histFloors.Store(&floors)
	e.histPending = map[int]bool{}
	for p := range todo {
		e.histPending[p] = true
	}
	e.histMu.Unlock()
	if len(todo) == 0 {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(e.ctx, cancel)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer cancel()
		defer stop()
		start := time.Now()
		n, err := e.importHistory(ctx, todo)
		if err != nil {
			if ctx.Err() == nil {
				e.m.errors.Inc()
				e.logf("membership: the changes feed of partitions %v stays unavailable until their next assignment: %s", todo, err)
			}
			return
		}
		e.histMu.Lock()
		if e.histGen == gen {
			for p := range todo {
				delete(e.histPending, p)
			}
		}
		e.histMu.Unlock()
		e.logf("membership: copied %d change records of partitions %v emitted before this node took them over from the changes topic in %s", n, todo, time.Since(start).Round(time.Millisecond))
	}()
}

// emitFloor returns the offset at or below which the sequencer emits no
// record of partition p whatever the Gate's mark: the history mark, when
// the Gate's mark fell below it at the last TakeOver (0: none).
func (e *Engine) emitFloor(p int) int64 {
	if f := e.histFloors.Load(); f != nil {
		return (*f)[p]
	}
	return 0
}

// HistoryReady reports whether partition p's changes feed holds what was
// emitted before this node took it over (TakeOver is done with it).
func (e *Engine) HistoryReady(p int) bool {
	e.histMu.Lock()
	defer e.histMu.Unlock()
	return !e.histPending[p]
}

// importHistory copies the changes topic's records of the partitions of
// marks at or below each one's mark into the feed by source, then records
// the marks as the partitions' history marks. It returns how many records
// it read of those partitions.
func (e *Engine) importHistory(ctx context.Context, marks map[int]int64) (int, error) {
	var (
		p     fastjson.Parser
		c     Change
		n     int
		known = map[[2]string]int64{} // site, segment → its Created; 0: no per-visitor segment here
	)
	if err := e.dropReapplied(marks); err != nil {
		return 0, err
	}
	cp, err := e.newFeedCopy()
	if err != nil {
		return 0, err
	}
	err = e.opts.History(ctx, func(v []byte) error {
		if err := ParseChangeJSON(&c, &p, v); err != nil {
			e.logf("membership: skipping a record of the changes topic: %s", err)
			return nil
		}
		mark, ok := marks[int(c.Src.Partition)]
		if !ok || c.Src.Partition < 0 || c.Src.Offset > mark {
			return nil
		}
		n++
		sk := [2]string{c.Site, c.Segment}
		created, seen := known[sk]
		if !seen {
			d, found, err := e.Definition(c.Site, c.Segment)
			if err != nil {
				return err
			}
			if found && d.Per == PerVisitor {
				created = max(d.Created, 1)
			}
			known[sk] = created
		}
		if created == 0 {
			return nil // deleted since, or per person (no partition feed)
		}
		if !sameSegment(&c, created) {
			return nil // of an earlier segment of the name, deleted since
		}
		return cp.put(&c)
	})
	if err == nil {
		err = cp.flush()
	}
	if err != nil {
		return n, fmt.Errorf("cannot copy the change records of partitions %v from the changes topic: %w", marks, err)
	}
	b := e.db.NewBatch()
	for part, mark := range marks {
		if err := b.ExtSet(appendHistoryKey(nil, part), codec.AppendVarint([]byte{valueVersion}, mark)); err != nil {
			return n, err
		}
	}
	if err := b.Commit(); err != nil {
		return n, fmt.Errorf("cannot record the history marks %v: %w", marks, err)
	}
	return n, nil
}

// sameSegment reports whether c is a record of the segment created at
// created, not of an earlier one of its name: as on one node, where a
// DELETE drops the feed, a segment's feed starts empty. A record without
// the segment's created time (stored before record version 3) is the
// segment's if made after it was created.
func sameSegment(c *Change, created int64) bool {
	if c.Created != 0 {
		return c.Created == created
	}
	return c.At >= created
}

// dropReapplied deletes from the feed by source the entries of seq 0 of
// each partition of marks above its history mark and at or below its
// mark, before the copy writes the topic's: at or below the history mark
// they are the topic's (an earlier copy), but above it they can only be
// a re-application, what a sequencer built before the copy kept of the
// records its Gate dropped, whose sources need not be the topic's (a
// visitor's entry and exit within one commit leave none), or a copy cut
// short, which this one makes again. The partition's feed is refused
// until the copy is done, so nobody reads it in between. Entries this
// node emitted (seq > 0) stay.
func (e *Engine) dropReapplied(marks map[int]int64) error {
	segs, err := e.segmentNames()
	if err != nil {
		return fmt.Errorf("cannot list the segments: %w", err)
	}
	var keys [][]byte
	for p, mark := range marks {
		through, err := e.historyMark(p)
		if err != nil {
			return err
		}
		for _, sn := range segs {
			prefix := binary.BigEndian.AppendUint32(appendSegKey(nil, prefixFeedBy, sn[0], sn[1]), uint32(p))
			var after []byte
			if through > 0 {
				after = appendFeedByKey(nil, sn[0], sn[1], state.Source{Partition: int32(p), Offset: through, Ord: math.MaxUint32})
			}
			err := e.db.ScanExtFrom(prefix, after, func(key, val []byte) bool {
				// key: prefix | offset u64 | ordinal u32
				if len(key) != len(prefix)+12 || int64(binary.BigEndian.Uint64(key[len(prefix):])) > mark {
					return false
				}
				if len(val) >= 8 && binary.BigEndian.Uint64(val) == 0 {
					keys = append(keys, append([]byte(nil), key...))
				}
				return true
			})
			if err != nil {
				return fmt.Errorf("cannot read the feed by source of segment %q of site %q: %w", sn[1], sn[0], err)
			}
		}
	}
	for chunk := range slices.Chunk(keys, importBatch) {
		b := e.db.NewBatch()
		for _, k := range chunk {
			if err := b.ExtDelete(k); err != nil {
				return err
			}
		}
		if err := b.Commit(); err != nil {
			return fmt.Errorf("cannot drop %d re-applied records of partitions %v: %w", len(chunk), marks, err)
		}
	}
	if len(keys) > 0 {
		e.logf("membership: dropped %d records of partitions %v that this node re-applied below their marks, before copying what was emitted from the changes topic", len(keys), marks)
	}
	return nil
}

// copied is a record of the changes topic a copy writes with the next
// transaction: its 'B' key and value, and what tells whether it names an
// erased visitor (site, visitor, at, source).
type copied struct {
	c        Change
	key, val []byte
}

// historyKey: 'A' | partition u32.
func appendHistoryKey(dst []byte, p int) []byte {
	return binary.BigEndian.AppendUint32(append(dst, prefixHistory), uint32(p))
}

// historyMark returns the offset up to which partition p's feed by source
// is the changes topic's (0: none).
func (e *Engine) historyMark(p int) (int64, error) {
	v, ok, err := e.db.Ext(appendHistoryKey(nil, p), nil)
	if err != nil || !ok {
		return 0, err
	}
	r := newReader("history mark", v)
	version(&r)
	through := r.Varint()
	return through, end(&r)
}

// ParseChangeJSON decodes into c a change record as AppendJSON wrote it
// (a value of the changes topic), with p's help; c.Seq is the emitting
// node's. Facts are kept byte for byte. A record of no partition ("id"
// null) has Src.Partition -1.
func ParseChangeJSON(c *Change, p *fastjson.Parser, b []byte) error {
	// AppendJSON writes UTF-8 only (an invalid byte becomes \ufffd), so
	// a record with another byte was not written by it, and would not
	// read back as itself.
	if !utf8.Valid(b) {
		return invalid.Errorf("invalid change record %s: not UTF-8", quote.Value(b))
	}
	v, err := p.ParseBytes(b)
	if err != nil {
		return invalid.Errorf("invalid change record %s: %v", quote.Value(b), err)
	}
	bad := func(field, why string) error {
		return invalid.Errorf("invalid change record %s: %s %s", quote.Value(b), field, why)
	}
	text := func(field string) ([]byte, bool) {
		f := v.Get(field)
		if f == nil || f.Type() != fastjson.TypeString {
			return nil, false
		}
		s, _ := f.StringBytes()
		return s, true
	}
	*c = Change{Src: state.Source{Partition: -1}}
	seq, ok := text("seq")
	if !ok {
		return bad(`"seq"`, "is not a string")
	}
	if c.Seq, err = strconv.ParseUint(string(seq), 10, 64); err != nil {
		return bad(`"seq"`, "is not a number")
	}
	if id, ok := text("id"); ok {
		if c.Src, err = ParseID(id); err != nil {
			return bad(`"id"`, err.Error())
		}
	} else if f := v.Get("id"); f == nil || f.Type() != fastjson.TypeNull {
		return bad(`"id"`, "is neither a string nor null")
	}
	site, ok1 := text("site")
	seg, ok2 := text("segment")
	if !ok1 || !ok2 || len(seg) == 0 {
		return bad(`"site" or "segment"`, "is missing")
	}
	c.Site, c.Segment = string(site), string(seg)
	if err := checkSite(c.Site); err != nil {
		return bad(`"site"`, err.Error())
	}
	vis, _ := text("visitor")
	if c.Visitor, ok = event.ParseUUID(vis); !ok {
		return bad(`"visitor"`, "is not a UUID")
	}
	if email, ok := text("email"); ok {
		c.Email = string(email)
	}
	if key, ok := text("person"); ok {
		if _, valid := keyID(string(key)); !valid && !validErasedKey(string(key), c.Visitor) {
			return bad(`"person"`, "is not a person key")
		}
		c.Person = string(key)
	}
	switch kind, _ := text("change"); string(kind) {
	case "entered":
		c.Entered = true
	case "left":
	default:
		return bad(`"change"`, "is neither entered nor left")
	}
	at := v.Get("at_ms")
	if at == nil {
		return bad(`"at_ms"`, "is missing")
	}
	if c.At, err = at.Int64(); err != nil {
		return bad(`"at_ms"`, "is not an integer")
	}
	if created := v.Get("segment_created_ms"); created != nil {
		// Written only when not 0 (records before it have none).
		if c.Created, err = created.Int64(); err != nil || c.Created == 0 {
			return bad(`"segment_created_ms"`, "is not a non-zero integer")
		}
	}
	why, ok := text("why")
	if !ok {
		return bad(`"why"`, "is missing")
	}
	c.Why = string(why)
	// The facts as produced: AppendJSON writes them last, and a string
	// before them escapes its quotes, so the first `,"facts":` is theirs.
	i := bytes.Index(b, []byte(`,"facts":`))
	if f := v.Get("facts"); i < 0 || f == nil || f.Type() != fastjson.TypeObject {
		return bad(`"facts"`, "is not an object")
	}
	facts := bytes.TrimRight(b[i+len(`,"facts":`):], " \t\r\n")
	if len(facts) == 0 || facts[len(facts)-1] != '}' {
		return bad(`"facts"`, "is not the last field")
	}
	facts = facts[:len(facts)-1]
	if fv, err := fastjson.ParseBytes(facts); err != nil || fv.Type() != fastjson.TypeObject {
		return bad(`"facts"`, "is not the last field")
	}
	c.Facts = string(facts)
	return nil
}

// ParseID parses a record's identity as AppendID wrote it:
// partition-offset-ordinal, e.g. "3-1200-0".
func ParseID(b []byte) (state.Source, error) {
	parts := bytes.Split(b, []byte{'-'})
	if len(parts) != 3 {
		return state.Source{}, errors.New("is not partition-offset-ordinal")
	}
	p, err1 := strconv.ParseInt(string(parts[0]), 10, 32)
	o, err2 := strconv.ParseInt(string(parts[1]), 10, 64)
	ord, err3 := strconv.ParseUint(string(parts[2]), 10, 32)
	if err := errors.Join(err1, err2, err3); err != nil || p < 0 || o < 0 || ord > math.MaxUint32 {
		return state.Source{}, errors.New("is not partition-offset-ordinal of non-negative numbers")
	}
	return state.Source{Partition: int32(p), Offset: o, Ord: uint32(ord)}, nil
}

// LogHistory returns the Options.History that reads l (the changes topic
// Sink produces to): every partition from its first stored record to its
// end as of the call, fn called with each value, in 1024-record fetches.
// The topic is read whole for each take-over, so its retention must keep
// every record a partition's feed should answer (retention.ms -1).
func LogHistory(l storage.Log) func(ctx context.Context, fn func(value []byte) error) error {
	return func(ctx context.Context, fn func(value []byte) error) error {
		var recs []storage.Record
		for p := range l.Partitions() {
			first, next, err := l.Offsets(ctx, p)
			if err != nil {
				return fmt.Errorf("cannot read the offsets of partition %d of the changes topic: %w", p, err)
			}
			if first >= next {
				continue
			}
			r, err := l.OpenReader(p, first)
			if err != nil {
				return fmt.Errorf("cannot read partition %d of the changes topic: %w", p, err)
			}
			for at := first; at < next; {
				if recs, err = r.Fetch(ctx, recs[:0], 1024); err != nil {
					r.Close()
					return fmt.Errorf("cannot read partition %d of the changes topic at offset %d: %w", p, at, err)
				}
				for i := range recs {
					if recs[i].Offset >= next {
						break
					}
					if err := fn(recs[i].Value); err != nil {
						r.Close()
						return err
					}
				}
				at = recs[len(recs)-1].Offset + 1
			}
			r.Close()
		}
		return nil
	}
}

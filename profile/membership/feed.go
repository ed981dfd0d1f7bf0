package membership

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// sequenceBatch is how many outbox records one sequencing transaction moves.
const sequenceBatch = 1024

// Sequence moves the change records the builder's commits left in the
// outbox into the segments' feeds, numbering them from the last sequence
// number on, in one transaction per batch: a reader of a feed sees a
// gap-free prefix of the numbers, so a cursor never skips a record that
// commits later. It returns how many it moved. The sequencer calls it;
// tests may too.
func (e *Engine) Sequence(ctx context.Context) (int, error) {
	n, _, err := e.sequenceFrom(ctx, 0)
	return n, err
}

// sequenceFrom is Sequence scanning the outbox from the id from on (0:
// from its start). It also returns the lowest id of a record it held back
// because the Gate does not let its partition through (0: none).
func (e *Engine) sequenceFrom(ctx context.Context, from uint64) (n int, held uint64, err error) {
	var after []byte // exclusive
	if from > 0 {
		after = appendOutboxKey(nil, from-1)
	}
	e.seqMu.Lock()
	defer e.seqMu.Unlock()
	total := 0
	for {
		if g := e.opts.Gate; g != nil {
			if gen := g.Generation(); gen != e.movedGen {
				clear(e.moved)
				clear(e.begun)
				e.movedGen = gen
			}
		}
		var (
			keys    [][]byte // to delete: moved, dropped or unreadable
			cs      []Change
			before  []Change // dropped: emitted by another node; without History kept in the feed by source only
			scanned []byte   // the last key the scan saw, held ones too
			seen    int
		)
		err := e.db.ScanExtFrom([]byte{prefixOutbox}, after, func(key, val []byte) bool {
			seen++
			scanned = append(scanned[:0], key...)
			var c Change
			if err := decodeOutbox(&c, val); err != nil {
				// Unreadable: drop it rather than block the feed.
				e.logf("membership: dropping outbox record %x: %s", key, err)
			} else if !e.current(&c) {
				e.m.stale.Inc() // its segment was deleted since: no feed takes it
			} else if e.opts.Gate != nil && c.Src.Partition >= 0 && c.Person == "" {
				p := int(c.Src.Partition)
				ok, mark := e.opts.Gate.Emits(p)
				if begun, seen := e.begun[p]; seen {
					mark = begun
				} else if ok {
					e.begun[p] = mark
				}
				mark = max(mark, e.emitFloor(p))
				if !ok {
					if id := binary.BigEndian.Uint64(key[1:]); held == 0 || id < held {
						held = id
					}
					return seen < sequenceBatch // held until this node emits its partition
				}
				if c.Src.Offset <= mark && !e.reconciled(int(c.Src.Partition), mark, c.Src) {
					e.m.emittedBefore.Inc() // another node emitted it
					if e.opts.History == nil {
						before = append(before, c) // no topic to take what it emitted from
					}
				} else {
					cs = append(cs, c)
				}
			} else {
				cs = append(cs, c)
			}
			keys = append(keys, append([]byte(nil), key...))
			return seen < sequenceBatch
		})
		if err != nil {
			return total, held, fmt.Errorf("cannot read the change outbox: %w", err)
		}
		if seen == 0 {
			return total, held, nil
		}
		if len(keys) == 0 {
			after = scanned
			continue
		}
		seq := e.lastSeq.Load()
		for i := range cs {
			seq++
			cs[i].Seq = seq
		}
		if e.opts.Sink != nil && len(cs) > 0 {
			if err := e.opts.Sink(ctx, cs); err != nil {
				return total, held, fmt.Errorf("cannot publish %d change records: %w", len(cs), err)
			}
		}
		b := e.db.NewBatch()
		var buf []byte
		for i := range cs {
			c := &cs[i]
			buf = appendRecord(buf[:0], c)
			if err := b.ExtSet(appendFeedKey(nil, c.Site, c.Segment, c.Seq), buf); err != nil {
				return total, held, err
			}
			if c.Src.Partition >= 0 {
				if err := b.ExtSet(appendFeedByKey(nil, c.Site, c.Segment, c.Src), appendRecord(appendU64(nil, c.Seq), c)); err != nil {
					return total, held, err
				}
			}
		}
		for i := range before {
			c := &before[i]
			if err := b.ExtSet(appendFeedByKey(nil, c.Site, c.Segment, c.Src), appendRecord(appendU64(nil, 0), c)); err != nil {
				return total, held, err
			}
		}
		for _, k := range keys {
			if err := b.ExtDelete(k); err != nil {
				return total, held, err
			}
		}
		if err := b.ExtSet([]byte{prefixSeq}, appendU64(nil, seq)); err != nil {
			return total, held, err
		}
		if err := b.Commit(); err != nil {
			return total, held, fmt.Errorf("cannot sequence %d change records: %w", len(cs), err)
		}
		e.lastSeq.Store(seq)
		e.m.sequenced.Add(len(cs))
		if e.opts.Gate != nil {
			for i := range cs {
				// A person's source is its evaluating partition's own count,
				// no events offset: it has no mark.
				if p := int(cs[i].Src.Partition); p >= 0 && cs[i].Person == "" && cs[i].Src.Offset > e.moved[p] {
					e.moved[p] = cs[i].Src.Offset
				}
			}
		}
		total += len(cs)
		after = scanned
	}
}

// current reports whether c is of a segment that exists now: the one it
// was evaluated for, not an earlier one of the name, deleted since (a
// record written before records carried their segment's created time is
// taken as the current segment's). Delete holds the sequencer, so a record
// is either moved before a Delete, whose feed deletion then takes it, or
// found stale after it.
func (e *Engine) current(c *Change) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	ss, err := e.loadSiteLocked(c.Site)
	if err != nil {
		return true // unreadable definitions: keep it rather than lose it
	}
	for _, sg := range ss.segs {
		if sg.name == c.Segment {
			return c.Created == 0 || c.Created == sg.created
		}
	}
	return false
}

// Flush moves every change record in the outbox that the Gate lets
// through and reports the partitions' marks to it. The caller makes sure
// no partition the Gate emits commits meanwhile: a cluster member calls it
// when a generation ends, after the builder owns nothing, so that the next
// owner of each partition starts where this node stopped.
func (e *Engine) Flush(ctx context.Context) error {
	if _, _, err := e.sequenceFrom(ctx, 0); err != nil {
		return err
	}
	if e.opts.Gate == nil {
		return nil
	}
	return e.reportMarks(e.movedMarks())
}

// movedMarks returns a copy of the highest source offsets moved and the
// Gate's generation they were moved in.
func (e *Engine) movedMarks() (int32, map[int]int64) {
	e.seqMu.Lock()
	defer e.seqMu.Unlock()
	return e.movedGen, maps.Clone(e.moved)
}

// reportMarks tells the Gate the marks of the partitions it emits that
// marks moves forward, if its generation is still gen.
func (e *Engine) reportMarks(gen int32, marks map[int]int64) error {
	for p, off := range marks {
		if ok, mark := e.opts.Gate.Emits(p); !ok || off <= mark {
			delete(marks, p)
		}
	}
	if len(marks) == 0 {
		return nil
	}
	if err := e.opts.Gate.Emitted(gen, marks); err != nil {
		return fmt.Errorf("cannot record the emission marks %v: %w", marks, err)
	}
	return nil
}

// LastSeq returns the highest sequence number given to a change record.
func (e *Engine) LastSeq() uint64 { return e.lastSeq.Load() }

// sequenceLoop sequences what evaluations put in the outbox: shortly after
// a poke (the poke comes before the builder's commit) and every 200 ms.
// Its first pass scans the whole outbox (a previous process may have left
// records); each next pass resumes at the lowest id that was still
// uncommitted when the pass before began (outboxIDs).
func (e *Engine) sequenceLoop() {
	defer e.wg.Done()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	var from uint64
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
		case <-e.seqWake:
			select {
			case <-e.ctx.Done():
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		// A partition's records up to what was moved before the pass are
		// all moved once it ends: they committed before it began (a
		// partition commits in order), so it reads them.
		var (
			marks   map[int]int64
			marksOf int32
		)
		if e.opts.Gate != nil {
			marksOf, marks = e.movedMarks()
		}
		low := e.outbox.low() // before the pass's reads, so they see every record under it
		_, held, err := e.sequenceFrom(e.ctx, from)
		if err == nil && marks != nil {
			err = e.reportMarks(marksOf, marks)
		}
		if err != nil {
			if e.ctx.Err() == nil {
				e.m.errors.Inc()
				e.logf("membership: %s", err)
			}
			continue
		}
		from = low
		if held > 0 {
			from = min(from, held) // scan it again until it is let through
		}
	}
}

// Changes calls fn with the change records of a segment whose sequence
// number is above after, in order, until fn returns false.
func (e *Engine) Changes(site, name string, after uint64, fn func(c *Change) bool) error {
	if err := checkSite(site); err != nil {
		return err
	}
	prefix := appendSegKey(nil, prefixFeed, site, name)
	var from []byte
	if after > 0 {
		from = appendFeedKey(nil, site, name, after)
	}
	var derr error
	err := e.db.ScanExtFrom(prefix, from, func(key, val []byte) bool {
		c := Change{Site: site, Segment: name}
		seq, err := parseU64(key[len(prefix):])
		if err == nil {
			err = decodeRecord(&c, val)
		}
		if err != nil {
			derr = fmt.Errorf("change record %x: %w", key, err)
			return false
		}
		c.Seq = seq
		return fn(&c)
	})
	if err == nil {
		err = derr
	}
	return err
}

// LogSink returns the Options.Sink that produces the change records to l
// (the Kafka changes topic of `affinity build`; LogHistory reads it back):
// key AppendChangeKey, value the record as JSON (AppendJSON, "seq" its
// position in the segment's feed). The sequencer calls it before it
// commits the records' numbers, so a crash between the two produces them
// again with the same seq: at-least-once, deduplicated by seq.
func LogSink(l storage.Log) func(ctx context.Context, cs []Change) error {
	return func(ctx context.Context, cs []Change) error {
		msgs := make([]storage.Message, len(cs))
		for i := range cs {
			c := &cs[i]
			msgs[i] = storage.Message{Key: AppendChangeKey(nil, c.Site, c.Segment), Value: c.AppendJSON(nil)}
		}
		return l.Append(ctx, msgs)
	}
}

// AppendChangeKey appends the message key of a segment's change records on
// the changes topic to dst: the site, '|', and the segment, as text, e.g.
// "shop|mums". Every record of a segment has the same key and so lands in
// the same partition, in seq order.
func AppendChangeKey(dst []byte, site, segment string) []byte {
	dst = append(dst, site...)
	dst = append(dst, '|')
	return append(dst, segment...)
}

// AppendJSON appends c as a JSON object:
//
//	{"seq":"12","id":"3-1200-0","site":"shop","segment":"mums","visitor":"<uuid>","email":"a@b.c",
//	 "change":"entered","at":"2026-…Z","at_ms":…,"segment_created_ms":…,"why":"event","facts":{…}}
//
// seq is a string, the cursor of the node's feed; id is the record's
// cluster-wide identity (Src: partition-offset-ordinal), null for a record
// of no partition. A per-person segment's record has "person", its key,
// after "email"; segment_created_ms (Created) is absent in a record
// stored before it.
func (c *Change) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"seq":"`...)
	dst = strconv.AppendUint(dst, c.Seq, 10)
	dst = append(dst, `","id":`...)
	if c.Src.Partition < 0 {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '"')
		dst = AppendID(dst, c.Src)
		dst = append(dst, '"')
	}
	dst = append(dst, `,"site":`...)
	dst = event.AppendJSONString(dst, c.Site)
	dst = append(dst, `,"segment":`...)
	dst = event.AppendJSONString(dst, c.Segment)
	dst = append(dst, `,"visitor":"`...)
	dst = c.Visitor.Append(dst)
	dst = append(dst, `","email":`...)
	if c.Email == "" {
		dst = append(dst, "null"...)
	} else {
		dst = event.AppendJSONString(dst, c.Email)
	}
	if c.Person != "" {
		dst = append(dst, `,"person":`...)
		dst = event.AppendJSONString(dst, c.Person)
	}
	if c.Entered {
		dst = append(dst, `,"change":"entered"`...)
	} else {
		dst = append(dst, `,"change":"left"`...)
	}
	dst = append(dst, `,"at":`...)
	dst = profile.AppendJSONTime(dst, c.At)
	dst = append(dst, `,"at_ms":`...)
	dst = strconv.AppendInt(dst, c.At, 10)
	if c.Created != 0 {
		dst = append(dst, `,"segment_created_ms":`...)
		dst = strconv.AppendInt(dst, c.Created, 10)
	}
	dst = append(dst, `,"why":`...)
	dst = event.AppendJSONString(dst, c.Why)
	dst = append(dst, `,"facts":`...)
	if c.Facts == "" {
		dst = append(dst, "{}"...)
	} else {
		dst = append(dst, c.Facts...)
	}
	return append(dst, '}')
}

// AppendID appends the text of a record's identity to dst: partition,
// offset and ordinal in decimal, joined by '-', e.g. "3-1200-0".
func AppendID(dst []byte, src state.Source) []byte {
	dst = strconv.AppendInt(dst, int64(src.Partition), 10)
	dst = append(dst, '-')
	dst = strconv.AppendInt(dst, src.Offset, 10)
	dst = append(dst, '-')
	return strconv.AppendUint(dst, uint64(src.Ord), 10)
}

package membership

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// A moved partition's memberships at its mark (issue 13). A new owner
// catches up from its own offset to the partition's emission mark, and
// the sequencer drops what those commits record: the old owners emitted
// that stretch, and the changes topic holds what they emitted. But the
// memberships those commits write are the new owner's evaluation, which
// need not be what was emitted: a segment created during the catch-up is
// evaluated by it with no record anywhere, a backfill's Visit commits
// below the mark are dropped likewise, and a time-bound rule evaluated
// later can differ. So when the partition's state is at exactly the mark
// (builder.Reconciler: before anything above it is applied, under the
// partition's lock), the owner sets each differing visitor's memberships
// to what was emitted up to the mark — the last record of each (segment,
// visitor) in the feed by source, which TakeOver's copy made the topic's —
// and evaluates it again in the same commit, as a restored person is
// (person_move.go): the differences come out as records, entries of
// members nobody announced, exits of announced members that are not
// members now, with seq and ids as usual, so webhooks and the topic carry
// them.
//
// Their ids are at the mark, with ordinals from reconcileOrdinals up, above
// every ordinal emitted there (the Gate passes a partition's records at
// its mark from that floor on: reconcileFloor). Not the offset after the
// mark: the sequencer would move the mark there, and then drop the event
// records of the visitor whose last record is at the mark, which come
// from the offset after it. The partition's later writes at the mark (a
// backfill, a due exit while no event comes) number on above them
// (state.Batch.RaiseOrdinal) and go out too. A crash mid-way: each
// visitor's restore and evaluation commit together, and the next
// reconcile counts this node's records at the mark above the floor — in
// the feed or still in the outbox, where the floor lets them through — as
// emitted, so a difference is recorded once.

// reconcileOrdinals is the lowest ordinal of a reconcile's records: above
// those of event commits (from 0) and Visit commits (on after them, or
// from state.VisitOrdinals), below personOrdinal.
const reconcileOrdinals = 3 << 30

// reconcileFloor says that a partition's records at its mark with an
// ordinal at or above ord go out: the reconcile's and what the partition
// wrote at the mark after it.
type reconcileFloor struct {
	mark int64
	ord  uint32
}

// reconciled reports whether the Gate lets c through although it is at or
// below p's mark: it is at the mark, at or above the reconcile's floor.
func (e *Engine) reconciled(p int, mark int64, src state.Source) bool {
	f := e.reconFloors.Load()
	if f == nil {
		return false
	}
	fl, ok := (*f)[p]
	return ok && fl.mark == mark && src.Offset == mark && src.Ord >= fl.ord
}

// setReconcileFloor makes fl partition p's floor. Call it under seqMu.
func (e *Engine) setReconcileFloor(p int, fl reconcileFloor) {
	floors := map[int]reconcileFloor{}
	if f := e.reconFloors.Load(); f != nil {
		floors = maps.Clone(*f)
	}
	floors[p] = fl
	e.reconFloors.Store(&floors)
}

// MarkReady implements builder.Reconciler: it returns once what was
// emitted of partition p up to mark is in the feed by source here
// (TakeOver's copy reached the mark), or when ctx ends.
func (e *Engine) MarkReady(ctx context.Context, p int, mark int64) error {
	if e.opts.History == nil || e.opts.Gate == nil {
		return nil
	}
	for logged := false; ; {
		if e.HistoryReady(p) {
			through, err := e.historyMark(p)
			if err != nil {
				return err
			}
			if through >= mark {
				return nil
			}
		}
		if !logged {
			logged = true
			e.logf("membership: partition %d reached its emission mark %d: waiting for the copy of what was emitted up to it before reconciling its memberships", p, mark)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-e.ctx.Done():
			return e.ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// emittedKey names one visitor's membership of one segment.
type emittedKey struct {
	site, segment string
	visitor       event.UUID
}

// emittedState is the last record emitted of an emittedKey.
type emittedState struct {
	entered bool
	at      int64
	email   string
}

// siteVisitor is a visitor to reconcile.
type siteVisitor struct {
	site    string
	visitor event.UUID
}

// Reconcile implements builder.Reconciler: it sets the memberships of the
// visitors of m's partition that differ from what was emitted up to the
// mark to what was emitted and evaluates them again, each in one commit,
// recording the differences. Without a changes topic or a Gate there is
// nothing to compare with, and it does nothing.
func (e *Engine) Reconcile(ctx context.Context, m *builder.Mark) error {
	if e.opts.History == nil || e.opts.Gate == nil {
		return nil
	}
	start := time.Now()
	emitted, next, err := e.emittedUpTo(m.Partition, m.Mark)
	if err != nil {
		return err
	}
	diffs, err := e.differences(m, emitted)
	if err != nil {
		return err
	}
	if src := m.Batch.RaiseOrdinal(next); src.Partition != int32(m.Partition) || src.Offset != m.Mark {
		return fmt.Errorf("BUG: partition %d at its mark %d numbers its records from %+v", m.Partition, m.Mark, src)
	}
	for _, d := range diffs {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := m.Visit(d.site, d.visitor, func(b *state.Batch, p *profile.Profile) error {
			return e.reconcileVisitor(b, d.site, d.visitor, p, emitted)
		})
		if err != nil {
			return err
		}
	}
	if len(diffs) > 0 {
		e.logf("membership: partition %d at its emission mark %d: %d visitors' memberships differed from what was emitted; recorded the differences in %s",
			m.Partition, m.Mark, len(diffs), time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// emittedUpTo returns the last record emitted of each (segment, visitor)
// of partition p's per-visitor segments up to mark, and the first ordinal
// a reconcile gives at the mark; it sets p's reconcile floor. Under seqMu,
// so the feed by source and the outbox are read as of one instant of the
// sequencer: the feed's records at the mark fix the floor, above them;
// this node's records still in the outbox at the mark from the floor on
// (an earlier reconcile's, cut by a crash) go out through it, so they
// count as emitted, and the ordinals go on after them.
func (e *Engine) emittedUpTo(p int, mark int64) (map[emittedKey]emittedState, uint32, error) {
	e.seqMu.Lock()
	defer e.seqMu.Unlock()
	segs, err := e.visitorSegments()
	if err != nil {
		return nil, 0, err
	}
	emitted := map[emittedKey]emittedState{}
	atMark := int64(-1) // the highest ordinal emitted at the mark
	for _, d := range segs {
		prefix := binary.BigEndian.AppendUint32(appendSegKey(nil, prefixFeedBy, d.Site, d.Name), uint32(p))
		var derr error
		err := e.db.ScanExtFrom(prefix, nil, func(key, val []byte) bool {
			// key: prefix | offset u64 | ordinal u32
			if len(key) != len(prefix)+12 {
				return true
			}
			off := int64(binary.BigEndian.Uint64(key[len(prefix):]))
			if off > mark {
				return false
			}
			var c Change
			if len(val) < 8 {
				derr = fmt.Errorf("feed entry %x: %d bytes", key, len(val))
				return false
			}
			if derr = decodeRecord(&c, val[8:]); derr != nil {
				derr = fmt.Errorf("feed entry %x: %w", key, derr)
				return false
			}
			if off == mark {
				atMark = max(atMark, int64(binary.BigEndian.Uint32(key[len(prefix)+8:])))
			}
			emitted[emittedKey{d.Site, d.Name, c.Visitor}] = emittedState{entered: c.Entered, at: c.At, email: c.Email}
			return true
		})
		if err == nil {
			err = derr
		}
		if err != nil {
			return nil, 0, fmt.Errorf("cannot read the feed by source of segment %q of site %q: %w", d.Name, d.Site, err)
		}
	}
	if atMark >= personOrdinal-1 {
		return nil, 0, fmt.Errorf("BUG: partition %d has a record at its mark %d with ordinal %d", p, mark, atMark)
	}
	floor := uint32(max(reconcileOrdinals, atMark+1))
	created := map[[2]string]int64{}
	for _, d := range segs {
		created[[2]string{d.Site, d.Name}] = d.Created
	}
	next := floor
	var derr error
	err = e.db.ScanExt([]byte{prefixOutbox}, func(key, val []byte) bool {
		var c Change
		if err := decodeOutbox(&c, val); err != nil {
			return true // the sequencer drops it
		}
		if c.Src.Partition != int32(p) || c.Person != "" || c.Src.Offset != mark || c.Src.Ord < floor {
			return true
		}
		if cr, ok := created[[2]string{c.Site, c.Segment}]; !ok || c.Created != 0 && c.Created != cr {
			return true // of no segment now: the sequencer drops it
		}
		if c.Src.Ord == ^uint32(0) {
			derr = fmt.Errorf("BUG: outbox record %x at the last ordinal", key)
			return false
		}
		next = max(next, c.Src.Ord+1)
		emitted[emittedKey{c.Site, c.Segment, c.Visitor}] = emittedState{entered: c.Entered, at: c.At, email: c.Email}
		return true
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return nil, 0, fmt.Errorf("cannot read the change outbox: %w", err)
	}
	e.setReconcileFloor(p, reconcileFloor{mark: mark, ord: floor})
	return emitted, next, nil
}

// visitorSegments returns the definitions of every per-visitor segment.
func (e *Engine) visitorSegments() ([]Definition, error) {
	names, err := e.segmentNames()
	if err != nil {
		return nil, fmt.Errorf("cannot list the segments: %w", err)
	}
	var segs []Definition
	for _, sn := range names {
		d, found, err := e.Definition(sn[0], sn[1])
		if err != nil {
			return nil, err
		}
		if found && d.Per == PerVisitor {
			segs = append(segs, d)
		}
	}
	return segs, nil
}

// differences returns the visitors of m's partition whose membership of
// some per-visitor segment is not what emitted says, by site and visitor.
func (e *Engine) differences(m *builder.Mark, emitted map[emittedKey]emittedState) ([]siteVisitor, error) {
	segs, err := e.visitorSegments()
	if err != nil {
		return nil, err
	}
	differ := map[siteVisitor]bool{}
	members := map[emittedKey]bool{}
	for _, d := range segs {
		err := e.Members(d.Site, d.Name, nil, func(mb *Member) bool {
			if m.Holds(d.Site, mb.Visitor) {
				k := emittedKey{d.Site, d.Name, mb.Visitor}
				members[k] = true
				if !emitted[k].entered {
					differ[siteVisitor{d.Site, mb.Visitor}] = true
				}
			}
			return true
		})
		if err != nil {
			return nil, fmt.Errorf("cannot read the members of segment %q of site %q: %w", d.Name, d.Site, err)
		}
	}
	live := map[[2]string]bool{}
	for _, d := range segs {
		live[[2]string{d.Site, d.Name}] = true
	}
	for k, st := range emitted {
		if st.entered && !members[k] && live[[2]string{k.site, k.segment}] {
			differ[siteVisitor{k.site, k.visitor}] = true
		}
	}
	diffs := slices.Collect(maps.Keys(differ))
	slices.SortFunc(diffs, func(a, b siteVisitor) int {
		return cmp.Or(strings.Compare(a.site, b.site), bytes.Compare(a.visitor[:], b.visitor[:]))
	})
	return diffs, nil
}

// reconcileVisitor adds to b the memberships of visitor as emitted, then
// its evaluation from them at the clock's now: the records of the
// differences, why "event" (what the old owner owed, or what the
// catch-up's dropped commits evaluated), "expired" when it has no profile
// any more.
func (e *Engine) reconcileVisitor(b *state.Batch, site string, visitor event.UUID, p *profile.Profile, emitted map[emittedKey]emittedState) error {
	ss, err := e.segmentsIn(b, site)
	if err != nil {
		return err
	}
	sc := e.pool.Get().(*scratch)
	defer e.pool.Put(sc)
	if err := e.loadVState(sc, site, visitor); err != nil {
		return err
	}
	old := &sc.old
	for _, sg := range ss.segs {
		if sg.per != PerVisitor {
			continue
		}
		st := emitted[emittedKey{site, sg.name, visitor}]
		i := old.find(sg.name)
		if i >= 0 && old.member[i].id != sg.id {
			old.member = slices.Delete(old.member, i, i+1) // a deleted segment's: evaluation drops it too
			i = -1
		}
		switch {
		case st.entered && i < 0:
			old.member = append(old.member, vmember{name: sg.name, id: sg.id, entered: st.at})
			email := st.email // the emitted one; the evaluation keeps a profile's
			if p != nil {
				email = p.Email
			}
			if err := e.putMember(b, sc, site, sg.name, visitor, st.at, email); err != nil {
				return err
			}
		case !st.entered && i >= 0:
			old.member = slices.Delete(old.member, i, i+1)
			sc.key = appendMemberKey(sc.key[:0], site, sg.name, visitor)
			if err := b.ExtDelete(sc.key); err != nil {
				return err
			}
		}
	}
	why := "event"
	if p == nil {
		why = whyExpired
	}
	return e.evaluateFrom(b, sc, site, visitor, p, ss, e.now(), why, false)
}

var _ builder.Reconciler = (*Engine)(nil)

package membership

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fastjson"

	"github.com/affinityhq/affinity/internal/codec"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// Per-person memberships across a move of their evaluating partition
// (DESIGN.md "Per-person segments in a build group"). A person's
// memberships, 'V' state and due mark live in the state of its
// evaluator, under its person id, not in the events state the builder
// rebuilds; so a node that starts evaluating a partition (a join, a
// leave, a SIGKILLed owner, its own restart) restores them first from the
// changes topic, which holds every per-person record the group emitted:
// the last record of each (segment, person) of the partition says whether
// the person is a member and since when — exactly the state the old
// evaluator's emissions left, which is what the new one must continue
// from. It then evaluates each restored person against the group's
// committed profiles (its key is in the record), which writes the
// visitors, 'N' keys and due marks, and re-derives a change the old
// evaluator committed but did not produce. Until that is done the
// partition's persons are neither evaluated here (their marks wait) nor
// answered for (PersonsPendingError, 503).

// PersonsPendingError says the persons of an evaluating partition are not
// answerable yet: its new evaluator is restoring their memberships from
// the changes topic. The query API answers 503.
type PersonsPendingError struct{ Partition int }

func (e *PersonsPendingError) Error() string {
	return fmt.Sprintf("the per-person memberships of partition %d are not ready: its new evaluator is still restoring them from the changes topic", e.Partition)
}

// personMoves is what RestorePersons keeps (Engine.moves).
type personMoves struct {
	mu      sync.Mutex
	held    map[int]bool // restored, and assigned to this node ever since
	pending map[int]bool // being restored
	gen     uint64       // counts the RestorePersons calls
	// restoring are the partitions whose restored persons the restore
	// itself is evaluating (under personMu).
	restoring map[int]bool
	// cancel ends the work of the previous call; run is held by a
	// restore from its first read to its end, so one restore reads the
	// topic only after the one before produced what it evaluated.
	cancel context.CancelFunc
	run    sync.Mutex
	// pos is the last position given to a per-person record of each
	// evaluating partition (personSource), and dirty those whose 'U' key
	// the next evaluation's write must update (under personMu).
	pos   map[int]int64
	dirty map[int]bool
	// awaitGen is the generation of the awaiting marks written now
	// (putAwaiting); each RestorePersons starts a new one and hands the
	// older ones again (under mu).
	awaitGen int64
}

// Marks handed to an evaluator that dies before it evaluates them would
// be lost with it (the sender deleted the visitor marks they came from),
// so the sender keeps each handed mark as an awaiting mark ('P' kind w, at
// awaitBase + the generation it was handed in, never due) and, at its next
// assignment, hands the ones of earlier generations again to their
// partitions' evaluators then, and deletes them: an evaluator that had
// evaluated one evaluates the person again (no change: no record), a new
// one evaluates it after its restore. A mark is thus kept one rebalance.
const awaitBase = 1 << 62

// awaitAt returns the at of the awaiting marks of the generation now.
func (e *Engine) awaitAt() int64 {
	e.moves.mu.Lock()
	defer e.moves.mu.Unlock()
	return awaitBase + e.moves.awaitGen
}

// putAwaiting adds to b the awaiting marks of handed (handed mark keys)
// at at (awaitAt when their round began: a round that began before an
// assignment hands to the evaluators of the generation before).
func (e *Engine) putAwaiting(b *state.Batch, at int64, handed [][]byte) error {
	var m mark
	for _, k := range handed {
		if err := parseMarkKey(&m, k); err != nil {
			return fmt.Errorf("BUG: %w", err)
		}
		key := codec.AppendString(appendMarkKey(nil, at, 0, m.site, markAwaiting), m.why)
		key = codec.AppendString(codec.AppendString(key, m.gone), m.person)
		if err := b.ExtSet(key, nil); err != nil {
			return err
		}
	}
	return nil
}

// handAgain hands the awaiting marks of generations before gen to the
// evaluators of their partitions now, and deletes them.
func (e *Engine) handAgain(ctx context.Context, group Persons, gen int64) error {
	// A round that began in the generation before ends first: its marks
	// are of that generation.
	e.personBarrier()
	from := binary.BigEndian.AppendUint64([]byte{prefixMark}, awaitBase-1)
	from = append(from, 0xff)
	var (
		m      mark
		keys   [][]byte
		handed = map[int][][]byte{}
		perr   error
	)
	err := e.db.ScanExtFrom([]byte{prefixMark}, from, func(key, _ []byte) bool {
		if perr = parseMarkKey(&m, key); perr != nil {
			return false
		}
		if m.at >= awaitBase+gen {
			return false
		}
		p := PersonPartition(m.site, m.person, group.Partitions())
		handed[p] = append(handed[p], appendHandedMark(nil, m.site, m.why, m.gone, m.person))
		keys = append(keys, slices.Clone(key))
		return true
	})
	if err == nil {
		err = perr
	}
	if err != nil {
		return fmt.Errorf("cannot read the awaiting person marks: %w", err)
	}
	for p, ks := range handed {
		for chunk := range slices.Chunk(ks, 1024) {
			if err := group.HandOff(ctx, p, chunk); err != nil {
				return fmt.Errorf("cannot hand %d awaiting person marks again to the evaluator of partition %d: %w", len(chunk), p, err)
			}
		}
	}
	for chunk := range slices.Chunk(keys, 1024) {
		b := e.db.NewBatch()
		for _, k := range chunk {
			if err := b.ExtDelete(k); err != nil {
				return err
			}
		}
		if err := b.Commit(); err != nil {
			return fmt.Errorf("cannot delete %d awaiting person marks: %w", len(chunk), err)
		}
	}
	if len(keys) > 0 {
		e.logf("membership: handed %d person marks of the generation before again to their evaluators", len(keys))
	}
	return nil
}

// personOrdinal is the ordinal of every per-person record's source: no
// visitor's record has it (theirs count from 0, or from
// state.VisitOrdinals), so a person's "id" never equals a visitor's.
const personOrdinal = math.MaxUint32

// personSource returns the source of the next record of the person of key
// on site: in a build group its evaluating partition, that partition's
// next position and personOrdinal — so the group's feed reads a
// partition's persons' records in order after a cursor's position, as it
// reads a visitor's; without a group, no partition. Call it under
// personMu.
func (e *Engine) personSource(site, key string) (state.Source, error) {
	group := e.persons.Load()
	if group == nil {
		return state.Source{Partition: -1}, nil
	}
	p := PersonPartition(site, key, (*group).Partitions())
	pos, err := e.personPosition(p)
	if err != nil {
		return state.Source{}, err
	}
	e.moves.pos[p] = pos + 1
	e.moves.dirty[p] = true
	return state.Source{Partition: int32(p), Offset: pos + 1, Ord: personOrdinal}, nil
}

// personPosition returns the last position given to a record of
// evaluating partition p, read from its 'U' key the first time.
func (e *Engine) personPosition(p int) (int64, error) {
	if pos, ok := e.moves.pos[p]; ok {
		return pos, nil
	}
	if e.moves.pos == nil {
		e.moves.pos, e.moves.dirty = map[int]int64{}, map[int]bool{}
	}
	var pos int64
	v, ok, err := e.db.Ext(appendPersonAtKey(nil, p), nil)
	if err == nil && ok {
		r := newReader("per-person record position", v)
		version(&r)
		pos = r.Varint()
		err = end(&r)
	}
	if err != nil {
		return 0, fmt.Errorf("cannot read the per-person record position of partition %d: %w", p, err)
	}
	e.moves.pos[p] = pos
	return pos, nil
}

// appendPersonAtKey: 'Q' | partition u32 (prefixPersonAt).
func appendPersonAtKey(dst []byte, p int) []byte {
	return binary.BigEndian.AppendUint32(append(dst, prefixPersonAt), uint32(p))
}

// putPersonPositions adds to b the positions personSource moved since the
// last write (under personMu), so they commit with the records.
func (e *Engine) putPersonPositions(b *state.Batch) error {
	for p := range e.moves.dirty {
		if err := b.ExtSet(appendPersonAtKey(nil, p), codec.AppendVarint([]byte{valueVersion}, e.moves.pos[p])); err != nil {
			return err
		}
	}
	clear(e.moves.dirty)
	return nil
}

// RestorePersons starts restoring, in the background, the per-person
// memberships of each evaluating partition of marks (the partitions
// assigned to this node now) that it did not hold since its last
// assignment; PersonsReady reports false for those partitions until done,
// and the person evaluator leaves their persons' marks waiting. A failed
// read of the changes topic is retried until ctx ends (the generation
// ended). Each call also hands again the marks this node handed before it
// (handAgain). It does nothing without a build group (Options.Persons),
// and restores nothing without a changes topic (Options.History). A
// cluster member calls it at each
// assignment, beside TakeOver; a restart restores again (its own records
// are produced first, so the topic's are at least as new as its state).
func (e *Engine) RestorePersons(ctx context.Context, marks map[int]int64) {
	p := e.persons.Load()
	if p == nil {
		return
	}
	n := (*p).Partitions()
	m := &e.moves
	m.mu.Lock()
	m.gen++
	gen := m.gen
	held := map[int]bool{}
	todo := map[int]bool{}
	for part := range marks {
		if m.held[part] || e.opts.History == nil { // no topic: nothing to restore from
			held[part] = true
		} else {
			todo[part] = true
		}
	}
	m.held, m.pending = held, maps.Clone(todo)
	if m.cancel != nil {
		m.cancel() // the previous assignment's restore and hand-again
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(e.ctx, cancel)
	m.cancel = func() { stop(); cancel() }
	m.awaitGen++
	awaitGen := m.awaitGen
	m.mu.Unlock()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for ctx.Err() == nil {
			err := e.handAgain(ctx, *p, awaitGen)
			if err == nil || ctx.Err() != nil {
				return
			}
			e.logf("membership: %s; retrying", err)
			if !e.sleep(time.Second, ctx.Done()) {
				return
			}
		}
	}()
	if len(todo) == 0 {
		return
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		m.run.Lock()
		defer m.run.Unlock()
		start := time.Now()
		for ctx.Err() == nil {
			st, err := e.restorePersons(ctx, todo, n)
			if err == nil {
				e.logf("membership: restored %d per-person memberships of %d persons of partitions %v from %d records of the changes topic in %s",
					st.members, st.persons, sortedParts(todo), st.records, time.Since(start).Round(time.Millisecond))
				m.mu.Lock()
				if m.gen == gen {
					for part := range todo {
						m.held[part] = true
						delete(m.pending, part)
					}
				}
				m.mu.Unlock()
				poke(e.personWake)
				return
			}
			if ctx.Err() != nil {
				return
			}
			e.m.errors.Inc()
			e.logf("membership: partitions %v: %s; retrying", sortedParts(todo), err)
			// A newer assignment cancels ctx: its restore, waiting for run,
			// starts now rather than after this sleep.
			if !e.sleep(time.Second, ctx.Done()) {
				return
			}
		}
	}()
}

// PersonsReady reports whether the persons of evaluating partition p are
// restored here (RestorePersons is not busy with it).
func (e *Engine) PersonsReady(p int) bool {
	e.moves.mu.Lock()
	defer e.moves.mu.Unlock()
	return !e.moves.pending[p]
}

// personBarrier returns once the person evaluation running now, if any,
// has ended.
func (e *Engine) personBarrier() {
	e.personMu.Lock()
	defer e.personMu.Unlock()
}

// personsBlocked reports whether the persons of p wait for a restore: the
// evaluator must not evaluate them yet. Call it under personMu.
func (e *Engine) personsBlocked(p int) bool {
	return !e.PersonsReady(p) && !e.moves.restoring[p]
}

func sortedParts(parts map[int]bool) []int {
	var s []int
	for p := range parts {
		s = append(s, p)
	}
	slices.Sort(s)
	return s
}

// restoreStats counts a restore's work.
type restoreStats struct{ records, persons, members int }

// personSegment names one person's membership of one segment.
type personSegment struct {
	site, segment string
	person        event.UUID
}

// lastRecord is what a restore keeps of the last record of a
// personSegment.
type lastRecord struct {
	key, email string
	entered    bool
	at         int64
	order      int // its rank in the topic's order
}

// restorePersons restores the persons of the evaluating partitions parts
// (of n) from the changes topic, then evaluates them.
func (e *Engine) restorePersons(ctx context.Context, parts map[int]bool, n int) (restoreStats, error) {
	var st restoreStats
	// An evaluation that began before the partitions were pending ends
	// first; then this node's records go out: the topic is then at least as
	// new as its own state of any person it evaluated last.
	e.personBarrier()
	if _, err := e.Sequence(ctx); err != nil {
		return st, err
	}
	last, maxPos, records, err := e.readPersonRecords(ctx, parts, n)
	if err != nil {
		return st, err
	}
	st.records = records
	// Per site and person, its segments.
	type personRec struct {
		site, key string
		segs      []string
	}
	persons := map[[2]string]*personRec{} // site, person key
	for ps, r := range last {
		k := [2]string{ps.site, r.key}
		pr := persons[k]
		if pr == nil {
			pr = &personRec{site: ps.site, key: r.key}
			persons[k] = pr
		}
		pr.segs = append(pr.segs, ps.segment)
	}
	order := make([]*personRec, 0, len(persons))
	for _, pr := range persons {
		slices.Sort(pr.segs)
		order = append(order, pr)
	}
	slices.SortFunc(order, func(a, b *personRec) int {
		if c := strings.Compare(a.site, b.site); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
	st.persons = len(order)

	e.personMu.Lock()
	defer e.personMu.Unlock()
	b := e.db.NewBatch()
	inB := 0
	// This node's records of the partitions go on after the old
	// evaluators' (and after its own, if it held them before).
	for p := range parts {
		pos, err := e.personPosition(p)
		if err != nil {
			return st, err
		}
		e.moves.pos[p], e.moves.dirty[p] = max(pos, maxPos[p]), true
	}
	if err := e.putPersonPositions(b); err != nil {
		return st, err
	}
	var (
		vs       vstate
		key, val []byte
	)
	for _, pr := range order {
		ss, err := e.siteSegments(pr.site)
		if err != nil {
			return st, err
		}
		id := PersonID(pr.site, pr.key)
		vs.reset()
		newest := -1
		for _, name := range pr.segs {
			r := last[personSegment{pr.site, name, id}]
			if r.order > newest {
				newest, vs.email = r.order, r.email
			}
			key = appendMemberKey(key[:0], pr.site, name, id)
			sg := ss.find(name)
			if !r.entered || sg == nil || sg.per != PerPerson {
				if err := b.ExtDelete(key); err != nil {
					return st, err
				}
				continue
			}
			vs.member = append(vs.member, vmember{name: name, id: sg.id, entered: r.at})
			// Its visitors come with its evaluation below.
			val = appendPersonMemberValue(val[:0], r.at, r.email, pr.key, nil)
			if err := b.ExtSet(key, val); err != nil {
				return st, err
			}
			st.members++
		}
		key = appendVisitorKey(key[:0], pr.site, id)
		if len(vs.member) == 0 {
			err = b.ExtDelete(key)
		} else {
			err = b.ExtSet(key, appendVState(val[:0], &vs))
		}
		if err != nil {
			return st, err
		}
		if inB += len(pr.segs) + 1; inB >= importBatch {
			if err := b.Commit(); err != nil {
				return st, fmt.Errorf("cannot store the restored memberships: %w", err)
			}
			b, inB = e.db.NewBatch(), 0
		}
	}
	if err := b.Commit(); err != nil {
		return st, fmt.Errorf("cannot store the restored memberships: %w", err)
	}

	// Evaluate each restored person as a handed mark would (why "event":
	// a change it makes is one the old evaluator owed).
	e.moves.mu.Lock()
	e.moves.restoring = parts
	e.moves.mu.Unlock()
	defer func() {
		e.moves.mu.Lock()
		e.moves.restoring = nil
		e.moves.mu.Unlock()
	}()
	now := e.now()
	for i := 0; i < len(order); {
		j := i
		var marks []mark
		for j < len(order) && order[j].site == order[i].site && len(marks) < personBatch {
			k := appendHandedMark(nil, order[j].site, "event", "linked", order[j].key)
			marks = append(marks, mark{key: k, site: order[j].site, kind: markHanded, person: order[j].key, why: "event", gone: "linked"})
			j++
		}
		if err := ctx.Err(); err != nil {
			return st, err
		}
		if err := e.evalPersons(ctx, order[i].site, marks, now); err != nil {
			return st, fmt.Errorf("cannot evaluate the restored persons of site %q: %w", order[i].site, err)
		}
		i = j
	}
	return st, nil
}

// readPersonRecords reads the changes topic and returns the last record
// of each (segment, person) of the evaluating partitions parts (of n),
// of a per-person segment that exists here and was created at or before
// the record (an earlier segment of the name has older records), the
// highest position of a record of each partition, and how many records
// of those partitions it read. It copies the records into the feed by
// source as produced, seq 0, but for those this node emitted itself
// (which keep their seq): a partition's feed holds what its old
// evaluators emitted, as TakeOver's copy does for a visitor's.
func (e *Engine) readPersonRecords(ctx context.Context, parts map[int]bool, n int) (map[personSegment]lastRecord, map[int]int64, int, error) {
	var (
		p      fastjson.Parser
		c      Change
		logKey []byte
		count  int
		last   = map[personSegment]lastRecord{}
		maxPos = map[int]int64{}
		known  = map[[2]string]*Definition{} // nil: not a per-person segment here
	)
	cp, err := e.newFeedCopy()
	if err != nil {
		return nil, nil, 0, err
	}
	err = e.opts.History(ctx, func(v []byte) error {
		if err := ParseChangeJSON(&c, &p, v); err != nil {
			e.logf("membership: skipping a record of the changes topic: %s", err)
			return nil
		}
		if c.Person == "" {
			return nil // a visitor's, or a person's from before version 3
		}
		logKey = event.AppendLogKey(logKey[:0], c.Site, c.Visitor)
		_, erasedLeave := erasedKeyID(c.Person)
		if !parts[storage.PartitionFor(logKey, n)] || !erasedLeave && PersonID(c.Site, c.Person) != c.Visitor {
			return nil
		}
		sk := [2]string{c.Site, c.Segment}
		d, seen := known[sk]
		if !seen {
			def, found, err := e.Definition(c.Site, c.Segment)
			if err != nil {
				return err
			}
			if found && def.Per == PerPerson {
				d = &def
			}
			known[sk] = d
		}
		if d == nil || !sameSegment(&c, d.Created) {
			return nil
		}
		count++
		ps := personSegment{c.Site, c.Segment, c.Visitor}
		if erasedLeave {
			// Its last visitor was erased: it left, under the key of its
			// records before (a restore evaluates that key again, and
			// finds the person only if a visitor identified since).
			if prev, ok := last[ps]; ok {
				last[ps] = lastRecord{key: prev.key, email: prev.email, entered: false, at: c.At, order: count}
			}
		} else {
			last[ps] = lastRecord{key: c.Person, email: c.Email, entered: c.Entered, at: c.At, order: count}
		}
		if c.Src.Partition < 0 || c.Src.Ord != personOrdinal {
			return nil // evaluated outside a build group: in no partition's feed
		}
		maxPos[int(c.Src.Partition)] = max(maxPos[int(c.Src.Partition)], c.Src.Offset)
		return cp.put(&c)
	})
	if err == nil {
		err = cp.flush()
	}
	if err != nil {
		return nil, nil, count, fmt.Errorf("cannot read the per-person records of partitions %v from the changes topic: %w", sortedParts(parts), err)
	}
	return last, maxPos, count, nil
}

package membership

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/segment"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// Backfill is the progress of the evaluation of a new or changed segment
// over the site's existing profiles.
type Backfill struct {
	Gen       uint64
	total     atomic.Int64
	scanned   atomic.Int64
	done      atomic.Bool
	fromIndex atomic.Bool
	stop      atomic.Bool
	finished  chan struct{}
}

// Progress returns the profiles evaluated, the candidates found (−1 while
// they are being collected) and whether the backfill is done.
func (bf *Backfill) Progress() (scanned, total int64, done bool) {
	return bf.scanned.Load(), bf.total.Load(), bf.done.Load()
}

// FromIndex reports whether the candidates come from the interest index
// (Rule.Necessary) rather than from every profile of the site.
func (bf *Backfill) FromIndex() bool { return bf.fromIndex.Load() }

// Wait blocks until the backfill ended (done or stopped).
func (bf *Backfill) Wait() { <-bf.finished }

// BackfillOf returns the backfill of a segment started by this process,
// nil when none ran since the start.
func (e *Engine) BackfillOf(site, name string) *Backfill {
	e.bfMu.Lock()
	defer e.bfMu.Unlock()
	return e.backfills[site+"\x00"+name]
}

// startBackfill starts evaluating the site's existing profiles for d. A
// running backfill of the same segment stops first.
func (e *Engine) startBackfill(d Definition) {
	if !e.started.Load() {
		return // Start resumes it
	}
	key := d.Site + "\x00" + d.Name
	bf := &Backfill{Gen: d.Gen, finished: make(chan struct{})}
	bf.total.Store(-1)
	e.bfMu.Lock()
	if old := e.backfills[key]; old != nil {
		old.stop.Store(true)
	}
	e.backfills[key] = bf
	e.bfMu.Unlock()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer close(bf.finished)
		e.backfill(d, bf)
	}()
}

func (e *Engine) stopBackfill(site, name string) {
	e.bfMu.Lock()
	defer e.bfMu.Unlock()
	if bf := e.backfills[site+"\x00"+name]; bf != nil {
		bf.stop.Store(true)
	}
}

// resumeBackfills starts the backfills a restart interrupted: segments whose
// stored generation is past the backfilled one.
func (e *Engine) resumeBackfills() error {
	var sites []string
	last := ""
	err := e.db.ScanExt([]byte{prefixDef}, func(key, _ []byte) bool {
		r := newReader("segment key", key[1:])
		if s := str(&r); r.Err() == nil && s != last {
			sites = append(sites, s)
			last = s
		}
		return true
	})
	if err != nil {
		return err
	}
	for _, site := range sites {
		defs, err := e.definitions(site)
		if err != nil {
			return err
		}
		for _, d := range defs {
			if d.Backfilled < d.Gen {
				e.startBackfill(d)
			}
		}
	}
	return nil
}

// backfill collects the candidates of d — from the interest index when the
// rule names necessary interests, else every profile of the site — plus
// the current members, and re-evaluates each through the Visitor.
func (e *Engine) backfill(d Definition, bf *Backfill) {
	rule, ok := e.Rule(d.Site, d.Name)
	if !ok {
		return
	}
	if d.Per == PerPerson {
		if !e.backfillPersons(d, bf) {
			return
		}
		e.backfilled(d, bf)
		return
	}
	// The segment is published (startBackfill runs after): wait for the
	// commits that may have evaluated without it (evaluating).
	if err := e.evaluating.wait(e.ctx, evaluatingMaxWait); errors.Is(err, errEvaluationStuck) {
		e.logf("membership: backfill of segment %q of site %q: %s in %s; taking the candidates now", d.Name, d.Site, err, evaluatingMaxWait)
	} else if err != nil {
		return
	}
	var cands []event.UUID
	fromIndex, err := e.candidates(d.Site, rule, e.now(), func(v event.UUID, _, _ []byte) bool {
		cands = append(cands, v)
		return !bf.stop.Load() && e.ctx.Err() == nil
	})
	bf.fromIndex.Store(fromIndex)
	if err == nil {
		err = e.Members(d.Site, d.Name, nil, func(m *Member) bool {
			cands = append(cands, m.Visitor)
			return !bf.stop.Load() && e.ctx.Err() == nil
		})
	}
	if err != nil {
		e.m.errors.Inc()
		e.logf("membership: backfill of segment %q of site %q: cannot collect candidates: %s", d.Name, d.Site, err)
		return
	}
	slices.SortFunc(cands, func(a, b event.UUID) int { return bytes.Compare(a[:], b[:]) })
	cands = slices.Compact(cands)
	bf.total.Store(int64(len(cands)))
	for _, v := range cands {
		if bf.stop.Load() || e.ctx.Err() != nil {
			return
		}
		err := e.visitor.Visit(d.Site, v, func(b *state.Batch, p *profile.Profile) error {
			ss, err := e.segmentsIn(b, d.Site)
			if err != nil {
				return err
			}
			return e.reevaluate(b, d.Site, v, p, ss, e.now(), "backfill", false)
		})
		if err != nil {
			e.m.errors.Inc()
			e.logf("membership: backfill of segment %q of site %q: visitor %s: %s", d.Name, d.Site, v, err)
		}
		bf.scanned.Add(1)
	}
	e.backfilled(d, bf)
}

// backfilled stores that the backfill of d is done, unless the segment
// changed meanwhile.
func (e *Engine) backfilled(d Definition, bf *Backfill) {
	e.mu.Lock()
	defer e.mu.Unlock()
	cur, found, err := e.Definition(d.Site, d.Name)
	if err != nil || !found || cur.Gen != d.Gen {
		return
	}
	cur.Backfilled = d.Gen
	b := e.db.NewBatch()
	if err := b.ExtSet(appendSegKey(nil, prefixDef, d.Site, d.Name), appendDef(nil, &cur)); err == nil {
		err = b.Commit()
		if err != nil {
			e.logf("membership: backfill of segment %q of site %q: %s", d.Name, d.Site, err)
			return
		}
	}
	bf.done.Store(true)
}

// candidates calls fn with every profile of site that can match rule at
// instant now, until fn returns false: off the interest index when the
// rule names necessary interests (fromIndex; a visitor above several of
// them comes once per threshold, prof nil), else every profile of the site
// with its encoded profile (valid only during the call). order is the
// candidate's place in that order as bytes that compare as it (the
// visitor; off the index the term's number u16, the interest's order key
// u64 and the visitor), valid only during the call.
func (e *Engine) candidates(site string, rule *segment.Rule, now int64, fn func(v event.UUID, prof, order []byte) bool) (fromIndex bool, err error) {
	ts, fromIndex := rule.Necessary()
	for _, t := range ts {
		// A dimension left out of the index (--index-dims) has no entries
		// to find the candidates by: every profile is one.
		if d, ok := profile.ParseDim(t.Dim); !ok || !e.cfg.Indexed(d) {
			fromIndex = false
		}
	}
	if !fromIndex {
		return false, e.db.ScanVisitors(site, func(v [16]byte, prof, _ []byte) bool { return fn(v, prof, v[:]) })
	}
	stopped := false
	var order [2 + 8 + 16]byte
	for i, t := range ts {
		dim, ok := profile.ParseDim(t.Dim)
		if !ok {
			continue
		}
		maxKey := state.ScoreKey(e.cfg.LogThreshold(dim, t.Min, now))
		err := e.db.ScanInterests(site, t.Dim, t.Value, maxKey, nil, func(pos state.InterestPos) bool {
			binary.BigEndian.PutUint16(order[0:], uint16(i))
			binary.BigEndian.PutUint64(order[2:], pos.Key)
			copy(order[10:], pos.Visitor[:])
			stopped = !fn(pos.Visitor, nil, order[:])
			return !stopped
		})
		if err != nil || stopped {
			return true, err
		}
	}
	return true, nil
}

// backfillPersons evaluates the persons of the site for a per-person
// segment through the person evaluator: it marks every identified visitor
// and every current member, then runs the evaluator. It reports whether it
// finished.
func (e *Engine) backfillPersons(d Definition, bf *Backfill) bool {
	var (
		prof  profile.Profile
		marks [][]byte
		derr  error
	)
	bf.fromIndex.Store(false)
	err := e.db.ScanVisitors(d.Site, func(v [16]byte, prof0, _ []byte) bool {
		if derr = profile.DecodeProfile(&prof, prof0); derr != nil {
			derr = fmt.Errorf("cannot decode the profile of visitor %s: %w", event.UUID(v), derr)
			return false
		}
		if prof.Email != "" || prof.Customer != "" {
			marks = e.visitorMarks(marks, d.Site, []event.UUID{v}, markBackfill)
		}
		return !bf.stop.Load() && e.ctx.Err() == nil
	})
	if err == nil {
		err = derr
	}
	if err == nil {
		err = e.Members(d.Site, d.Name, nil, func(m *Member) bool {
			if m.Person != "" {
				// Id 0 is the one of due marks: one per person here too.
				marks = append(marks, appendPersonMark(nil, 0, d.Site, markMember, m.Person))
			}
			return !bf.stop.Load() && e.ctx.Err() == nil
		})
	}
	if err == nil {
		err = e.putMarks(marks)
	}
	if err == nil {
		bf.total.Store(int64(len(marks)))
		_, err = e.RunPersons(e.ctx)
	}
	if err != nil {
		e.m.errors.Inc()
		e.logf("membership: backfill of segment %q of site %q: %s", d.Name, d.Site, err)
		return false
	}
	bf.scanned.Store(int64(len(marks)))
	return !bf.stop.Load() && e.ctx.Err() == nil
}

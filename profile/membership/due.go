package membership

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// dueBatch is how many due entries RunDue reads per scan of the index.
const dueBatch = 1024

type dueEntry struct {
	due     int64
	site    string
	visitor event.UUID
}

// RunDue re-evaluates every profile whose due time is at or before the
// clock's now, each at its exact due instant (and at each later flip that
// is already past), through the Visitor, so serialised with the builder's
// apply of the same visitor. It returns how many profiles it re-evaluated.
// The scheduler calls it; tests driving the clock may too.
func (e *Engine) RunDue(ctx context.Context) (int, error) {
	if e.visitor == nil {
		return 0, fmt.Errorf("cannot run due re-evaluations: membership not started")
	}
	now := e.now()
	total := 0
	var after []byte
	for {
		var batch []dueEntry
		var perr error
		err := e.db.ScanExtFrom([]byte{prefixDue}, after, func(key, _ []byte) bool {
			due, site, v, err := parseDueKey(key)
			if err != nil {
				perr = err
				return false
			}
			if due > now {
				return false
			}
			batch = append(batch, dueEntry{due, site, v})
			after = append(after[:0], key...)
			return len(batch) < dueBatch
		})
		if err == nil {
			err = perr
		}
		if err != nil {
			return total, fmt.Errorf("cannot scan the due index: %w", err)
		}
		for _, d := range batch {
			if ctx.Err() != nil {
				return total, ctx.Err()
			}
			if err := e.runOne(d); errors.Is(err, builder.ErrNotOwner) {
				// Its partition moved to another node, which evaluates it
				// from its own state; this entry waits in case it returns.
				continue
			} else if err != nil {
				e.m.errors.Inc()
				e.logf("membership: %s", err)
				continue
			}
			total++
		}
		if len(batch) < dueBatch {
			return total, nil
		}
	}
}

// runOne re-evaluates one due visitor, unless an event moved its due since.
func (e *Engine) runOne(d dueEntry) error {
	return e.visitor.Visit(d.site, d.visitor, func(b *state.Batch, p *profile.Profile) error {
		ss, err := e.segmentsIn(b, d.site)
		if err != nil {
			return err
		}
		key := appendVisitorKey(nil, d.site, d.visitor)
		v, ok, err := e.db.Ext(key, nil)
		if err != nil {
			return err
		}
		var st vstate
		if ok {
			if err := decodeVState(&st, v); err != nil {
				return err
			}
		}
		if !ok || st.due != d.due {
			// Stale: the visitor was re-evaluated since; its current due
			// entry is elsewhere. Drop this one if it is still there.
			return b.ExtDelete(appendDueKey(nil, d.due, d.site, d.visitor))
		}
		e.m.dueRuns.Inc()
		return e.reevaluate(b, d.site, d.visitor, p, ss, d.due, "time", true)
	})
}

// firstDue returns the earliest due time in the index, never if none.
func (e *Engine) firstDue() int64 {
	first := int64(never)
	_ = e.db.ScanExtFrom([]byte{prefixDue}, nil, func(key, _ []byte) bool {
		if due, _, _, err := parseDueKey(key); err == nil {
			first = due
		}
		return false
	})
	return first
}

// dueLoop sleeps until the earliest due time (or MaxDueSleep, or a poke
// from an evaluation that set an earlier one) and runs what is due.
func (e *Engine) dueLoop() {
	defer e.wg.Done()
	for {
		if _, err := e.RunDue(e.ctx); err != nil && e.ctx.Err() == nil {
			e.logf("membership: %s", err)
		}
		first := e.firstDue()
		e.nextDue.Store(first)
		wait := e.opts.MaxDueSleep
		if first != never {
			wait = min(wait, time.Duration(first-e.now())*time.Millisecond)
		}
		if !e.sleep(wait, e.dueWake) {
			return
		}
	}
}

// sleep waits for wait, or a poke (or close) of wake; it reports false
// when the engine closes. A wait ≤ 0 — work still due after a run, whose
// evaluation failed (logged) — waits 100 ms, not spinning.
func (e *Engine) sleep(wait time.Duration, wake <-chan struct{}) bool {
	if wait <= 0 {
		wait = 100 * time.Millisecond
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-e.ctx.Done():
		return false
	case <-wake:
	case <-t.C:
	}
	return true
}

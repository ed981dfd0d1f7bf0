package membership

import (
	"bytes"
	"io"
	"slices"
	"time"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/lists"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// siteLists answers in_list for the rules of one evaluation
// (segment.Lists): each list named is looked up once per reevaluate, and
// the first error of a lookup fails the evaluation instead of deciding it.
type siteLists struct {
	store *lists.Store
	site  string
	err   error
	memo  []listAnswer
}

type listAnswer struct {
	name string
	in   bool
}

func (sl *siteLists) reset(site string) {
	sl.site, sl.err = site, nil
	sl.memo = sl.memo[:0]
}

// InList implements segment.Lists.
func (sl *siteLists) InList(name, email, customer string) bool {
	for _, a := range sl.memo {
		if a.name == name {
			return a.in
		}
	}
	in, err := sl.store.Contains(sl.site, name, email, customer)
	if err != nil {
		if sl.err == nil {
			sl.err = err
		}
		return false
	}
	sl.memo = append(sl.memo, listAnswer{name: name, in: in})
	return in
}

// Lists returns the static lists the engine's rules read with in_list.
func (e *Engine) Lists() *lists.Store { return e.lists }

// PutList stores an upload as the rows of a list (lists.Store.Put) and
// re-evaluates, in the background, the visitors whose email or customer
// id it added or removed, in every segment of the site: the returned
// Backfill follows that. A bad row refuses the upload (an *invalid.Error
// naming its line) and changes nothing. A second change of the same list
// waits for the first one's re-evaluation.
func (e *Engine) PutList(site, name string, r io.Reader, f lists.Format) (lists.Meta, *Backfill, error) {
	return e.PutListAt(site, name, r, f, e.opts.Now())
}

// PutListAt is PutList of an upload made at now (lists.Store.PutAt).
func (e *Engine) PutListAt(site, name string, r io.Reader, f lists.Format, now time.Time) (lists.Meta, *Backfill, error) {
	unlock := e.lists.Lock(site, name)
	m, err := e.lists.PutAt(site, name, r, f, now)
	if err != nil {
		unlock()
		return m, nil, err
	}
	return m, e.startListChange(m, unlock), nil
}

// DeleteList deletes a list and re-evaluates its rows' visitors as
// PutList does; found is false (and the Backfill nil) when there was no
// such list.
func (e *Engine) DeleteList(site, name string) (found bool, bf *Backfill, err error) {
	if err := lists.CheckName(name); err != nil {
		return false, nil, err
	}
	unlock := e.lists.Lock(site, name)
	m, found, err := e.lists.Delete(site, name)
	if err != nil || !found {
		unlock()
		return found, nil, err
	}
	return true, e.startListChange(m, unlock), nil
}

// ListChange returns the re-evaluation of the last change of a list this
// process started, nil when none.
func (e *Engine) ListChange(site, name string) *Backfill {
	e.bfMu.Lock()
	defer e.bfMu.Unlock()
	return e.listChanges[site+"\x00"+name]
}

// startListChange re-evaluates the visitors the change m concerns, then
// settles it and unlocks the list. Before Start it only unlocks: Start
// resumes every unsettled list.
func (e *Engine) startListChange(m lists.Meta, unlock func()) *Backfill {
	bf := &Backfill{Gen: m.Gen, finished: make(chan struct{})}
	bf.total.Store(-1)
	e.bfMu.Lock()
	e.listChanges[m.Site+"\x00"+m.Name] = bf
	e.bfMu.Unlock()
	if !e.started.Load() {
		unlock()
		close(bf.finished)
		return bf
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer close(bf.finished)
		defer unlock()
		if !e.reevaluateList(m, bf) {
			return
		}
		if err := e.lists.Settle(m); err != nil {
			e.m.errors.Inc()
			e.logf("membership: list %q of site %q: %s", m.Name, m.Site, err)
			return
		}
		bf.done.Store(true)
	}()
	return bf
}

// resumeListChanges restarts the re-evaluations a restart interrupted.
func (e *Engine) resumeListChanges() error {
	ms, err := e.lists.Unsettled()
	if err != nil {
		return err
	}
	for _, m := range ms {
		unlock := e.lists.Lock(m.Site, m.Name)
		e.startListChange(m, unlock)
	}
	return nil
}

// reevaluateList re-evaluates every segment of the site for the visitors
// linked to an email or a customer id that is in exactly one of the
// change's generations (the state's identity links). Nothing is evaluated
// when no segment of the site reads the list. It reports whether it
// finished.
func (e *Engine) reevaluateList(m lists.Meta, bf *Backfill) bool {
	ss, err := e.siteSegments(m.Site)
	if err != nil {
		e.m.errors.Inc()
		e.logf("membership: list %q of site %q: %s", m.Name, m.Site, err)
		return false
	}
	used := false
	for _, s := range ss.segs {
		used = used || slices.Contains(s.rule.Lists(), m.Name)
	}
	if !used {
		bf.total.Store(0)
		return true
	}
	var (
		cands []event.UUID
		verr  error
	)
	add := func(v [16]byte) bool {
		cands = append(cands, v)
		return true
	}
	err = e.lists.Diff(m.Site, m.Name, m.Pending, m.Gen, func(email, customer []byte) bool {
		if email != nil {
			verr = e.db.VisitorsByEmail(m.Site, string(email), add)
		} else {
			verr = e.db.VisitorsByCustomer(m.Site, string(customer), add)
		}
		return verr == nil && e.ctx.Err() == nil
	})
	if err == nil {
		err = verr
	}
	if err != nil || e.ctx.Err() != nil {
		if err != nil {
			e.m.errors.Inc()
			e.logf("membership: list %q of site %q: cannot collect the visitors it changes: %s", m.Name, m.Site, err)
		}
		return false
	}
	slices.SortFunc(cands, func(a, b event.UUID) int { return bytes.Compare(a[:], b[:]) })
	cands = slices.Compact(cands)
	bf.total.Store(int64(len(cands)))
	ok := true
	for _, v := range cands {
		if e.ctx.Err() != nil {
			return false
		}
		err := e.visitor.Visit(m.Site, v, func(b *state.Batch, p *profile.Profile) error {
			if p == nil {
				return nil // erased since: it left its segments then
			}
			ss, err := e.segmentsIn(b, m.Site)
			if err != nil {
				return err
			}
			return e.reevaluate(b, m.Site, v, p, ss, e.now(), "list", false)
		})
		if err != nil {
			ok = false
			e.m.errors.Inc()
			e.logf("membership: list %q of site %q: visitor %s: %s", m.Name, m.Site, v, err)
		}
		bf.scanned.Add(1)
	}
	if ok && ss.persons > 0 {
		// Their persons too, through the person evaluator.
		err := e.putMarks(e.visitorMarks(nil, m.Site, cands, markList))
		if err == nil {
			_, err = e.RunPersons(e.ctx)
		}
		if err != nil {
			ok = false
			e.m.errors.Inc()
			e.logf("membership: list %q of site %q: persons: %s", m.Name, m.Site, err)
		}
	}
	return ok
}

package membership

import (
	"fmt"
	"slices"
	"time"

	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/profile/segment"
	"github.com/affinityhq/affinity/storage/state"
)

// MaxNameLen bounds a segment name.
const MaxNameLen = invalid.MaxNameLen

// CheckName reports whether name is a valid segment name: 1..128 bytes of
// ASCII letters, digits, '_', '-' and '.'.
func CheckName(name string) error { return invalid.Name("segment name", name) }

func checkSite(site string) error {
	if site == "" || len(site) > state.MaxSiteLen {
		return invalid.Errorf("invalid site %q: want 1..%d bytes", site, state.MaxSiteLen)
	}
	return nil
}

// siteSegments returns the compiled segments of site, loading them on first
// use. PUT and DELETE replace the entry, so evaluations see a change at
// once.
func (e *Engine) siteSegments(site string) (*siteSegs, error) {
	e.mu.RLock()
	ss := e.sites[site]
	e.mu.RUnlock()
	if ss != nil {
		return ss, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if ss = e.sites[site]; ss != nil {
		return ss, nil
	}
	ss, err := e.loadSite(site)
	if err != nil {
		return nil, err
	}
	e.sites[site] = ss
	return ss, nil
}

func (e *Engine) loadSite(site string) (*siteSegs, error) {
	ss := &siteSegs{}
	defs, err := e.definitions(site)
	if err != nil {
		return nil, err
	}
	for _, d := range defs {
		r, err := segment.Compile(d.Source, e.opts.Rules)
		if err != nil {
			e.logf("membership: segment %q of site %q no longer compiles, skipped: %s", d.Name, site, err)
			continue
		}
		ss.segs = append(ss.segs, &seg{name: d.Name, rule: r, gen: d.Gen, id: d.ID, per: d.Per, created: d.Created})
	}
	ss.count()
	return ss, nil
}

// definitions reads the stored definitions of site in name order.
func (e *Engine) definitions(site string) ([]Definition, error) {
	if err := checkSite(site); err != nil {
		return nil, err
	}
	prefix := appendSiteKey(nil, prefixDef, site)
	var (
		defs []Definition
		derr error
	)
	err := e.db.ScanExt(prefix, func(key, val []byte) bool {
		r := newReader("segment key", key[len(prefix):])
		d := Definition{Site: site, Name: str(&r)}
		err := r.Err()
		if err == nil {
			err = decodeDef(&d, val)
		}
		if err != nil {
			derr = fmt.Errorf("segment key %q of site %q: %w", key, site, err)
			return false
		}
		defs = append(defs, d)
		return true
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read the segments of site %q: %w", site, err)
	}
	return defs, nil
}

// Definition returns the stored definition of a segment.
func (e *Engine) Definition(site, name string) (Definition, bool, error) {
	d := Definition{Site: site, Name: name}
	if err := checkSite(site); err != nil {
		return d, false, err
	}
	v, ok, err := e.db.Ext(appendSegKey(nil, prefixDef, site, name), nil)
	if err != nil || !ok {
		return d, ok, err
	}
	if err := decodeDef(&d, v); err != nil {
		return d, false, fmt.Errorf("segment %q of site %q: %w", name, site, err)
	}
	return d, true, nil
}

// Definitions returns every segment of site, in name order.
func (e *Engine) Definitions(site string) ([]Definition, error) { return e.definitions(site) }

// Rule returns the compiled rule of a segment, as evaluations use it.
func (e *Engine) Rule(site, name string) (*segment.Rule, bool) {
	ss, err := e.siteSegments(site)
	if err != nil {
		return nil, false
	}
	if s := ss.find(name); s != nil {
		return s.rule, true
	}
	return nil, false
}

// CheckRule returns the error PutPer would refuse src with (an
// *invalid.Error holding a *segment.Error), storing nothing.
func (e *Engine) CheckRule(src string) error {
	_, err := e.Compile(src)
	return err
}

// Compile compiles a rule as the engine's segments are (an *invalid.Error
// with the position when it does not compile).
func (e *Engine) Compile(src string) (*segment.Rule, error) {
	return segment.Compile(src, e.opts.Rules)
}

// Put is PutPer of a per-visitor segment.
func (e *Engine) Put(site, name, src string) (d Definition, created bool, err error) {
	return e.PutPer(site, name, src, PerVisitor)
}

// PutPer creates or changes a segment whose members are per: it compiles
// src (an *invalid.Error
// holding a *segment.Error when it does not; so is a bad site or name), stores the definition, makes live evaluation use it at
// once and starts a backfill of the site's existing profiles. created
// reports whether the segment is new. An unchanged rule is stored as is,
// without a backfill. A change of per is a new segment under the same
// name and feed: the members of the other kind go without change records
// (they were keyed by what the segment no longer counts), and the
// backfill enters the new ones.
func (e *Engine) PutPer(site, name, src string, per Per) (d Definition, created bool, err error) {
	return e.PutPerAt(site, name, src, per, e.now())
}

// PutPerAt is PutPer of a write made at now: a definition applied from
// the definitions topic carries its writer's clock, so that every node
// stores the same created and updated times.
func (e *Engine) PutPerAt(site, name, src string, per Per, now int64) (d Definition, created bool, err error) {
	if err := checkSite(site); err != nil {
		return d, false, err
	}
	if err := CheckName(name); err != nil {
		return d, false, err
	}
	rule, err := segment.Compile(src, e.opts.Rules)
	if err != nil {
		return d, false, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	old, found, err := e.Definition(site, name)
	if err != nil {
		return d, false, err
	}
	if found && old.Source == src && old.Per == per {
		return old, false, nil
	}
	perChanged := found && old.Per != per
	if !found || perChanged {
		// Keys an evaluation racing an earlier DELETE of the name left, or
		// the members of the other kind when per changed (its feed and
		// size history go on).
		for _, p := range []byte{prefixMember, prefixFeed, prefixFeedBy, prefixSizes} {
			if p != prefixMember && perChanged {
				continue
			}
			if _, err := e.db.DeleteExtPrefix(appendSegKey(nil, p, site, name)); err != nil {
				return d, false, fmt.Errorf("cannot clear segment %q of site %q: %w", name, site, err)
			}
		}
	}
	d = Definition{Site: site, Name: name, Source: src, Gen: old.Gen + 1, Backfilled: old.Backfilled, Created: now, Updated: now, Per: per}
	if found && !perChanged {
		d.Created, d.ID = old.Created, old.ID
	} else if found {
		// A new id: the memberships listed under the old one are dropped
		// at their next evaluation, not mistaken for the new kind's.
		d.Created, d.ID = old.Created, uint64(time.Now().UnixNano())
	} else {
		d.ID = uint64(time.Now().UnixNano())
	}
	b := e.db.NewBatch()
	if err := b.ExtSet(appendSegKey(nil, prefixDef, site, name), appendDef(nil, &d)); err != nil {
		return d, false, err
	}
	if err := b.Commit(); err != nil {
		return d, false, fmt.Errorf("cannot store segment %q of site %q: %w", name, site, err)
	}
	ss, err := e.loadSiteLocked(site)
	if err != nil {
		return d, false, err
	}
	nss := &siteSegs{segs: slices.Clone(ss.segs)}
	sg := &seg{name: name, rule: rule, gen: d.Gen, id: d.ID, per: per, created: d.Created}
	if i := slices.IndexFunc(nss.segs, func(s *seg) bool { return s.name == name }); i >= 0 {
		nss.segs[i] = sg
	} else {
		nss.segs = append(nss.segs, sg)
	}
	nss.count()
	e.sites[site] = nss
	e.startBackfill(d)
	return d, !found, nil
}

// loadSiteLocked is siteSegments with e.mu held.
func (e *Engine) loadSiteLocked(site string) (*siteSegs, error) {
	if ss := e.sites[site]; ss != nil {
		return ss, nil
	}
	ss, err := e.loadSite(site)
	if err != nil {
		return nil, err
	}
	e.sites[site] = ss
	return ss, nil
}

// Delete removes a segment: its definition, members, change feed and
// webhook. Evaluations stop at once; visitors' own lists forget it at
// their next evaluation. It reports whether the segment existed.
func (e *Engine) Delete(site, name string) (bool, error) {
	if err := checkSite(site); err != nil {
		return false, err
	}
	// The sequencer is held until the feed is gone: a record of the
	// segment it moves lands before the deletion, one it moves after is
	// stale (current).
	e.seqMu.Lock()
	defer e.seqMu.Unlock()
	e.mu.Lock()
	_, found, err := e.Definition(site, name)
	if err != nil || !found {
		e.mu.Unlock()
		return false, err
	}
	e.stopBackfill(site, name)
	b := e.db.NewBatch()
	_ = b.ExtDelete(appendSegKey(nil, prefixDef, site, name))
	_ = b.ExtDelete(appendSegKey(nil, prefixHook, site, name))
	_ = b.ExtDelete(appendSegKey(nil, prefixHookPos, site, name))
	if err := b.Commit(); err != nil {
		e.mu.Unlock()
		return false, fmt.Errorf("cannot delete segment %q of site %q: %w", name, site, err)
	}
	if ss, err := e.loadSiteLocked(site); err == nil {
		nss := &siteSegs{}
		for _, s := range ss.segs {
			if s.name != name {
				nss.segs = append(nss.segs, s)
			}
		}
		nss.count()
		e.sites[site] = nss
	}
	e.mu.Unlock()
	// An evaluation that read the old list may still write a member key
	// of the segment; it is found by no scan once the definition is gone,
	// and a later PUT of the same name starts by clearing the prefix.
	var errs error
	for _, p := range []byte{prefixMember, prefixFeed, prefixFeedBy, prefixSizes} {
		if _, err := e.db.DeleteExtPrefix(appendSegKey(nil, p, site, name)); err != nil {
			errs = fmt.Errorf("cannot delete the keys of segment %q of site %q: %w", name, site, err)
		}
	}
	return true, errs
}

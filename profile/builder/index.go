package builder

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/storage/state"
)

// reconcileIndex makes the interest index hold exactly the dimensions the
// Config indexes, before any partition applies a record: the entries of a
// dimension no longer indexed are dropped, those of a newly indexed one
// are rebuilt from the stored profiles, and the set is recorded. A crash
// in between leaves the old set recorded, so the next start does it again
// (both steps are idempotent). A database without a recorded set was
// written when every dimension was indexed.
func (b *Builder) reconcileIndex() error {
	db := b.opts.State
	want := b.cfg.IndexDims()
	have, ok, err := db.IndexedDims()
	if err != nil {
		return fmt.Errorf("cannot start builder: %w", err)
	}
	if !ok {
		written, err := db.HasVisitors()
		if err != nil {
			return fmt.Errorf("cannot start builder: %w", err)
		}
		have = want
		if written {
			have = nil
			for d := range profile.Dim(profile.NumDims) {
				have = append(have, d.String())
			}
		}
	}
	if slices.Equal(have, want) {
		if !ok {
			return db.SetIndexedDims(want)
		}
		return nil
	}
	for _, dim := range have {
		if slices.Contains(want, dim) {
			continue
		}
		start := time.Now()
		n, err := db.DropInterestDim(dim)
		if err != nil {
			return fmt.Errorf("cannot start builder: %w", err)
		}
		b.logf("builder: dimension %s left the interest index: %d entries dropped in %s", dim, n, time.Since(start).Round(time.Millisecond))
	}
	var add []profile.Dim
	for _, dim := range want {
		if !slices.Contains(have, dim) {
			d, _ := profile.ParseDim(dim)
			add = append(add, d)
		}
	}
	if len(add) > 0 {
		start := time.Now()
		n, err := b.rebuildIndex(add)
		if err != nil {
			return fmt.Errorf("cannot start builder: cannot rebuild the interest index of %v: %w", add, err)
		}
		b.logf("builder: interest index rebuilt for %v: %d entries in %s", add, n, time.Since(start).Round(time.Millisecond))
	}
	if err := db.SetIndexedDims(want); err != nil {
		return fmt.Errorf("cannot start builder: %w", err)
	}
	return nil
}

// rebuildIndex puts the interest index entries of dims for every stored
// profile.
func (b *Builder) rebuildIndex(dims []profile.Dim) (int, error) {
	db := b.opts.State
	w, err := db.NewIndexWriter()
	if err != nil {
		return 0, err
	}
	var p profile.Profile
	var werr error
	err = db.ScanAllVisitors(func(site string, visitor [16]byte, prof []byte) bool {
		if err := profile.DecodeProfile(&p, prof); err != nil {
			b.logf("builder: visitor %x of site %q: stored profile unreadable, not indexed: %s", visitor, site, err)
			return true
		}
		for _, d := range dims {
			for i := range p.Dims[d] {
				e := &p.Dims[d][i]
				if g := e.LogG(); !math.IsInf(g, -1) {
					if werr = w.Put(site, d.String(), e.Value, state.ScoreKey(g), visitor); werr != nil {
						return false
					}
				}
			}
		}
		return true
	})
	if err = errors.Join(err, werr); err != nil {
		w.Cancel()
		return 0, err
	}
	return w.Flush()
}

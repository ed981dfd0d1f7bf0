package builder

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/storage/state"
)

// loadIndex rebuilds the interest index, which the state keeps in memory,
// from every stored profile, before any partition applies a record: the
// entries of the dimensions the Config indexes. Until it is done
// ScanInterests answers state.ErrInterestsNotLoaded (503 on /v1/interests).
func (b *Builder) loadIndex() error {
	start := time.Now()
	n, visitors, err := b.rebuildIndex()
	if err != nil {
		return fmt.Errorf("cannot start builder: cannot rebuild the interest index: %w", err)
	}
	took := time.Since(start)
	b.logf("builder: interest index of %v rebuilt from %d profiles: %d entries in %s (%.0f profiles/s)",
		b.cfg.IndexDims(), visitors, n, took.Round(time.Millisecond), float64(visitors)/max(took.Seconds(), 1e-9))
	return nil
}

// rebuildIndex puts the interest index entries of the indexed dimensions
// of every stored profile.
func (b *Builder) rebuildIndex() (entries, visitors int, err error) {
	db := b.opts.State
	w, err := db.NewIndexWriter()
	if err != nil {
		return 0, 0, err
	}
	var dims []profile.Dim
	for d := range profile.Dim(profile.NumDims) {
		if b.cfg.Indexed(d) {
			dims = append(dims, d)
		}
	}
	var p profile.Profile
	var werr error
	err = db.ScanAllVisitors(func(site string, visitor [16]byte, prof []byte) bool {
		visitors++
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
		return 0, 0, err
	}
	return w.Flush(), visitors, nil
}

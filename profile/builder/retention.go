package builder

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

const dayMs = int64(24 * time.Hour / time.Millisecond)

// idleDay returns the retention index day of a last event at ms: Unix
// days, 0 for any time before 1970.
func idleDay(ms int64) uint32 {
	if ms <= 0 {
		return 0
	}
	return uint32(min(ms/dayMs, 1<<32-1))
}

// moveIdle adds to the batch the move of en's retention index entry to the
// day of its last event: nothing when that day did not change, the common
// case.
func (pt *partition) moveIdle(en *entry) {
	d := idleDay(en.prof.LastSeen)
	if en.idleIndexed && en.idleDay == d {
		return
	}
	if en.idleIndexed {
		pt.check(pt.batch.DeleteIdle(en.idleDay, en.site, en.visitor))
	}
	pt.check(pt.batch.PutIdle(d, en.site, en.visitor))
}

// retentionLoop sweeps the retention index every RetentionSweep.
func (b *Builder) retentionLoop(ctx context.Context) {
	defer b.wg.Done()
	t := time.NewTicker(b.opts.RetentionSweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := b.Expire(b.opts.Now()); err != nil && ctx.Err() == nil {
			b.logf("builder: retention: %s", err)
		}
	}
}

// expireBatch is how many retention index entries one sweep round reads.
const expireBatch = 1024

// Expire deletes every visitor of an owned partition whose last event is
// older than Options.Retention at now, each in one commit with its
// segments' exits (the Hook), and returns how many. Each is checked under
// its partition's lock: a visitor with a newer event keeps its profile,
// and a stale index entry (of a deleted visitor, or a day since moved) is
// dropped. A crash leaves each visitor deleted or not, never half: the
// next sweep finds the ones left. The retention loop calls it; tests may.
func (b *Builder) Expire(now time.Time) (int, error) {
	if b.opts.Retention <= 0 {
		return 0, nil
	}
	cutoff := now.UnixMilli() - b.opts.Retention.Milliseconds()
	maxDay := idleDay(cutoff)
	type idle struct {
		day     uint32
		site    string
		visitor event.UUID
	}
	expired := 0
	// Entries kept (not idle yet: the cutoff's own day) are skipped by
	// key on the next rounds of this sweep.
	kept := map[idle]bool{}
	for {
		var batch []idle
		err := b.opts.State.ScanIdle(maxDay, func(day uint32, site string, v [16]byte) bool {
			if it := (idle{day, site, v}); !kept[it] {
				batch = append(batch, it)
			}
			return len(batch) < expireBatch
		})
		if err != nil {
			return expired, fmt.Errorf("cannot read the retention index: %w", err)
		}
		if len(batch) == 0 {
			return expired, nil
		}
		for _, it := range batch {
			pt, err := b.owner(it.site, it.visitor)
			if err != nil {
				kept[it] = true // another builder's
				continue
			}
			gone, err := pt.expire(it.site, it.visitor, it.day, cutoff)
			if errors.Is(err, ErrNotOwner) {
				kept[it] = true // revoked meanwhile
				continue
			}
			if err != nil {
				return expired, err
			}
			if gone {
				expired++
			} else if it.day == maxDay {
				kept[it] = true
			}
		}
	}
}

// expire deletes the visitor if its last event is before cutoff, or drops
// the index entry of day when it is stale. It reports whether it deleted
// the visitor.
func (pt *partition) expire(site string, visitor event.UUID, day uint32, cutoff int64) (bool, error) {
	if err := pt.lockOwned(); err != nil {
		return false, err
	}
	defer pt.unlock()
	en, err := pt.entry(site, visitor)
	if err != nil {
		return false, fmt.Errorf("cannot expire visitor %s of site %q: %w", visitor, site, err)
	}
	current := en.stored && idleDay(en.prof.LastSeen) == day
	if !current {
		// Stale: deleted since, or moved to a later day (whose entry was
		// written with the move).
		if !en.stored {
			pt.cache.remove(en)
		}
		return false, dropIdle(pt.batch, day, site, visitor)
	}
	if en.prof.LastSeen >= cutoff {
		return false, nil
	}
	if err := pt.deleteLocked(en, true); err != nil {
		return false, fmt.Errorf("cannot expire visitor %s of site %q: %w", visitor, site, err)
	}
	return true, nil
}

func dropIdle(batch *state.Batch, day uint32, site string, visitor event.UUID) error {
	if err := batch.DeleteIdle(day, site, visitor); err != nil {
		return err
	}
	return batch.Commit()
}

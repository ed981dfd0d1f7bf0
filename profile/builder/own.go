package builder

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/affinityhq/affinity/tracker/event"
)

// ErrNotOwner is matched (errors.Is) by the error of a call about a
// visitor of a partition this builder does not own, or no longer owns: a
// NotOwnerError.
var ErrNotOwner = errors.New("partition not owned by this builder")

// NotOwnerError says which partition a call needed that this builder does
// not own. The query API can answer it with 503 (or, with a cluster,
// redirect to the owner).
type NotOwnerError struct {
	Partition int
}

func (e *NotOwnerError) Error() string {
	return fmt.Sprintf("partition %d not owned by this builder", e.Partition)
}

// Is makes errors.Is(err, ErrNotOwner) true.
func (e *NotOwnerError) Is(target error) bool { return target == ErrNotOwner }

// ownership is one set of owned partitions. It is never changed once
// stored in Builder.own: Own stores a new one.
type ownership struct {
	parts []*partition // by partition id; nil when not owned
	owned []*partition // ascending ids
}

func (o *ownership) add(pt *partition) {
	o.parts[pt.id] = pt
	o.owned = append(o.owned, pt)
	slices.SortFunc(o.owned, func(a, b *partition) int { return a.id - b.id })
}

// without returns a copy of o without the partitions in drop.
func (o *ownership) without(drop []*partition) *ownership {
	n := &ownership{parts: slices.Clone(o.parts)}
	for _, pt := range o.owned {
		if !slices.Contains(drop, pt) {
			n.owned = append(n.owned, pt)
		} else {
			n.parts[pt.id] = nil
		}
	}
	return n
}

// ownedParts returns the partitions owned now, by ascending id. The slice
// must not be changed.
func (b *Builder) ownedParts() []*partition { return b.own.Load().owned }

// Owned returns the ids of the partitions owned now, ascending.
func (b *Builder) Owned() []int {
	owned := b.ownedParts()
	ids := make([]int, len(owned))
	for i, pt := range owned {
		ids[i] = pt.id
	}
	return ids
}

// Serving returns the ids of the owned partitions whose state is current
// enough to answer queries, ascending: each has applied the log up to its
// end as it was when Own gave it to this builder, so a partition that
// moved here from another node answers nothing the old owner had and
// this one has not applied yet. Partitions owned from Start serve at once.
func (b *Builder) Serving() []int {
	owned := b.ownedParts()
	ids := make([]int, 0, len(owned))
	for _, pt := range owned {
		if pt.consumed.Load() >= pt.current.Load() {
			ids = append(ids, pt.id)
		}
	}
	return ids
}

// owner returns the owned partition of site's visitor, or a NotOwnerError.
func (b *Builder) owner(site string, visitor event.UUID) (*partition, error) {
	var buf [64]byte
	p := b.opts.Log.Partition(event.AppendLogKey(buf[:0], site, visitor))
	parts := b.own.Load().parts
	if p < 0 || p >= len(parts) || parts[p] == nil {
		return nil, &NotOwnerError{Partition: p}
	}
	return parts[p], nil
}

// unlock ends the read transaction of pt.visitors, which lives only as
// long as one operation under the lock, and unlocks pt.
func (pt *partition) unlock() {
	pt.visitors.Release()
	pt.mu.Unlock()
}

// lockOwned locks pt unless it has been revoked (a caller that found it in
// an older ownership): then it returns a NotOwnerError, unlocked.
func (pt *partition) lockOwned() error {
	pt.mu.Lock()
	if pt.fenced {
		pt.mu.Unlock()
		return &NotOwnerError{Partition: pt.id}
	}
	return nil
}

// checkPartitions checks that parts are distinct partitions of [0, n).
func checkPartitions(parts []int, n int) error {
	seen := make([]bool, n)
	for _, p := range parts {
		if p < 0 || p >= n {
			return fmt.Errorf("invalid partition %d: out of range [0, %d)", p, n)
		}
		if seen[p] {
			return fmt.Errorf("invalid partition %d: listed twice", p)
		}
		seen[p] = true
	}
	return nil
}

// newPartition returns partition p, not opened, with its share of the
// decoded cache when shares partitions are owned, and registers its metrics.
func (b *Builder) newPartition(p, shares int) *partition {
	pt := &partition{
		b:        b,
		id:       p,
		cache:    newCache(b.opts.CacheBytes / int64(max(shares, 1))),
		products: newProductCache(b.opts.State),
		batch:    b.opts.State.NewBatch(),
		visitors: b.opts.State.VisitorReader(),
	}
	if b.opts.Counter != nil {
		pt.counter = b.opts.Counter(p)
	}
	maxBytes, maxWrites := b.opts.State.TxnLimits()
	pt.maxBytes, pt.maxWrites = maxBytes/4, maxWrites/4
	registerPartition(b.opts.Metrics, pt)
	return pt
}

// startPartition runs pt's consumer goroutine under its own context.
func (b *Builder) startPartition(pt *partition) {
	ctx, cancel := context.WithCancel(b.ctx)
	pt.stop, pt.done = cancel, make(chan struct{})
	b.wg.Add(1)
	go func() {
		defer close(pt.done)
		pt.run(ctx)
	}()
}

// revoke stops pt for good: its goroutine finishes the batch it is
// applying (committed) and returns, then pt is fenced under its lock — a
// Visit or delete that found it before cannot commit after — its reader
// closes and its metrics go. Its cache goes with pt.
func (pt *partition) revoke() error {
	pt.stop()
	<-pt.done
	pt.mu.Lock()
	pt.fenced = true
	err := pt.reader.Close()
	pt.mu.Unlock()
	unregisterPartition(pt.b.opts.Metrics, pt)
	if err != nil {
		return fmt.Errorf("cannot close the reader of revoked partition %d: %w", pt.id, err)
	}
	return nil
}

// Own makes parts the set of owned partitions while the builder runs: the
// partitions no longer in it are revoked (each finishes and commits the
// batch it is applying, then can commit nothing more), and those new to
// it open at the offset stored in state — a partition this builder owned
// before resumes exactly from its own last commit (its state is that of
// that offset); one it never owned starts at 0, the log's first offset
// (past retention, the gap is logged). A partition in both sets goes on
// untouched. Before Start, Own sets the partitions Start opens.
//
// A consumer group member calls it with each generation's assignment, and
// with none before it rejoins: that is the fence between nodes.
func (b *Builder) Own(parts []int) error {
	b.ownMu.Lock()
	defer b.ownMu.Unlock()
	if b.closed.Load() {
		return errors.New("cannot change the owned partitions: the builder is closed")
	}
	cur := b.own.Load()
	if err := checkPartitions(parts, len(cur.parts)); err != nil {
		return fmt.Errorf("cannot change the owned partitions: %w", err)
	}
	var drop []*partition
	for _, pt := range cur.owned {
		if !slices.Contains(parts, pt.id) {
			drop = append(drop, pt)
		}
	}
	next := cur.without(drop)
	started := b.started.Load()
	// Callers see the revoked partitions gone before they stop.
	b.own.Store(next)
	var errs error
	for _, pt := range drop {
		if started {
			errs = errors.Join(errs, pt.revoke())
		} else {
			unregisterPartition(b.opts.Metrics, pt)
		}
	}
	next = &ownership{parts: slices.Clone(next.parts), owned: slices.Clone(next.owned)}
	var added []*partition
	for _, p := range parts {
		if next.parts[p] != nil {
			continue
		}
		pt := b.newPartition(p, len(parts))
		if started {
			if err := pt.open(b.ctx); err != nil {
				unregisterPartition(b.opts.Metrics, pt)
				errs = errors.Join(errs, err)
				continue
			}
			// Queries wait for what the previous owner had applied.
			if _, next, err := b.opts.Log.Offsets(b.ctx, p); err != nil {
				b.logf("builder: partition %d: cannot read the log's end: queries are served from it at once: %v", p, err)
			} else {
				pt.current.Store(next)
			}
		}
		next.add(pt)
		added = append(added, pt)
	}
	b.own.Store(next)
	if started {
		for _, pt := range added {
			b.startPartition(pt)
		}
	}
	if len(drop) > 0 || len(added) > 0 {
		b.logf("builder: owning partitions %v (revoked %d, opened %d)", b.Owned(), len(drop), len(added))
	}
	return errs
}

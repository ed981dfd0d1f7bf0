package builder

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/affinityhq/affinity/tracker/event"
)

// Erasures and rebuilds. An erasure deletes a visitor at its partition's
// owner, but the visitor's records stay in the log (Kafka retention), so a
// builder that applies the partition from below the erasure — a new owner
// rebuilding it from offset 0, a node catching up from an older state —
// would build the erased profile again. The erasure is ordered in the
// partition's log: it commits between two applied records, at the
// partition's next offset then. So the builder keeps, per partition, the
// erased visitors with that offset, and skips every record of theirs below
// it; a record at or after it is of a new profile, as on the erasing node.
// Erasures are rare: a partition with none costs a length check per
// record, one with some a map lookup.

// erasedSet holds, per partition, each erased visitor's log key (site |
// visitor, event.AppendLogKey) → the offset below which its records are
// skipped. Readers load a partition's map without a lock; a writer
// replaces it whole (copy on write) under mu.
type erasedSet struct {
	mu    sync.Mutex
	parts atomic.Pointer[[]map[string]int64]
}

func (s *erasedSet) init(partitions int) {
	parts := make([]map[string]int64, partitions)
	s.parts.Store(&parts)
}

// of returns partition p's erased visitors; nil: none. The map must not be
// changed.
func (s *erasedSet) of(p int) map[string]int64 { return (*s.parts.Load())[p] }

// raise sets key's offset in partition p to offset unless it is at least
// that already, and reports whether it changed.
func (s *erasedSet) raise(p int, key string, offset int64) bool {
	if offset <= 0 {
		return false // skips nothing
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.parts.Load()
	if cur, ok := old[p][key]; ok && cur >= offset {
		return false
	}
	m := make(map[string]int64, len(old[p])+1)
	for k, v := range old[p] {
		m[k] = v
	}
	m[key] = offset
	parts := append([]map[string]int64(nil), old...)
	parts[p] = m
	s.parts.Store(&parts)
	return true
}

// load merges the erasures fn yields, copying each partition once.
func (s *erasedSet) load(each func(fn func(site string, visitor event.UUID, partition int, offset int64)) error) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	parts := append([]map[string]int64(nil), *s.parts.Load()...)
	copied := make([]bool, len(parts))
	n := 0
	var bad error
	err := each(func(site string, visitor event.UUID, p int, offset int64) {
		if offset <= 0 {
			return
		}
		if p < 0 || p >= len(parts) {
			if bad == nil {
				bad = fmt.Errorf("invalid partition %d of the erasure of visitor %s of site %q: the log has %d", p, visitor, site, len(parts))
			}
			return
		}
		if !copied[p] {
			m := make(map[string]int64, len(parts[p])+1)
			for k, v := range parts[p] {
				m[k] = v
			}
			parts[p], copied[p] = m, true
		}
		key := string(event.AppendLogKey(nil, site, visitor))
		if parts[p][key] < offset {
			parts[p][key] = offset
			n++
		}
	})
	if err == nil {
		err = bad
	}
	if err != nil {
		return 0, fmt.Errorf("cannot read the erasures: %w", err)
	}
	s.parts.Store(&parts)
	return n, nil
}

// skipErased reports whether the record at offset of eb's visitor is from
// before that visitor's erasure, counting it; erased is the partition's
// map (non-empty), read at the batch's start.
func (pt *partition) skipErased(erased map[string]int64, eb *event.Batch, offset int64) bool {
	pt.keyBuf = event.AppendLogKey(pt.keyBuf[:0], eb.Site, eb.Visitor)
	if below, ok := erased[string(pt.keyBuf)]; !ok || offset >= below {
		return false
	}
	pt.b.m.erasedSkipped.Inc()
	return true
}

// ErasedAt returns where visitor of site was last erased, as far as this
// builder knows: its partition, and the offset of that partition's log
// below which its records are skipped (0: none known). The erasing node
// writes it into the erasure's record for the other nodes (Erased).
func (b *Builder) ErasedAt(site string, visitor event.UUID) (partition int, offset int64) {
	key := event.AppendLogKey(nil, site, visitor)
	p := b.opts.Log.Partition(key)
	if p < 0 || p >= b.opts.Log.Partitions() {
		return 0, 0
	}
	return p, b.erased.of(p)[string(key)]
}

// Erased records that visitor of site was erased when its partition's log
// was at offset — the erasing owner's next offset then (ErasedAt there):
// its records below offset are skipped from now on. It is how every node
// of a build group applies an erasure record (profile/query); Options.
// Erasures gives Start the ones recorded before. offset 0 skips nothing.
//
// When this builder owns the partition and holds a profile of the visitor
// that it did not delete for this erasure itself, that profile was built
// from records of before the erasure, and is deleted as the erasure
// deleted it at its owner: all of it when the partition has not passed
// offset (the usual case: a new owner waits for the erasures before it
// applies a partition); when it has, the builder applied records across
// the erasure before it knew of it, and the profile — which may hold
// records of after the erasure too — is deleted and the loss logged.
// Call it after Start.
func (b *Builder) Erased(site string, visitor event.UUID, partition int, offset int64) error {
	var buf [64]byte
	key := event.AppendLogKey(buf[:0], site, visitor)
	if p := b.opts.Log.Partition(key); p != partition {
		return fmt.Errorf("invalid partition %d of the erasure of visitor %s of site %q: this log has it in partition %d (another number of partitions?)", partition, visitor, site, p)
	}
	if !b.erased.raise(partition, string(key), offset) {
		return nil
	}
	pt := b.own.Load().parts[partition]
	if pt == nil || pt.lockOwned() != nil {
		return nil
	}
	defer pt.unlock()
	en, err := pt.entry(site, visitor)
	if err != nil {
		return fmt.Errorf("cannot delete erased visitor %s of site %q: %w", visitor, site, err)
	}
	if !en.stored {
		pt.cache.remove(en)
		return nil
	}
	if at := pt.consumed.Load(); at > offset {
		b.logf("builder: partition %d: applied up to offset %d before it knew that visitor %s of site %q was erased at offset %d: deleting its profile, with what it holds of after the erasure", partition, at, visitor, site, offset)
	}
	if err := pt.deleteLocked(en, false); err != nil {
		return fmt.Errorf("cannot delete erased visitor %s of site %q: %w", visitor, site, err)
	}
	return nil
}

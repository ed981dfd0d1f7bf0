package membership

import (
	"sync"
	"weak"

	"github.com/affinityhq/affinity/storage/state"
)

// outboxIDs hands out outbox ids and knows which of them a batch not yet
// committed may hold. Ids are taken before their batch commits, so a
// record can appear in the outbox after records with higher ids were
// moved; the sequencer resumes at low, under which every record is
// committed, instead of walking from the outbox's start the deleted keys
// of every record moved before (hundreds of thousands after a backfill,
// until compaction drops them).
type outboxIDs struct {
	mu      sync.Mutex
	last    uint64 // the highest id taken
	pending []pendingIDs
}

// pendingIDs is the first id a batch took in one Generation. The batch is
// held weakly: one dropped without a Reset stops counting once collected.
type pendingIDs struct {
	batch weak.Pointer[state.Batch]
	gen   uint64
	first uint64
}

// restore sets the highest id taken, read from the outbox at open.
func (o *outboxIDs) restore(last uint64) {
	o.mu.Lock()
	o.last = last
	o.mu.Unlock()
}

// take returns the next id, for a record written into b. Only b's writer
// calls it, so b's generation cannot move meanwhile.
func (o *outboxIDs) take(b *state.Batch) uint64 {
	gen := b.Generation()
	o.mu.Lock()
	defer o.mu.Unlock()
	o.last++
	for i := range o.pending {
		if p := &o.pending[i]; p.gen == gen && p.batch.Value() == b {
			return o.last
		}
	}
	o.pending = append(o.pending, pendingIDs{batch: weak.Make(b), gen: gen, first: o.last})
	return o.last
}

// low returns the lowest id a batch not committed or dropped yet may
// hold, or the next id to take when none: every record with a lower id
// is committed, and a read begun after the call sees it.
func (o *outboxIDs) low() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	low := o.last + 1
	kept := o.pending[:0]
	for _, p := range o.pending {
		if b := p.batch.Value(); b != nil && b.Generation() == p.gen {
			kept = append(kept, p)
			low = min(low, p.first)
		}
	}
	clear(o.pending[len(kept):])
	o.pending = kept
	return low
}

package membership

import (
	"context"
	"errors"
	"sync"
	"time"
	"weak"

	"github.com/affinityhq/affinity/storage/state"
)

// evaluating knows the batches that evaluate segments in their current
// Generation, so that a backfill misses no visitor a commit evaluated
// with the site's segments of before the backfill's segment: such a
// commit may make its index entries visible after the backfill took its
// candidates (the builder evaluates, then commits). The evaluator notes
// its batch before it reads the segments (segmentsIn); the backfill,
// started after its segment was published, waits until every batch
// noted then has committed or dropped its writes (wait) and only then
// takes its candidates. A batch noted after the wait began read the
// segments after the publish, and evaluates the segment itself.
type evaluating struct {
	mu      sync.Mutex
	batches []batchGen
}

// batchGen is a batch in one Generation, held weakly: one dropped without
// a Reset stops counting once collected.
type batchGen struct {
	batch weak.Pointer[state.Batch]
	gen   uint64
}

// note records that b evaluates in its current generation. Only b's writer
// calls it, so the generation cannot move meanwhile.
func (ev *evaluating) note(b *state.Batch) {
	gen := b.Generation()
	ev.mu.Lock()
	defer ev.mu.Unlock()
	kept := ev.batches[:0]
	found := false
	for _, p := range ev.batches {
		cur := p.batch.Value()
		if cur == nil || cur.Generation() != p.gen {
			continue // committed or dropped
		}
		found = found || p.gen == gen && cur == b
		kept = append(kept, p)
	}
	clear(ev.batches[len(kept):])
	ev.batches = kept
	if !found {
		ev.batches = append(ev.batches, batchGen{batch: weak.Make(b), gen: gen})
	}
}

// wait returns once every batch noted before the call has committed or
// dropped the writes of the generation it was noted in (a commit takes
// milliseconds), or ctx.Err() when ctx ends, or errEvaluationStuck after
// maxWait: a batch that never commits (a partition stopped mid-commit)
// must not hold a backfill forever.
func (ev *evaluating) wait(ctx context.Context, maxWait time.Duration) error {
	ev.mu.Lock()
	pending := append([]batchGen(nil), ev.batches...)
	ev.mu.Unlock()
	deadline := time.Now().Add(maxWait)
	for _, p := range pending {
		for {
			b := p.batch.Value()
			if b == nil || b.Generation() != p.gen {
				break
			}
			if time.Now().After(deadline) {
				return errEvaluationStuck
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
	}
	return nil
}

var errEvaluationStuck = errors.New("an evaluation with the segments of before has not committed")

// evaluatingMaxWait bounds a backfill's wait for the commits evaluating
// with the segments of before its own.
const evaluatingMaxWait = 10 * time.Second

// segmentsIn returns the compiled segments of site for an evaluation whose
// writes go into b, noting b first (evaluating).
func (e *Engine) segmentsIn(b *state.Batch, site string) (*siteSegs, error) {
	e.evaluating.note(b)
	return e.siteSegments(site)
}

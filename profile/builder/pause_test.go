package builder_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/profile/profiletest"
)

// TestPauseWhileNotWritable holds Options.Writable failing while records
// arrive: the builder commits nothing and counts no error, its health
// stays good; once Writable passes it applies every record, once.
func TestPauseWhileNotWritable(t *testing.T) {
	var low atomic.Bool
	low.Store(true)
	e := profiletest.Open(t, profiletest.Options{Hook: profiletest.NoHook, Builder: func(o *builder.Options) {
		o.Writable = func() error {
			if low.Load() {
				return errors.New("free disk space below the floor")
			}
			return nil
		}
	}})
	for i := range 20 {
		e.Append(t, profiletest.Batch("s1", profiletest.Visitor(i%5), view(i, t0+int64(i), acme)))
	}
	time.Sleep(300 * time.Millisecond) // three pause checks
	for _, name := range []string{"affinity_builder_commits_total", "affinity_builder_events_applied_total", "affinity_builder_commit_errors_total"} {
		if n := counter(e.Metrics, name); n != 0 {
			t.Errorf("%s = %d while paused; want 0", name, n)
		}
	}
	for _, p := range e.Builder.Status().Partitions {
		if p.Consumed != 0 || p.Error != "" {
			t.Errorf("partition %d while paused: consumed %d, error %q; want 0, none", p.Partition, p.Consumed, p.Error)
		}
	}
	if got := e.Metrics.GetOrCreateGauge("affinity_builder_paused_partitions", nil).Get(); got != 2 {
		t.Errorf("affinity_builder_paused_partitions = %v; want 2", got)
	}
	low.Store(false)
	e.Wait(t)
	if n := counter(e.Metrics, "affinity_builder_events_applied_total"); n != 20 {
		t.Errorf("events applied after the pause: %d; want 20", n)
	}
	if n := counter(e.Metrics, "affinity_builder_commit_errors_total"); n != 0 {
		t.Errorf("commit errors: %d; want 0", n)
	}
}

package membership_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// A backfill over 100 000 profiles completes, with its progress visible
// while it runs, while the builder goes on applying events.
func TestBackfill100k(t *testing.T) {
	if testing.Short() {
		t.Skip("100k profiles: skipped with -short")
	}
	clk := &profiletest.Clock{}
	clk.Set(t0)
	e := openEnv(t, t.TempDir(), clk, nil)
	const n = 100_000
	bs := make([]*event.Batch, 0, 10_000)
	for i := range n {
		bs = append(bs, profiletest.Batch("shop", profiletest.Visitor(i), profiletest.Event(event.TypeView, t0, lego)))
		if len(bs) == cap(bs) {
			e.Send(t, bs...)
			bs = bs[:0]
		}
	}
	start := time.Now()
	if _, _, err := e.Segments.Put("shop", "viewers", `count(view) >= 1`); err != nil {
		t.Fatal(err)
	}
	bf := e.Segments.BackfillOf("shop", "viewers")
	// Ingest goes on: new visitors arrive during the backfill.
	for i := n; i < n+1000; i++ {
		bs = append(bs, profiletest.Batch("shop", profiletest.Visitor(i), profiletest.Event(event.TypeView, t0, lego)))
	}
	e.Send(t, bs...)
	var seen []int64
	for {
		scanned, total, done := bf.Progress()
		if done {
			break
		}
		if total > 0 && (len(seen) == 0 || seen[len(seen)-1] != scanned) {
			seen = append(seen, scanned)
		}
		time.Sleep(20 * time.Millisecond)
	}
	scanned, total, _ := bf.Progress()
	t.Logf("backfill of %d candidates in %s (%.0f profiles/s), progress samples %d", total, time.Since(start), float64(total)/time.Since(start).Seconds(), len(seen))
	if scanned != total || total < n {
		t.Errorf("backfill: scanned %d of %d; want all of ≥ %d", scanned, total, n)
	}
	if len(seen) < 2 {
		t.Errorf("progress seen %v: want it to move while running", seen)
	}
	if _, err := e.Segments.Sequence(context.Background()); err != nil {
		t.Fatal(err)
	}
	if size, _ := e.Segments.Size("shop", "viewers"); size != n+1000 {
		t.Errorf("size: got %d; want %d (backfilled + live)", size, n+1000)
	}
}

// A backfill a restart interrupted (here: the segment was stored by an
// engine that never started) runs on the next Start.
func TestBackfillResumesAfterRestart(t *testing.T) {
	dir := t.TempDir()
	clk := &profiletest.Clock{}
	clk.Set(t0)
	e := openEnv(t, dir, clk, nil)
	for i := range 50 {
		e.Send(t, profiletest.Batch("shop", profiletest.Visitor(i), profiletest.Event(event.TypeView, t0, lego)))
	}
	e.Close(t)

	db, err := state.Open(state.DefaultOptions(filepath.Join(dir, "state")))
	if err != nil {
		t.Fatal(err)
	}
	mo := membership.DefaultOptions()
	mo.State, mo.Config, mo.Now = db, profile.DefaultConfig(), clk.Now
	m, err := membership.New(mo)
	if err != nil {
		t.Fatal(err)
	}
	if _, created, err := m.Put("shop", "viewers", `count(view) >= 1`); err != nil || !created {
		t.Fatalf("Put: %v %v", created, err)
	}
	if d, _, _ := m.Definition("shop", "viewers"); d.Backfilled == d.Gen {
		t.Fatalf("backfill marked done without running")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	e = openEnv(t, dir, clk, nil)
	bf := e.Segments.BackfillOf("shop", "viewers")
	if bf == nil {
		t.Fatal("no backfill after restart")
	}
	bf.Wait()
	if size, _ := e.Segments.Size("shop", "viewers"); size != 50 {
		t.Errorf("size after the resumed backfill: got %d; want 50", size)
	}
	if d, _, _ := e.Segments.Definition("shop", "viewers"); d.Backfilled != d.Gen {
		t.Errorf("backfilled gen %d; want %d", d.Backfilled, d.Gen)
	}
}

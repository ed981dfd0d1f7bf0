package membership_test

import (
	"testing"
	"time"

	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/tracker/event"
)

// TestRetention: a visitor idle for the retention is deleted exactly once
// — across restarts — leaving its segments with "expired" records; one
// with a newer event stays.
func TestRetention(t *testing.T) {
	dir := t.TempDir()
	clk := &profiletest.Clock{}
	clk.Set(t0)
	open := func() *env {
		return &env{profiletest.Open(t, profiletest.Options{Dir: dir, Clock: clk, Builder: func(o *builder.Options) {
			o.Retention, o.Now, o.RetentionSweep = 30*24*time.Hour, clk.Now, time.Hour // the test sweeps
		}})}
	}
	e := open()
	e.put(t, "shop", "viewers", `count(view) >= 1`)
	idle, busy := profiletest.Visitor(1), profiletest.Visitor(2)
	e.Send(t,
		profiletest.Batch("shop", idle, profiletest.Event(event.TypeView, t0, lego), profiletest.Identify(t0, "idle@b.c")),
		profiletest.Batch("shop", busy, profiletest.Event(event.TypeView, t0, lego)),
	)
	e.Send(t, profiletest.Batch("shop", busy, profiletest.Event(event.TypeView, t0+20*day, lego)))
	idleEntries := func() map[event.UUID]uint32 {
		t.Helper()
		got := map[event.UUID]uint32{}
		if err := e.DB.ScanIdle(1<<32-1, func(day uint32, _ string, v [16]byte) bool { got[v] = day; return true }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := idleEntries(); len(got) != 2 || got[busy] != uint32((t0+20*day)/day) {
		t.Fatalf("retention index = %v; want one entry each, busy's moved to its last day %d", got, (t0+20*day)/day)
	}
	if n, err := e.Builder.Expire(clk.Now()); n != 0 || err != nil {
		t.Fatalf("Expire at t0 = %d, %v; want 0", n, err)
	}
	// A restart before the sweep: the index is state, the sweep finds it.
	e.Close(t)
	clk.Set(t0 + 35*day)
	e = open()
	if n, err := e.Builder.Expire(clk.Now()); n != 1 || err != nil {
		t.Fatalf("Expire at t0+35d = %d, %v; want 1 (idle since t0; busy saw t0+20d)", n, err)
	}
	if p := e.Profile(t, "shop", idle); p != nil {
		t.Fatalf("idle visitor still stored after expiry")
	}
	for range 2 {
		e.Close(t)
		e = open()
		if n, err := e.Builder.Expire(clk.Now()); n != 0 || err != nil {
			t.Fatalf("Expire again after a restart = %d, %v; want 0 (exactly once)", n, err)
		}
	}
	e.Wait(t)
	e.put(t, "shop", "other", `count(view) >= 1`) // sequences the outbox
	// Per visitor (two partitions sequence in either order).
	byVisitor := map[event.UUID][]membership.Change{}
	for _, c := range e.changes(t, "shop", "viewers") {
		byVisitor[c.Visitor] = append(byVisitor[c.Visitor], c)
	}
	checkChanges(t, byVisitor[idle], []wantChange{{idle, true, t0, "event"}, {idle, false, t0 + 35*day, "expired"}})
	checkChanges(t, byVisitor[busy], []wantChange{{busy, true, t0, "event"}})
	if c := byVisitor[idle][1]; c.Email != "idle@b.c" {
		t.Fatalf("expired record email = %q; want idle@b.c", c.Email)
	}
	if m := e.members(t, "shop", "viewers"); len(m) != 1 {
		t.Fatalf("members after expiry: %v; want busy only", m)
	}
	clk.Set(t0 + 51*day)
	if n, err := e.Builder.Expire(clk.Now()); n != 1 || err != nil {
		t.Fatalf("Expire at t0+51d = %d, %v; want 1 (busy)", n, err)
	}
	if got := idleEntries(); len(got) != 0 {
		t.Fatalf("retention index after both expired = %v; want empty", got)
	}
}

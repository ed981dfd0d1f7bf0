package membership_test

import (
	"context"
	"encoding/binary"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker"
	"github.com/affinityhq/affinity/tracker/event"
)

const (
	hour = int64(time.Hour / time.Millisecond)
	day  = 24 * hour
	// t0 is 30 days past the landmark.
	t0 = profile.Landmark + 30*day
)

// clock is a settable clock in Unix ms.
type clock struct{ ms atomic.Int64 }

func (c *clock) Now() time.Time { return time.UnixMilli(c.ms.Load()) }
func (c *clock) set(ms int64)   { c.ms.Store(ms) }

// env is a real embedded log, state DB, builder and membership engine in
// one directory.
type env struct {
	dir   string
	log   *storage.EmbeddedLog
	db    *state.DB
	b     *builder.Builder
	m     *membership.Engine
	clock *clock
	opts  membership.Options
}

func openEnv(t testing.TB, dir string, clk *clock, tune func(*membership.Options)) *env {
	t.Helper()
	lo := storage.DefaultEmbeddedOptions(filepath.Join(dir, "log"))
	lo.Partitions = 2
	l, err := storage.OpenEmbeddedLog(lo)
	if err != nil {
		t.Fatalf("cannot open log: %s", err)
	}
	db, err := state.Open(state.DefaultOptions(filepath.Join(dir, "state")))
	if err != nil {
		_ = l.Close()
		t.Fatalf("cannot open state: %s", err)
	}
	cfg := profile.DefaultConfig()
	mo := membership.DefaultOptions()
	mo.State, mo.Config, mo.Now = db, cfg, clk.Now
	mo.Logger = func(format string, args ...any) { t.Logf(format, args...) }
	if tune != nil {
		tune(&mo)
	}
	m, err := membership.New(mo)
	if err != nil {
		t.Fatalf("cannot create membership: %s", err)
	}
	bo := builder.DefaultOptions()
	bo.Log, bo.State, bo.Config, bo.Hook = l, db, cfg, m
	bo.SyncInterval = 20 * time.Millisecond
	bo.Logger = mo.Logger
	b, err := builder.New(bo)
	if err != nil {
		t.Fatalf("cannot create builder: %s", err)
	}
	if err := b.Start(); err != nil {
		t.Fatalf("cannot start builder: %s", err)
	}
	if err := m.Start(b); err != nil {
		t.Fatalf("cannot start membership: %s", err)
	}
	e := &env{dir: dir, log: l, db: db, b: b, m: m, clock: clk, opts: mo}
	t.Cleanup(func() { e.close(t) })
	return e
}

func (e *env) close(t testing.TB) {
	t.Helper()
	if e.b == nil {
		return
	}
	if err := e.m.Close(); err != nil {
		t.Errorf("membership Close: %s", err)
	}
	if err := e.b.Close(); err != nil {
		t.Errorf("builder Close: %s", err)
	}
	if err := e.log.Close(); err != nil {
		t.Errorf("log Close: %s", err)
	}
	if err := e.db.Close(); err != nil {
		t.Errorf("state Close: %s", err)
	}
	e.b = nil
}

// send appends the batch and waits until the builder applied it.
func (e *env) send(t testing.TB, batches ...*event.Batch) {
	t.Helper()
	msgs := make([]storage.Message, len(batches))
	for i, b := range batches {
		msgs[i] = storage.Message{Key: tracker.AppendLogKey(nil, b.Site, b.Visitor), Value: event.AppendBatch(nil, b)}
	}
	if err := e.log.Append(context.Background(), msgs); err != nil {
		t.Fatalf("cannot append: %s", err)
	}
	e.wait(t)
}

func (e *env) wait(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.b.WaitCaughtUp(ctx); err != nil {
		t.Fatalf("builder did not catch up: %s", err)
	}
	if _, err := e.m.Sequence(ctx); err != nil {
		t.Fatalf("Sequence: %s", err)
	}
}

// advance sets the clock to ms and runs what fell due.
func (e *env) advance(t testing.TB, ms int64) {
	t.Helper()
	e.clock.set(ms)
	if _, err := e.m.RunDue(context.Background()); err != nil {
		t.Fatalf("RunDue: %s", err)
	}
	if _, err := e.m.Sequence(context.Background()); err != nil {
		t.Fatalf("Sequence: %s", err)
	}
}

func (e *env) put(t testing.TB, site, name, rule string) {
	t.Helper()
	if _, _, err := e.m.Put(site, name, rule); err != nil {
		t.Fatalf("Put %s: %s", name, err)
	}
	if bf := e.m.BackfillOf(site, name); bf != nil {
		bf.Wait()
	}
	if _, err := e.m.Sequence(context.Background()); err != nil {
		t.Fatalf("Sequence: %s", err)
	}
}

func (e *env) members(t testing.TB, site, name string) map[event.UUID]membership.Member {
	t.Helper()
	got := map[event.UUID]membership.Member{}
	if err := e.m.Members(site, name, nil, func(m *membership.Member) bool {
		got[m.Visitor] = *m
		return true
	}); err != nil {
		t.Fatalf("Members: %s", err)
	}
	return got
}

func (e *env) changes(t testing.TB, site, name string) []membership.Change {
	t.Helper()
	var cs []membership.Change
	if err := e.m.Changes(site, name, 0, func(c *membership.Change) bool {
		cs = append(cs, *c)
		return true
	}); err != nil {
		t.Fatalf("Changes: %s", err)
	}
	return cs
}

func visitor(n int) event.UUID {
	var u event.UUID
	binary.BigEndian.PutUint64(u[:], 0x5e9<<40|uint64(n))
	binary.BigEndian.PutUint64(u[8:], uint64(n)*0x9e3779b97f4a7c15)
	return u
}

var nextID atomic.Uint64

func ev(typ event.Type, ts int64, p *event.Product) event.Event {
	var id event.UUID
	binary.BigEndian.PutUint64(id[:], nextID.Add(1)*0xbf58476d1ce4e5b9+7)
	binary.BigEndian.PutUint64(id[8:], nextID.Load())
	e := event.Event{ID: id, Type: typ, TS: ts}
	if p != nil {
		e.Product, e.HasProduct = *p, true
	}
	return e
}

func identify(ts int64, email string) event.Event {
	e := ev(event.TypeIdentify, ts, nil)
	e.Email = email
	return e
}

func batch(site string, v event.UUID, evs ...event.Event) *event.Batch {
	recv := int64(0)
	for _, e := range evs {
		recv = max(recv, e.TS)
	}
	return &event.Batch{Site: site, Visitor: v, Recv: recv, Events: evs}
}

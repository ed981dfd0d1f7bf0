package builder_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker"
	"github.com/affinityhq/affinity/tracker/event"
)

// env is a log, a state DB and a builder in one directory.
type env struct {
	dir   string
	log   *storage.EmbeddedLog
	db    *state.DB
	b     *builder.Builder
	set   *metrics.Set
	cfg   *profile.Config
	parts int
}

func openEnv(t testing.TB, dir string, parts int, hook builder.Hook) *env {
	t.Helper()
	lo := storage.DefaultEmbeddedOptions(filepath.Join(dir, "log"))
	lo.Partitions = parts
	l, err := storage.OpenEmbeddedLog(lo)
	if err != nil {
		t.Fatalf("cannot open log: %s", err)
	}
	db, err := state.Open(state.DefaultOptions(filepath.Join(dir, "state")))
	if err != nil {
		_ = l.Close()
		t.Fatalf("cannot open state: %s", err)
	}
	e := &env{dir: dir, log: l, db: db, set: metrics.NewSet(), cfg: profile.DefaultConfig(), parts: parts}
	opts := builder.DefaultOptions()
	opts.Log, opts.State, opts.Config, opts.Metrics, opts.Hook = l, db, e.cfg, e.set, hook
	opts.SyncInterval = 20 * time.Millisecond
	opts.Logger = func(format string, args ...any) { t.Logf(format, args...) }
	e.b, err = builder.New(opts)
	if err != nil {
		t.Fatalf("cannot create builder: %s", err)
	}
	if err := e.b.Start(); err != nil {
		t.Fatalf("cannot start builder: %s", err)
	}
	t.Cleanup(func() { e.close(t) })
	return e
}

func (e *env) close(t testing.TB) {
	t.Helper()
	if e.b == nil {
		return
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

// appendBatches appends each batch as one record.
func appendBatches(t testing.TB, l storage.Log, batches ...*event.Batch) {
	t.Helper()
	msgs := make([]storage.Message, len(batches))
	for i, b := range batches {
		msgs[i] = storage.Message{Key: tracker.AppendLogKey(nil, b.Site, b.Visitor), Value: event.AppendBatch(nil, b)}
	}
	if err := l.Append(context.Background(), msgs); err != nil {
		t.Fatalf("cannot append: %s", err)
	}
}

func (e *env) wait(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.b.WaitCaughtUp(ctx); err != nil {
		t.Fatalf("builder did not catch up: %s (%+v)", err, e.b.Status())
	}
}

// profileOf returns the stored profile of visitor, nil if none.
func (e *env) profileOf(t testing.TB, site string, v event.UUID) *profile.Profile {
	t.Helper()
	data, ok, err := e.db.Profile(site, v, nil)
	if err != nil {
		t.Fatalf("cannot read profile: %s", err)
	}
	if !ok {
		return nil
	}
	p := &profile.Profile{}
	if err := profile.DecodeProfile(p, data); err != nil {
		t.Fatalf("cannot decode stored profile: %s", err)
	}
	return p
}

func counter(set *metrics.Set, name string) uint64 {
	return set.GetOrCreateCounter(name).Get()
}

func visitor(n int) event.UUID {
	var u event.UUID
	binary.BigEndian.PutUint64(u[:], 0xabcdef<<32|uint64(n))
	binary.BigEndian.PutUint64(u[8:], uint64(n)*0x9e3779b97f4a7c15)
	return u
}

func eventID(n int) event.UUID {
	var u event.UUID
	binary.BigEndian.PutUint64(u[:], uint64(n)*0xbf58476d1ce4e5b9+1)
	binary.BigEndian.PutUint64(u[8:], uint64(n))
	return u
}

const t0 = profile.Landmark + 30*24*3600*1000 // 30 days past the landmark

func view(id int, ts int64, p event.Product) event.Event {
	return event.Event{ID: eventID(id), Type: event.TypeView, TS: ts, Product: p, HasProduct: true}
}

func withType(e event.Event, t event.Type) event.Event { e.Type = t; return e }

func batch(site string, v event.UUID, recv int64, evs ...event.Event) *event.Batch {
	return &event.Batch{Site: site, Visitor: v, Recv: recv, Events: evs}
}

// reference applies batches to fresh profiles in order, each event id once
// per visitor, as the builder must.
func reference(cfg *profile.Config, batches []*event.Batch) map[string]*profile.Profile {
	ref := map[string]*profile.Profile{}
	seen := map[string]bool{}
	for _, b := range batches {
		key := string(tracker.AppendLogKey(nil, b.Site, b.Visitor))
		p := ref[key]
		if p == nil {
			p = &profile.Profile{}
			ref[key] = p
		}
		for i := range b.Events {
			e := &b.Events[i]
			if seen[key+string(e.ID[:])] {
				continue
			}
			seen[key+string(e.ID[:])] = true
			p.Apply(e, cfg, b.Recv, nil)
		}
	}
	for k, p := range ref {
		if p.Empty() {
			delete(ref, k)
		}
	}
	return ref
}

// checkState compares every stored profile with ref, byte for byte, and
// checks that the interest index holds exactly the entries the profiles
// imply.
func checkState(t testing.TB, db *state.DB, ref map[string]*profile.Profile) {
	t.Helper()
	type ientry struct {
		site, dim, value string
		pos              state.InterestPos
	}
	var want []ientry
	values := map[[3]string]bool{}
	for key, p := range ref {
		site, v := key[:len(key)-17], event.UUID([]byte(key[len(key)-16:]))
		got, ok, err := db.Profile(site, v, nil)
		if err != nil || !ok {
			t.Fatalf("profile of %s/%s: ok=%v err=%v; want it stored", site, v, ok, err)
		}
		if exp := profile.AppendProfile(nil, p); !slices.Equal(got, exp) {
			var gp profile.Profile
			_ = profile.DecodeProfile(&gp, got)
			t.Fatalf("profile of %s/%s differs from the reference:\ngot  %+v\nwant %+v", site, v, gp, *p)
		}
		for d := range profile.Dim(profile.NumDims) {
			for _, en := range p.Dims[d] {
				if g := en.LogG(); !math.IsInf(g, -1) {
					k := binary.BigEndian.Uint64(profile.AppendScoreKey(nil, g))
					want = append(want, ientry{site, d.String(), en.Value, state.InterestPos{Key: k, Visitor: v}})
				}
				values[[3]string{site, d.String(), en.Value}] = true
			}
		}
	}
	var got []ientry
	for sdv := range values {
		err := db.ScanInterests(sdv[0], sdv[1], sdv[2], math.MaxUint64, nil, func(pos state.InterestPos) bool {
			got = append(got, ientry{sdv[0], sdv[1], sdv[2], pos})
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	cmp := func(a, b ientry) int {
		return cmpStrings(a.site+"\x00"+a.dim+"\x00"+a.value, b.site+"\x00"+b.dim+"\x00"+b.value, a.pos, b.pos)
	}
	slices.SortFunc(got, cmp)
	slices.SortFunc(want, cmp)
	if !slices.Equal(got, want) {
		t.Fatalf("interest index: %d entries; want %d (first difference at %s)", len(got), len(want), firstDiff(got, want))
	}
}

func cmpStrings(a, b string, pa, pb state.InterestPos) int {
	if a != b {
		if a < b {
			return -1
		}
		return 1
	}
	if pa.Key != pb.Key {
		if pa.Key < pb.Key {
			return -1
		}
		return 1
	}
	return slices.Compare(pa.Visitor[:], pb.Visitor[:])
}

func firstDiff[T comparable](a, b []T) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("%d: got %+v; want %+v", i, a[i], b[i])
		}
	}
	return fmt.Sprintf("%d (lengths)", min(len(a), len(b)))
}

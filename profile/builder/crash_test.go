package builder_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// The crash test runs the builder in a child process (this test binary,
// re-executed to run TestCrashChild) and SIGKILLs it at random instants
// while it appends records and applies them; a last child finishes the
// job. The stored profiles and index must then equal the reference: every
// record applied exactly once, every resent event id once.

const (
	crashDirEnv    = "AFFINITY_BUILDER_CRASH_DIR"
	crashTotalEnv  = "AFFINITY_BUILDER_CRASH_TOTAL"
	crashFinishEnv = "AFFINITY_BUILDER_CRASH_FINISH"
	crashParts     = 4
)

func mix(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	return x ^ x>>33
}

var (
	brands     = []string{"acme", "bebe", "cozy", "dino", "eco", "fox", "gala", "hop"}
	categories = []string{"baby/food", "baby/food/formula", "baby/toys", "kids/shoes", "kids/books", "home"}
	ages       = []string{"0-1", "1-3", "3-6", ""}
	types      = []event.Type{event.TypeView, event.TypeView, event.TypeView, event.TypeCart, event.TypeUncart, event.TypePurchase, event.TypePageview, event.TypeIdentify}
)

// genRecord returns record i of the crash stream; about one in nine is a
// client retry of an earlier record (same visitor, same event ids).
func genRecord(i int) *event.Batch {
	if i >= 10 && i%9 == 4 {
		b := genRecord(i - 3)
		b.Recv = t0 + int64(i)*1000 + 500
		return b
	}
	h := mix(uint64(i) + 1)
	v := int(h % 150)
	site := "s1"
	if v%10 == 0 {
		site = "s2"
	}
	b := &event.Batch{Site: site, Visitor: profiletest.Visitor(v), Recv: t0 + int64(i)*1000 + 500}
	n := 1 + int(h>>8%4)
	for j := range n {
		hj := mix(h + uint64(j))
		pid := int(hj % 40)
		e := event.Event{
			ID:   profiletest.EventID(i*8 + j),
			Type: types[hj>>8%uint64(len(types))],
			TS:   t0 + int64(i)*1000 + int64(j) - int64(hj>>16%5000), // late events too
		}
		switch e.Type {
		case event.TypeIdentify:
			e.Email = fmt.Sprintf("User%d@Example.com", v%40)
			e.Traits = []event.Trait{{Key: "plan", Value: strconv.Itoa(i % 3)}}
		case event.TypePageview:
			e.URL = "https://shop.example/"
		default:
			e.HasProduct = true
			e.Product = event.Product{
				ID:       "p" + strconv.Itoa(pid),
				Brand:    brands[pid%len(brands)],
				Category: categories[pid%len(categories)],
				Age:      ages[pid%len(ages)],
				Price:    float64(pid * 7 % 300),
				HasPrice: pid%5 != 0,
			}
		}
		b.Events = append(b.Events, e)
	}
	return b
}

// TestCrashChild is the child process of TestCrashExactlyOnce.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("runs only as the child of TestCrashExactlyOnce")
	}
	total, _ := strconv.Atoi(os.Getenv(crashTotalEnv))
	finish := os.Getenv(crashFinishEnv) != ""

	lo := storage.DefaultEmbeddedOptions(filepath.Join(dir, "log"))
	lo.Partitions = crashParts
	l, err := storage.OpenEmbeddedLog(lo)
	if err != nil {
		t.Fatal(err)
	}
	db, err := state.Open(state.DefaultOptions(filepath.Join(dir, "state")))
	if err != nil {
		t.Fatal(err)
	}
	opts := builder.DefaultOptions()
	opts.Log, opts.State = l, db
	opts.FetchMax = 16 // many commits: many instants to die at
	opts.SyncInterval = 10 * time.Millisecond
	b, err := builder.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}

	// Records [0, stored) made it into the log before earlier kills: each
	// Append below is one atomic group commit.
	stored := 0
	for p := range crashParts {
		_, next, err := l.Offsets(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		stored += int(next)
	}
	fmt.Println(profiletest.ChildReady) // the parent's clock for the kill starts here
	const chunk = 8
	for i := stored; i < total; i += chunk {
		var msgs []storage.Message
		for j := i; j < min(i+chunk, total); j++ {
			r := genRecord(j)
			msgs = append(msgs, storage.Message{Key: event.AppendLogKey(nil, r.Site, r.Visitor), Value: event.AppendBatch(nil, r)})
		}
		if err := l.Append(context.Background(), msgs); err != nil {
			t.Fatal(err)
		}
	}
	if !finish {
		select {} // until killed
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCrashExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	dir := t.TempDir()
	// 80k records of 1-4 events, one in nine a retry: ≥ 200k events applied.
	const total = 80000
	// Kill instants spread over the stream: each child appends and
	// applies for 0.1-1.5 s before it dies.
	profiletest.CrashRun(t, "TestCrashChild", []string{crashDirEnv + "=" + dir, crashTotalEnv + "=" + strconv.Itoa(total)}, crashFinishEnv,
		6, 1500*time.Millisecond, func() string { return progress(t, dir) })

	// A builder's start over what the kills left: it rebuilds the
	// interest index from the stored profiles, which must give the
	// index of a clean run.
	lo := storage.DefaultEmbeddedOptions(filepath.Join(dir, "log"))
	lo.Partitions = crashParts
	l, err := storage.OpenEmbeddedLog(lo)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	db, err := state.Open(state.DefaultOptions(filepath.Join(dir, "state")))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	opts := builder.DefaultOptions()
	opts.Log, opts.State = l, db
	b, err := builder.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	batches := make([]*event.Batch, total)
	events := 0
	for i := range batches {
		batches[i] = genRecord(i)
		events += len(batches[i].Events)
	}
	if events < 200000 {
		t.Fatalf("the stream holds %d events; the crash test wants at least 200k", events)
	}
	t.Logf("%d events in %d records, applied across 6 SIGKILLs", events, total)
	ref := reference(profile.DefaultConfig(), batches)
	checkState(t, db, profile.DefaultConfig(), ref)
	// Every identified visitor is linked from its email.
	for key, p := range ref {
		if p.Email == "" {
			continue
		}
		site, v := splitLogKey(t, key)
		found := false
		_ = db.VisitorsByEmail(site, p.Email, func(u [16]byte) bool { found = found || u == v; return true })
		if !found {
			t.Fatalf("visitor %s of %s not linked from %q", v, site, p.Email)
		}
	}
}

// progress opens the state read-only-ish to report how far the builder got.
func progress(t *testing.T, dir string) string {
	db, err := state.Open(state.DefaultOptions(filepath.Join(dir, "state")))
	if err != nil {
		return "state not readable yet: " + err.Error()
	}
	defer db.Close()
	sum := int64(0)
	for p := range crashParts {
		n, _ := db.Offset(p)
		sum += n
	}
	return fmt.Sprintf("%d records consumed", sum)
}

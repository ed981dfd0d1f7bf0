package state_test

import (
	"encoding/binary"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/affinityhq/affinity/storage/state"
)

// BenchmarkVisitorUnderCommits measures a lookup's read (DB.Visitor of a
// random stored visitor) while a writer commits batches as the builder
// does (a profile in the value log and six interest-index entries per
// visitor, half a transaction per commit), without and with the visitor
// cache. A Badger read takes the DB's lock, which a memtable rotation
// holds while it allocates and zeroes the next memtable's arena, and
// waits for the commits in flight to be applied: without the cache the
// read's tail (p99.9, max) is that wait.
func BenchmarkVisitorUnderCommits(b *testing.B) {
	for _, c := range []struct {
		name  string
		bytes int64
	}{{"cache=off", -1}, {"cache=on", 64 << 20}} {
		b.Run(c.name, func(b *testing.B) { benchVisitorUnderCommits(b, c.bytes) })
	}
}

func benchVisitorUnderCommits(b *testing.B, cacheBytes int64) {
	const visitors = 20_000
	opts := state.DefaultOptions(filepath.Join(b.TempDir(), "state"))
	opts.VisitorCacheBytes = cacheBytes
	db, err := state.Open(opts)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	prof := make([]byte, 600) // a profile with its dedup list: in the value log
	visitor := func(n int) (v [16]byte) {
		binary.BigEndian.PutUint64(v[8:], uint64(n))
		return v
	}
	var round atomic.Uint64
	write := func(bt *state.Batch, from int) int {
		bt.Reset()
		n := from
		for ; !bt.Full(); n++ {
			v := visitor(n % visitors)
			binary.BigEndian.PutUint64(prof, round.Add(1))
			if err := bt.PutVisitor("s1", v, prof, nil); err != nil {
				b.Fatal(err)
			}
			for d := range 6 {
				if err := bt.PutInterest("s1", "brand", "b"+string(rune('a'+d)), uint64(n), v); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := bt.Commit(); err != nil {
			b.Fatal(err)
		}
		return n
	}
	bt := db.NewBatch()
	for n := 0; n < visitors; {
		n = write(bt, n)
	}

	var (
		stop    atomic.Bool
		wg      sync.WaitGroup
		commits int64
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		bt := db.NewBatch()
		for n := 0; !stop.Load(); commits++ {
			n = write(bt, n)
		}
	}()
	lat := make([]time.Duration, 0, b.N)
	var dst []byte
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		t := time.Now()
		v, ok, err := db.Visitor("s1", visitor(int(uint64(i)*2654435761%visitors)), dst)
		if err != nil || !ok {
			b.Fatalf("visitor %d: ok %v, err %v", i, ok, err)
		}
		dst = v.Buf[:0]
		lat = append(lat, time.Since(t))
	}
	elapsed := time.Since(start)
	b.StopTimer()
	stop.Store(true)
	wg.Wait()
	slices.Sort(lat)
	q := func(f float64) float64 { return float64(lat[min(len(lat)-1, int(f*float64(len(lat))))]) / 1e3 }
	b.ReportMetric(q(0.5), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
	b.ReportMetric(q(0.999), "p99.9-µs")
	b.ReportMetric(float64(lat[len(lat)-1])/1e3, "max-µs")
	b.ReportMetric(float64(commits)/elapsed.Seconds(), "commits/s")
}

// BenchmarkScanInterestsPage measures one page of /v1/interests as
// ScanInterests reads it: the first 100 or 1000 entries of a value of
// 100 000 visitors, and 100 after a cursor in the middle.
func BenchmarkScanInterestsPage(b *testing.B) {
	const entries = 100_000
	db, err := state.Open(state.DefaultOptions(filepath.Join(b.TempDir(), "state")))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	loadInterests(b, db)
	bt := db.NewBatch()
	var mid state.InterestPos
	for n := range entries {
		var v [16]byte
		binary.BigEndian.PutUint64(v[8:], uint64(n))
		key := uint64(n) * 2654435761 % (1 << 40) // scattered, as scores are
		if n == entries/2 {
			mid = state.InterestPos{Key: key, Visitor: v}
		}
		if err := bt.PutInterest("s1", "brand", "acme", key, v); err != nil {
			b.Fatal(err)
		}
		if bt.Full() || n%2000 == 1999 {
			if err := bt.Commit(); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := bt.Commit(); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		limit int
		after *state.InterestPos
	}{{"first100", 100, nil}, {"first1000", 1000, nil}, {"after100", 100, &mid}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				n := 0
				err := db.ScanInterests("s1", "brand", "acme", ^uint64(0), c.after, func(state.InterestPos) bool {
					n++
					return n < c.limit
				})
				if err != nil || n != c.limit {
					b.Fatalf("read %d entries, err %v; want %d", n, err, c.limit)
				}
			}
		})
	}
}

package state_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/affinityhq/affinity/storage/state"
)

// TestInterestIndexCommits: a commit's puts and deletes apply in their
// order, a put of an entry held counts once, a delete of one not held
// does nothing, and sets of other values, dimensions and sites are apart.
func TestInterestIndexCommits(t *testing.T) {
	type op struct {
		del              bool
		site, dim, value string
		key              uint64
		v                byte
	}
	put := func(value string, key uint64, v byte) op { return op{false, "s1", "brand", value, key, v} }
	del := func(value string, key uint64, v byte) op { return op{true, "s1", "brand", value, key, v} }
	for _, tc := range []struct {
		name    string
		commits [][]op
		want    []state.InterestPos // of s1/brand/acme
		entries int64
	}{
		{"one put", [][]op{{put("acme", 5, 1)}}, []state.InterestPos{{Key: 5, Visitor: vis(1)}}, 1},
		{"put twice", [][]op{{put("acme", 5, 1), put("acme", 5, 1)}, {put("acme", 5, 1)}}, []state.InterestPos{{Key: 5, Visitor: vis(1)}}, 1},
		{"best key first, ties by visitor", [][]op{{put("acme", 9, 1), put("acme", 3, 7), put("acme", 3, 2)}},
			[]state.InterestPos{{Key: 3, Visitor: vis(2)}, {Key: 3, Visitor: vis(7)}, {Key: 9, Visitor: vis(1)}}, 3},
		{"move in one commit", [][]op{{put("acme", 5, 1)}, {del("acme", 5, 1), put("acme", 2, 1)}}, []state.InterestPos{{Key: 2, Visitor: vis(1)}}, 1},
		{"put then delete in one commit", [][]op{{put("acme", 5, 1), del("acme", 5, 1)}}, nil, 0},
		{"delete of an entry not held", [][]op{{put("acme", 5, 1)}, {del("acme", 6, 1), del("acme", 5, 2)}}, []state.InterestPos{{Key: 5, Visitor: vis(1)}}, 1},
		{"other sets apart", [][]op{{put("acme", 5, 1), put("acm", 1, 2), put("acmex", 1, 3),
			{false, "s2", "brand", "acme", 1, 4}, {false, "s1", "category", "acme", 1, 5}}}, []state.InterestPos{{Key: 5, Visitor: vis(1)}}, 5},
		{"mixed sets in one commit", [][]op{{put("acme", 5, 1), put("other", 1, 1), put("acme", 4, 2), del("other", 1, 1), del("acme", 5, 1)}},
			[]state.InterestPos{{Key: 4, Visitor: vis(2)}}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := openDB(t, t.TempDir())
			loadInterests(t, db)
			b := db.NewBatch()
			for _, c := range tc.commits {
				for _, o := range c {
					var err error
					if o.del {
						err = b.DeleteInterest(o.site, o.dim, o.value, o.key, vis(o.v))
					} else {
						err = b.PutInterest(o.site, o.dim, o.value, o.key, vis(o.v))
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				if b.Len() != 0 {
					t.Fatalf("Len = %d; want 0 (index entries are not Badger writes)", b.Len())
				}
				commit(t, b)
			}
			var got []state.InterestPos
			if err := db.ScanInterests("s1", "brand", "acme", ^uint64(0), nil, func(pos state.InterestPos) bool {
				got = append(got, pos)
				return true
			}); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("entries %v; want %v", got, tc.want)
			}
			if n := db.InterestEntries(); n != tc.entries {
				t.Errorf("InterestEntries = %d; want %d", n, tc.entries)
			}
		})
	}
}

// TestInterestIndexLoad: until a rebuild flushed, ScanInterests refuses
// (never a partial answer); a rebuild starts from an empty index.
func TestInterestIndexLoad(t *testing.T) {
	db := openDB(t, t.TempDir())
	scan := func() ([]state.InterestPos, error) {
		var got []state.InterestPos
		err := db.ScanInterests("s1", "brand", "acme", ^uint64(0), nil, func(pos state.InterestPos) bool {
			got = append(got, pos)
			return true
		})
		return got, err
	}
	if _, err := scan(); !errors.Is(err, state.ErrInterestsNotLoaded) || db.InterestsLoaded() {
		t.Fatalf("scan before the rebuild: %v (loaded %v); want ErrInterestsNotLoaded", err, db.InterestsLoaded())
	}
	b := db.NewBatch()
	_ = b.PutInterest("s1", "brand", "acme", 1, vis(9)) // before the rebuild: the rebuild replaces it
	commit(t, b)
	w, err := db.NewIndexWriter()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Put("s1", "brand", "acme", 7, vis(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := scan(); !errors.Is(err, state.ErrInterestsNotLoaded) {
		t.Fatalf("scan during the rebuild: %v; want ErrInterestsNotLoaded", err)
	}
	if err := w.Put("", "brand", "acme", 7, vis(1)); err == nil {
		t.Fatal("Put of an empty site accepted")
	}
	if n := w.Flush(); n != 1 {
		t.Fatalf("Flush = %d entries; want 1", n)
	}
	got, err := scan()
	if want := []state.InterestPos{{Key: 7, Visitor: vis(1)}}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("scan after the rebuild = %v, %v; want %v", got, err, want)
	}
	if n := db.InterestEntries(); n != 1 {
		t.Fatalf("InterestEntries = %d; want 1", n)
	}
}

// TestInterestIndexFailedCommit: a commit that fails leaves the index as
// it was.
func TestInterestIndexFailedCommit(t *testing.T) {
	db := openDB(t, t.TempDir())
	loadInterests(t, db)
	b := db.NewBatch()
	_ = b.PutVisitor("s1", vis(1), []byte("p"), nil)
	_ = b.PutInterest("s1", "brand", "acme", 1, vis(1))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); !errors.Is(err, state.ErrClosed) {
		t.Fatalf("Commit after Close: %v; want ErrClosed", err)
	}
	if n := db.InterestEntries(); n != 0 {
		t.Fatalf("InterestEntries = %d after a failed commit; want 0", n)
	}
}

// TestInterestIndexConcurrent: partitions commit moves of their visitors'
// entries while readers scan. Every scan is in order and holds each
// visitor exactly once (a move's delete and put apply together), and the
// end state is the last commit's. Run with -race.
func TestInterestIndexConcurrent(t *testing.T) {
	db := openDB(t, t.TempDir())
	loadInterests(t, db)
	const (
		writers  = 2
		visitors = 200 // per writer
		rounds   = 50
	)
	visitor := func(w, i int) (v [16]byte) {
		v[0] = byte(w)
		binary.BigEndian.PutUint32(v[12:], uint32(i))
		return v
	}
	key := func(w, i, r int) uint64 { return uint64((i*7919+r*104729+w)%1000) << 8 }
	var wg sync.WaitGroup
	var stop atomic.Bool
	errs := make(chan error, writers+2)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := db.NewBatch()
			for r := range rounds {
				for i := range visitors {
					if r > 0 {
						_ = b.DeleteInterest("s1", "brand", "acme", key(w, i, r-1), visitor(w, i))
					}
					_ = b.PutInterest("s1", "brand", "acme", key(w, i, r), visitor(w, i))
					if i%50 == 49 {
						if err := b.Commit(); err != nil {
							errs <- err
							return
						}
					}
				}
			}
		}()
	}
	var rwg sync.WaitGroup
	for range 2 {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for !stop.Load() {
				seen := map[[16]byte]bool{}
				var last *state.InterestPos
				err := db.ScanInterests("s1", "brand", "acme", ^uint64(0), nil, func(pos state.InterestPos) bool {
					if last != nil && (pos.Key < last.Key || pos.Key == last.Key && string(pos.Visitor[:]) <= string(last.Visitor[:])) {
						errs <- fmt.Errorf("scan out of order: %+v after %+v", pos, *last)
						return false
					}
					if seen[pos.Visitor] {
						errs <- fmt.Errorf("visitor %x twice in one scan", pos.Visitor)
						return false
					}
					seen[pos.Visitor] = true
					last = &pos
					return true
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	stop.Store(true)
	rwg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var want []state.InterestPos
	for w := range writers {
		for i := range visitors {
			want = append(want, state.InterestPos{Key: key(w, i, rounds-1), Visitor: visitor(w, i)})
		}
	}
	slices.SortFunc(want, cmpPos)
	var got []state.InterestPos
	_ = db.ScanInterests("s1", "brand", "acme", ^uint64(0), nil, func(pos state.InterestPos) bool { got = append(got, pos); return true })
	if !slices.Equal(got, want) {
		t.Fatalf("end state: %d entries; want the last round's %d", len(got), len(want))
	}
	if n := db.InterestEntries(); n != writers*visitors {
		t.Fatalf("InterestEntries = %d; want %d", n, writers*visitors)
	}
}

func cmpPos(a, b state.InterestPos) int {
	if a.Key != b.Key {
		if a.Key < b.Key {
			return -1
		}
		return 1
	}
	return slices.Compare(a.Visitor[:], b.Visitor[:])
}

// BenchmarkInterestIndex measures the commits of index changes as the
// builder makes them — per visitor a move (delete + put) in a value of
// `size` entries — and reports the Go heap the index takes per entry.
func BenchmarkInterestIndex(b *testing.B) {
	for _, size := range []int{1_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("entries=%d", size), func(b *testing.B) {
			db := openDB(b, b.TempDir())
			loadInterests(b, db)
			visitor := func(n int) (v [16]byte) {
				binary.BigEndian.PutUint64(v[8:], uint64(n))
				return v
			}
			keys := make([]uint64, size)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			bt := db.NewBatch()
			for n := range size {
				keys[n] = uint64(n) * 2654435761 % (1 << 40)
				_ = bt.PutInterest("s1", "brand", "acme", keys[n], visitor(n))
				if n%1000 == 999 {
					_ = bt.Commit()
				}
			}
			_ = bt.Commit()
			runtime.GC()
			runtime.ReadMemStats(&after)
			perEntry := float64(after.HeapAlloc-before.HeapAlloc) / float64(size)
			b.ReportAllocs()
			b.ResetTimer()
			n := 0
			for b.Loop() {
				i := n % size
				_ = bt.DeleteInterest("s1", "brand", "acme", keys[i], visitor(i))
				keys[i] = (keys[i] + 977) % (1 << 40)
				_ = bt.PutInterest("s1", "brand", "acme", keys[i], visitor(i))
				if n%100 == 99 {
					_ = bt.Commit()
				}
				n++
			}
			_ = bt.Commit()
			b.ReportMetric(perEntry, "heap-B/entry")
		})
	}
}

// BenchmarkInterestIndexGC measures what a rebuilt interest index of 5M
// entries (in 100 values, as the builder's start loads it) costs: the
// heap per entry, and the time of one full GC with it live (the index is
// most of the builder's heap at 10M visitors, and each GC cycle marks it).
// Each visitor has 7 entries, as at 10M visitors and 30M events (2.44
// entries per event).
func BenchmarkInterestIndexGC(b *testing.B) {
	const entries, values = 5_000_000, 100
	db := openDB(b, b.TempDir())
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	w, err := db.NewIndexWriter()
	if err != nil {
		b.Fatal(err)
	}
	for n := range entries {
		var v [16]byte
		binary.BigEndian.PutUint64(v[8:], uint64(n/7))
		if err := w.Put("s1", "brand", fmt.Sprint(n%values), uint64(n)*2654435761%(1<<40), v); err != nil {
			b.Fatal(err)
		}
	}
	w.Flush()
	runtime.GC()
	runtime.ReadMemStats(&after)
	perEntry := float64(after.HeapAlloc-before.HeapAlloc) / entries
	b.ResetTimer()
	for b.Loop() {
		runtime.GC()
	}
	b.ReportMetric(perEntry, "heap-B/entry")
	runtime.KeepAlive(db)
}

package state

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
)

// checkTree verifies the invariants of t: entries ascending, separators
// bounding their children, every leaf at one depth, no empty node but an
// empty tree, inner nodes of two children at least, non-root leaves at full capacity, no node of a generation
// newer than t's, and Len.
func checkTree(t *interestTree) error {
	if t.root == nil {
		if t.len != 0 {
			return fmt.Errorf("no root, Len %d", t.len)
		}
		return nil
	}
	n, depth := 0, -1
	cmp := t.dict.cmpEntries
	var walk func(x *interestNode, d int, lo, hi *interestEntry) error
	walk = func(x *interestNode, d int, lo, hi *interestEntry) error {
		if x.gen > t.gen {
			return fmt.Errorf("node of generation %d in a tree of %d", x.gen, t.gen)
		}
		for j, e := range x.items {
			if j > 0 && cmp(x.items[j-1], e) >= 0 {
				return fmt.Errorf("depth %d: items %v, %v out of order", d, x.items[j-1], e)
			}
			if (lo != nil && cmp(e, *lo) < 0) || (hi != nil && cmp(e, *hi) >= 0) {
				return fmt.Errorf("depth %d: %v outside [%v, %v)", d, e, lo, hi)
			}
		}
		if x.kids == nil {
			if depth == -1 {
				depth = d
			} else if d != depth {
				return fmt.Errorf("leaves at depth %d and %d", depth, d)
			}
			if x != t.root && (len(x.items) == 0 || cap(x.items) != t.maxLeaf) {
				return fmt.Errorf("non-root leaf of %d entries, capacity %d", len(x.items), cap(x.items))
			}
			if len(x.items) > t.maxLeaf {
				return fmt.Errorf("leaf of %d entries", len(x.items))
			}
			n += len(x.items)
			return nil
		}
		if len(x.kids) == 0 || len(x.kids) > t.maxInner || len(x.items) != len(x.kids)-1 {
			return fmt.Errorf("inner node of %d children, %d separators", len(x.kids), len(x.items))
		}
		if len(x.kids) < 2 {
			return fmt.Errorf("inner node of one child at depth %d", d)
		}
		for i, c := range x.kids {
			clo, chi := lo, hi
			if i > 0 {
				clo = &x.items[i-1]
			}
			if i < len(x.items) {
				chi = &x.items[i]
			}
			if err := walk(c, d+1, clo, chi); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(t.root, 0, nil, nil); err != nil {
		return err
	}
	if n != t.len {
		return fmt.Errorf("%d entries, Len %d", n, t.len)
	}
	return nil
}

func treeEntries(t *interestTree) []InterestPos {
	var got []InterestPos
	t.Ascend(InterestPos{}, func(e InterestPos) bool { got = append(got, e); return true })
	return got
}

// cmpInterest is the order of the index's entries, on InterestPos: by
// order key, then by visitor bytes.
func cmpInterest(a, b InterestPos) int {
	if a.Key != b.Key {
		if a.Key < b.Key {
			return -1
		}
		return 1
	}
	return slices.Compare(a.Visitor[:], b.Visitor[:])
}

// loadPos loads es, sorted by cmpInterest, into t.
func loadPos(t *interestTree, es []InterestPos) {
	entries := make([]interestEntry, len(es))
	for i, e := range es {
		p, _ := t.probe(e, true)
		entries[i] = p.entry()
	}
	t.Load(entries)
}

func testPos(key uint64, v uint16) InterestPos {
	var p InterestPos
	p.Key = key
	p.Visitor[0] = byte(v >> 8) // high bytes first: orders as bytes.Compare does
	p.Visitor[15] = byte(v)
	return p
}

// TestInterestTreeModel runs random puts, deletes, moves (a delete and a
// put of the visitor at a lower key, as a score rises), loads, scans from
// random pivots and snapshots against a sorted slice, with capacities
// that build deep trees, and checks the invariants after every write.
// Every snapshot must still hold what it held when taken at the end.
func TestInterestTreeModel(t *testing.T) {
	for _, c := range []struct{ leaf, inner, keys, ops int }{
		{2, 4, 60, 4000},
		{4, 4, 200, 6000},
		{8, 4, 500, 8000},
		{16, 6, 2000, 12000},
		{interestLeafCap, interestInnerCap, 40000, 60000},
	} {
		t.Run(fmt.Sprintf("leaf=%d,inner=%d", c.leaf, c.inner), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(c.leaf), uint64(c.inner)))
			tree := newInterestTree(newVisitorDict(), c.leaf, c.inner)
			var model []InterestPos
			type snap struct {
				tree *interestTree
				want []InterestPos
			}
			var snaps []snap
			// Four visitors, numbered in the order they come, which is not
			// their bytes' order; a scan's pivot may also name a visitor
			// between them that the tree never had.
			randPos := func() InterestPos {
				return testPos(uint64(rng.IntN(c.keys/4)), uint16(2*rng.IntN(4)))
			}
			randPivot := func() InterestPos {
				return testPos(uint64(rng.IntN(c.keys/4)), uint16(rng.IntN(8)))
			}
			put := func(p InterestPos) {
				j, found := slices.BinarySearchFunc(model, p, cmpInterest)
				if added := tree.Set(p); added == found {
					t.Fatalf("Set(%v) = %v; the model had it: %v", p, added, found)
				}
				if !found {
					model = slices.Insert(model, j, p)
				}
			}
			del := func(p InterestPos) {
				j, found := slices.BinarySearchFunc(model, p, cmpInterest)
				if ok := tree.Delete(p); ok != found {
					t.Fatalf("Delete(%v) = %v; the model had it: %v", p, ok, found)
				}
				if found {
					model = slices.Delete(model, j, j+1)
				}
			}
			// Grow to about half the key space, then churn.
			for range c.keys / 2 {
				put(randPos())
			}
			lastR := 0
			for op := range c.ops {
				r := rng.IntN(100)
				lastR = r
				switch {
				case r < 35:
					put(randPos())
				case r < 65:
					if len(model) > 0 && rng.IntN(2) == 0 {
						del(model[rng.IntN(len(model))])
					} else {
						del(randPos())
					}
				case r < 90: // a move to a lower key
					if len(model) > 0 {
						p := model[rng.IntN(len(model))]
						del(p)
						p.Key = uint64(rng.IntN(int(p.Key) + 1))
						put(p)
					}
				case r < 95:
					pivot := randPivot()
					limit := rng.IntN(50)
					var got []InterestPos
					tree.Ascend(pivot, func(e InterestPos) bool {
						got = append(got, e)
						return len(got) < limit
					})
					j, _ := slices.BinarySearchFunc(model, pivot, cmpInterest)
					want := model[j:min(len(model), j+limit)]
					if limit == 0 && len(model) > j {
						want = model[j : j+1] // fn sees one entry before it says stop
					}
					if !slices.Equal(got, want) {
						t.Fatalf("op %d: Ascend(%v) took %d: %v; want %v", op, pivot, limit, got, want)
					}
				case r < 98:
					snaps = append(snaps, snap{tree.Snapshot(), slices.Clone(model)})
				case r < 99 && op%7 == 0:
					// Drain most of the tree: merges and collapses.
					for len(model) > c.keys/20 {
						del(model[rng.IntN(len(model))])
					}
				default:
					if rng.IntN(10) == 0 {
						loadPos(tree, model)
					}
				}
				if err := checkTree(tree); err != nil {
					t.Fatalf("op %d (r %d): %v", op, lastR, err)
				}
			}
			if got := treeEntries(tree); !slices.Equal(got, model) {
				t.Fatalf("tree holds %d entries; the model %d", len(got), len(model))
			}
			for i, s := range snaps {
				if err := checkTree(s.tree); err != nil {
					t.Fatalf("snapshot %d: %v", i, err)
				}
				if got := treeEntries(s.tree); !slices.Equal(got, s.want) {
					t.Fatalf("snapshot %d of %d changed: holds %d entries; %d when taken", i, len(snaps), len(got), len(s.want))
				}
			}
		})
	}
}

// TestInterestTreeSnapshotConcurrent: readers scan snapshots while the
// writer changes the tree (under the lock that Snapshot takes in
// interestIndex); each snapshot must read what the tree held when taken.
// Run with -race.
func TestInterestTreeSnapshotConcurrent(t *testing.T) {
	tree := newInterestTree(newVisitorDict(), 8, 4)
	var mu sync.Mutex
	var writer, readers sync.WaitGroup
	stop := make(chan struct{})
	// The writer keeps 1000 visitors, each at one key, moving them: a
	// snapshot holds each visitor once.
	for v := range 1000 {
		tree.Set(testPos(uint64(v), uint16(v)))
	}
	keys := make([]uint64, 1000)
	for v := range keys {
		keys[v] = uint64(v)
	}
	writer.Add(1)
	go func() {
		defer writer.Done()
		rng := rand.New(rand.NewPCG(1, 2))
		for {
			select {
			case <-stop:
				return
			default:
			}
			v := rng.IntN(1000)
			mu.Lock()
			tree.Delete(testPos(keys[v], uint16(v)))
			keys[v] = uint64(rng.IntN(5000))
			tree.Set(testPos(keys[v], uint16(v)))
			mu.Unlock()
		}
	}()
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for range 300 {
				mu.Lock()
				s := tree.Snapshot()
				mu.Unlock()
				var prev *InterestPos
				seen := make(map[uint16]bool)
				s.Ascend(InterestPos{}, func(e InterestPos) bool {
					if prev != nil && cmpInterest(*prev, e) >= 0 {
						t.Errorf("snapshot out of order: %v then %v", *prev, e)
					}
					seen[uint16(e.Visitor[0])<<8|uint16(e.Visitor[15])] = true
					prev = &e
					return true
				})
				if len(seen) != 1000 || s.Len() != 1000 {
					t.Errorf("snapshot scanned %d visitors, Len %d; want 1000", len(seen), s.Len())
					return
				}
				runtime.Gosched()
			}
		}()
	}
	readers.Wait()
	close(stop)
	writer.Wait()
}

// TestInterestTreeLoad: a load of n sorted entries holds them, within
// the invariants, and takes writes after it.
func TestInterestTreeLoad(t *testing.T) {
	for _, c := range []struct{ leaf, inner int }{{4, 4}, {interestLeafCap, interestInnerCap}} {
		for _, n := range []int{0, 1, 3, 4, 5, 16, 17, 64, 65, 340, 341, 342, 1000, 40_000} {
			tree := newInterestTree(newVisitorDict(), c.leaf, c.inner)
			tree.Set(testPos(1<<40, 0)) // replaced by the load
			es := make([]InterestPos, n)
			for i := range es {
				es[i] = testPos(uint64(i)*3, uint16(i))
			}
			loadPos(tree, es)
			if err := checkTree(tree); err != nil {
				t.Fatalf("leaf %d, %d entries: %v", c.leaf, n, err)
			}
			if got := treeEntries(tree); !slices.Equal(got, es) {
				t.Fatalf("leaf %d: loaded %d entries, holds %d", c.leaf, n, len(got))
			}
			for i := range n {
				tree.Set(testPos(uint64(i)*3+1, uint16(i)))
				if i%2 == 0 {
					tree.Delete(es[i])
				}
			}
			if err := checkTree(tree); err != nil {
				t.Fatalf("leaf %d, %d entries, after writes: %v", c.leaf, n, err)
			}
			if want := n + n/2; tree.Len() != want {
				t.Fatalf("leaf %d: %d entries after writes; want %d", c.leaf, tree.Len(), want)
			}
			for _, e := range treeEntries(tree) {
				if !tree.Delete(e) {
					t.Fatalf("Delete(%v) of an entry held = false", e)
				}
			}
			if tree.root != nil || tree.Len() != 0 || tree.Delete(testPos(0, 0)) {
				t.Fatalf("leaf %d: after deleting all, root %v, Len %d", c.leaf, tree.root, tree.Len())
			}
		}
	}
}

package state

import (
	"encoding/binary"
	"sync"
	"testing"
)

func dictVisitor(i int) (v [16]byte) {
	binary.BigEndian.PutUint64(v[:8], uint64(i)*0x9e3779b97f4a7c15)
	binary.BigEndian.PutUint64(v[8:], uint64(i))
	return v
}

// TestVisitorDict: every visitor gets one number, found again across the
// shards' growth and beyond the first chunk; a visitor never numbered
// has none; the numbers are dense from 1.
func TestVisitorDict(t *testing.T) {
	d := newVisitorDict()
	const n = 150_000 // three chunks; shards grown several times
	nums := make([]uint32, n)
	for i := range n {
		v := dictVisitor(i)
		if got := d.number(&v, false); got != 0 {
			t.Fatalf("visitor %d: number %d before it was numbered", i, got)
		}
		nums[i] = d.number(&v, true)
	}
	if got := d.next.Load(); got != n {
		t.Fatalf("%d numbers handed out; want %d", got, n)
	}
	seen := make([]bool, n+1)
	for i, num := range nums {
		v := dictVisitor(i)
		if num == 0 || num > n || seen[num] {
			t.Fatalf("visitor %d: number %d (0, beyond %d or given twice)", i, num, n)
		}
		seen[num] = true
		if got := d.number(&v, false); got != num {
			t.Fatalf("visitor %d: number %d, then %d", i, num, got)
		}
		if got := d.number(&v, true); got != num {
			t.Fatalf("visitor %d: numbered again as %d; was %d", i, got, num)
		}
		if *d.id(num) != v {
			t.Fatalf("number %d: visitor %x; want %x", num, *d.id(num), v)
		}
	}
	if v := dictVisitor(n); d.number(&v, false) != 0 {
		t.Fatal("a visitor never numbered has a number")
	}
	// 3 chunks of 1 MiB, and 4-byte slots at most 3/4 full.
	if b, min := d.Bytes(), int64(3<<20+n*4*4/3); b < min || b > min+n*4 {
		t.Fatalf("Bytes = %d; want within [%d, %d]", b, min, min+n*4)
	}
}

// TestVisitorDictConcurrent numbers visitors from several goroutines,
// each visitor from two of them, while readers read numbers handed out:
// one number a visitor. Run with -race.
func TestVisitorDictConcurrent(t *testing.T) {
	d := newVisitorDict()
	const n, workers = 20_000, 4
	got := make([][]uint32, workers)
	var wg sync.WaitGroup
	for w := range workers {
		got[w] = make([]uint32, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				if i%2 != w%2 && w >= 2 {
					continue // workers 2 and 3 each take half
				}
				v := dictVisitor(i)
				num := d.number(&v, true)
				if *d.id(num) != v {
					t.Errorf("number %d reads %x; want %x", num, *d.id(num), v)
					return
				}
				got[w][i] = num
			}
		}()
	}
	wg.Wait()
	if got := d.next.Load(); got != n {
		t.Fatalf("%d numbers handed out for %d visitors", got, n)
	}
	for i := range n {
		for w := 1; w < workers; w++ {
			if g := got[w][i]; g != 0 && g != got[0][i] {
				t.Fatalf("visitor %d: number %d in one goroutine, %d in another", i, got[0][i], g)
			}
		}
	}
}

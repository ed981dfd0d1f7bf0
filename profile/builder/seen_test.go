package builder

import (
	"encoding/hex"
	"slices"
	"testing"

	"github.com/affinityhq/affinity/tracker/event"
)

func TestSeenRoundTrip(t *testing.T) {
	f := func(s seenList, orders orderSet) {
		t.Helper()
		data := appendSeen(nil, s, orders)
		got, gotOrders, err := decodeSeen(nil, nil, data)
		if err != nil {
			t.Fatalf("decodeSeen(%s): %s", hex.Dump(data), err)
		}
		if !slices.Equal(got, s) && !(len(got) == 0 && len(s) == 0) {
			t.Fatalf("round trip of %v = %v\n%s", s, got, hex.Dump(data))
		}
		if !slices.Equal(gotOrders, orders) && !(len(gotOrders) == 0 && len(orders) == 0) {
			t.Fatalf("round trip of orders %v = %v\n%s", orders, gotOrders, hex.Dump(data))
		}
	}
	f(nil, nil)
	f(seenList{{id: 1, recv: 0}}, nil)
	f(seenList{{id: ^uint64(0), recv: -5}, {id: 7, recv: 1_800_000_000}, {id: 8, recv: 1_800_000_000}}, nil)
	f(nil, orderSet{3})
	f(seenList{{id: 1, recv: 0}}, orderSet{0, 5, ^uint64(0)})
}

func TestSeenLayout(t *testing.T) {
	got := appendSeen(nil, seenList{{id: 0x0102030405060708, recv: 1000}, {id: 9, recv: 1000}}, nil)
	want, _ := hex.DecodeString("01" + "02" + "0102030405060708" + "d00f" + "0000000000000009" + "00")
	if !slices.Equal(got, want) {
		t.Fatalf("layout:\n%s\nwant:\n%s", hex.Dump(got), hex.Dump(want))
	}
	got = appendSeen(nil, seenList{{id: 9, recv: 1000}}, orderSet{2, 0x0a0b})
	want, _ = hex.DecodeString("02" + "01" + "0000000000000009" + "d00f" + "02" + "0000000000000002" + "0000000000000a0b")
	if !slices.Equal(got, want) {
		t.Fatalf("layout with orders:\n%s\nwant:\n%s", hex.Dump(got), hex.Dump(want))
	}
}

func TestSeenPrune(t *testing.T) {
	mk := func(recvs ...int64) seenList {
		var s seenList
		for i, r := range recvs {
			s = append(s, seenID{id: uint64(i), recv: r})
		}
		return s
	}
	f := func(s seenList, window int64, max int, wantIDs ...uint64) {
		t.Helper()
		got := s.prune(window, max)
		var ids []uint64
		for _, e := range got {
			ids = append(ids, e.id)
		}
		if !slices.Equal(ids, wantIDs) {
			t.Fatalf("prune(window=%d, max=%d) kept ids %v; want %v", window, max, ids, wantIDs)
		}
	}
	f(nil, 10, 5)
	f(mk(1, 2, 3), 10, 5, 0, 1, 2)
	f(mk(1, 2, 30), 10, 5, 2)         // 1 and 2 are older than 30−10
	f(mk(20, 20, 30), 10, 5, 0, 1, 2) // exactly at the window edge: kept
	f(mk(1, 2, 3, 4, 5, 6), 100, 4, 2, 3, 4, 5)
}

func TestSeenHas(t *testing.T) {
	var a, b event.UUID
	a[0], b[15] = 1, 1
	s := seenList{{id: foldID(a)}}
	if !s.has(foldID(a)) || s.has(foldID(b)) {
		t.Fatalf("has: got %v, %v; want true, false", s.has(foldID(a)), s.has(foldID(b)))
	}
}

func TestDecodeSeenRefuses(t *testing.T) {
	for name, in := range map[string]string{
		"version":   "03" + "01" + "0000000000000001" + "00",
		"no orders": "02" + "01" + "0000000000000001" + "00",
		"0 orders":  "02" + "00" + "00",
		"order len": "02" + "00" + "02" + "0000000000000001" + "00000000000002",
		"unsorted":  "02" + "00" + "02" + "0000000000000002" + "0000000000000001",
		"repeated":  "02" + "00" + "02" + "0000000000000002" + "0000000000000002",
		"count":     "01" + "05" + "0000000000000001" + "00",
		"truncated": "01" + "01" + "00000000000000",
		"bad recv":  "01" + "01" + "0000000000000001" + "80",
		"trailing":  "01" + "01" + "0000000000000001" + "00" + "00",
		"no count":  "01",
	} {
		data, _ := hex.DecodeString(in)
		if _, _, err := decodeSeen(nil, nil, data); err == nil {
			t.Errorf("%s: decodeSeen(%s) accepted", name, in)
		}
	}
}

func FuzzDecodeSeen(f *testing.F) {
	f.Add(appendSeen(nil, seenList{{id: 1, recv: 1_800_000_000}, {id: 2, recv: 1_800_000_001}}, nil))
	f.Add(appendSeen(nil, seenList{{id: 1, recv: 1_800_000_000}}, orderSet{4, 9}))
	f.Add([]byte{})
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, orders, err := decodeSeen(nil, nil, data)
		if err != nil {
			return
		}
		// Accepted lists re-encode to the same bytes (the encoding is
		// canonical except for non-minimal varints and the empty list).
		again, againOrders, err := decodeSeen(nil, nil, appendSeen(nil, s, orders))
		if err != nil || !slices.Equal(again, s) || !slices.Equal(againOrders, orders) {
			t.Fatalf("re-encoding %v %v: %v %v, %v", s, orders, again, againOrders, err)
		}
	})
}

func TestCacheEviction(t *testing.T) {
	c := newCache(3 * (entryOverhead + 3))
	key := func(i byte) []byte { return []byte{'s', '|', i} }
	kept := func() []byte {
		var got []byte
		for e := c.head.next; e != &c.head; e = e.next {
			got = append(got, e.visitor[0])
		}
		return got
	}
	for i := range byte(5) {
		c.add(key(i), 1, event.UUID{i})
	}
	c.get(key(0)) // most recent first: 0 4 3 2 1
	if got, want := kept(), []byte{0, 4, 3, 2, 1}; !slices.Equal(got, want) {
		t.Fatalf("LRU order = %v; want %v", got, want)
	}
	c.m[string(key(1))].dirty = true // the tail is dirty: nothing can go
	if n := c.evict(); n != 0 || c.len() != 5 {
		t.Fatalf("evict with a dirty tail dropped %d, left %d; want 0, 5", n, c.len())
	}
	c.m[string(key(1))].dirty = false
	if n := c.evict(); n != 2 {
		t.Fatalf("evict dropped %d; want 2 (budget of 3)", n)
	}
	if got, want := kept(), []byte{0, 4, 3}; !slices.Equal(got, want) {
		t.Fatalf("kept %v; want %v", got, want)
	}
	c.clear()
	if c.len() != 0 || c.bytes != 0 {
		t.Fatalf("after clear: %d entries, %d bytes; want 0, 0", c.len(), c.bytes)
	}
}

package state_test

import (
	"fmt"
	"testing"

	"github.com/affinityhq/affinity/storage/state"
)

func TestScanExtFromCountDelete(t *testing.T) {
	db := openDB(t, t.TempDir())
	b := db.NewBatch()
	for i := range 10 {
		if err := b.ExtSet(fmt.Appendf(nil, "Ma%02d", i), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.ExtSet([]byte("Mb00"), nil); err != nil {
		t.Fatal(err)
	}
	commit(t, b)
	scan := func(after string, stopAt int) (keys []string) {
		t.Helper()
		var a []byte
		if after != "" {
			a = []byte(after)
		}
		if err := db.ScanExtFrom([]byte("Ma"), a, func(k, v []byte) bool {
			if want := int(k[2]-'0')*10 + int(k[3]-'0'); int(v[0]) != want {
				t.Errorf("key %s: value %d", k, v[0])
			}
			keys = append(keys, string(k))
			return len(keys) < stopAt
		}); err != nil {
			t.Fatal(err)
		}
		return keys
	}
	f := func(after string, stopAt int, want string) {
		t.Helper()
		if got := fmt.Sprint(scan(after, stopAt)); got != want {
			t.Errorf("ScanExtFrom(after %q): got %s; want %s", after, got, want)
		}
	}
	f("", 3, "[Ma00 Ma01 Ma02]")
	f("Ma02", 3, "[Ma03 Ma04 Ma05]")
	f("Ma08", 9, "[Ma09]")
	f("Ma09", 9, "[]")
	f("Ma035", 2, "[Ma04 Ma05]") // a cursor between keys
	if n, err := db.CountExt([]byte("Ma")); n != 10 || err != nil {
		t.Errorf("CountExt: got %d %v; want 10", n, err)
	}
	if n, err := db.DeleteExtPrefix([]byte("Ma")); n != 10 || err != nil {
		t.Errorf("DeleteExtPrefix: got %d %v; want 10", n, err)
	}
	if n, _ := db.CountExt([]byte("M")); n != 1 {
		t.Errorf("after delete: %d keys under M; want 1 (Mb00)", n)
	}
	for _, bad := range []string{"", "a", "ma"} {
		if err := db.ScanExtFrom([]byte(bad), nil, func(_, _ []byte) bool { return true }); err == nil {
			t.Errorf("ScanExtFrom(%q) accepted a non-extension prefix", bad)
		}
		if _, err := db.CountExt([]byte(bad)); err == nil {
			t.Errorf("CountExt(%q) accepted a non-extension prefix", bad)
		}
		if _, err := db.DeleteExtPrefix([]byte(bad)); err == nil {
			t.Errorf("DeleteExtPrefix(%q) accepted a non-extension prefix", bad)
		}
	}
}

// A batch numbers the change records of its partition's commits: from 0
// at each new offset and each visitor's (SourceAt), on across commits at
// the same offset, from VisitOrdinals after ResumeAt, and none for a
// batch of no partition.
func TestBatchNextSource(t *testing.T) {
	db := openDB(t, t.TempDir())
	b := db.NewBatch()
	next := func(want state.Source, wantOK bool) {
		t.Helper()
		if got, ok := b.NextSource(); got != want || ok != wantOK {
			t.Errorf("NextSource: got %+v %v; want %+v %v", got, ok, want, wantOK)
		}
	}
	next(state.Source{Partition: -1}, false)
	b.ResumeAt(2, 40)
	next(state.Source{Partition: 2, Offset: 40, Ord: state.VisitOrdinals}, true)
	b.SetOffset(2, 42)
	next(state.Source{Partition: 2, Offset: 42}, true)
	next(state.Source{Partition: 2, Offset: 42, Ord: 1}, true)
	commit(t, b)
	next(state.Source{Partition: 2, Offset: 42, Ord: 2}, true) // a Visit after the commit
	b.SetOffset(2, 42)                                         // a commit at the same offset numbers on
	next(state.Source{Partition: 2, Offset: 42, Ord: 3}, true)
	b.SetOffset(2, 50)
	next(state.Source{Partition: 2, Offset: 50}, true)
	b.SourceAt(45) // a visitor whose last record in the commit is 44
	next(state.Source{Partition: 2, Offset: 45}, true)
	next(state.Source{Partition: 2, Offset: 45, Ord: 1}, true)
	b.SourceAt(47)
	next(state.Source{Partition: 2, Offset: 47}, true)
	b.SourceAt(50) // back at the commit's offset: numbers on after 50-0
	next(state.Source{Partition: 2, Offset: 50, Ord: 1}, true)
	commit(t, b)
	next(state.Source{Partition: 2, Offset: 50, Ord: 2}, true) // a Visit after the commit
	b.ResumeAt(2, 60)
	b.SourceAt(60)
	next(state.Source{Partition: 2, Offset: 60, Ord: state.VisitOrdinals}, true)
	// Raised (a reconcile at the mark 60): on from there, across a commit
	// and the next SourceAt of the offset; never lowered.
	if got := b.RaiseOrdinal(3 << 30); got != (state.Source{Partition: 2, Offset: 60, Ord: 3 << 30}) {
		t.Errorf("RaiseOrdinal(3<<30) = %+v; want 2-60-%d", got, 3<<30)
	}
	next(state.Source{Partition: 2, Offset: 60, Ord: 3 << 30}, true)
	commit(t, b)
	b.SourceAt(60)
	next(state.Source{Partition: 2, Offset: 60, Ord: 3<<30 + 1}, true)
	if got := b.RaiseOrdinal(5); got.Ord != 3<<30+2 {
		t.Errorf("RaiseOrdinal(5) lowered the ordinal to %d; want %d", got.Ord, 3<<30+2)
	}
}

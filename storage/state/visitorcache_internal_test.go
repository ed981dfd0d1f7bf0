package state

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
)

// TestVisitorCache checks that the visitor cache holds exactly the last
// committed value of each visitor: a put, an overwrite in a later commit
// and within one commit, a delete, a value too large for it (read from
// Badger instead), nothing before a commit, and nothing after a reopen
// until a commit writes the visitor again.
func TestVisitorCache(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	open := func() *DB {
		t.Helper()
		db, err := Open(DefaultOptions(dir))
		if err != nil {
			t.Fatal(err)
		}
		if db.visitors == nil {
			t.Fatal("DefaultOptions gave no visitor cache")
		}
		return db
	}
	db := open()
	v := func(n byte) [16]byte { return [16]byte{0: 0xcc, 15: n} }
	big := bytes.Repeat([]byte{'p'}, maxCachedValue)
	cached := func(n byte) []byte {
		t.Helper()
		val, ok := db.visitors.get(nil, appendVisitorKey(nil, "s1", v(n)))
		if !ok {
			return nil
		}
		prof, _, err := splitVisitorValue(val)
		if err != nil {
			t.Fatalf("cached value of visitor %d: %s", n, err)
		}
		return prof
	}
	// check reads visitor n through Visitor and the cache: want is the
	// profile (nil: none), inCache whether the cache must hold it.
	check := func(n byte, want []byte, inCache bool) {
		t.Helper()
		got, ok, err := db.Visitor("s1", v(n), nil)
		if err != nil {
			t.Fatalf("Visitor %d: %s", n, err)
		}
		if ok != (want != nil) || !bytes.Equal(got.Profile, want) {
			t.Fatalf("Visitor %d = %.20q (ok %v); want %.20q", n, got.Profile, ok, want)
		}
		if c := cached(n); inCache != (c != nil) || inCache && !bytes.Equal(c, want) {
			t.Fatalf("cache of visitor %d = %.20q; want %.20q (cached %v)", n, c, want, inCache)
		}
	}
	put := func(b *Batch, n byte, prof []byte) {
		t.Helper()
		if err := b.PutVisitor("s1", v(n), prof, []byte("seen")); err != nil {
			t.Fatal(err)
		}
	}
	commit := func(b *Batch) {
		t.Helper()
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
	}

	b := db.NewBatch()
	put(b, 1, []byte("one"))
	check(1, nil, false) // not before the commit
	put(b, 2, []byte("two"))
	put(b, 2, []byte("two again")) // the later write in one commit wins
	put(b, 3, big)
	commit(b)
	check(1, []byte("one"), true)
	check(2, []byte("two again"), true)
	check(3, big, false)

	put(b, 1, []byte("one, later"))
	if err := b.DeleteVisitor("s1", v(2)); err != nil {
		t.Fatal(err)
	}
	put(b, 3, []byte("three, small now"))
	commit(b)
	check(1, []byte("one, later"), true)
	check(2, nil, false)
	check(3, []byte("three, small now"), true)

	put(b, 3, big) // too large again: the smaller value must not stay
	commit(b)
	check(3, big, false)

	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = open()
	defer db.Close()
	check(1, []byte("one, later"), false) // from Badger: the cache starts empty
	b = db.NewBatch()
	put(b, 1, []byte("one, after reopen"))
	commit(b)
	check(1, []byte("one, after reopen"), true)
}

// TestVisitorCacheNeverBehindACommit checks that a reader which sees any
// key of a commit then reads the commit's visitor value, never the one
// before it: the cache must not serve a visitor's old value once the
// rest of its commit is visible (a person evaluator reads a visitor's
// mark, then its profile). Badger makes a commit visible before the
// committing goroutine runs again, and with more runnable goroutines
// than Ps it waits for one: so readers outnumber the cores here. A
// writer commits a visitor's profile n with an extension key holding n;
// readers read the key, then the visitor, and want a profile ≥ the key's.
func TestVisitorCacheNeverBehindACommit(t *testing.T) {
	db, err := Open(DefaultOptions(filepath.Join(t.TempDir(), "state")))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	visitor, mark := [16]byte{0: 0xdd}, []byte("Mmark")
	const commits = 3000
	var stop atomic.Bool
	readers := 2 * runtime.GOMAXPROCS(0)
	errs := make(chan error, readers)
	for range readers {
		go func() {
			var buf []byte
			for !stop.Load() {
				m, ok, err := db.Ext(mark, nil)
				if err != nil || !ok {
					if err != nil {
						errs <- err
						return
					}
					continue
				}
				v, ok, err := db.Visitor("s1", visitor, buf)
				if err != nil || !ok {
					errs <- fmt.Errorf("visitor after mark %d: ok %v, %v", binary.BigEndian.Uint64(m), ok, err)
					return
				}
				buf = v.Buf
				if got, want := binary.BigEndian.Uint64(v.Profile), binary.BigEndian.Uint64(m); got < want {
					errs <- fmt.Errorf("the mark of commit %d is visible, the visitor's profile is commit %d's", want, got)
					return
				}
			}
			errs <- nil
		}()
	}
	b := db.NewBatch()
	for n := uint64(1); n <= commits; n++ {
		if err := b.PutVisitor("s1", visitor, binary.BigEndian.AppendUint64(nil, n), nil); err != nil {
			t.Fatal(err)
		}
		if err := b.ExtSet(mark, binary.BigEndian.AppendUint64(nil, n)); err != nil {
			t.Fatal(err)
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	for range readers {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

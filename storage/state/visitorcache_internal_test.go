package state

import (
	"bytes"
	"path/filepath"
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

package state

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// TestOpenDropsStoredInterests: a database of format version 1 stored the
// interest index ('i' keys, and the indexed dimensions under 'x'); Open
// drops them once, keeps everything else and records version 2.
func TestOpenDropsStoredInterests(t *testing.T) {
	dir := t.TempDir()
	opts := DefaultOptions(dir)
	bdb, err := badger.Open(opts.badgerOptions())
	if err != nil {
		t.Fatal(err)
	}
	v := [16]byte{15: 1}
	err = bdb.Update(func(txn *badger.Txn) error {
		key := appendInterestPrefix(nil, "s1", "brand", "acme")
		key = binary.BigEndian.AppendUint64(key, 42)
		return errors.Join(
			txn.Set([]byte{prefixHeader}, []byte{formatVersionStoredIndex}),
			txn.Set(append(key, v[:]...), nil),
			txn.Set([]byte{prefixIndexSet}, []byte{1, 0}),
			txn.Set(appendVisitorKey(nil, "s1", v), appendVisitorValue(nil, []byte("profile"), nil)),
		)
	})
	if err := errors.Join(err, bdb.Close()); err != nil {
		t.Fatal(err)
	}

	for range 2 { // the second open finds version 2
		db, err := Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		keys := map[byte]int{}
		err = db.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				keys[it.Item().Key()[0]]++
			}
			item, err := txn.Get([]byte{prefixHeader})
			if err != nil {
				return err
			}
			return item.Value(func(val []byte) error {
				if len(val) != 1 || val[0] != formatVersion {
					t.Errorf("header %x; want version %d", val, formatVersion)
				}
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		if keys[prefixInterest] != 0 || keys[prefixIndexSet] != 0 || keys[prefixVisitor] != 1 {
			t.Errorf("keys by prefix after open: %v; want no 'i' or 'x', one 'v'", keys)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}

	// A version this build does not know is refused.
	bdb, err = badger.Open(opts.badgerOptions())
	if err != nil {
		t.Fatal(err)
	}
	err = bdb.Update(func(txn *badger.Txn) error { return txn.Set([]byte{prefixHeader}, []byte{9}) })
	if err := errors.Join(err, bdb.Close()); err != nil {
		t.Fatal(err)
	}
	if db, err := Open(opts); err == nil {
		_ = db.Close()
		t.Fatal("Open of format version 9 succeeded")
	}
}

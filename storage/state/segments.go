package state

import (
	"bytes"

	"github.com/dgraph-io/badger/v4"
)

// ScanExtFrom calls fn with every extension key starting with prefix that
// sorts after after (nil or empty: from the first), and its value, in key
// order, until fn returns false. It is ScanExt with a resume point: the
// cursor of an export or a feed is the last key it returned. key and val
// are valid only during the call.
func (db *DB) ScanExtFrom(prefix, after []byte, fn func(key, val []byte) bool) error {
	// No PrefetchValues (viewExt): extension values are small and kept in
	// the LSM tree, and prefetching starts a goroutine per item for a copy
	// that Value makes anyway.
	return db.viewExt(prefix, func(it *badger.Iterator) error {
		seek := prefix
		if len(after) > 0 {
			seek = after
		}
		for it.Seek(seek); it.Valid(); it.Next() {
			item := it.Item()
			if len(after) > 0 && bytes.Equal(item.Key(), after) {
				continue
			}
			var stop bool
			err := item.Value(func(v []byte) error {
				stop = !fn(item.Key(), v)
				return nil
			})
			if err != nil || stop {
				return err
			}
		}
		return nil
	})
}

// CountExt returns how many extension keys start with prefix. It reads
// keys only (no values), for sizes of sets kept as one key per member.
func (db *DB) CountExt(prefix []byte) (int, error) {
	n := 0
	err := db.ScanExtKeys(prefix, func([]byte) bool { n++; return true })
	return n, err
}

// DeleteExtPrefix deletes every extension key starting with prefix, in as
// many transactions as needed (not atomic as a whole), and returns how many
// it deleted.
func (db *DB) DeleteExtPrefix(prefix []byte) (int, error) {
	if err := checkExtKey(prefix); err != nil {
		return 0, err
	}
	if db.closed.Load() {
		return 0, ErrClosed
	}
	var keys [][]byte
	err := db.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	wb := db.db.NewWriteBatch()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			wb.Cancel()
			return 0, err
		}
	}
	return len(keys), wb.Flush()
}

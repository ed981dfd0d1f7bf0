package state

import (
	"bytes"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// joinSteps is how many visitor keys the profile cursor of ScanExtVisitors
// steps over with Next before it seeks instead: a Next costs about a key
// copy, a Seek a search of every memtable and level (and an allocation).
const joinSteps = 16

// ScanExtVisitors is ScanExtFrom over extension keys that end in a visitor
// id of site (sets kept as one key per visitor, such as segment members):
// fn also gets the stored profile bytes of that visitor, nil when it has
// none. The profiles are read in the same snapshot as the keys, by one
// iterator that moves forward with them, instead of one point read (and
// transaction) per key: an export reads both in visitor order. key, val and
// prof are valid only during the call.
func (db *DB) ScanExtVisitors(prefix, after []byte, site string, fn func(key, val, prof []byte) bool) error {
	if err := checkExtKey(prefix); err != nil {
		return err
	}
	if err := checkSite(site); err != nil {
		return err
	}
	if db.closed.Load() {
		return ErrClosed
	}
	return db.db.View(func(txn *badger.Txn) error {
		// Values are small and kept in the LSM tree: prefetching them would
		// start a goroutine per item for a copy that Value makes anyway.
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		vprefix := appendStr([]byte{prefixVisitor}, site)
		pit := txn.NewIterator(badger.IteratorOptions{Prefix: vprefix})
		defer pit.Close()
		target := make([]byte, len(vprefix)+16)
		copy(target, vprefix)
		vis := target[len(vprefix):]
		seeked := false

		seek := prefix
		if len(after) > 0 {
			seek = after
		}
		for it.Seek(seek); it.Valid(); it.Next() {
			item := it.Item()
			key := item.Key()
			if len(after) > 0 && bytes.Equal(key, after) {
				continue
			}
			if len(key) < len(prefix)+16 {
				return fmt.Errorf("cannot join key %x with a visitor: shorter than its prefix and a visitor id", key)
			}
			next := key[len(key)-16:]
			if !seeked || bytes.Compare(next, vis) < 0 {
				copy(vis, next)
				pit.Seek(target)
				seeked = true
			} else {
				copy(vis, next)
				for i := 0; pit.Valid() && bytes.Compare(pit.Item().Key(), target) < 0; i++ {
					if i == joinSteps {
						pit.Seek(target)
						break
					}
					pit.Next()
				}
			}
			var stop bool
			if !pit.Valid() || !bytes.Equal(pit.Item().Key(), target) {
				err := item.Value(func(v []byte) error {
					stop = !fn(key, v, nil)
					return nil
				})
				if err != nil || stop {
					return err
				}
				continue
			}
			err := pit.Item().Value(func(pv []byte) error {
				prof, _, err := splitVisitorValue(pv)
				if err != nil {
					return fmt.Errorf("cannot read visitor %x of site %q: %w", vis, site, err)
				}
				return item.Value(func(v []byte) error {
					stop = !fn(key, v, prof)
					return nil
				})
			})
			if err != nil || stop {
				return err
			}
		}
		return nil
	})
}

package state

import (
	"encoding/binary"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// ScanAllVisitors calls fn with every stored visitor of every site and its
// profile bytes (valid only during the call), in key order, until fn
// returns false. For rebuilding what derives from profiles, not serving.
func (db *DB) ScanAllVisitors(fn func(site string, visitor [16]byte, prof []byte) bool) error {
	if db.closed.Load() {
		return ErrClosed
	}
	return db.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixVisitor}, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			l, n := binary.Uvarint(k[1:])
			if n <= 0 || uint64(len(k)-1-n) != l+16 {
				return fmt.Errorf("BUG: visitor key %x is malformed", k)
			}
			site := string(k[1+n : 1+n+int(l)])
			var stop bool
			err := item.Value(func(v []byte) error {
				prof, _, err := splitVisitorValue(v)
				if err != nil {
					return fmt.Errorf("visitor %x of site %q: %w", k[len(k)-16:], site, err)
				}
				stop = !fn(site, [16]byte(k[len(k)-16:]), prof)
				return nil
			})
			if err != nil || stop {
				return err
			}
		}
		return nil
	})
}

package state

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/affinityhq/affinity/internal/codec"
)

// indexSetVersion is the first byte of the index set value.
const indexSetVersion = 1

// IndexedDims returns the dimensions the interest index holds, as the
// last SetIndexedDims stored them; ok is false when none was stored (a
// database written before the setting existed: it indexed every
// dimension it scored).
func (db *DB) IndexedDims() (dims []string, ok bool, err error) {
	if db.closed.Load() {
		return nil, false, ErrClosed
	}
	var val []byte
	err = db.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte{prefixIndexSet})
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		ok = true
		val, err = item.ValueCopy(nil)
		return err
	})
	if err != nil || !ok {
		return nil, false, err
	}
	r := codec.NewReader("index set", val, 0)
	r.Version(indexSetVersion)
	n := r.Count(1)
	for range n {
		dims = append(dims, r.String())
	}
	if err := r.End(); err != nil {
		return nil, false, err
	}
	return dims, true, nil
}

// SetIndexedDims records the dimensions the interest index holds.
func (db *DB) SetIndexedDims(dims []string) error {
	val := []byte{indexSetVersion}
	val = codec.AppendUvarint(val, uint64(len(dims)))
	for _, d := range dims {
		val = codec.AppendString(val, d)
	}
	if db.closed.Load() {
		return ErrClosed
	}
	return db.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte{prefixIndexSet}, val) })
}

// HasVisitors reports whether any site has a stored visitor.
func (db *DB) HasVisitors() (bool, error) {
	if db.closed.Load() {
		return false, ErrClosed
	}
	found := false
	err := db.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixVisitor}})
		defer it.Close()
		it.Rewind()
		found = it.Valid()
		return nil
	})
	return found, err
}

// DropInterestDim deletes the interest index entries of dimension dim of
// every site, in as many write batches as needed (not atomic as a whole:
// run it again after a crash), and returns how many it deleted.
func (db *DB) DropInterestDim(dim string) (int, error) {
	if db.closed.Load() {
		return 0, ErrClosed
	}
	n := 0
	wb := db.db.NewWriteBatch()
	err := db.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixInterest}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			d, err := interestKeyDim(k)
			if err != nil {
				return err
			}
			if d != dim {
				continue
			}
			if err := wb.Delete(it.Item().KeyCopy(nil)); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		wb.Cancel()
		return 0, fmt.Errorf("cannot drop the interest index of dimension %q: %w", dim, err)
	}
	if err := wb.Flush(); err != nil {
		return 0, fmt.Errorf("cannot drop the interest index of dimension %q: %w", dim, err)
	}
	return n, nil
}

// interestKeyDim returns the dimension component of an interest key
// ('i' | site str | dim str | …), a view into k.
func interestKeyDim(k []byte) (string, error) {
	rest := k[1:]
	for i := range 2 {
		l, n := binary.Uvarint(rest)
		if n <= 0 || uint64(len(rest)-n) < l {
			return "", fmt.Errorf("BUG: interest key %x is malformed", k)
		}
		if i == 1 {
			return string(rest[n : n+int(l)]), nil
		}
		rest = rest[n+int(l):]
	}
	return "", errors.New("unreachable")
}

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

// IndexWriter puts interest index entries outside the builder's batches,
// in as many write batches as needed: for rebuilding the index of a
// dimension before the builder starts.
type IndexWriter struct {
	wb  *badger.WriteBatch
	key []byte
	n   int
}

// NewIndexWriter returns an IndexWriter; Flush ends it.
func (db *DB) NewIndexWriter() (*IndexWriter, error) {
	if db.closed.Load() {
		return nil, ErrClosed
	}
	return &IndexWriter{wb: db.db.NewWriteBatch()}, nil
}

// Put adds the entry (site, dim, value, orderKey, visitor).
func (w *IndexWriter) Put(site, dim, value string, orderKey uint64, visitor [16]byte) error {
	if err := errors.Join(checkSite(site), checkStr("dimension", dim), checkStr("value", value)); err != nil {
		return err
	}
	w.key = appendInterestKey(w.key[:0], site, dim, value, orderKey, visitor)
	w.n++
	return w.wb.Set(append([]byte(nil), w.key...), nil)
}

// Flush writes what is pending and returns how many entries were put.
func (w *IndexWriter) Flush() (int, error) { return w.n, w.wb.Flush() }

// Cancel drops what is pending.
func (w *IndexWriter) Cancel() { w.wb.Cancel() }

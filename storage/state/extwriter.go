package state

import (
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// ExtWriter sets many extension keys outside the builder's transaction (a
// list upload), in as many Badger transactions as they need: not atomic as
// a whole, so its writer makes them visible by a later commit of a key that
// names them (a list's head).
type ExtWriter struct {
	db   *DB
	wb   *badger.WriteBatch
	n    int
	err  error
	slab []byte         // the copies of keys and values are carved from it
	ents []badger.Entry // and the entries from this one
}

// extSlab is the size of an ExtWriter's slabs: a freeze or a list upload
// of a million keys copies them in a few thousand allocations, not two
// million.
const extSlab = 256 << 10

// NewExtWriter returns a writer of extension keys.
func (db *DB) NewExtWriter() (*ExtWriter, error) {
	if db.closed.Load() {
		return nil, ErrClosed
	}
	return &ExtWriter{db: db, wb: db.db.NewWriteBatch()}, nil
}

// Set stores the extension key with its value; both are copied.
func (w *ExtWriter) Set(key, val []byte) error {
	if w.err != nil {
		return w.err
	}
	if err := checkExtKey(key); err != nil {
		w.err = err
		return err
	}
	// The WriteBatch keeps the slices until its transaction commits; a
	// slab is freed when its last transaction is done with it.
	n := len(key) + len(val)
	if cap(w.slab)-len(w.slab) < n {
		w.slab = make([]byte, 0, max(extSlab, n))
	}
	at := len(w.slab)
	w.slab = append(append(w.slab, key...), val...)
	k := w.slab[at : at+len(key) : at+len(key)]
	v := w.slab[at+len(key) : at+n : at+n]
	if len(w.ents) == cap(w.ents) {
		w.ents = make([]badger.Entry, 0, extSlab/64)
	}
	w.ents = append(w.ents, badger.Entry{Key: k, Value: v})
	if err := w.wb.SetEntry(&w.ents[len(w.ents)-1]); err != nil {
		w.err = fmt.Errorf("cannot store key %q: %w", key, err)
		return w.err
	}
	w.n++
	return nil
}

// Flush writes what is left and waits for every write. The writer cannot
// be used after Flush.
func (w *ExtWriter) Flush() error {
	if w.err != nil {
		w.wb.Cancel()
		return w.err
	}
	if err := w.wb.Flush(); err != nil {
		return fmt.Errorf("cannot store %d keys: %w", w.n, err)
	}
	return nil
}

// Cancel drops the writes not yet flushed; some may be stored already.
func (w *ExtWriter) Cancel() { w.wb.Cancel() }

// ScanExtKeys calls fn with every extension key starting with prefix, in
// key order, until fn returns false, reading no values: sets kept as one
// key per member (a list's rows). key is valid only during the call.
func (db *DB) ScanExtKeys(prefix []byte, fn func(key []byte) bool) error {
	return db.viewExt(prefix, func(it *badger.Iterator) error {
		for it.Rewind(); it.Valid(); it.Next() {
			if !fn(it.Item().Key()) {
				return nil
			}
		}
		return nil
	})
}

// viewExt runs fn on an iterator of the extension keys starting with
// prefix (keys only, no prefetch) in a read transaction.
func (db *DB) viewExt(prefix []byte, fn func(it *badger.Iterator) error) error {
	if err := checkExtKey(prefix); err != nil {
		return err
	}
	if db.closed.Load() {
		return ErrClosed
	}
	return db.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		return fn(it)
	})
}

// SeekExt calls fn with the first extension key starting with prefix that
// sorts at or after seek, and its value, and reports whether there was
// one: the lookup in a set stored as blocks keyed by their last member.
// key and val are valid only during the call.
func (db *DB) SeekExt(prefix, seek []byte, fn func(key, val []byte) error) (bool, error) {
	found := false
	err := db.viewExt(prefix, func(it *badger.Iterator) error {
		if it.Seek(seek); !it.Valid() {
			return nil
		}
		found = true
		item := it.Item()
		return item.Value(func(v []byte) error { return fn(item.Key(), v) })
	})
	return found, err
}

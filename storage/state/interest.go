package state

import (
	"bytes"
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
)

// interestIndex is the interest index, in memory: per (site, dimension,
// value) an ordered set of InterestPos (order key, then visitor bytes). It
// is derived state — every entry is (site, dim, value, ScoreKey(LogG),
// visitor) of a stored profile — so it is not stored: the builder rebuilds
// it from the stored profiles at start (IndexWriter), and commits keep it
// in step (Batch.PutInterest, Batch.DeleteInterest, applied by Commit
// after Badger committed the rest of the batch). In Badger every entry was
// a key, and a changed score a delete and a put in the memtable: most of
// the builder's CPU at 1M visitors (DESIGN.md, "Scoring").
//
// Each set is an interestTree: a B+tree whose leaves are pointer-free
// arrays of 341 12-byte entries, allocated once and kept 80–88% full,
// which the GC marks without scanning. An entry holds its visitor as a
// number of dict, the index's visitorDict, which every set shares.
//
// Concurrency: sets holds every value's set, created on first put and kept
// until Close (an empty set is a few hundred bytes; values are bounded by
// the sites' catalogs). Each set has its own lock, held by a writer for
// one put or delete and by a reader only for Snapshot, O(1) copy-on-write: a
// reader scans its own snapshot without a lock, and the writer's next
// change to a shared node copies that node first.
type interestIndex struct {
	mu   sync.RWMutex
	sets map[string]*interestSet
	dict *visitorDict // replaced with sets by clear

	// entries counts the entries of every set.
	entries atomic.Int64
	// loaded is set when a rebuild (IndexWriter.Flush) completed: until
	// then the index answers ErrInterestsNotLoaded.
	loaded atomic.Bool
}

type interestSet struct {
	mu sync.Mutex
	t  *interestTree
}

// ErrInterestsNotLoaded is returned by ScanInterests until the interest
// index was rebuilt from the stored profiles (the builder's start).
var ErrInterestsNotLoaded = errors.New("the interest index is being rebuilt from the stored profiles")

// InterestEntryBytes estimates the Go heap an entry of the interest index
// takes in its tree, nodes included: 12 bytes of entry in leaves 75–88%
// full (a rebuild loads them 7/8 full, random puts keep them about 80%:
// ~14 and ~16 bytes). The visitor dictionary comes on top
// (DB.InterestBytes).
const InterestEntryBytes = 16

func newInterestIndex() *interestIndex {
	return &interestIndex{sets: make(map[string]*interestSet), dict: newVisitorDict()}
}

// set returns the set of key (an interest prefix), nil when it has none
// and create is false.
func (ix *interestIndex) set(key []byte, create bool) *interestSet {
	ix.mu.RLock()
	s := ix.sets[string(key)]
	ix.mu.RUnlock()
	if s != nil || !create {
		return s
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if s = ix.sets[string(key)]; s == nil {
		s = &interestSet{t: newInterestTree(ix.dict, interestLeafCap, interestInnerCap)}
		ix.sets[string(key)] = s
	}
	return s
}

// interestOp is one put or delete of a Batch: the set's key is
// arena[kStart:kEnd].
type interestOp struct {
	kStart, kEnd int
	pos          InterestPos
	del          bool
}

// apply makes ops, in order, in the index. Consecutive ops of one set
// take its lock once, and consecutive ops of one visitor (a profile's
// changes) look its number up once.
func (ix *interestIndex) apply(arena []byte, ops []interestOp) {
	var (
		s   *interestSet
		cur []byte
		n   int64

		// the last visitor numbered, in lastDict
		last     interestProbe
		lastDict *visitorDict
	)
	for i := range ops {
		o := &ops[i]
		key := arena[o.kStart:o.kEnd]
		if s == nil || !bytes.Equal(key, cur) {
			if s != nil {
				s.mu.Unlock()
			}
			s, cur = ix.set(key, true), key
			s.mu.Lock()
		}
		p := interestProbe{key: o.pos.Key, visitor: o.pos.Visitor}
		if lastDict == s.t.dict && last.visitor == p.visitor {
			p.num = last.num
		} else if p.num = s.t.dict.number(&p.visitor, !o.del); p.num != 0 {
			last, lastDict = p, s.t.dict
		}
		if o.del {
			if p.num != 0 && s.t.delete(&p) {
				n--
			}
		} else if s.t.set(&p) {
			n++
		}
	}
	if s != nil {
		s.mu.Unlock()
	}
	ix.entries.Add(n)
}

// clear drops every entry and marks the index not loaded.
func (ix *interestIndex) clear() {
	ix.loaded.Store(false)
	ix.mu.Lock()
	ix.sets = make(map[string]*interestSet)
	ix.dict = newVisitorDict()
	ix.entries.Store(0)
	ix.mu.Unlock()
}

// snapshot returns a copy of key's set that later writes do not change,
// nil when the set does not exist.
func (ix *interestIndex) snapshot(key []byte) *interestTree {
	s := ix.set(key, false)
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.t.Snapshot()
}

// InterestEntries returns how many entries the interest index holds.
func (db *DB) InterestEntries() int64 { return db.interests.entries.Load() }

// InterestBytes estimates the Go heap the interest index takes: about
// InterestEntryBytes an entry, and its visitor dictionary.
func (db *DB) InterestBytes() int64 {
	ix := db.interests
	ix.mu.RLock()
	dict := ix.dict
	ix.mu.RUnlock()
	return ix.entries.Load()*InterestEntryBytes + dict.Bytes()
}

// InterestsLoaded reports whether the interest index was rebuilt from the
// stored profiles, so that ScanInterests answers.
func (db *DB) InterestsLoaded() bool { return db.interests.loaded.Load() }

// ScanInterests calls fn with the visitors of (site, dim, value) whose order
// key is ≤ maxKey, in ascending key order — best score first, as order keys
// are ScoreKey of the log-space score — ties by visitor bytes, starting
// after *after when it is not nil, until fn returns false.
// "LogG ≥ x" is maxKey = the order key of x. The scan reads a snapshot of
// the value's entries taken when it starts: entries committed during it are
// not seen, and every entry of a Batch whose Commit returned before it
// started is. Before the index was rebuilt at start it returns
// ErrInterestsNotLoaded.
func (db *DB) ScanInterests(site, dim, value string, maxKey uint64, after *InterestPos, fn func(pos InterestPos) bool) error {
	if db.closed.Load() {
		return ErrClosed
	}
	if !db.interests.loaded.Load() {
		return ErrInterestsNotLoaded
	}
	var kb [64]byte
	t := db.interests.snapshot(appendInterestPrefix(kb[:0], site, dim, value))
	if t == nil {
		return nil
	}
	var pivot InterestPos
	if after != nil {
		pivot = *after
	}
	t.Ascend(pivot, func(pos InterestPos) bool {
		if after != nil && pos == *after {
			return true
		}
		return pos.Key <= maxKey && fn(pos)
	})
	return nil
}

// IndexWriter rebuilds the interest index: NewIndexWriter empties it, Put
// collects the entries of every stored profile, Flush sorts each value's
// entries, loads them (interestTree.Load builds the tree level by level
// from the sorted entries; put one by one at random, each insert missed
// the cache at every level: 86 µs per profile of 18 entries at 317k
// profiles) and marks the index loaded. The builder runs it at start,
// before any commit. Until Flush the entries take 12 bytes each beside
// the index, their visitors numbered in the index's new dictionary.
type IndexWriter struct {
	ix   *interestIndex
	dict *visitorDict
	key  []byte
	sets map[string]*[]interestEntry
	n    int
}

// NewIndexWriter empties the interest index and returns the IndexWriter
// that rebuilds it; Flush ends it.
func (db *DB) NewIndexWriter() (*IndexWriter, error) {
	if db.closed.Load() {
		return nil, ErrClosed
	}
	ix := db.interests
	ix.clear()
	ix.mu.RLock()
	dict := ix.dict
	ix.mu.RUnlock()
	return &IndexWriter{ix: ix, dict: dict, sets: make(map[string]*[]interestEntry)}, nil
}

// Put adds the entry (site, dim, value, orderKey, visitor).
func (w *IndexWriter) Put(site, dim, value string, orderKey uint64, visitor [16]byte) error {
	if err := checkInterest(site, dim, value); err != nil {
		return err
	}
	w.key = appendInterestPrefix(w.key[:0], site, dim, value)
	entries := w.sets[string(w.key)]
	if entries == nil {
		entries = new([]interestEntry)
		w.sets[string(w.key)] = entries
	}
	p := interestProbe{key: orderKey, visitor: visitor}
	p.num = w.dict.number(&p.visitor, true)
	*entries = append(*entries, p.entry())
	w.n++
	return nil
}

// Flush loads what Put collected, marks the index loaded (ScanInterests
// answers from then on) and returns how many entries were put.
func (w *IndexWriter) Flush() int {
	ix := w.ix
	for key, entries := range w.sets {
		es := *entries
		slices.SortFunc(es, w.dict.cmpEntries)
		t := newInterestTree(w.dict, interestLeafCap, interestInnerCap)
		t.Load(slices.Compact(es))
		ix.mu.Lock()
		if s := ix.sets[key]; s != nil {
			// Written by a commit during the rebuild: merged.
			s.mu.Lock()
			t.Ascend(InterestPos{}, func(e InterestPos) bool { s.t.Set(e); return true })
			s.mu.Unlock()
		} else {
			ix.sets[key] = &interestSet{t: t}
		}
		ix.mu.Unlock()
		*entries = nil
		delete(w.sets, key)
	}
	var n int64
	ix.mu.RLock()
	for _, s := range ix.sets {
		s.mu.Lock()
		n += int64(s.t.Len())
		s.mu.Unlock()
	}
	ix.mu.RUnlock()
	ix.entries.Store(n)
	ix.loaded.Store(true)
	return w.n
}

func checkInterest(site, dim, value string) error {
	return errors.Join(checkSite(site), checkStr("dimension", dim), checkStr("value", value))
}

// dropStoredInterests deletes the interest index keys ('i') and the
// indexed-dimensions key ('x') that databases of format version 1 stored,
// and returns how many there were.
func (db *DB) dropStoredInterests() (int, error) {
	n := 0
	err := db.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixInterest}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, db.db.DropPrefix([]byte{prefixInterest}, []byte{prefixIndexSet})
}

package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/affinityhq/affinity/internal/logger"
	"github.com/affinityhq/affinity/storage/backup"
	"github.com/affinityhq/affinity/storage/diskwatch"
)

// Options configures a DB.
type Options struct {
	// Dir is the directory of the Badger database (<data>/state). Required;
	// created if missing. One process at a time may open it.
	Dir string

	// BlockCacheBytes is Badger's block cache, in bytes. Default 256 MiB.
	BlockCacheBytes int64

	// MemTableBytes is the size of one Badger memtable, in bytes; it also
	// bounds one transaction (Badger allows about 15% of it). Default 64 MiB.
	MemTableBytes int64

	// NumMemTables is how many memtables Badger keeps, the one being
	// written and those waiting to be flushed; writes stall when all are
	// full. Default 5 (Badger's).
	NumMemTables int

	// ValueLogFileBytes is the size of one value log file, the unit the
	// value log GC reclaims. Default 64 MiB.
	ValueLogFileBytes int64

	// VisitorCacheBytes bounds the committed visitor values kept off the
	// Go heap (fastcache) for Visitor and Profile, which answer from it
	// without Badger (see visitorCache). Default 32 MiB (fastcache's
	// floor); negative: none.
	VisitorCacheBytes int64

	// SyncWrites fsyncs every commit. Default false: exactly-once does not
	// need it (state and offset are one transaction and roll back together),
	// and the builder calls Sync before it trims the log.
	SyncWrites bool

	// Logger receives Badger's warnings and errors. Nil discards them.
	Logger logger.Logger

	// OnBadgerError, if set, is called with every error Badger logs (a
	// failed memtable flush, retried every second): the node's
	// diskwatch.Watcher.Fault.
	OnBadgerError func(msg string)
}

// DefaultOptions returns the defaults for a DB under dir.
func DefaultOptions(dir string) Options {
	return Options{
		Dir:               dir,
		BlockCacheBytes:   256 << 20,
		MemTableBytes:     64 << 20,
		NumMemTables:      5,
		ValueLogFileBytes: vlogFileSize,
		VisitorCacheBytes: 32 << 20,
	}
}

// DB is the state database. See the package doc.
type DB struct {
	opts Options
	db   *badger.DB

	// catalogGen counts catalog writes, so caches of products know when to
	// drop what they hold.
	catalogGen atomic.Uint64

	maxBatchSize  int64
	maxBatchCount int64

	// visitors caches committed visitor values; nil without
	// Options.VisitorCacheBytes.
	visitors *visitorCache

	// interests is the interest index, kept in memory (interestIndex).
	interests *interestIndex

	closed atomic.Bool

	gcStop, gcDone chan struct{}
}

// Value separation. A profile is rewritten at every commit of its
// visitor; kept inline in the LSM tree, each rewrite is copied again by
// every compaction down the levels, and at 1M visitors that write
// amplification dominated the builder's CPU and stalled it. Values of at
// least valueThreshold bytes (profiles; not index entries, links or
// membership keys) go to the value log instead, and the tree holds
// pointers (measured on 3M events of 300k visitors, two rounds each: 101
// and 106 CPU-s against 132 and 124 inline, peak RSS 1.7 against 2.0–2.2
// GB). The garbage the rewrites leave in the value log is reclaimed by
// gcLoop, a file (Options.ValueLogFileBytes) at a time.
//
// The threshold is 64 bytes, not 256: the profile and dedup list of a
// visitor of a few events is 64–256 bytes, and at three events a
// visitor (the 10M build's 30M events) those inline values were a third
// of the tree's tables (1M visitors and 3M events: 34.6 MB of tables
// with 256, 22.6 MB with 64; value log 222 → 239 MB). At 10M visitors
// the compactions took 0.6–1.4 of the 2 cores for seconds at a time,
// and the builder slowed to a third of its rate meanwhile; they now
// have a third less to copy (README "Performance", issue #10). What
// stays inline is small: offsets, the empty values of link and
// membership keys, and profiles under 64 bytes.
//
// The tree's tables are not compressed: with profiles in the value log
// they hold keys, value pointers and small values, which Snappy shrank by
// a third (83 against 116 MB of tables at 1M visitors, 3% of the state's
// disk) for a decompression at every read and a compression in every
// memtable flush and compaction, in bursts beside the builder (1M
// visitors / 10M events, two interleaved pairs: 186k and 223k events/s
// against 167k and 213k, slowest 1-s windows 0.34 and 0.32 of the median
// against 0.21 and 0.26).
const (
	valueThreshold = 64
	vlogFileSize   = 64 << 20
	vlogGCInterval = time.Minute
	vlogGCDiscard  = 0.5 // rewrite a value log file once half of it is garbage
)

// ErrClosed is returned by calls after Close.
var ErrClosed = errors.New("state database is closed")

// Open opens (creating if needed) the state DB under opts.Dir. Zero fields of
// opts get their defaults.
func Open(opts Options) (*DB, error) {
	def := DefaultOptions(opts.Dir)
	if opts.Dir == "" {
		return nil, errors.New("cannot open state: Options.Dir is empty")
	}
	if opts.BlockCacheBytes <= 0 {
		opts.BlockCacheBytes = def.BlockCacheBytes
	}
	if opts.MemTableBytes <= 0 {
		opts.MemTableBytes = def.MemTableBytes
	}
	if opts.NumMemTables <= 0 {
		opts.NumMemTables = def.NumMemTables
	}
	if opts.ValueLogFileBytes <= 0 {
		opts.ValueLogFileBytes = def.ValueLogFileBytes
	}
	if opts.VisitorCacheBytes == 0 {
		opts.VisitorCacheBytes = def.VisitorCacheBytes
	}
	bdb, err := badger.Open(opts.badgerOptions())
	if err != nil {
		return nil, fmt.Errorf("cannot open state %q: %w", opts.Dir, err)
	}
	db := &DB{
		opts:          opts,
		db:            bdb,
		maxBatchSize:  bdb.MaxBatchSize(),
		maxBatchCount: bdb.MaxBatchCount(),
		interests:     newInterestIndex(),
	}
	if opts.VisitorCacheBytes > 0 {
		db.visitors = newVisitorCache(opts.VisitorCacheBytes)
	}
	if err := db.checkHeader(); err != nil {
		return nil, errors.Join(fmt.Errorf("cannot open state %q: %w", opts.Dir, err), bdb.Close())
	}
	db.gcStop, db.gcDone = make(chan struct{}), make(chan struct{})
	go db.gcLoop()
	return db, nil
}

// gcLoop runs Badger's value log GC every vlogGCInterval until Close,
// rewriting files while they are at least vlogGCDiscard garbage.
func (db *DB) gcLoop() {
	defer close(db.gcDone)
	t := time.NewTicker(vlogGCInterval)
	defer t.Stop()
	for {
		select {
		case <-db.gcStop:
			return
		case <-t.C:
		}
		db.RunValueLogGC()
	}
}

// RunValueLogGC rewrites the value log files that are at least half
// garbage, at most 16 of them, and returns how many it rewrote.
func (db *DB) RunValueLogGC() int {
	n := 0
	for range 16 {
		if db.closed.Load() {
			break
		}
		err := db.db.RunValueLogGC(vlogGCDiscard)
		if err == nil {
			n++
			continue
		}
		if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
			db.opts.Logger.Printf("cannot run value log GC of state %q: %s", db.opts.Dir, err)
		}
		break
	}
	return n
}

func (opts Options) badgerOptions() badger.Options {
	return badger.DefaultOptions(opts.Dir).
		WithSyncWrites(opts.SyncWrites).
		WithLogger(opts.Logger.Badger("state: ").OnError(opts.OnBadgerError)).
		WithMemTableSize(opts.MemTableBytes).
		WithNumMemtables(opts.NumMemTables).
		WithBlockCacheSize(opts.BlockCacheBytes).
		WithNumVersionsToKeep(1).
		WithValueThreshold(valueThreshold).
		WithCompression(options.None).
		WithValueLogFileSize(opts.ValueLogFileBytes).
		WithDetectConflicts(false).
		WithMetricsEnabled(false)
}

// DiskHeadroom returns the disk space the state's Badger database may
// still write once the builder stops writing (diskwatch.Headroom): a
// free-space floor must leave at least this much: the LSM tree's files
// and two value log files (the one commits fill and the one a GC rewrite
// fills).
func (opts Options) DiskHeadroom() int64 {
	def := DefaultOptions(opts.Dir)
	if opts.MemTableBytes <= 0 {
		opts.MemTableBytes = def.MemTableBytes
	}
	if opts.NumMemTables <= 0 {
		opts.NumMemTables = def.NumMemTables
	}
	if opts.ValueLogFileBytes <= 0 {
		opts.ValueLogFileBytes = def.ValueLogFileBytes
	}
	return diskwatch.Headroom(opts.badgerOptions(), true) + opts.ValueLogFileBytes
}

// checkHeader checks the format version of the database, writing it in
// a new one. A database of version 1 stored the interest index: its keys
// are dropped once, and the header says version 2.
func (db *DB) checkHeader() error {
	var version []byte
	err := db.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte{prefixHeader})
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		version, err = item.ValueCopy(nil)
		return err
	})
	switch {
	case err != nil:
		return err
	case version == nil:
	case len(version) == 1 && version[0] == formatVersion:
		return nil
	case len(version) == 1 && version[0] == formatVersionStoredIndex:
		start := time.Now()
		n, err := db.dropStoredInterests()
		if err != nil {
			return fmt.Errorf("cannot drop the interest index keys of state format version %d: %w", formatVersionStoredIndex, err)
		}
		db.opts.Logger.Printf("state %q: format version %d upgraded to %d: %d interest index keys dropped in %s (the index is kept in memory)", db.opts.Dir, formatVersionStoredIndex, formatVersion, n, time.Since(start).Round(time.Millisecond))
	default:
		return fmt.Errorf("state format version %x; this build reads %d and %d", version, formatVersionStoredIndex, formatVersion)
	}
	return db.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte{prefixHeader}, []byte{formatVersion}) })
}

// TxnLimits returns what one Batch may hold, as Badger counts it: bytes
// (keys + values + about 12 bytes per write) and writes. A Batch past them
// fails to commit; Full reports half of them.
func (db *DB) TxnLimits() (maxBytes, maxWrites int64) { return db.maxBatchSize, db.maxBatchCount }

// Dir returns the directory of the DB.
func (db *DB) Dir() string { return db.opts.Dir }

// Sync makes every committed write durable (fsync).
func (db *DB) Sync() error {
	if db.closed.Load() {
		return ErrClosed
	}
	if err := db.db.Sync(); err != nil {
		return fmt.Errorf("cannot sync state %q: %w", db.opts.Dir, err)
	}
	return nil
}

// Backup writes every key and value of the DB as of one read timestamp to
// w (backup.Dump) and returns how many keys it wrote.
func (db *DB) Backup(w io.Writer) (keys int64, err error) {
	if db.closed.Load() {
		return 0, ErrClosed
	}
	if keys, err = backup.Dump(db.db, w); err != nil {
		return keys, fmt.Errorf("cannot back up state %q: %w", db.opts.Dir, err)
	}
	return keys, nil
}

// Close flushes and closes the DB. It is idempotent; callers must have
// stopped using it (the builder stops first).
func (db *DB) Close() error {
	if db.closed.Swap(true) {
		return nil
	}
	close(db.gcStop)
	<-db.gcDone
	if db.visitors != nil {
		defer db.visitors.reset() // off the Go heap: only Reset frees it
	}
	db.interests.clear()
	if err := db.db.Close(); err != nil {
		return fmt.Errorf("cannot close state %q: %w", db.opts.Dir, err)
	}
	return nil
}

// VisitorValue is what Visitor read: the visitor's profile bytes and the
// builder's dedup bytes, both aliasing Buf.
type VisitorValue struct {
	Profile []byte
	Seen    []byte
	// Buf holds the value; pass Buf[:0] as dst to the next read to reuse it.
	Buf []byte
}

// Visitor reads the stored value of (site, visitor), appending it to dst[:0].
// ok is false when the visitor has no profile. A value a commit of this
// process stored comes from the visitor cache, without Badger.
func (db *DB) Visitor(site string, visitor [16]byte, dst []byte) (v VisitorValue, ok bool, err error) {
	r := db.VisitorReader()
	defer r.Release()
	return r.Visitor(site, visitor, dst)
}

// VisitorReader reads visitors through one Badger read transaction, taken
// at its first read that misses the visitor cache and kept until Release.
// A read transaction costs Badger's oracle a lock, two watermark messages
// and a wait for every commit in flight to be written (any partition's):
// one per read, it held the builder's partitions waiting on each other's
// commits for most of their time at 10M visitors, where most events are a
// visitor's first (bench build). The builder takes one per batch instead:
// its partition's own commits are done before it reads, and other
// partitions write other visitors. Not safe for concurrent use.
type VisitorReader struct {
	db  *DB
	txn *badger.Txn
}

// VisitorReader returns a reader of db; its first read that misses the
// visitor cache begins its transaction.
func (db *DB) VisitorReader() VisitorReader { return VisitorReader{db: db} }

// Visitor is DB.Visitor, read from r's transaction when the visitor cache
// misses.
func (r *VisitorReader) Visitor(site string, visitor [16]byte, dst []byte) (v VisitorValue, ok bool, err error) {
	db := r.db
	if db.closed.Load() {
		return v, false, ErrClosed
	}
	var kb [1 + 1 + MaxSiteLen + 16]byte
	key := appendVisitorKey(kb[:0], site, visitor)
	if db.visitors != nil {
		if v.Buf, ok = db.visitors.get(dst[:0], key); ok {
			if v.Profile, v.Seen, err = splitVisitorValue(v.Buf); err != nil {
				return v, false, fmt.Errorf("cannot read visitor %x of site %q: %w", visitor, site, err)
			}
			return v, true, nil
		}
		dst = v.Buf
	}
	if r.txn == nil {
		r.txn = db.db.NewTransaction(false)
	}
	item, err := r.txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return VisitorValue{Buf: dst[:0]}, false, nil
	}
	if err != nil {
		return v, false, fmt.Errorf("cannot read visitor %x of site %q: %w", visitor, site, err)
	}
	v.Buf, err = item.ValueCopy(dst[:0])
	if err != nil {
		return v, false, fmt.Errorf("cannot read visitor %x of site %q: %w", visitor, site, err)
	}
	v.Profile, v.Seen, err = splitVisitorValue(v.Buf)
	if err != nil {
		return v, false, fmt.Errorf("cannot read visitor %x of site %q: %w", visitor, site, err)
	}
	return v, true, nil
}

// Release ends r's transaction: the next read takes a new one, which sees
// every commit done by then. It must be called before the DB closes.
func (r *VisitorReader) Release() {
	if r.txn != nil {
		r.txn.Discard()
		r.txn = nil
	}
}

// ScanVisitors calls fn with every visitor of site that has a profile, in
// visitor byte order, with its profile and dedup bytes (valid only during
// the call), until fn returns false. It reads every profile: for exports,
// brute-force checks and statistics, not for serving.
func (db *DB) ScanVisitors(site string, fn func(visitor [16]byte, prof, seen []byte) bool) error {
	if db.closed.Load() {
		return ErrClosed
	}
	if err := checkSite(site); err != nil {
		return err
	}
	prefix := append([]byte{prefixVisitor}, appendStr(nil, site)...)
	return db.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			if len(k) != len(prefix)+16 {
				return fmt.Errorf("BUG: visitor key %x has a bad length", k)
			}
			var stop bool
			err := item.Value(func(v []byte) error {
				prof, seen, err := splitVisitorValue(v)
				if err != nil {
					return fmt.Errorf("visitor %x of site %q: %w", k[len(prefix):], site, err)
				}
				stop = !fn([16]byte(k[len(prefix):]), prof, seen)
				return nil
			})
			if err != nil || stop {
				return err
			}
		}
		return nil
	})
}

// Profile appends the stored profile bytes of (site, visitor) to dst[:0]
// (reusing dst's capacity); ok is false when the visitor has no profile
// (never seen, or deleted).
func (db *DB) Profile(site string, visitor [16]byte, dst []byte) (prof []byte, ok bool, err error) {
	v, ok, err := db.Visitor(site, visitor, dst)
	if !ok || err != nil {
		return v.Buf, ok, err
	}
	// Move the profile to the front of the buffer.
	n := copy(v.Buf, v.Profile)
	return v.Buf[:n], true, nil
}

// Offset returns the next offset of partition p the builder has to consume
// (0 when nothing was consumed yet).
func (db *DB) Offset(p int) (int64, error) {
	if db.closed.Load() {
		return 0, ErrClosed
	}
	var next int64
	err := db.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(appendOffsetKey(nil, p))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("cannot decode offset value %x", v)
			}
			next = int64(binary.BigEndian.Uint64(v))
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("cannot read the offset of partition %d: %w", p, err)
	}
	return next, nil
}

// InterestPos is one entry of the interest index: a visitor and the order
// key of its stored score for the scanned (dimension, value). It is also the
// scan cursor: pass the last one seen as after to continue.
type InterestPos struct {
	Key     uint64
	Visitor [16]byte
}

// VisitorsByEmail calls fn with every visitor of site linked to email (as
// the builder stored it: normalised with NormalizeEmail), until fn returns
// false.
func (db *DB) VisitorsByEmail(site, email string, fn func(visitor [16]byte) bool) error {
	return db.linked(prefixEmail, site, email, fn)
}

// VisitorsByCustomer calls fn with every visitor of site linked to the
// customer id (trimmed, as the builder stored it), until fn returns false.
func (db *DB) VisitorsByCustomer(site, customer string, fn func(visitor [16]byte) bool) error {
	return db.linked(prefixCustomer, site, customer, fn)
}

// linked scans the identity links of one email or customer id.
func (db *DB) linked(kind byte, site, id string, fn func(visitor [16]byte) bool) error {
	if db.closed.Load() {
		return ErrClosed
	}
	prefix := appendLinkPrefix(nil, kind, site, id)
	return db.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		_, err := eachLink(it, prefix, fn)
		return err
	})
}

// VisitorsByEmails is VisitorsByEmail of each of emails, in their order:
// fn gets the email's index with each visitor. One read transaction and
// one iterator serve them all, where a VisitorsByEmail each would open
// an iterator per email (a by=email join's lookup, profile/query).
func (db *DB) VisitorsByEmails(site string, emails []string, fn func(i int, visitor [16]byte) bool) error {
	if db.closed.Load() {
		return ErrClosed
	}
	return db.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: appendStr([]byte{prefixEmail}, site)})
		defer it.Close()
		var prefix []byte
		for i, email := range emails {
			prefix = appendLinkPrefix(prefix[:0], prefixEmail, site, email)
			if more, err := eachLink(it, prefix, func(v [16]byte) bool { return fn(i, v) }); !more || err != nil {
				return err
			}
		}
		return nil
	})
}

// eachLink calls fn with the visitor of every link key of it from prefix
// on, until fn returns false (more: false).
func eachLink(it *badger.Iterator, prefix []byte, fn func(visitor [16]byte) bool) (more bool, err error) {
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		k := it.Item().Key()
		if len(k) != len(prefix)+16 {
			return false, fmt.Errorf("BUG: identity link key %x has a bad length", k)
		}
		if !fn([16]byte(k[len(prefix):])) {
			return false, nil
		}
	}
	return true, nil
}

// ScanIdle calls fn with the retention index entries of days ≤ maxDay,
// oldest day first, until fn returns false. fn must not write the DB.
func (db *DB) ScanIdle(maxDay uint32, fn func(day uint32, site string, visitor [16]byte) bool) error {
	if db.closed.Load() {
		return ErrClosed
	}
	return db.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixIdle}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			day, site, visitor, err := parseIdleKey(it.Item().Key())
			if err != nil {
				return err
			}
			if day > maxDay || !fn(day, site, visitor) {
				return nil
			}
		}
		return nil
	})
}

// Product appends the stored bytes of product id of site to dst[:0]; ok is
// false when the catalog has no such product.
func (db *DB) Product(site, id string, dst []byte) (val []byte, ok bool, err error) {
	if db.closed.Load() {
		return dst[:0], false, ErrClosed
	}
	txn := db.db.NewTransaction(false)
	defer txn.Discard()
	item, err := txn.Get(appendCatalogKey(nil, site, id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return dst[:0], false, nil
	}
	if err != nil {
		return dst[:0], false, fmt.Errorf("cannot read product %q of site %q: %w", id, site, err)
	}
	val, err = item.ValueCopy(dst[:0])
	if err != nil {
		return dst[:0], false, fmt.Errorf("cannot read product %q of site %q: %w", id, site, err)
	}
	return val, true, nil
}

// ScanProducts calls fn with every product of site, in id byte order,
// until fn returns false. id and val are valid only during the call.
func (db *DB) ScanProducts(site string, fn func(id string, val []byte) bool) error {
	if db.closed.Load() {
		return ErrClosed
	}
	prefix := appendCatalogKey(nil, site, "")
	return db.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			var stop bool
			err := item.Value(func(v []byte) error {
				stop = !fn(string(item.Key()[len(prefix):]), v)
				return nil
			})
			if err != nil || stop {
				return err
			}
		}
		return nil
	})
}

// CatalogGen returns a number that changes whenever a catalog write was
// flushed, so that caches of decoded products know when to drop them.
func (db *DB) CatalogGen() uint64 { return db.catalogGen.Load() }

// Ext reads the extension key (see ExtSet) into dst[:0].
func (db *DB) Ext(key, dst []byte) (val []byte, ok bool, err error) {
	if err := checkExtKey(key); err != nil {
		return dst[:0], false, err
	}
	if db.closed.Load() {
		return dst[:0], false, ErrClosed
	}
	txn := db.db.NewTransaction(false)
	defer txn.Discard()
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return dst[:0], false, nil
	}
	if err != nil {
		return dst[:0], false, fmt.Errorf("cannot read key %q: %w", key, err)
	}
	val, err = item.ValueCopy(dst[:0])
	return val, err == nil, err
}

// ScanExt calls fn with every extension key starting with prefix and its
// value, in key order, until fn returns false. key and val are valid only
// during the call.
func (db *DB) ScanExt(prefix []byte, fn func(key, val []byte) bool) error {
	if err := checkExtKey(prefix); err != nil {
		return err
	}
	if db.closed.Load() {
		return ErrClosed
	}
	return db.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
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

func checkExtKey(key []byte) error {
	if len(key) == 0 || key[0] < extFirst || key[0] > extLast {
		return fmt.Errorf("invalid extension key %q: must start with a byte in 'A'..'Z'", key)
	}
	return nil
}

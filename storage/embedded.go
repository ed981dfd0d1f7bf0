package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/affinityhq/affinity/internal/logger"
	"github.com/affinityhq/affinity/storage/backup"
	"github.com/affinityhq/affinity/storage/diskwatch"
)

// EmbeddedOptions configures an EmbeddedLog.
type EmbeddedOptions struct {
	// Dir is the directory of the log's Badger database. Required; it is
	// created if missing. One process at a time may open it.
	Dir string

	// Partitions is the number of partitions, fixed when the log is created:
	// reopening a log with another count fails. Default 8.
	Partitions int

	// MaxBytes is the disk budget, in bytes, of records not yet trimmed
	// (keys and values as stored). Once it is reached Append returns ErrFull
	// until Trim frees space. Default 1 GiB. Badger's files take more than
	// this until compaction drops trimmed records: plan disk for about twice
	// MaxBytes.
	MaxBytes int64

	// MaxPendingAppends bounds the Append calls waiting for the writer; past
	// it Append returns ErrFull at once, so memory stays bounded under
	// overload. Default 1024.
	MaxPendingAppends int

	// MemTableBytes and NumMemTables size Badger's memtables (each also
	// has a write-ahead file of its size, mmapped); BlockCacheBytes is its
	// block cache. Defaults 16 MiB, 3 and 16 MiB: the log is written once
	// and read soon after, from the memtables or a fresh table.
	MemTableBytes   int64
	NumMemTables    int
	BlockCacheBytes int64

	// Logger receives warnings and errors of the log and of Badger (Badger's
	// info and debug chatter is dropped). Nil discards them.
	Logger logger.Logger

	// OnBadgerError, if set, is called with every error Badger logs (a
	// failed memtable flush, retried every second): the node's
	// diskwatch.Watcher.Fault.
	OnBadgerError func(msg string)
}

// DefaultEmbeddedOptions returns the defaults for a log under dir.
func DefaultEmbeddedOptions(dir string) EmbeddedOptions {
	return EmbeddedOptions{
		Dir:               dir,
		Partitions:        8,
		MaxBytes:          1 << 30,
		MaxPendingAppends: 1024,
		MemTableBytes:     16 << 20,
		NumMemTables:      3,
		BlockCacheBytes:   16 << 20,
	}
}

const (
	// maxPartitions bounds EmbeddedOptions.Partitions.
	maxPartitions = 1 << 16

	// maxGroupBytes and maxGroupMessages bound one group commit (one Badger
	// transaction, one fsync); Badger's transaction limits may lower them.
	maxGroupBytes    = 4 << 20
	maxGroupMessages = 10000

	// maxEmbeddedMessageBytes bounds one stored record value, so that every
	// value stays inline in Badger's LSM tree (below its 1 MiB value
	// threshold): sizes read back on open are then exact. It matches
	// Kafka's default max.message.bytes.
	maxEmbeddedMessageBytes = 1<<20 - 64

	// trimChunk is the number of records deleted per trim transaction.
	trimChunk = 4096

	// gcInterval is how often Badger's value log GC runs without trims.
	gcInterval = 5 * time.Minute

	// Badger tuning for a write-once, read-soon, delete-from-the-front log
	// (its memory is in EmbeddedOptions).
	badgerNumCompactors = 2
	badgerVlogFileSize  = 16 << 20 // values are inline; the value log stays small
)

func (opts EmbeddedOptions) badgerOptions() badger.Options {
	return badger.DefaultOptions(opts.Dir).
		WithSyncWrites(true).
		WithLogger(opts.Logger.Badger("").OnError(opts.OnBadgerError)).
		WithMemTableSize(opts.MemTableBytes).
		WithNumMemtables(opts.NumMemTables).
		WithBlockCacheSize(opts.BlockCacheBytes).
		WithNumCompactors(badgerNumCompactors).
		WithValueLogFileSize(badgerVlogFileSize).
		WithNumVersionsToKeep(1).
		WithDetectConflicts(false).
		WithMetricsEnabled(false)
}

// DiskHeadroom returns the disk space the log's Badger database may still
// write once appends stop (diskwatch.Headroom): a free-space floor must
// leave at least this much. Records stay below Badger's value threshold
// (maxEmbeddedMessageBytes), so the value log is never written.
func (opts EmbeddedOptions) DiskHeadroom() int64 {
	def := DefaultEmbeddedOptions(opts.Dir)
	if opts.MemTableBytes <= 0 {
		opts.MemTableBytes = def.MemTableBytes
	}
	if opts.NumMemTables <= 0 {
		opts.NumMemTables = def.NumMemTables
	}
	return diskwatch.Headroom(opts.badgerOptions(), false)
}

// EmbeddedLog is the single-node Log: a Badger database under a directory.
//
// Concurrent Append calls are queued to one writer goroutine that writes all
// of them it can take in one Badger transaction with SyncWrites (group
// commit): one fsync acknowledges many appends. Only after the commit does it
// advance each partition's committed watermark, below which readers read, and
// answer the callers.
type EmbeddedLog struct {
	opts EmbeddedOptions
	db   *badger.DB
	g    gate

	parts []embeddedPartition

	// reserved counts the bytes of stored records plus those of queued
	// appends; Append refuses new ones while it is at or above MaxBytes.
	reserved atomic.Int64

	queue    chan *appendReq
	groupMax int64 // bytes per group, Badger's transaction limit applied
	groupCnt int   // messages per group, idem

	writerDone chan struct{}
	gcKick     chan struct{}
	gcStop     chan struct{}
	gcDone     chan struct{}

	// testHookBeforeCommit, when set before the writer starts, runs in the
	// writer goroutine before every commit.
	testHookBeforeCommit func()

	closeOnce sync.Once
	closeErr  error
}

var _ Log = (*EmbeddedLog)(nil)

type embeddedPartition struct {
	// mu guards wake and the publication of committed.
	mu        sync.Mutex
	committed atomic.Int64  // next offset readers may not read yet
	wake      chan struct{} // closed and replaced when committed moves

	first atomic.Int64 // first offset still stored
	bytes atomic.Int64 // stored bytes of records [first, committed)

	// sizesMu guards sizes: the stored bytes of each record of [first,
	// committed), so that a trim knows what it frees without reading
	// the records it deletes. The writer pushes before it publishes;
	// trims pop.
	sizesMu sync.Mutex
	sizes   recordSizes

	next int64 // next offset to assign; owned by the writer goroutine

	trimMu sync.Mutex // one Trim at a time per partition
}

// recordSizes is a queue of record sizes in offset order, 4 bytes a
// record not yet trimmed: 20 MB for a full log of the default 1 GiB
// budget in records of 200 bytes (a record is a batch of events).
type recordSizes struct {
	s    []uint32
	head int // s[head:] is the queue
}

func (q *recordSizes) len() int { return len(q.s) - q.head }

func (q *recordSizes) push(sizes []uint32) { q.s = append(q.s, sizes...) }

// sum returns the total of the first n sizes; n <= q.len().
func (q *recordSizes) sum(n int) int64 {
	var t int64
	for _, v := range q.s[q.head : q.head+n] {
		t += int64(v)
	}
	return t
}

// pop drops the first n sizes; n <= q.len(). The slice is compacted once
// its dropped head is as long as what is left, so pops and pushes stay
// O(1) amortized and the memory follows the queue's length.
func (q *recordSizes) pop(n int) {
	q.head += n
	switch {
	case q.head == len(q.s):
		q.s, q.head = q.s[:0], 0
	case q.head >= 1024 && 2*q.head >= len(q.s):
		k := copy(q.s, q.s[q.head:])
		q.s, q.head = q.s[:k], 0
	}
}

// watch returns the committed watermark and a channel closed when it moves.
func (pt *embeddedPartition) watch() (int64, <-chan struct{}) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	return pt.committed.Load(), pt.wake
}

func (pt *embeddedPartition) publish(next int64) {
	pt.mu.Lock()
	pt.committed.Store(next)
	close(pt.wake)
	pt.wake = make(chan struct{})
	pt.mu.Unlock()
}

// appendReq is one Append call waiting for the writer.
type appendReq struct {
	ctx   context.Context
	msgs  []Message
	bytes int64 // stored bytes, counted against MaxBytes
	txn   int64 // Badger's estimate of the bytes it adds to a transaction
	state atomic.Int32
	done  chan error
}

const (
	reqQueued  = iota
	reqClaimed // the writer writes it; Append must wait for done
	reqDropped // not written; whoever dropped it answered the caller
)

var appendReqPool = sync.Pool{New: func() any { return &appendReq{done: make(chan error, 1)} }}

// OpenEmbeddedLog opens the log under opts.Dir, creating it if needed, and
// recovers every partition's offsets and byte count. Zero fields of opts get
// their defaults.
func OpenEmbeddedLog(opts EmbeddedOptions) (*EmbeddedLog, error) {
	return openEmbeddedLog(opts, nil)
}

func openEmbeddedLog(opts EmbeddedOptions, hookBeforeCommit func()) (*EmbeddedLog, error) {
	def := DefaultEmbeddedOptions(opts.Dir)
	if opts.Dir == "" {
		return nil, errors.New("cannot open embedded log: EmbeddedOptions.Dir is empty")
	}
	if opts.Partitions == 0 {
		opts.Partitions = def.Partitions
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = def.MaxBytes
	}
	if opts.MaxPendingAppends == 0 {
		opts.MaxPendingAppends = def.MaxPendingAppends
	}
	if opts.MemTableBytes <= 0 {
		opts.MemTableBytes = def.MemTableBytes
	}
	if opts.NumMemTables <= 0 {
		opts.NumMemTables = def.NumMemTables
	}
	if opts.BlockCacheBytes <= 0 {
		opts.BlockCacheBytes = def.BlockCacheBytes
	}
	if opts.Partitions < 0 || opts.Partitions > maxPartitions {
		return nil, fmt.Errorf("cannot open log %q: Partitions=%d out of range [1, %d]", opts.Dir, opts.Partitions, maxPartitions)
	}
	if opts.MaxBytes < 0 {
		return nil, fmt.Errorf("cannot open log %q: MaxBytes=%d is negative", opts.Dir, opts.MaxBytes)
	}
	if opts.MaxPendingAppends < 0 {
		return nil, fmt.Errorf("cannot open log %q: MaxPendingAppends=%d is negative", opts.Dir, opts.MaxPendingAppends)
	}

	db, err := badger.Open(opts.badgerOptions())
	if err != nil {
		return nil, fmt.Errorf("cannot open log %q: %w", opts.Dir, err)
	}
	l := &EmbeddedLog{
		opts:                 opts,
		db:                   db,
		g:                    newGate(),
		parts:                make([]embeddedPartition, opts.Partitions),
		queue:                make(chan *appendReq, opts.MaxPendingAppends),
		groupMax:             min(maxGroupBytes, db.MaxBatchSize()*3/4),
		groupCnt:             int(min(maxGroupMessages, db.MaxBatchCount()/2)),
		writerDone:           make(chan struct{}),
		gcKick:               make(chan struct{}, 1),
		gcStop:               make(chan struct{}),
		gcDone:               make(chan struct{}),
		testHookBeforeCommit: hookBeforeCommit,
	}
	if err := l.recover(); err != nil {
		return nil, errors.Join(fmt.Errorf("cannot open log %q: %w", opts.Dir, err), db.Close())
	}
	go l.writer()
	go l.gcLoop()
	return l, nil
}

// recover checks the header and rebuilds every partition's state: the trim
// point from its meta key, the offsets and byte count from its record keys.
func (l *EmbeddedLog) recover() error {
	err := l.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(headerKey))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return txn.Set([]byte(headerKey), encodeHeader(l.opts.Partitions))
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			n, err := decodeHeader(v)
			if err != nil {
				return err
			}
			if n != l.opts.Partitions {
				return fmt.Errorf("the log has %d partitions; Partitions=%d: a log's partition count cannot change", n, l.opts.Partitions)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}

	var total int64
	err = l.db.View(func(txn *badger.Txn) error {
		for p := range l.parts {
			trimmed := int64(0)
			item, err := txn.Get(metaKey(p))
			switch {
			case err == nil:
				if err := item.Value(func(v []byte) (err error) { trimmed, err = decodeMeta(v); return err }); err != nil {
					return fmt.Errorf("partition %d: %w", p, err)
				}
			case !errors.Is(err, badger.ErrKeyNotFound):
				return err
			}

			// One keys-only pass gives the first and last offsets and each
			// record's size (values are inline, so sizes are exact). A
			// trim deletes records and moves the trim point in one
			// transaction, so no record is below it, and appends are
			// dense; an offset missing all the same counts 0 bytes.
			pt := &l.parts[p]
			first, next, bytes := int64(-1), trimmed, int64(0)
			it := txn.NewIterator(badger.IteratorOptions{Prefix: partitionPrefix(p)})
			for it.Seek(appendRecordKey(nil, p, trimmed)); it.Valid(); it.Next() {
				item := it.Item()
				_, off, err := parseRecordKey(item.Key())
				if err != nil {
					it.Close()
					return fmt.Errorf("partition %d: %w", p, err)
				}
				if first < 0 {
					first, next = off, off
				}
				for ; next < off; next++ {
					pt.sizes.push([]uint32{0})
				}
				size := item.KeySize() + item.ValueSize()
				pt.sizes.push([]uint32{uint32(size)})
				next = off + 1
				bytes += size
			}
			it.Close()
			if first < 0 {
				first = next
			}

			pt.first.Store(first)
			pt.committed.Store(next)
			pt.next = next
			pt.bytes.Store(bytes)
			pt.wake = make(chan struct{})
			total += bytes
		}
		return nil
	})
	l.reserved.Store(total)
	return err
}

// Partitions returns the number of partitions.
func (l *EmbeddedLog) Partitions() int { return len(l.parts) }

// Partition returns PartitionFor(key, l.Partitions()).
func (l *EmbeddedLog) Partition(key []byte) int { return PartitionFor(key, len(l.parts)) }

// Append stores msgs and returns after they are fsynced. It returns ErrFull
// (wrapped) when the disk budget is reached or MaxPendingAppends calls are
// already waiting, and ctx.Err() when ctx is done before the writer took the
// call (nothing is written then). One call holds at most a Badger
// transaction's worth of messages (about 1.8 MiB; see FORMAT.md).
func (l *EmbeddedLog) Append(ctx context.Context, msgs []Message) error {
	if !l.g.enter() {
		return ErrClosed
	}
	defer l.g.leave()
	if len(msgs) == 0 {
		return nil
	}
	var bytes, txn int64
	for i := range msgs {
		n := recordValueLen(&msgs[i])
		if n > maxEmbeddedMessageBytes {
			return fmt.Errorf("cannot append message %d of %d bytes: the embedded log stores at most %d bytes per message", i, n, maxEmbeddedMessageBytes)
		}
		bytes += int64(recordKeyLen + n)
		txn += int64(recordKeyLen+n) + 12 // Badger's per-entry estimate
	}
	if txn > l.groupMax || len(msgs) > l.groupCnt {
		return fmt.Errorf("cannot append %d messages of %d bytes in one call: the embedded log takes at most %d messages and %d bytes per call", len(msgs), bytes, l.groupCnt, l.groupMax)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if used := l.reserved.Load(); used >= l.opts.MaxBytes {
		return fmt.Errorf("cannot append to log %q: %d bytes stored or queued, MaxBytes=%d: %w", l.opts.Dir, used, l.opts.MaxBytes, ErrFull)
	}
	l.reserved.Add(bytes)

	r := appendReqPool.Get().(*appendReq)
	r.ctx, r.msgs, r.bytes, r.txn = ctx, msgs, bytes, txn
	r.state.Store(reqQueued)
	select {
	case l.queue <- r:
	default:
		l.reserved.Add(-bytes)
		r.ctx, r.msgs = nil, nil
		appendReqPool.Put(r)
		return fmt.Errorf("cannot append to log %q: %d appends already waiting, MaxPendingAppends=%d: %w", l.opts.Dir, cap(l.queue), cap(l.queue), ErrFull)
	}

	select {
	case err := <-r.done:
		r.ctx, r.msgs = nil, nil
		appendReqPool.Put(r)
		return err
	case <-ctx.Done():
		if r.state.CompareAndSwap(reqQueued, reqDropped) {
			// The writer will skip r; it is not pooled as the writer may
			// still hold it in its queue.
			l.reserved.Add(-bytes)
			return ctx.Err()
		}
		// Already being written: the writer still reads msgs, so wait.
		err := <-r.done
		r.ctx, r.msgs = nil, nil
		appendReqPool.Put(r)
		return err
	}
}

// writer is the one goroutine that writes to the log. It exits when the
// queue is closed and drained.
func (l *EmbeddedLog) writer() {
	defer close(l.writerDone)
	w := groupWriter{l: l, added: make([]int64, len(l.parts)), sizes: make([][]uint32, len(l.parts))}
	var carry *appendReq
	for {
		w.group = w.group[:0]
		first := carry
		carry = nil
		if first == nil {
			r, ok := <-l.queue
			if !ok {
				return
			}
			first = r
		}
		w.group = append(w.group, first)
		size, count := first.txn, len(first.msgs)
	drain:
		for {
			select {
			case r, ok := <-l.queue:
				if !ok {
					break drain
				}
				if size+r.txn > l.groupMax || count+len(r.msgs) > l.groupCnt {
					carry = r
					break drain
				}
				w.group = append(w.group, r)
				size += r.txn
				count += len(r.msgs)
			default:
				break drain
			}
		}
		w.write()
		clear(w.group) // drop references for the GC
	}
}

// groupWriter is the writer goroutine's scratch space.
type groupWriter struct {
	l       *EmbeddedLog
	group   []*appendReq
	live    []*appendReq
	arena   []byte
	touched []int      // partitions written by the current group
	added   []int64    // bytes the current group adds, per partition
	sizes   [][]uint32 // the size of each record it adds, per partition
}

// write writes the live requests of w.group in one transaction and answers
// every request it claimed.
func (w *groupWriter) write() {
	l := w.l
	w.live = w.live[:0]
	need := 0
	for _, r := range w.group {
		if !r.state.CompareAndSwap(reqQueued, reqClaimed) {
			continue // dropped by Append, which answered its caller
		}
		if err := r.ctx.Err(); err != nil {
			l.reserved.Add(-r.bytes)
			r.done <- err
			continue
		}
		w.live = append(w.live, r)
		need += int(r.bytes)
	}
	if len(w.live) == 0 {
		return
	}

	// Keys and values are cut from one arena sized up front, so the slices
	// handed to Badger never move; Badger copies them during Commit.
	if cap(w.arena) < need {
		w.arena = make([]byte, 0, need)
	}
	buf := w.arena[:0]
	txn := l.db.NewTransaction(true)
	defer txn.Discard()
	var err error
	for _, r := range w.live {
		for i := range r.msgs {
			m := &r.msgs[i]
			p := PartitionFor(m.Key, len(l.parts))
			pt := &l.parts[p]
			start := len(buf)
			buf = appendRecordKey(buf, p, pt.next)
			mid := len(buf)
			buf = appendRecordValue(buf, m)
			if err = txn.SetEntry(badger.NewEntry(buf[start:mid:mid], buf[mid:len(buf):len(buf)])); err != nil {
				break
			}
			if w.added[p] == 0 {
				w.touched = append(w.touched, p)
			}
			pt.next++
			w.added[p] += int64(len(buf) - start)
			w.sizes[p] = append(w.sizes[p], uint32(len(buf)-start))
		}
		if err != nil {
			break
		}
	}
	if err == nil {
		if l.testHookBeforeCommit != nil {
			l.testHookBeforeCommit()
		}
		err = txn.Commit()
	}

	for _, p := range w.touched {
		pt := &l.parts[p]
		if err != nil {
			pt.next = pt.committed.Load() // nothing of the group is stored
		} else {
			pt.sizesMu.Lock()
			pt.sizes.push(w.sizes[p])
			pt.sizesMu.Unlock()
			pt.bytes.Add(w.added[p])
			pt.publish(pt.next)
		}
		w.added[p] = 0
		w.sizes[p] = w.sizes[p][:0]
	}
	w.touched = w.touched[:0]

	if err != nil {
		err = fmt.Errorf("cannot write %d appends to log %q: %w: %w", len(w.live), l.opts.Dir, ErrFull, err)
		l.opts.Logger.Printf("%s", err)
	}
	for _, r := range w.live {
		if err != nil {
			l.reserved.Add(-r.bytes)
		}
		r.done <- err
	}
	clear(w.live)
}

// Offsets returns the first offset still stored and the next offset of
// partition p.
func (l *EmbeddedLog) Offsets(ctx context.Context, p int) (first, next int64, err error) {
	if l.g.isClosed() {
		return 0, 0, ErrClosed
	}
	if err := l.checkPartition(p); err != nil {
		return 0, 0, err
	}
	pt := &l.parts[p]
	// Load next first: a concurrent Trim only moves first up to a committed
	// offset, so first <= next holds.
	next = pt.committed.Load()
	first = pt.first.Load()
	return min(first, next), next, nil
}

func (l *EmbeddedLog) checkPartition(p int) error {
	if p < 0 || p >= len(l.parts) {
		return fmt.Errorf("partition %d out of range [0, %d)", p, len(l.parts))
	}
	return nil
}

// Trim deletes the records of partition p below before (clamped to the
// partition's next offset), in chunks of one transaction each, and frees
// their bytes from the budget. Readers positioned below the new first offset
// skip to it.
func (l *EmbeddedLog) Trim(ctx context.Context, p int, before int64) error {
	if l.g.isClosed() {
		return ErrClosed
	}
	if err := l.checkPartition(p); err != nil {
		return fmt.Errorf("cannot trim: %w", err)
	}
	pt := &l.parts[p]
	pt.trimMu.Lock()
	defer pt.trimMu.Unlock()
	before = min(before, pt.committed.Load())
	freedAny := false
	for pt.first.Load() < before {
		if err := ctx.Err(); err != nil {
			return err
		}
		freed, err := l.trimChunk(p, before)
		if err != nil {
			return fmt.Errorf("cannot trim partition %d of log %q below %d: %w", p, l.opts.Dir, before, err)
		}
		freedAny = freedAny || freed > 0
	}
	if freedAny {
		select {
		case l.gcKick <- struct{}{}:
		default:
		}
	}
	return nil
}

// trimChunk deletes up to trimChunk records of p below before and moves the
// trim point in the same transaction. It returns the bytes freed. It reads
// nothing: the records of [first, committed) are dense, so their keys are
// known, and the partition's sizes say what they hold.
func (l *EmbeddedLog) trimChunk(p int, before int64) (int64, error) {
	if !l.g.enter() {
		return 0, ErrClosed
	}
	defer l.g.leave()
	pt := &l.parts[p]
	from := pt.first.Load()
	n := int(min(before-from, trimChunk))
	pt.sizesMu.Lock()
	have := pt.sizes.len()
	var freed int64
	if n <= have {
		freed = pt.sizes.sum(n)
	}
	pt.sizesMu.Unlock()
	if n > have {
		return 0, fmt.Errorf("BUG: trimming %d records from offset %d, but the sizes of only %d are known", n, from, have)
	}
	txn := l.db.NewTransaction(true)
	defer txn.Discard()
	keys := make([]byte, 0, n*recordKeyLen)
	for off := from; off < from+int64(n); off++ {
		start := len(keys)
		keys = appendRecordKey(keys, p, off)
		if err := txn.Delete(keys[start:len(keys):len(keys)]); err != nil {
			return 0, err
		}
	}
	newFirst := from + int64(n)
	if err := txn.Set(metaKey(p), encodeMeta(newFirst)); err != nil {
		return 0, err
	}
	if err := txn.Commit(); err != nil {
		return 0, err
	}
	pt.sizesMu.Lock()
	pt.sizes.pop(n)
	pt.sizesMu.Unlock()
	pt.first.Store(newFirst)
	pt.bytes.Add(-freed)
	l.reserved.Add(-freed)
	return freed, nil
}

// Writable returns nil when the log is open, below its disk budget and its
// queue of appends is not full; otherwise an error saying which (wrapping
// ErrFull or ErrClosed).
func (l *EmbeddedLog) Writable(ctx context.Context) error {
	if l.g.isClosed() {
		return ErrClosed
	}
	if used := l.reserved.Load(); used >= l.opts.MaxBytes {
		return fmt.Errorf("log %q holds %d bytes, MaxBytes=%d; consumers must trim it: %w", l.opts.Dir, used, l.opts.MaxBytes, ErrFull)
	}
	if n := len(l.queue); n >= cap(l.queue) {
		return fmt.Errorf("log %q has %d appends waiting, MaxPendingAppends=%d: %w", l.opts.Dir, n, cap(l.queue), ErrFull)
	}
	return nil
}

// Bytes returns the stored bytes of records not yet trimmed, the figure
// MaxBytes bounds.
func (l *EmbeddedLog) Bytes() int64 {
	var n int64
	for p := range l.parts {
		n += l.parts[p].bytes.Load()
	}
	return n
}

// Backup writes every key and value of the log's database as of one read
// timestamp to w (backup.Dump) and returns how many keys it wrote. Close
// waits for it.
func (l *EmbeddedLog) Backup(w io.Writer) (keys int64, err error) {
	if !l.g.enter() {
		return 0, ErrClosed
	}
	defer l.g.leave()
	if keys, err = backup.Dump(l.db, w); err != nil {
		return keys, fmt.Errorf("cannot back up log %q: %w", l.opts.Dir, err)
	}
	return keys, nil
}

// Close refuses new calls (they get ErrClosed), waits for the appends already
// queued to be written and answered, wakes blocked readers with ErrClosed and
// closes Badger. It is idempotent.
func (l *EmbeddedLog) Close() error {
	l.closeOnce.Do(func() {
		l.g.shut() // wakes readers; waits for appends, trims and reads inside
		close(l.queue)
		<-l.writerDone
		close(l.gcStop)
		<-l.gcDone
		if err := l.db.Close(); err != nil {
			l.closeErr = errors.Join(l.closeErr, fmt.Errorf("cannot close log %q: %w", l.opts.Dir, err))
		}
	})
	return l.closeErr
}

// gcLoop runs Badger's value log GC after trims and every gcInterval, so
// that deleted records give their disk back.
func (l *EmbeddedLog) gcLoop() {
	defer close(l.gcDone)
	t := time.NewTicker(gcInterval)
	defer t.Stop()
	for {
		select {
		case <-l.gcStop:
			return
		case <-t.C:
		case <-l.gcKick:
		}
		for range 16 {
			err := l.db.RunValueLogGC(0.5)
			if err == nil {
				continue
			}
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
				l.opts.Logger.Printf("cannot run value log GC of log %q: %s", l.opts.Dir, err)
			}
			break
		}
	}
}

// OpenReader returns a reader of partition p from offset from. A reader
// below the first stored offset starts at it; one past the next offset waits
// until the partition reaches it.
func (l *EmbeddedLog) OpenReader(p int, from int64) (Reader, error) {
	if l.g.isClosed() {
		return nil, ErrClosed
	}
	if err := l.checkPartition(p); err != nil {
		return nil, fmt.Errorf("cannot open reader: %w", err)
	}
	if from < 0 || from > math.MaxInt64/2 {
		return nil, fmt.Errorf("cannot open reader of partition %d at offset %d: offset out of range", p, from)
	}
	return &embeddedReader{l: l, p: p, next: from, done: make(chan struct{})}, nil
}

type embeddedReader struct {
	l    *EmbeddedLog
	p    int
	next int64

	closeOnce sync.Once
	done      chan struct{}
}

// Fetch appends up to max records to dst, blocking until one is committed,
// ctx is done, the reader or the log is closed.
func (r *embeddedReader) Fetch(ctx context.Context, dst []Record, max int) ([]Record, error) {
	if max <= 0 {
		return dst, fmt.Errorf("cannot fetch from partition %d: max=%d is not positive", r.p, max)
	}
	pt := &r.l.parts[r.p]
	for {
		select {
		case <-r.done:
			return dst, ErrClosed
		default:
		}
		committed, wake := pt.watch()
		if r.next < committed {
			n := len(dst)
			var err error
			dst, err = r.read(dst, committed, max)
			if err != nil || len(dst) > n {
				return dst, err
			}
			continue // everything up to committed was trimmed; r.next moved
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return dst, ctx.Err()
		case <-r.done:
			return dst, ErrClosed
		case <-r.l.g.closing:
			return dst, ErrClosed
		}
	}
}

// read appends the records of [r.next, committed), at most max, to dst.
func (r *embeddedReader) read(dst []Record, committed int64, max int) ([]Record, error) {
	l := r.l
	if !l.g.enter() {
		return dst, ErrClosed
	}
	defer l.g.leave()
	txn := l.db.NewTransaction(false)
	defer txn.Discard()
	// No prefetch: the records are inline in the LSM tree, and Badger
	// prefetches each value in a goroutine of its own that ValueCopy then
	// waits for; on a busy node those goroutines queue behind all the rest
	// (11.5 of the builder's 27 blocked seconds in a trace of a 10M build's
	// slowest seconds).
	it := txn.NewIterator(badger.IteratorOptions{Prefix: partitionPrefix(r.p)})
	defer it.Close()
	n := 0
	next := committed // if nothing is left below committed, it was trimmed
	for it.Seek(appendRecordKey(nil, r.p, r.next)); it.Valid() && n < max; it.Next() {
		item := it.Item()
		_, off, err := parseRecordKey(item.Key())
		if err != nil {
			return dst, fmt.Errorf("cannot read partition %d of log %q: %w", r.p, l.opts.Dir, err)
		}
		if off >= committed {
			break
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return dst, fmt.Errorf("cannot read record %d of partition %d of log %q: %w", off, r.p, l.opts.Dir, err)
		}
		key, value, err := decodeRecordValue(v)
		if err != nil {
			return dst, fmt.Errorf("cannot read record %d of partition %d of log %q: %w", off, r.p, l.opts.Dir, err)
		}
		dst = append(dst, Record{Partition: r.p, Offset: off, Key: key, Value: value})
		n++
		next = off + 1
	}
	if n == 0 || next > r.next {
		r.next = next
	}
	return dst, nil
}

// Close releases the reader; a Fetch blocked in another goroutine returns
// ErrClosed. It is idempotent.
func (r *embeddedReader) Close() error {
	r.closeOnce.Do(func() { close(r.done) })
	return nil
}

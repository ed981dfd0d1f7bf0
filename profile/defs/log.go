package defs

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/affinityhq/affinity/internal/codec"
	"github.com/affinityhq/affinity/internal/duration"
	"github.com/affinityhq/affinity/internal/logger"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/state"
)

// Applier applies one definition record to this node's state, as the
// query API's handler does for a write it serves alone; its result goes
// back to the Submit that wrote the record. It is called from one
// goroutine, in the topic's order.
type Applier func(r *Record) (any, error)

// ErrMissing is wrapped by an Applier's error when the record needs a
// definition this node has not applied: a webhook of a segment whose put
// comes later in a compacted topic (compaction keeps each key's latest
// record, so a segment replaced after its webhook was set now follows
// it). The consumer holds such a webhook until the segment's next put,
// and drops it at the segment's delete.
var ErrMissing = errors.New("the definition it belongs to is not there")

// ErrNotApplied is wrapped by Submit's errors when the record could not
// be written, or this node did not apply it within Options.ApplyTimeout.
var ErrNotApplied = errors.New("definition not applied")

// Options configures a Log.
type Options struct {
	// Brokers are the bootstrap brokers, host:port. Required.
	Brokers []string
	// Topic is the definitions topic, created with one partition and
	// cleanup.policy=compact when it does not exist. Default
	// "affinity-definitions".
	Topic string
	// ReplicationFactor of the topic when it is created. Default 1.
	ReplicationFactor int
	// ChunkBytes is the largest body sent in one record; a larger one is
	// split into chunk records. Default 256 KiB, well under Kafka's
	// default message.max.bytes (1 MiB).
	ChunkBytes int
	// ApplyTimeout bounds how long Submit waits for this node to apply
	// the record it wrote. Default 30s.
	ApplyTimeout time.Duration
	// StartTimeout bounds how long Start waits for the node to apply the
	// records on the topic at start. Default 2m.
	StartTimeout time.Duration
	// Logger receives the records that cannot be applied. Nil discards.
	Logger logger.Logger

	// Kinds, when set, are the kinds of records the consumer applies;
	// the others (and their chunks) are skipped before decoding. Nil
	// applies every kind.
	Kinds []byte
	// Enough, when set, reports from the first bytes of a chunked body
	// whether they hold all the Applier reads of it: the chunks after
	// them are counted, not kept, and the head's Body is those bytes
	// only. A collector reads a campaign's head, never its recipients,
	// so a campaign of a million recipients is not held whole. Nil keeps
	// every body whole.
	Enough func(kind byte, prefix []byte) bool
}

// DefaultOptions returns the defaults.
func DefaultOptions() Options {
	return Options{
		Topic:             "affinity-definitions",
		ReplicationFactor: 1,
		ChunkBytes:        256 << 10,
		ApplyTimeout:      30 * time.Second,
		StartTimeout:      2 * time.Minute,
	}
}

// prefixOffset is the state extension key of the consumed offset:
// 'J' | topic str → version 1 | next offset uvarint.
const prefixOffset = 'J'

// Log is the definitions topic with this node's consumer of it. A Log
// without a state DB (a collector's, which only reads) keeps its offset
// in memory: it reads the topic from offset 0 at every start.
type Log struct {
	opts   Options
	db     *state.DB
	kl     *storage.KafkaLog
	origin uint64
	offKey []byte
	apply  Applier

	requests atomic.Uint64
	next     atomic.Int64 // the offset after the last record applied

	mu      sync.Mutex
	waiters map[uint64]chan result

	// Owned by the consumer goroutine.
	uploads map[uint64]*upload // chunks of uploads whose head has not come
	held    map[string]held    // webhooks waiting for their segment, by the segment's key
	heads   map[string]Record  // each list's last head, whose chunks a later head makes garbage

	caughtUp chan struct{} // closed once next reaches the topic's end at Start
	cancel   context.CancelFunc
	done     chan struct{}

	closeOnce sync.Once
	closeErr  error
}

type result struct {
	v   any
	err error
}

// held is a webhook record waiting for its segment, with its offset: a
// restart must read it again.
type held struct {
	rec    Record
	offset int64
}

type upload struct {
	first  int64 // offset of its first chunk on the topic
	chunks [][]byte
	// enough is the number of first chunks that hold what Options.Enough
	// asks for, once known (0 before): the chunks after are dropped.
	enough int
}

// dropped stands for a chunk counted but not kept (Options.Enough): not
// nil, so it counts as on the topic, and empty.
var dropped = []byte{}

// New opens the topic (creating it if needed) and checks it has one
// partition. The Log consumes nothing before Start or Follow. db nil: a
// reader without state, whose offset lives in memory.
func New(opts Options, db *state.DB) (*Log, error) {
	def := DefaultOptions()
	opts.Topic = cmp.Or(opts.Topic, def.Topic)
	opts.ReplicationFactor = cmp.Or(opts.ReplicationFactor, def.ReplicationFactor)
	opts.ChunkBytes = cmp.Or(opts.ChunkBytes, def.ChunkBytes)
	opts.ApplyTimeout = cmp.Or(opts.ApplyTimeout, def.ApplyTimeout)
	opts.StartTimeout = cmp.Or(opts.StartTimeout, def.StartTimeout)
	if opts.ChunkBytes < 1 || opts.ChunkBytes > 900<<10 {
		return nil, fmt.Errorf("invalid definitions chunk size %d bytes: want 1..%d (--defs-chunk-bytes)", opts.ChunkBytes, 900<<10)
	}
	if opts.Logger == nil {
		opts.Logger = func(string, ...any) {}
	}
	ko := storage.DefaultKafkaOptions(opts.Brokers...)
	ko.Topic, ko.Partitions, ko.ReplicationFactor, ko.Logger = opts.Topic, 1, opts.ReplicationFactor, opts.Logger
	ko.TopicConfig = map[string]string{"cleanup.policy": "compact"}
	ko.BatchTimeout = time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kl, err := storage.OpenKafkaLog(ctx, ko)
	if err != nil {
		return nil, fmt.Errorf("cannot open the definitions topic %q (--defs-topic): %w", opts.Topic, err)
	}
	if n := kl.Partitions(); n != 1 {
		return nil, errors.Join(fmt.Errorf("invalid definitions topic %q: %d partitions; it needs exactly 1, for one order of the writes (--defs-topic)", opts.Topic, n), kl.Close())
	}
	l := &Log{
		opts: opts, db: db, kl: kl, origin: randomU64() | 1,
		offKey:  codec.AppendString([]byte{prefixOffset}, opts.Topic),
		waiters: map[uint64]chan result{}, uploads: map[uint64]*upload{},
		held: map[string]held{}, heads: map[string]Record{},
		caughtUp: make(chan struct{}), done: make(chan struct{}),
	}
	return l, nil
}

// Topic returns the topic's name.
func (l *Log) Topic() string { return l.opts.Topic }

// Applied returns the offset after the last record this node applied.
func (l *Log) Applied() int64 { return l.next.Load() }

// CaughtUp reports whether the consumer has applied every record the
// topic held when it started.
func (l *Log) CaughtUp() bool {
	select {
	case <-l.caughtUp:
		return true
	default:
		return false
	}
}

// End returns the offset after the topic's last record now: one request
// to Kafka.
func (l *Log) End(ctx context.Context) (int64, error) {
	_, end, err := l.kl.Offsets(ctx, 0)
	if err != nil {
		return 0, fmt.Errorf("cannot read the end of the definitions topic %q: %w", l.opts.Topic, err)
	}
	return end, nil
}

// CatchUp waits until this node has applied every record the topic holds
// now, at most Options.ApplyTimeout: a build group's new owner of a
// partition calls it before it applies the partition, so that it knows
// every erasure written before (profile/builder erased.go).
func (l *Log) CatchUp(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, l.opts.ApplyTimeout)
	defer cancel()
	end, err := l.End(ctx)
	if err != nil {
		return err
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for l.next.Load() < end {
		select {
		case <-ctx.Done():
			return fmt.Errorf("cannot apply the definitions topic %q up to offset %d within %s (--defs-timeout): at %d", l.opts.Topic, end, duration.Format(l.opts.ApplyTimeout), l.next.Load())
		case <-l.done:
			return fmt.Errorf("cannot apply the definitions topic %q up to offset %d: its consumer stopped at %d", l.opts.Topic, end, l.next.Load())
		case <-t.C:
		}
	}
	return nil
}

// StoredOffset returns the offset the consumer resumes from: the state's
// (0 without one).
func (l *Log) StoredOffset() (int64, error) {
	if l.db == nil {
		return 0, nil
	}
	v, ok, err := l.db.Ext(l.offKey, nil)
	if err != nil || !ok {
		return 0, err
	}
	r := codec.NewReader("definitions offset", v, 0)
	r.Version(1)
	off := r.Uvarint()
	return int64(off), r.End()
}

// Start starts the consumer at the stored offset (0 on a fresh node) and
// waits until it has applied every record the topic held at start.
func (l *Log) Start(apply Applier) error {
	end, err := l.Follow(apply)
	if err != nil {
		return err
	}
	select {
	case <-l.caughtUp:
		return nil
	case <-time.After(l.opts.StartTimeout):
		return fmt.Errorf("cannot apply the definitions topic %q up to offset %d within %s: at %d", l.opts.Topic, end, duration.Format(l.opts.StartTimeout), l.next.Load())
	case <-l.done:
		return fmt.Errorf("cannot apply the definitions topic %q: its consumer stopped at offset %d", l.opts.Topic, l.next.Load())
	}
}

// Follow starts the consumer at the stored offset (0 on a fresh node or
// without state) and returns at once, with the topic's end at start:
// CaughtUp turns true once the consumer has applied up to it.
func (l *Log) Follow(apply Applier) (end int64, err error) {
	l.apply = apply
	from, err := l.StoredOffset()
	if err != nil {
		return 0, fmt.Errorf("cannot read the definitions offset: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	end, err = l.End(ctx)
	cancel()
	if err != nil {
		return 0, err
	}
	r, err := l.kl.OpenReader(0, from)
	if err != nil {
		return 0, err
	}
	l.next.Store(from)
	ctx, l.cancel = context.WithCancel(context.Background())
	go l.consume(ctx, r, end)
	return end, nil
}

// consume applies records until ctx ends; it closes caughtUp once the
// offset reaches end.
func (l *Log) consume(ctx context.Context, r storage.Reader, end int64) {
	defer close(l.done)
	defer r.Close()
	caught := false
	catchUp := func() {
		if !caught && l.next.Load() >= end {
			caught = true
			close(l.caughtUp)
		}
	}
	catchUp()
	var recs []storage.Record
	for {
		var err error
		recs, err = r.Fetch(ctx, recs[:0], 64)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, storage.ErrClosed) {
				return
			}
			l.opts.Logger("defs: %s", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		for i := range recs {
			l.handle(&recs[i])
		}
		if err := l.storeOffset(recs[len(recs)-1].Offset + 1); err != nil {
			l.opts.Logger("defs: %s", err)
		}
		catchUp()
	}
}

// storeOffset stores where to resume: after rec, or at the first chunk of
// an upload whose head has not come, or at a held webhook (a restart must
// read them again).
func (l *Log) storeOffset(after int64) error {
	resume := after
	for _, u := range l.uploads {
		resume = min(resume, u.first)
	}
	for _, h := range l.held {
		resume = min(resume, h.offset)
	}
	if l.db == nil {
		l.next.Store(after)
		return nil
	}
	b := l.db.NewBatch()
	if err := b.ExtSet(l.offKey, codec.AppendUvarint([]byte{1}, uint64(resume))); err != nil {
		return err
	}
	if err := b.Commit(); err != nil {
		return fmt.Errorf("cannot store the definitions offset %d: %w", resume, err)
	}
	l.next.Store(after)
	return nil
}

// handle applies one record of the topic.
func (l *Log) handle(sr *storage.Record) {
	if len(sr.Value) == 0 {
		return // a tombstone: the chunks of a replaced upload
	}
	if l.opts.Kinds != nil && (len(sr.Key) == 0 || bytes.IndexByte(l.opts.Kinds, sr.Key[0]) < 0) {
		return
	}
	var r Record
	if err := r.Decode(sr.Key, sr.Value); err != nil {
		l.opts.Logger("defs: skipping the record at offset %d of topic %q: %s", sr.Offset, l.opts.Topic, err)
		return
	}
	if r.Op == OpChunk {
		u := l.uploads[r.Upload]
		if u == nil {
			u = &upload{first: sr.Offset, chunks: make([][]byte, r.Chunks)}
			l.uploads[r.Upload] = u
		}
		if r.Index < len(u.chunks) {
			u.keep(r.Kind, r.Index, r.Body, l.opts.Enough)
		}
		return
	}
	var res result
	r.Offset = sr.Offset
	if r.Chunks > 0 {
		r.Body, res.err = l.assemble(&r)
	}
	if res.err == nil {
		res.v, res.err = l.apply(&r)
	}
	l.follow(&r, sr.Offset, res.err)
	switch {
	case r.Origin == l.origin:
		l.mu.Lock()
		ch := l.waiters[r.Request]
		l.mu.Unlock()
		if ch != nil {
			ch <- res
		}
	case res.err != nil && !errors.Is(res.err, ErrMissing):
		l.opts.Logger("defs: the record at offset %d of topic %q is not applied: %s", sr.Offset, l.opts.Topic, res.err)
	}
}

// keep keeps chunk i of an upload of kind, or counts it as dropped when
// it comes after the first chunks that hold what enough asks for.
func (u *upload) keep(kind byte, i int, body []byte, enough func(kind byte, prefix []byte) bool) {
	if u.enough > 0 && i >= u.enough {
		u.chunks[i] = dropped
		return
	}
	u.chunks[i] = body
	if enough == nil || u.enough > 0 {
		return
	}
	var prefix []byte
	for j, c := range u.chunks {
		if c == nil {
			return // a gap: the prefix ends before
		}
		prefix = append(prefix, c...)
		if j >= i && enough(kind, prefix) {
			u.enough = j + 1
			return
		}
	}
}

// assemble joins the chunks a head names. A head whose chunks are not
// all on the topic (a writer crashed between them, then wrote the head
// of another try) is refused whole.
func (l *Log) assemble(r *Record) ([]byte, error) {
	u := l.uploads[r.Upload]
	delete(l.uploads, r.Upload)
	have, size := 0, 0
	if u != nil && len(u.chunks) == r.Chunks {
		for _, c := range u.chunks {
			if c != nil {
				have++
				size += len(c)
			}
		}
	}
	if have != r.Chunks {
		return nil, fmt.Errorf("cannot apply upload %d of %s: %d of its %d chunks are on the topic", r.Upload, r.Describe(), have, r.Chunks)
	}
	body := make([]byte, 0, size)
	for _, c := range u.chunks {
		body = append(body, c...)
	}
	return body, nil
}

// follow does what an applied record implies for others: a segment's put
// applies the webhook held for it, its delete drops it; a list's new
// head (or a campaign's delete) makes the chunks of its last one garbage, which the writer of the
// new head deletes with tombstones.
func (l *Log) follow(r *Record, offset int64, err error) {
	key := r.keyString()
	switch r.Kind {
	case KindWebhook:
		if errors.Is(err, ErrMissing) && r.Op == OpPut {
			seg := Record{Kind: KindSegment, Site: r.Site, Name: r.Name}
			h := *r
			h.Origin = 0 // its Submit has had its answer
			l.held[seg.keyString()] = held{h, offset}
		} else {
			seg := Record{Kind: KindSegment, Site: r.Site, Name: r.Name}
			delete(l.held, seg.keyString())
		}
	case KindSegment:
		h, ok := l.held[key]
		if !ok {
			return
		}
		delete(l.held, key)
		if r.Op == OpPut && err == nil {
			if _, err := l.apply(&h.rec); err != nil {
				l.opts.Logger("defs: the webhook of %s is not applied: %s", r.Describe(), err)
			}
		}
	case KindList, KindCampaign:
		old, ok := l.heads[key]
		if r.Op == OpPut && r.Chunks > 0 {
			l.heads[key] = Record{Kind: r.Kind, Site: r.Site, Name: r.Name, Upload: r.Upload, Chunks: r.Chunks}
		} else {
			delete(l.heads, key)
		}
		if ok && r.Origin == l.origin && old.Upload != r.Upload {
			go l.tombstone(old)
		}
	}
}

// tombstone deletes the chunk records of a replaced upload.
func (l *Log) tombstone(old Record) {
	msgs := make([]storage.Message, old.Chunks)
	for i := range msgs {
		c := old
		c.Op, c.Index = OpChunk, i
		msgs[i].Key = c.AppendKey(nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.opts.ApplyTimeout)
	defer cancel()
	if err := l.kl.Append(ctx, msgs); err != nil {
		l.opts.Logger("defs: cannot delete the %d chunks of upload %d of %s from topic %q: %s", old.Chunks, old.Upload, old.Describe(), l.opts.Topic, err)
	}
}

// Describe names the definition of r in errors.
func (r *Record) Describe() string {
	what := map[byte]string{KindSegment: "segment", KindWebhook: "webhook of segment", KindList: "list", KindCatalog: "catalog upload",
		KindCampaignID: "campaign id reservation", KindCampaign: "campaign", KindErasure: "erasure"}[r.Kind]
	return fmt.Sprintf("%s %q of site %q", what, r.Name, r.Site)
}

// Submit writes r to the topic — in chunks when its body is larger than
// ChunkBytes, then a head — and returns the result of this node's Applier
// for it, once applied. Errors writing or waiting wrap ErrNotApplied.
func (l *Log) Submit(ctx context.Context, r *Record) (any, error) {
	r.Origin, r.Request = l.origin, l.requests.Add(1)
	ch := make(chan result, 1)
	l.mu.Lock()
	l.waiters[r.Request] = ch
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.waiters, r.Request)
		l.mu.Unlock()
	}()
	head := *r
	if len(r.Body) > l.opts.ChunkBytes {
		head.Upload = randomU64()
		head.Chunks = (len(r.Body) + l.opts.ChunkBytes - 1) / l.opts.ChunkBytes
		head.Body = nil
		msgs := make([]storage.Message, 0, head.Chunks)
		for i := 0; i < head.Chunks; i++ {
			c := Record{Kind: r.Kind, Op: OpChunk, Site: r.Site, Name: r.Name, Upload: head.Upload, Chunks: head.Chunks, Index: i}
			c.Body = r.Body[i*l.opts.ChunkBytes : min(len(r.Body), (i+1)*l.opts.ChunkBytes)]
			msgs = append(msgs, storage.Message{Key: c.AppendKey(nil), Value: c.AppendValue(nil)})
		}
		// The chunks first, in their own write: the head is written only
		// once every chunk is on the topic.
		if err := l.kl.Append(ctx, msgs); err != nil {
			return nil, fmt.Errorf("cannot write %s to topic %q: %w: %w", r.Describe(), l.opts.Topic, ErrNotApplied, err)
		}
	}
	msg := storage.Message{Key: head.AppendKey(nil), Value: head.AppendValue(nil)}
	if err := l.kl.Append(ctx, []storage.Message{msg}); err != nil {
		return nil, fmt.Errorf("cannot write %s to topic %q: %w: %w", r.Describe(), l.opts.Topic, ErrNotApplied, err)
	}
	t := time.NewTimer(l.opts.ApplyTimeout)
	defer t.Stop()
	select {
	case res := <-ch:
		return res.v, res.err
	case <-t.C:
	case <-ctx.Done():
	case <-l.done:
	}
	return nil, fmt.Errorf("%w: %s is written to topic %q, but this node did not apply it within %s (--defs-timeout; it is at offset %d): it applies when the node gets there",
		ErrNotApplied, r.Describe(), l.opts.Topic, duration.Format(l.opts.ApplyTimeout), l.next.Load())
}

// Close stops the consumer and closes the topic. Idempotent.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		if l.cancel != nil {
			l.cancel()
			<-l.done
		}
		l.closeErr = l.kl.Close()
	})
	return l.closeErr
}

// NewUploadID returns a name no other upload has, for the definitions
// whose every write is kept (catalog uploads are upserts).
func NewUploadID() string {
	return strconv.FormatUint(randomU64(), 36)
}

func randomU64() uint64 {
	var id [8]byte
	_, _ = rand.Read(id[:])
	return binary.LittleEndian.Uint64(id[:])
}

package builder

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/affinityhq/affinity/internal/logger"
	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// Options configures a Builder.
type Options struct {
	// Log is the event log to consume. Required. The Builder does not close it.
	Log storage.Log
	// State is the state DB profiles, indexes and offsets go to. Required.
	// The Builder does not close it.
	State *state.DB
	// Config is the scoring configuration. Nil: profile.DefaultConfig().
	Config *profile.Config
	// Partitions are the log partitions this builder owns at Start. Nil:
	// all. Empty but not nil: none until Own assigns some (a member of a
	// consumer group, cluster.Member).
	Partitions []int
	// Hook, if set, sees every changed or deleted profile inside the write
	// that commits it (segment membership).
	Hook Hook
	// Counter, if set, makes each partition's Counter: it counts the
	// events that are no profile's — a campaign email's opens, clicks and
	// conversions (event.TypeOpen, TypeClick, TypeConvert) — in the
	// partition's own commit, and finds the campaign recipients a purchase
	// converts, whose convert events the partition appends to the log
	// before its commit. Nil: they are dropped.
	Counter func(partition int) Counter
	// Metrics receives the builder's metrics. Nil: a private set.
	Metrics *metrics.Set
	// Logger receives errors and warnings. Nil discards them.
	Logger logger.Logger

	// CacheBytes bounds the hot-profile cache (estimated memory of decoded
	// profiles), split evenly across the owned partitions. Default 32 MiB:
	// decoded profiles are pointer-rich, and on 2 cores a larger cache cost
	// more in GC marking than it saved in state reads (Badger's block cache
	// serves those): measured with bench's build and query scenarios, 256 MiB
	// gave fewer events/s, 30% more RSS and 3x the lookup p99 under ingest.
	CacheBytes int64
	// FetchMax is the most records read, applied and committed at once per
	// partition. Default 2048: a larger commit folds more of a visitor's
	// index changes into one (bench build: +8% events/s, -7% CPU per event
	// against 512); Badger's transaction limits still split a commit that
	// would grow too big.
	FetchMax int
	// DedupWindow is how long an applied event id is remembered per visitor
	// (by server receive time): a client retry within it is dropped.
	// Default 7 days, the collector's default accept window.
	DedupWindow time.Duration
	// DedupMax bounds the ids remembered per visitor (the newest kept).
	// Default 256.
	DedupMax int
	// SyncInterval is how often the state DB is fsynced and the log trimmed
	// below the synced offsets. Default 1 s.
	SyncInterval time.Duration
	// Retention, if positive, deletes a visitor whose last event (event
	// time) is older than it, once, through the delete path with its
	// segments' exits recorded (Hook.Changed with a nil profile, or
	// Expirer.Expired). A retention index keyed by the day of each
	// visitor's last event, rewritten only when that day changes, is
	// swept every RetentionSweep. Zero: off, no index written.
	Retention time.Duration
	// RetentionSweep is how often the retention index is swept. Default
	// 1 min.
	RetentionSweep time.Duration
	// Now is the clock retention is measured by. Default time.Now.
	Now func() time.Time
	// Writable, if set, is asked before every commit of fetched records
	// (the node's diskwatch.Watcher.Err: free disk below the floor, the
	// data directory gone). While it returns an error the partition waits
	// with its records unapplied — no commit started, no error counted —
	// and goes on by itself once it returns nil.
	Writable func() error
	// EmitMark, if set, returns a partition's emission mark when Own opens
	// it (cluster.Marks.Mark): the offset up to which another node already
	// emitted the change records of the partition's commits. A catch-up
	// from below it commits at exactly that offset, so that no commit
	// evaluates a visitor over events on both sides of it (one evaluation
	// over both could merge an entry and an exit the other node emitted
	// apart, or emit what it emitted). A partition whose state is at
	// exactly its mark — caught up to it, or opened there — is handed to
	// the Hook's Reconcile, if it is a Reconciler, before it applies
	// anything above. 0: no mark.
	EmitMark func(partition int) int64
	// Erasures, if set, yields at Start every visitor erased in a build
	// group with where its partition's log was at the erasure (the
	// segment engine's erasure marks): their records below it are
	// skipped (erased.go).
	Erasures func(fn func(site string, visitor event.UUID, partition int, offset int64)) error
}

// DefaultOptions returns the defaults; Log and State must still be set.
func DefaultOptions() Options {
	return Options{
		CacheBytes:     32 << 20,
		FetchMax:       2048,
		DedupWindow:    7 * 24 * time.Hour,
		DedupMax:       256,
		SyncInterval:   time.Second,
		RetentionSweep: time.Minute,
		Now:            time.Now,
	}
}

// Hook sees, in a partition's goroutine, every profile a commit is about to
// store (p is the new profile) or delete (p is nil), and may add writes to
// the same state.Batch — extension keys such as segment memberships, due
// times and change records — so that they commit atomically with the
// profiles and the consumed offset. An error aborts the commit: the
// builder drops its uncommitted work, backs off and re-applies the records
// from the stored offset, so return errors only for conditions that clear
// (a read of the state DB that failed). p must not be kept or changed.
type Hook interface {
	Changed(b *state.Batch, site string, visitor event.UUID, p *profile.Profile) error
}

// Counter counts one partition's engagement events into keys of its own
// (campaign.Counter): Engage as each is applied, Flush into the batch
// before each commit, Reset after it or when the batch is dropped (its
// records are applied again). Errors are conditions that clear, as a
// Hook's.
type Counter interface {
	Engage(site string, e *event.Event) error
	// Convert appends to dst the messages that forward purchase e, of a
	// visitor of site linked to email (normalised) and received at recv,
	// to the campaign recipients it converts (event.TypeConvert, keyed by
	// the recipient's visitor); none when it converts nobody.
	Convert(dst []storage.Message, site, email string, recv int64, e *event.Event) ([]storage.Message, error)
	// InWindow reports whether a campaign of site has its conversion
	// window open at instant ts (Unix ms): an in-memory check, so that a
	// purchase no campaign can count costs no read for its email.
	InWindow(site string, ts int64) bool
	// Email returns the email of the recipient whose campaign token an
	// identify carries (the snippet read it from a click's landing URL):
	// the visitor is linked to it. ok is false for a token that does not
	// check or is of another site's campaign.
	Email(site, token string) (email string, ok bool, err error)
	Flush(b *state.Batch) error
	Reset()
}

// Expirer is implemented by a Hook that tells a visitor deleted for
// Options.Retention from one erased (Changed with a nil profile): it sees
// the profile being deleted, so it can record the exits with the email.
type Expirer interface {
	Expired(b *state.Batch, site string, visitor event.UUID, p *profile.Profile) error
}

// Reconciler is implemented by a Hook whose writes in a partition's
// commits at or below the partition's emission mark (Options.EmitMark)
// were not emitted — another node emitted that stretch — so that what
// they wrote may disagree with what went out (profile/membership). The
// builder calls it once a partition's state is at exactly its mark,
// before it applies a record above it: MarkReady without the partition's
// lock (it may wait, say for what was emitted to be copied here), then
// Reconcile in the partition's goroutine under its lock, so no commit of
// the partition — neither an event commit nor a Visit — runs meanwhile.
// An error of either is retried as a failed apply is.
type Reconciler interface {
	MarkReady(ctx context.Context, partition int, mark int64) error
	Reconcile(ctx context.Context, m *Mark) error
}

// Mark is a partition at its emission mark, as Reconcile gets it.
type Mark struct {
	Partition int
	Mark      int64
	// Batch is the partition's batch, empty. Visit commits what fn adds
	// to it; Reconcile may call its RaiseOrdinal.
	Batch *state.Batch
	// Holds reports whether the records of a visitor of site are in this
	// partition.
	Holds func(site string, visitor event.UUID) bool
	// Visit runs fn as Builder.Visit does, for a visitor of this
	// partition, under the lock Reconcile holds: call it only from there.
	Visit func(site string, visitor event.UUID, fn func(b *state.Batch, p *profile.Profile) error) error
}

// Builder consumes the event log into profiles. See the package doc.
type Builder struct {
	opts Options
	cfg  *profile.Config
	m    *builderMetrics
	logf func(string, ...any)
	// own is the set of owned partitions, replaced whole by Own (under
	// ownMu); readers load it without a lock. See own.go.
	own   atomic.Pointer[ownership]
	ownMu sync.Mutex
	// ctx is the parent of every partition's context, cancelled by Close.
	ctx context.Context

	windowSec int64

	cancel   context.CancelFunc
	wg       sync.WaitGroup
	syncStop chan struct{}
	syncDone chan struct{}

	// trimMu serializes syncAndTrim with HoldTrim; trimHolds counts holds.
	trimMu    sync.Mutex
	trimHolds int

	// paused counts the partitions waiting for Options.Writable.
	paused atomic.Int32
	// erased are the erased visitors whose records are skipped (erased.go).
	erased erasedSet

	started   atomic.Bool
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// New returns a Builder for opts; Start runs it. Zero fields of opts get
// their defaults.
func New(opts Options) (*Builder, error) {
	def := DefaultOptions()
	if opts.Log == nil || opts.State == nil {
		return nil, errors.New("cannot create builder: Options.Log and Options.State are required")
	}
	if opts.Config == nil {
		opts.Config = profile.DefaultConfig()
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.NewSet()
	}
	if opts.CacheBytes <= 0 {
		opts.CacheBytes = def.CacheBytes
	}
	if opts.FetchMax <= 0 {
		opts.FetchMax = def.FetchMax
	}
	if opts.DedupWindow <= 0 {
		opts.DedupWindow = def.DedupWindow
	}
	if opts.DedupMax <= 0 {
		opts.DedupMax = def.DedupMax
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = def.SyncInterval
	}
	if opts.RetentionSweep <= 0 {
		opts.RetentionSweep = def.RetentionSweep
	}
	if opts.Now == nil {
		opts.Now = def.Now
	}
	n := opts.Log.Partitions()
	awaitOwn := opts.Partitions != nil && len(opts.Partitions) == 0
	if opts.Partitions == nil {
		for p := range n {
			opts.Partitions = append(opts.Partitions, p)
		}
	}
	b := &Builder{
		opts:      opts,
		cfg:       opts.Config,
		m:         newBuilderMetrics(opts.Metrics, opts.State),
		logf:      opts.Logger.Printf,
		windowSec: int64(opts.DedupWindow / time.Second),
	}
	opts.Metrics.GetOrCreateGauge("affinity_builder_paused_partitions", func() float64 { return float64(b.paused.Load()) })
	b.erased.init(n)
	if len(opts.Partitions) == 0 && !awaitOwn {
		return nil, errors.New("cannot create builder: no partitions to own")
	}
	if err := checkPartitions(opts.Partitions, n); err != nil {
		return nil, fmt.Errorf("cannot create builder: %w", err)
	}
	own := &ownership{parts: make([]*partition, n)}
	for _, p := range opts.Partitions {
		own.add(b.newPartition(p, len(opts.Partitions)))
	}
	b.own.Store(own)
	return b, nil
}

// Config returns the scoring configuration profiles are built with.
func (b *Builder) Config() *profile.Config { return b.cfg }

// Metrics returns the set the builder's metrics are on.
func (b *Builder) Metrics() *metrics.Set { return b.opts.Metrics }

// Start reads every owned partition's consumed offset from the state DB and
// starts consuming from there, one goroutine per partition.
func (b *Builder) Start() error {
	if b.closed.Load() {
		return errors.New("cannot start builder: it is closed")
	}
	if b.started.Swap(true) {
		return errors.New("cannot start builder: already started")
	}
	if err := b.loadIndex(); err != nil {
		b.started.Store(false)
		return err
	}
	if b.opts.Erasures != nil {
		if _, err := b.erased.load(b.opts.Erasures); err != nil {
			b.started.Store(false)
			return fmt.Errorf("cannot start builder: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.ctx, b.cancel = ctx, cancel
	owned := b.ownedParts()
	for _, pt := range owned {
		if err := pt.open(ctx); err != nil {
			cancel()
			for _, pt := range owned {
				if pt.reader != nil {
					_ = pt.reader.Close()
				}
			}
			b.started.Store(false)
			return err
		}
	}
	for _, pt := range owned {
		b.startPartition(pt)
	}
	if b.opts.Retention > 0 {
		b.wg.Add(1)
		go b.retentionLoop(ctx)
	}
	b.syncStop = make(chan struct{})
	b.syncDone = make(chan struct{})
	go b.syncLoop()
	return nil
}

// Close stops consuming — each partition finishes the batch it is applying
// and commits it — then fsyncs the state DB and trims the log below the
// consumed offsets. It does not close the log or the state DB. It is
// idempotent.
func (b *Builder) Close() error {
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		if !b.started.Load() {
			return
		}
		b.ownMu.Lock() // no Own meanwhile: the set closed below is the last
		defer b.ownMu.Unlock()
		b.cancel()
		b.wg.Wait()
		close(b.syncStop)
		<-b.syncDone
		b.closeErr = b.syncAndTrim()
		for _, pt := range b.ownedParts() {
			b.closeErr = errors.Join(b.closeErr, pt.reader.Close())
		}
	})
	return b.closeErr
}

// syncLoop fsyncs the state and trims the log every SyncInterval, and
// refreshes the log's head offsets (lag).
func (b *Builder) syncLoop() {
	defer close(b.syncDone)
	t := time.NewTicker(b.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-b.syncStop:
			return
		case <-t.C:
		}
		if err := b.syncAndTrim(); err != nil {
			b.logf("builder: %s", err)
		}
		b.refreshHeads()
	}
}

// syncAndTrim makes the committed state durable, then lets the log drop
// the records below the offsets that state covers: a trimmed record is
// never needed again, whatever happens to the machine.
func (b *Builder) syncAndTrim() error {
	b.trimMu.Lock()
	defer b.trimMu.Unlock()
	owned := b.ownedParts()
	consumed := make([]int64, len(owned))
	for i, pt := range owned {
		consumed[i] = pt.consumed.Load()
	}
	if err := b.opts.State.Sync(); err != nil {
		return err
	}
	if b.trimHolds > 0 {
		return nil
	}
	var errs error
	for i, pt := range owned {
		if consumed[i] <= pt.trimmed {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := b.opts.Log.Trim(ctx, pt.id, consumed[i])
		cancel()
		if err != nil {
			errs = errors.Join(errs, fmt.Errorf("cannot trim partition %d below %d: %w", pt.id, consumed[i], err))
			continue
		}
		pt.trimmed = consumed[i]
	}
	return errs
}

// HoldTrim keeps the builder from trimming the log until release is
// called; the state is still synced meanwhile. A backup holds it while it
// copies the state and then the log, so that the log copied still holds
// every record from the copied state's offsets on. It waits for a trim in
// progress to finish. Holds nest; release is idempotent.
func (b *Builder) HoldTrim() (release func()) {
	b.trimMu.Lock()
	b.trimHolds++
	b.trimMu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			b.trimMu.Lock()
			b.trimHolds--
			b.trimMu.Unlock()
		})
	}
}

func (b *Builder) refreshHeads() {
	for _, pt := range b.ownedParts() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, next, err := b.opts.Log.Offsets(ctx, pt.id)
		cancel()
		if err == nil {
			pt.head.Store(next)
		}
	}
}

// PartitionStatus is the progress of one owned partition.
type PartitionStatus struct {
	Partition int
	Consumed  int64  // next offset to apply; everything below is committed
	Head      int64  // the log's next offset, as last seen
	Lag       int64  // Head − Consumed, ≥ 0
	Error     string // the last error, until a commit succeeds again
}

// Status is the builder's progress, for /healthz and the query API.
type Status struct {
	Partitions    []PartitionStatus
	EventsApplied uint64
	DedupHits     uint64
	CatalogMisses uint64
}

// AppendText appends s as text lines, for the body of /healthz:
// "builder events_applied=N dedup_hits=N catalog_misses=N" then per
// partition "partition P consumed=N head=N lag=N[ error=…]".
func (s Status) AppendText(dst []byte) []byte {
	dst = fmt.Appendf(dst, "builder events_applied=%d dedup_hits=%d catalog_misses=%d\n", s.EventsApplied, s.DedupHits, s.CatalogMisses)
	for _, p := range s.Partitions {
		dst = fmt.Appendf(dst, "partition %d consumed=%d head=%d lag=%d", p.Partition, p.Consumed, p.Head, p.Lag)
		if p.Error != "" {
			dst = fmt.Appendf(dst, " error=%q", p.Error)
		}
		dst = append(dst, '\n')
	}
	return dst
}

// Status returns the progress of every owned partition and the counters.
func (b *Builder) Status() Status {
	s := Status{
		EventsApplied: b.m.eventsApplied.Get(),
		DedupHits:     b.m.dedupHits.Get(),
		CatalogMisses: b.m.catalogMisses.Get(),
	}
	for _, pt := range b.ownedParts() {
		s.Partitions = append(s.Partitions, PartitionStatus{
			Partition: pt.id,
			Consumed:  pt.consumed.Load(),
			Head:      pt.head.Load(),
			Lag:       pt.lag(),
			Error:     pt.failure(),
		})
	}
	return s
}

// Health returns nil while the builder runs and no partition is failing.
func (b *Builder) Health(ctx context.Context) error {
	switch {
	case b.closed.Load():
		return errors.New("builder stopped")
	case !b.started.Load():
		return errors.New("builder not started")
	}
	for _, pt := range b.ownedParts() {
		if msg := pt.failure(); msg != "" {
			return fmt.Errorf("builder partition %d failing: %s", pt.id, msg)
		}
	}
	return nil
}

// WaitCaughtUp waits until every owned partition has committed everything
// the log held when it was called, or ctx is done.
func (b *Builder) WaitCaughtUp(ctx context.Context) error {
	owned := b.ownedParts()
	targets := make([]int64, len(owned))
	for i, pt := range owned {
		_, next, err := b.opts.Log.Offsets(ctx, pt.id)
		if err != nil {
			return err
		}
		targets[i] = next
		pt.head.Store(max(pt.head.Load(), next))
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		done := true
		for i, pt := range owned {
			done = done && pt.consumed.Load() >= targets[i]
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// DeleteVisitor forgets visitor of site everywhere: its profile and dedup
// list, its interest index entries and its identity link (and, through the
// Hook, whatever the hook keeps), in one commit serialised with the
// partition's apply. It reports whether there was anything to delete.
// Events of the visitor still in the log, or sent later, start a new
// profile.
func (b *Builder) DeleteVisitor(site string, visitor event.UUID) (bool, error) {
	pt, err := b.owner(site, visitor)
	if err != nil {
		return false, fmt.Errorf("cannot delete visitor %s of site %q: %w", visitor, site, err)
	}
	return pt.deleteVisitor(site, visitor)
}

// Visit runs fn with the current profile of visitor of site (nil when it
// has none) under its partition's lock — serialised with apply and
// DeleteVisitor — and commits what fn adds to the batch in one
// transaction. It is the way for work outside the event stream (the
// segment scheduler re-evaluating a profile that fell due) to write state
// consistent with the profile it read. fn must not keep or change p, and
// must only add extension keys (Batch.ExtSet / ExtDelete).
func (b *Builder) Visit(site string, visitor event.UUID, fn func(batch *state.Batch, p *profile.Profile) error) error {
	pt, err := b.owner(site, visitor)
	if err == nil {
		err = pt.lockOwned()
	}
	if err != nil {
		return fmt.Errorf("cannot visit visitor %s of site %q: %w", visitor, site, err)
	}
	defer pt.unlock()
	return pt.visit(site, visitor, fn)
}

// visit is Visit under pt's lock, held by the caller.
func (pt *partition) visit(site string, visitor event.UUID, fn func(batch *state.Batch, p *profile.Profile) error) error {
	en, err := pt.entry(site, visitor)
	if err != nil {
		return fmt.Errorf("cannot visit visitor %s of site %q: %w", visitor, site, err)
	}
	prof := &en.prof
	if !en.stored {
		pt.cache.remove(en)
		prof = nil
	}
	if err := fn(pt.batch, prof); err != nil {
		pt.batch.Reset()
		return err
	}
	if err := pt.commitBatch(); err != nil {
		return fmt.Errorf("cannot visit visitor %s of site %q: %w", visitor, site, err)
	}
	return nil
}

// partition consumes one log partition.
type partition struct {
	b  *Builder
	id int

	// mu serialises the apply-and-commit of a fetched batch with
	// DeleteVisitor; the cache, batch and buffers below are used under it.
	mu       sync.Mutex
	cache    *cache
	products *productCache
	batch    *state.Batch
	reader   storage.Reader
	// visitors reads the profiles the cache misses, through one read
	// transaction per batch (state.VisitorReader); commitBatch ends it,
	// so that a read never predates a commit of the partition's.
	visitors state.VisitorReader
	eb       event.Batch
	dirty    []*entry
	counter  Counter // nil: engagement events are dropped

	// converts are the convert events of the purchases applied since the
	// last commit (Counter.Convert), appended to the log before it;
	// purchases the indexes of a record's purchases applied; identity
	// decodes the profiles a customer id links to (customerEmail).
	converts  []storage.Message
	purchases []int
	identity  profile.PartialDecoder

	// spareChanges are the emptied change buffers of committed entries:
	// only dirty entries hold one, so the cached profiles of many visitors
	// do not each keep a buffer's capacity alive between their batches.
	spareChanges [][]profile.ScoreChange

	keyBuf, profBuf, seenBuf, valBuf []byte

	// pendingBytes and pendingWrites estimate the writes of the records
	// applied since the last commit; past maxBytes / maxWrites (a quarter of
	// Badger's transaction limits) the builder commits mid-batch.
	pendingBytes, pendingWrites int64
	maxBytes, maxWrites         int64

	trimmed int64 // owned by the sync goroutine (and Close)
	// emitMark is the offset a commit must end at when the partition
	// passes it (Options.EmitMark), read at open, until the partition
	// reached it (reachMark); 0: none. Used by the partition's goroutine.
	emitMark int64

	// fenced is set, under mu, when the partition is revoked (Own): no
	// commit of it may happen after.
	fenced bool
	// stop cancels run's context; done is closed when run returned.
	stop func()
	done chan struct{}

	consumed   atomic.Int64
	head       atomic.Int64
	current    atomic.Int64 // the offset it serves queries from (own.go: Serving)
	cacheBytes atomic.Int64
	lastErr    atomic.Pointer[string]
}

func (pt *partition) lag() int64 { return max(pt.head.Load()-pt.consumed.Load(), 0) }

func (pt *partition) failure() string {
	if p := pt.lastErr.Load(); p != nil {
		return *p
	}
	return ""
}

func (pt *partition) fail(err error) {
	msg := err.Error()
	pt.lastErr.Store(&msg)
	pt.b.logf("builder: partition %d: %s", pt.id, msg)
}

// open reads the consumed offset and opens the reader there.
func (pt *partition) open(ctx context.Context) error {
	b := pt.b
	next, err := b.opts.State.Offset(pt.id)
	if err != nil {
		return fmt.Errorf("cannot start builder: %w", err)
	}
	first, head, err := b.opts.Log.Offsets(ctx, pt.id)
	if err != nil {
		return fmt.Errorf("cannot start builder: cannot read offsets of partition %d: %w", pt.id, err)
	}
	if first > next {
		b.logf("builder: partition %d: the log starts at offset %d but state consumed only up to %d: records [%d, %d) are gone and not in the profiles",
			pt.id, first, next, next, first)
	}
	pt.consumed.Store(next)
	pt.batch.ResumeAt(pt.id, next)
	pt.head.Store(head)
	pt.emitMark = 0
	if b.opts.EmitMark != nil {
		if mark := b.opts.EmitMark(pt.id); mark > 0 && mark >= next {
			pt.emitMark = mark
			if mark > next {
				b.logf("builder: partition %d: catching up from offset %d, its change records up to offset %d were emitted by another node", pt.id, next, mark)
			}
		}
	}
	pt.trimmed = 0
	if first >= next {
		pt.trimmed = next
	}
	r, err := b.opts.Log.OpenReader(pt.id, next)
	if err != nil {
		return fmt.Errorf("cannot start builder: %w", err)
	}
	pt.reader = r
	return nil
}

const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

func (pt *partition) run(ctx context.Context) {
	defer pt.b.wg.Done()
	var recs []storage.Record
	backoff := minBackoff
	for {
		// A partition opened at its mark reaches it before any fetch.
		err := pt.reachMark(ctx)
		if err == nil {
			recs, err = pt.reader.Fetch(ctx, recs[:0], pt.b.opts.FetchMax)
		}
		if len(recs) > 0 {
			if !pt.waitWritable(ctx) {
				return // closing: the records stay in the log, unapplied
			}
			if aerr := pt.applyAcrossMark(ctx, recs); aerr != nil {
				err = aerr
			}
			clear(recs) // let the records' bytes go
			recs = recs[:0]
		}
		if err == nil {
			backoff = minBackoff
			continue
		}
		if ctx.Err() != nil || errors.Is(err, storage.ErrClosed) {
			return
		}
		pt.fail(err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
		if rerr := pt.reopen(); rerr != nil {
			if errors.Is(rerr, storage.ErrClosed) {
				return
			}
			pt.fail(rerr)
		}
	}
}

// pauseCheckInterval is how often a paused partition asks Writable again.
const pauseCheckInterval = 100 * time.Millisecond

// waitWritable returns true at once or as soon as Options.Writable allows
// writes, false when ctx is done first. The first partition to pause and
// the last to resume log it.
func (pt *partition) waitWritable(ctx context.Context) bool {
	b := pt.b
	if b.opts.Writable == nil {
		return true
	}
	err := b.opts.Writable()
	if err == nil {
		return true
	}
	start := time.Now()
	if b.paused.Add(1) == 1 {
		b.logf("builder: paused: %s", err)
	}
	defer func() {
		if b.paused.Add(-1) == 0 && ctx.Err() == nil {
			b.logf("builder: resumed after %s", time.Since(start).Round(time.Millisecond))
		}
	}()
	t := time.NewTicker(pauseCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		if b.opts.Writable() == nil {
			return true
		}
	}
}

// reopen restarts the reader at the consumed offset.
func (pt *partition) reopen() error {
	pt.mu.Lock()
	defer pt.unlock()
	_ = pt.reader.Close()
	r, err := pt.b.opts.Log.OpenReader(pt.id, pt.consumed.Load())
	if err != nil {
		// Keep a closed reader: Fetch answers ErrClosed and run retries.
		return err
	}
	pt.reader = r
	return nil
}

// apply applies recs and commits them with the offset after the last one,
// in one write or, past the transaction budget, a few. On error nothing
// uncommitted is kept: the dirty profiles are dropped from the cache and
// the caller re-reads from the consumed offset.
func (pt *partition) apply(recs []storage.Record) error {
	pt.mu.Lock()
	defer pt.unlock()
	start := time.Now()
	erased := pt.b.erased.of(pt.id)
	for i := range recs {
		rec := &recs[i]
		if err := pt.applyRecord(rec, erased); err != nil {
			pt.abort()
			return err
		}
		if i+1 < len(recs) && (pt.pendingBytes >= pt.maxBytes || pt.pendingWrites >= pt.maxWrites) {
			if err := pt.commit(rec.Offset + 1); err != nil {
				pt.abort()
				return err
			}
		}
	}
	if err := pt.commit(recs[len(recs)-1].Offset + 1); err != nil {
		pt.abort()
		return err
	}
	pt.b.m.batchDuration.UpdateDuration(start)
	return nil
}

// applyAcrossMark applies recs as apply does, but a catch-up from below
// the partition's emission mark commits at exactly the mark and reaches it
// (reachMark) before it applies the records above: no commit evaluates a
// visitor over events on both sides of the mark (one evaluation over both
// could merge an entry and an exit the other node emitted apart).
func (pt *partition) applyAcrossMark(ctx context.Context, recs []storage.Record) error {
	if mark := pt.emitMark; mark > pt.consumed.Load() {
		n := 0
		for n < len(recs) && recs[n].Offset < mark {
			n++
		}
		if n > 0 && n < len(recs) {
			if err := pt.apply(recs[:n]); err != nil {
				return err
			}
			if err := pt.reachMark(ctx); err != nil {
				return err
			}
			recs = recs[n:]
		}
	}
	if err := pt.apply(recs); err != nil {
		return err
	}
	return pt.reachMark(ctx)
}

// reachMark hands the partition to the Hook's Reconcile once its state is
// at exactly its emission mark, the first time (Reconciler), and forgets
// the mark: the records above it are this node's to emit.
func (pt *partition) reachMark(ctx context.Context) error {
	mark := pt.emitMark
	if mark == 0 || pt.consumed.Load() != mark {
		return nil
	}
	if r, ok := pt.b.opts.Hook.(Reconciler); ok {
		if err := r.MarkReady(ctx, pt.id, mark); err != nil {
			return fmt.Errorf("cannot reconcile partition %d at its emission mark %d: %w", pt.id, mark, err)
		}
		pt.mu.Lock()
		defer pt.unlock()
		if pt.fenced {
			return &NotOwnerError{Partition: pt.id}
		}
		m := &Mark{Partition: pt.id, Mark: mark, Batch: pt.batch, Visit: pt.visit,
			Holds: func(site string, v event.UUID) bool {
				return pt.b.opts.Log.Partition(event.AppendLogKey(nil, site, v)) == pt.id
			}}
		if err := r.Reconcile(ctx, m); err != nil {
			pt.batch.Reset()
			return fmt.Errorf("cannot reconcile partition %d at its emission mark %d: %w", pt.id, mark, err)
		}
	}
	pt.emitMark = 0
	return nil
}

// Spare change buffers are kept up to maxSpareChanges of them, each of
// capacity at most maxSpareChangeCap. An event changes about two index
// entries, so a small buffer serves most visitors; without the bounds, the
// commits of a backlog (200k dirty visitors as a node catches up) left
// thousands of buffers grown by bursts behind for good, 36 MB of the live
// heap in the query bench: memory every GC cycle must scan.
const (
	maxSpareChanges   = 4096
	maxSpareChangeCap = 64
)

// releaseChanges takes en's change buffer back into the spares, within
// their bounds; a buffer beyond them is left to the GC.
func (pt *partition) releaseChanges(en *entry) {
	if en.changes == nil {
		return
	}
	if cap(en.changes) <= maxSpareChangeCap && len(pt.spareChanges) < maxSpareChanges {
		clear(en.changes)
		pt.spareChanges = append(pt.spareChanges, en.changes[:0])
	}
	en.changes = nil
}

// commitBatch commits pt.batch and ends the read transaction of
// pt.visitors, whatever the outcome: the next read sees this commit.
func (pt *partition) commitBatch() error {
	defer pt.visitors.Release()
	return pt.batch.Commit()
}

// abort drops the uncommitted work: dirty entries leave the cache (the
// next read gets them from state) and the batch is emptied. The reader
// must be reopened at the consumed offset.
func (pt *partition) abort() {
	for _, en := range pt.dirty {
		pt.releaseChanges(en)
		pt.cache.remove(en)
	}
	clear(pt.dirty)
	pt.dirty = pt.dirty[:0]
	pt.batch.Reset()
	if pt.counter != nil {
		pt.counter.Reset()
	}
	clear(pt.converts)
	pt.converts = pt.converts[:0]
	pt.pendingBytes, pt.pendingWrites = 0, 0
	pt.cacheBytes.Store(pt.cache.bytes)
	_ = pt.reader.Close() // run reopens it
}

// applyRecord applies the events of one log record to its visitor's
// profile, dropping those already applied, and the whole record when it is
// of a visitor in erased from before its erasure.
func (pt *partition) applyRecord(rec *storage.Record, erased map[string]int64) error {
	b := pt.b
	b.m.records.Inc()
	if err := event.DecodeRecord(&pt.eb, rec.Value); err != nil {
		// Not ours to fix: a record this build cannot read is skipped and
		// counted, so one bad record does not stop the partition.
		b.m.badRecords.Inc()
		b.logf("builder: skipping record %d of partition %d: %s", rec.Offset, pt.id, err)
		return nil
	}
	eb := &pt.eb
	if len(eb.Events) == 0 {
		return nil
	}
	if t := eb.Events[0].Type; t == event.TypeOpen || t == event.TypeClick || t == event.TypeConvert {
		// The collector's engagement endpoints, and a builder forwarding a
		// purchase, log one such event per record, under the recipient's
		// own visitor: no profile's.
		return pt.engage(eb)
	}
	if len(erased) > 0 && pt.skipErased(erased, eb, rec.Offset) {
		return nil
	}
	en, err := pt.entry(eb.Site, eb.Visitor)
	if err != nil {
		return err
	}
	if en.changes == nil {
		if n := len(pt.spareChanges); n > 0 {
			en.changes, pt.spareChanges = pt.spareChanges[n-1], pt.spareChanges[:n-1]
		}
	}
	nChanges := len(en.changes)
	applied := 0
	pt.purchases = pt.purchases[:0]
	for i := range eb.Events {
		e := &eb.Events[i]
		id := foldID(e.ID)
		if en.seen.has(id) {
			b.m.dedupHits.Inc()
			continue
		}
		// An order counts once per visitor, forever: an import sent again
		// or a purchase sent both by the browser and the shop's backend.
		if e.Type == event.TypePurchase && e.HasOrder && e.Order.ID != "" {
			if order := event.OrderKey(e.Order.ID); en.orders.Has(order) {
				b.m.orderDedupHits.Inc()
				continue
			} else {
				en.orders = en.orders.Add(order)
			}
		}
		if err := pt.join(eb.Site, e); err != nil {
			return err
		}
		if e.Type == event.TypeIdentify && e.Token != "" && e.Email == "" && pt.counter != nil {
			// A campaign click's landing: this browser is the recipient's.
			email, ok, err := pt.counter.Email(eb.Site, e.Token)
			if err != nil {
				return err
			}
			if ok {
				e.Email = email
			}
		}
		en.changes = en.prof.Apply(e, b.cfg, eb.Recv, en.changes)
		en.seen = append(en.seen, seenID{id: id, recv: floorDiv(eb.Recv, 1000)})
		applied++
		if e.Type == event.TypePurchase {
			pt.purchases = append(pt.purchases, i)
		}
	}
	if applied == 0 {
		return nil
	}
	if len(pt.purchases) > 0 && pt.counter != nil {
		if err := pt.convert(eb, en); err != nil {
			return err
		}
	}
	en.seen = en.seen.prune(b.windowSec, b.opts.DedupMax)
	b.m.eventsApplied.Add(applied)
	en.lastRec = rec.Offset // a record all of whose events were applied before changes nothing
	if !en.dirty {
		en.dirty = true
		pt.dirty = append(pt.dirty, en)
		pt.pendingBytes += en.size/3 + 64
		pt.pendingWrites += 3
	}
	pt.pendingWrites += 2 * int64(len(en.changes)-nChanges)
	pt.pendingBytes += 64 * int64(len(en.changes)-nChanges)
	return nil
}

// convert collects the convert events of the purchases of eb just
// applied to en (pt.purchases), once the record's own identify is
// applied: the visitor's email, else the email its customer id links
// to. A visitor without either converts nobody, even when it is
// identified later.
func (pt *partition) convert(eb *event.Batch, en *entry) error {
	open := false
	for _, i := range pt.purchases {
		open = open || pt.counter.InWindow(eb.Site, eb.Events[i].TS)
	}
	if !open {
		return nil
	}
	email := en.prof.Email
	if email == "" && en.prof.Customer != "" {
		var err error
		if email, err = pt.customerEmail(eb.Site, en.prof.Customer, en.visitor); err != nil {
			return err
		}
	}
	if email == "" {
		return nil
	}
	for _, i := range pt.purchases {
		var err error
		if pt.converts, err = pt.counter.Convert(pt.converts, eb.Site, email, eb.Recv, &eb.Events[i]); err != nil {
			return err
		}
	}
	return nil
}

// maxCustomerVisitors bounds the visitors of a customer id read for its
// email.
const maxCustomerVisitors = 64

// customerEmail returns the latest email of the committed visitors of
// site other than self linked to customer ("": none): reads of the
// identity links and profiles, for purchases only.
func (pt *partition) customerEmail(site, customer string, self event.UUID) (string, error) {
	db := pt.b.opts.State
	var (
		email   string
		emailTS int64
		n       int
		rerr    error
	)
	err := db.VisitorsByCustomer(site, customer, func(v [16]byte) bool {
		if v == self {
			return true
		}
		data, ok, err := db.Profile(site, v, pt.valBuf[:0])
		pt.valBuf = data[:0]
		if err != nil {
			rerr = err
			return false
		}
		if ok {
			p, err := pt.identity.Decode(data, profile.PartIdentity)
			if err != nil {
				pt.b.logf("builder: visitor %s of site %q: %s", event.UUID(v), site, err)
			} else if p.Email != "" && (email == "" || p.EmailTS > emailTS) {
				email, emailTS = strings.Clone(p.Email), p.EmailTS
			}
		}
		n++
		return n < maxCustomerVisitors
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return "", fmt.Errorf("cannot read the email of customer %q of site %q: %w", customer, site, err)
	}
	return email, nil
}

// forwardBatch bounds the convert events of one Log.Append.
const forwardBatch = 1000

// forward appends the convert events collected since the last commit to
// the log, before the commit: a crash between the two applies the
// purchases again and forwards them again, which the recipient's Counter
// counts once (by order key). An error fails the commit.
func (pt *partition) forward() error {
	for len(pt.converts) > 0 {
		n := min(len(pt.converts), forwardBatch)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := pt.b.opts.Log.Append(ctx, pt.converts[:n])
		cancel()
		if err != nil {
			return fmt.Errorf("cannot forward %d conversions to their recipients: %w", len(pt.converts), err)
		}
		pt.b.m.conversionsForwarded.Add(n)
		clear(pt.converts[:n])
		pt.converts = pt.converts[n:]
	}
	pt.converts = pt.converts[:0]
	return nil
}

// engage counts the engagement events of eb (campaign opens, clicks and
// conversions).
func (pt *partition) engage(eb *event.Batch) error {
	if pt.counter == nil {
		return nil
	}
	for i := range eb.Events {
		if err := pt.counter.Engage(eb.Site, &eb.Events[i]); err != nil {
			return err
		}
	}
	pt.pendingWrites += 2 * int64(len(eb.Events))
	pt.pendingBytes += 64 * int64(len(eb.Events))
	return nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// join fills the product attributes e lacks from the catalog.
func (pt *partition) join(site string, e *event.Event) error {
	if e.HasProduct && needsCatalog(&e.Product) {
		if err := pt.joinOne(site, &e.Product); err != nil {
			return err
		}
	}
	if e.HasOrder {
		for i := range e.Order.Items {
			if it := &e.Order.Items[i]; needsCatalog(it) {
				if err := pt.joinOne(site, it); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (pt *partition) joinOne(site string, p *event.Product) error {
	found, err := pt.products.join(site, p)
	if err != nil {
		return err
	}
	if !found {
		pt.b.m.catalogMisses.Inc()
	}
	return nil
}

// entry returns the cached entry of (site, visitor): from the decoded
// tier, else decoded from state (whose visitor cache holds the values
// this process committed, off the Go heap).
func (pt *partition) entry(site string, visitor event.UUID) (*entry, error) {
	pt.keyBuf = event.AppendLogKey(pt.keyBuf[:0], site, visitor)
	if en := pt.cache.get(pt.keyBuf); en != nil {
		pt.b.m.cacheHits.Inc()
		return en, nil
	}
	pt.b.m.cacheMisses.Inc()
	v, found, err := pt.visitors.Visitor(site, visitor, pt.valBuf)
	pt.valBuf = v.Buf[:0]
	if err != nil {
		return nil, err
	}
	prof, seen := v.Profile, v.Seen
	en := pt.cache.add(pt.keyBuf, len(site), visitor)
	if found {
		en.stored = true
		if err := profile.DecodeProfile(&en.prof, prof); err != nil {
			// Starting over is all that can be done; the visitor's old
			// interest index entries stay until they decay below use.
			pt.b.logf("builder: visitor %s of site %q: stored profile unreadable, starting a new one: %s", visitor, site, err)
		}
		var err error
		if en.seen, en.orders, err = decodeSeen(en.seen, en.orders, seen); err != nil {
			pt.b.logf("builder: visitor %s of site %q: %s", visitor, site, err)
			en.seen, en.orders = en.seen[:0], en.orders[:0]
		}
		en.indexedEmail, en.indexedCustomer = en.prof.Email, en.prof.Customer
		if pt.b.opts.Retention > 0 {
			// Indexed by the commit that stored it (or, for a profile from
			// before retention was on, not: the visitor enters the index
			// when its last-seen day changes).
			en.idleDay, en.idleIndexed = idleDay(en.prof.LastSeen), true
		}
		pt.cache.resize(en, len(prof))
	}
	return en, nil
}

// commit writes every dirty profile with its index changes and the offset
// next in one state transaction.
func (pt *partition) commit(next int64) error {
	b := pt.b
	if pt.fenced {
		return &NotOwnerError{Partition: pt.id}
	}
	batch := pt.batch
	batch.SetOffset(pt.id, next)
	if b.opts.Hook != nil {
		// Evaluated in the order of their last records, a partition's
		// change records come in the order of their sources.
		slices.SortFunc(pt.dirty, func(x, y *entry) int { return cmp.Compare(x.lastRec, y.lastRec) })
	}
	indexWrites := 0
	for _, en := range pt.dirty {
		en.changes = profile.Coalesce(en.changes)
		for i := range en.changes {
			c := &en.changes[i]
			if !b.cfg.Indexed(c.Dim) {
				continue
			}
			oldK, newK := state.ScoreKey(c.Old), state.ScoreKey(c.New)
			if c.Before && c.After && oldK == newK {
				continue
			}
			dim := c.Dim.String()
			if c.Before {
				pt.check(batch.DeleteInterest(en.site, dim, c.Value, oldK, en.visitor))
				indexWrites++
			}
			if c.After {
				pt.check(batch.PutInterest(en.site, dim, c.Value, newK, en.visitor))
				indexWrites++
			}
		}
		pt.moveLinks(en, en.prof.Email, en.prof.Customer)
		if b.opts.Retention > 0 {
			pt.moveIdle(en)
		}
		pt.profBuf = profile.AppendProfile(pt.profBuf[:0], &en.prof)
		pt.seenBuf = appendSeen(pt.seenBuf[:0], en.seen, en.orders)
		pt.check(batch.PutVisitor(en.site, en.visitor, pt.profBuf, pt.seenBuf))
		pt.cache.resize(en, len(pt.profBuf))
		if b.opts.Hook != nil {
			// Its change records come from its last record in the commit,
			// wherever the commit ends.
			batch.SourceAt(en.lastRec + 1)
			if err := b.opts.Hook.Changed(batch, en.site, en.visitor, &en.prof); err != nil {
				return fmt.Errorf("cannot commit partition %d up to offset %d: hook: %w", pt.id, next, err)
			}
		}
	}
	// What the partition writes until its next commit (a due
	// re-evaluation, a backfill) comes from the offset it is at.
	batch.SourceAt(next)
	if pt.counter != nil {
		if err := pt.counter.Flush(batch); err != nil {
			return fmt.Errorf("cannot commit partition %d up to offset %d: campaign counters: %w", pt.id, next, err)
		}
		if err := pt.forward(); err != nil {
			return fmt.Errorf("cannot commit partition %d up to offset %d: %w", pt.id, next, err)
		}
	}
	writes := batch.Len()
	if err := pt.commitBatch(); err != nil {
		b.m.commitErrors.Inc()
		return err
	}
	b.m.commits.Inc()
	b.m.stateWrites.Add(writes)
	b.m.indexWrites.Add(indexWrites)
	for _, en := range pt.dirty {
		en.dirty = false
		en.stored = true
		en.indexedEmail, en.indexedCustomer = en.prof.Email, en.prof.Customer
		if b.opts.Retention > 0 {
			en.idleDay, en.idleIndexed = idleDay(en.prof.LastSeen), true
		}
		pt.releaseChanges(en)
	}
	clear(pt.dirty)
	pt.dirty = pt.dirty[:0]
	if pt.counter != nil {
		pt.counter.Reset()
	}
	pt.pendingBytes, pt.pendingWrites = 0, 0
	pt.consumed.Store(next)
	pt.head.Store(max(pt.head.Load(), next))
	b.m.cacheEvictions.Add(pt.cache.evict())
	pt.cacheBytes.Store(pt.cache.bytes)
	pt.lastErr.Store(nil)
	return nil
}

// moveLinks adds to the batch the moves of en's identity links from what
// is indexed to email and customer (its profile's latest; "" to unlink):
// nothing when neither changed, the common case.
func (pt *partition) moveLinks(en *entry, email, customer string) {
	batch := pt.batch
	if email != en.indexedEmail {
		if en.indexedEmail != "" {
			pt.check(batch.DeleteEmail(en.site, en.indexedEmail, en.visitor))
		}
		if email != "" {
			pt.check(batch.PutEmail(en.site, email, en.visitor))
		}
	}
	if customer != en.indexedCustomer {
		if en.indexedCustomer != "" {
			pt.check(batch.DeleteCustomer(en.site, en.indexedCustomer, en.visitor))
		}
		if customer != "" {
			pt.check(batch.PutCustomer(en.site, customer, en.visitor))
		}
	}
}

// check logs a write the state refused. Profiles bound what they keep
// below the state's key limits, so this is a bug; skipping the write
// (an index entry) beats stopping the partition.
func (pt *partition) check(err error) {
	if err != nil {
		pt.b.logf("BUG: builder: partition %d: %s", pt.id, err)
	}
}

func (pt *partition) deleteVisitor(site string, visitor event.UUID) (bool, error) {
	if err := pt.lockOwned(); err != nil {
		return false, fmt.Errorf("cannot delete visitor %s of site %q: %w", visitor, site, err)
	}
	defer pt.unlock()
	en, err := pt.entry(site, visitor)
	if err != nil {
		return false, fmt.Errorf("cannot delete visitor %s of site %q: %w", visitor, site, err)
	}
	found := en.stored
	if !found {
		pt.cache.remove(en)
	} else if err := pt.deleteLocked(en, false); err != nil {
		return false, fmt.Errorf("cannot delete visitor %s of site %q: %w", visitor, site, err)
	}
	// Its records below the partition's next offset are the erased
	// profile's (or of none): a rebuild skips them (erased.go).
	pt.b.erased.raise(pt.id, string(event.AppendLogKey(nil, site, visitor)), pt.consumed.Load())
	return found, nil
}

// deleteLocked deletes the stored visitor of en — profile, interest
// entries, identity links, retention entry and, through the Hook, what it
// keeps — in one commit, and drops it from the caches. expired tells the
// Hook (an Expirer) that retention deletes it; else it is an erasure.
func (pt *partition) deleteLocked(en *entry, expired bool) error {
	b := pt.b
	site, visitor := en.site, en.visitor
	batch := pt.batch
	for d := range profile.Dim(profile.NumDims) {
		if !b.cfg.Indexed(d) {
			continue
		}
		dim := d.String()
		for i := range en.prof.Dims[d] {
			e := &en.prof.Dims[d][i]
			if g := e.LogG(); !math.IsInf(g, -1) {
				pt.check(batch.DeleteInterest(site, dim, e.Value, state.ScoreKey(g), visitor))
			}
		}
	}
	pt.moveLinks(en, "", "")
	if en.idleIndexed {
		pt.check(batch.DeleteIdle(en.idleDay, site, visitor))
	}
	pt.check(batch.DeleteVisitor(site, visitor))
	if h := b.opts.Hook; h != nil {
		var err error
		if ex, ok := h.(Expirer); ok && expired {
			err = ex.Expired(batch, site, visitor, &en.prof)
		} else {
			err = h.Changed(batch, site, visitor, nil)
		}
		if err != nil {
			batch.Reset()
			return fmt.Errorf("hook: %w", err)
		}
	}
	err := pt.commitBatch()
	pt.cache.remove(en)
	pt.cacheBytes.Store(pt.cache.bytes)
	if err != nil {
		return err
	}
	if expired {
		b.m.expired.Inc()
	} else {
		b.m.deletes.Inc()
	}
	return nil
}

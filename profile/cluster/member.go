package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/segmentio/kafka-go"

	"github.com/affinityhq/affinity/internal/logger"
)

// Owner is what a Member hands each generation's partitions to: the
// builder (builder.Builder.Own).
type Owner interface {
	Own(parts []int) error
}

// Options configures a Member.
type Options struct {
	// Brokers are the Kafka bootstrap brokers. Required.
	Brokers []string
	// Topic is the event topic whose partitions are shared. Required.
	Topic string
	// Group is the consumer group. Default "affinity-build".
	Group string
	// API is the URL of this node's query API, told to the group. Required.
	API string
	// Owner receives the assignments. Required.
	Owner Owner
	// Stateful, if set, returns the partitions this node has state of: at
	// its first join it asks for those back.
	Stateful func() []int
	// SessionTimeout is how long the group waits for a silent member
	// before it moves its partitions. Default 30 s.
	SessionTimeout time.Duration
	// RebalanceTimeout is how long a rebalance waits for the members to
	// rejoin. Default 30 s.
	RebalanceTimeout time.Duration
	// Marks, if set, are filled with each generation's emission marks
	// before the Owner gets its partitions, and emptied after Flush when
	// it ends (marks.go).
	Marks *Marks
	// Flush, if set, runs when a generation ends, after the Owner owns
	// nothing and while the generation can still commit: the segment
	// engine's Flush, which moves and produces the revoked partitions'
	// last change records and commits their marks, so that their next
	// owner starts where this node stopped.
	Flush func(ctx context.Context) error
	// TakeOver, if set, is called with each generation's marks (Marks
	// required) before the Owner gets the partitions, and the generation's
	// context: the segment engine's TakeOver, which copies the feed emitted
	// before the assignment from the changes topic, and RestorePersons,
	// which restores the per-person memberships of the partitions this
	// node evaluates newly from it.
	TakeOver func(ctx context.Context, marks map[int]int64)
	// OnGeneration, if set, is called with each new generation's id (the
	// Directory's Invalidate).
	OnGeneration func(id int32)
	// Metrics receives the member's gauges. Nil: a private set.
	Metrics *metrics.Set
	// Logger receives errors and changes of ownership. Nil discards them.
	Logger logger.Logger
}

// DefaultOptions returns the defaults; Brokers, Topic, API and Owner must
// still be set.
func DefaultOptions() Options {
	return Options{Group: "affinity-build", SessionTimeout: 30 * time.Second, RebalanceTimeout: 30 * time.Second}
}

// Member is this node's membership of the group. See the package doc.
type Member struct {
	opts Options
	logf func(string, ...any)
	cg   *kafka.ConsumerGroup

	generation atomic.Int32
	memberID   atomic.Pointer[string]
	mu         sync.Mutex
	owned      []int // the last generation's assignment, for the next join
	joined     bool  // a generation was seen: owned is what to ask back

	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

// New returns a Member for opts; Start joins the group.
func New(opts Options) (*Member, error) {
	def := DefaultOptions()
	switch {
	case len(opts.Brokers) == 0:
		return nil, errors.New("cannot create cluster member: no Kafka brokers")
	case opts.Topic == "":
		return nil, errors.New("cannot create cluster member: no topic")
	case opts.API == "":
		return nil, errors.New("cannot create cluster member: no API URL to advertise")
	case opts.Owner == nil:
		return nil, errors.New("cannot create cluster member: Options.Owner is required")
	}
	if opts.Group == "" {
		opts.Group = def.Group
	}
	if opts.SessionTimeout <= 0 {
		opts.SessionTimeout = def.SessionTimeout
	}
	if opts.RebalanceTimeout <= 0 {
		opts.RebalanceTimeout = def.RebalanceTimeout
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.NewSet()
	}
	m := &Member{opts: opts, logf: opts.Logger.Printf, done: make(chan struct{})}
	m.generation.Store(-1)
	opts.Metrics.GetOrCreateGauge("affinity_cluster_generation", func() float64 { return float64(m.generation.Load()) })
	opts.Metrics.GetOrCreateGauge("affinity_cluster_owned_partitions", func() float64 { return float64(len(m.Owned())) })
	return m, nil
}

// meta is this member's metadata for its next join.
func (m *Member) meta() Meta {
	m.mu.Lock()
	defer m.mu.Unlock()
	meta := Meta{API: m.opts.API, Owned: slices.Clone(m.owned)}
	if !m.joined && m.opts.Stateful != nil {
		meta.Owned = m.opts.Stateful()
	}
	return meta
}

// Start joins the group; the generations are handled in a goroutine until
// Close.
func (m *Member) Start() error {
	cfg := kafka.ConsumerGroupConfig{
		ID:                m.opts.Group,
		Brokers:           m.opts.Brokers,
		Topics:            []string{m.opts.Topic},
		GroupBalancers:    []kafka.GroupBalancer{balancer{meta: m.meta}},
		SessionTimeout:    m.opts.SessionTimeout,
		RebalanceTimeout:  m.opts.RebalanceTimeout,
		HeartbeatInterval: min(m.opts.SessionTimeout/6, 3*time.Second),
		JoinGroupBackoff:  min(m.opts.SessionTimeout/6, 5*time.Second),
		// Offsets are the state DB's; nothing is committed to the group.
		StartOffset:           kafka.FirstOffset,
		WatchPartitionChanges: true,
		ErrorLogger:           kafka.LoggerFunc(func(f string, args ...any) { m.logf("cluster: kafka: "+f, args...) }),
	}
	cg, err := kafka.NewConsumerGroup(cfg)
	if err != nil {
		return fmt.Errorf("cannot join consumer group %q: %w", m.opts.Group, err)
	}
	m.cg = cg
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go m.run(ctx)
	return nil
}

// run takes each generation in turn: own its partitions while it lasts,
// own nothing before the next join.
func (m *Member) run(ctx context.Context) {
	defer close(m.done)
	for {
		gen, err := m.cg.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
				return
			}
			m.logf("cluster: group %q: %s; rejoining", m.opts.Group, err)
			continue
		}
		var parts []int
		for _, a := range gen.Assignments[m.opts.Topic] {
			parts = append(parts, a.ID)
		}
		slices.Sort(parts)
		ended := make(chan struct{})
		// The generation waits for this function before the group
		// rejoins: owning nothing first is the fence between nodes.
		gen.Start(func(gctx context.Context) {
			defer close(ended)
			if gctx.Err() != nil {
				return // ended before it began: own nothing of it
			}
			m.begin(gctx, gen, parts)
			<-gctx.Done()
			m.end(gen.ID)
		})
		<-ended
	}
}

func (m *Member) begin(ctx context.Context, gen *kafka.Generation, parts []int) {
	m.mu.Lock()
	m.owned, m.joined = parts, true
	m.mu.Unlock()
	id := gen.MemberID
	m.memberID.Store(&id)
	m.generation.Store(gen.ID)
	m.logf("cluster: group %q generation %d: member %s owns partitions %v", m.opts.Group, gen.ID, gen.MemberID, parts)
	if m.opts.Marks != nil {
		m.opts.Marks.begin(gen, m.opts.Topic)
		if m.opts.TakeOver != nil {
			m.opts.TakeOver(ctx, m.opts.Marks.all())
		}
	}
	if err := m.opts.Owner.Own(parts); err != nil {
		m.logf("cluster: generation %d: %s", gen.ID, err)
	}
	if m.opts.OnGeneration != nil {
		m.opts.OnGeneration(gen.ID)
	}
}

func (m *Member) end(gen int32) {
	if err := m.opts.Owner.Own([]int{}); err != nil {
		m.logf("cluster: end of generation %d: %s", gen, err)
	}
	if m.opts.Flush != nil {
		// Bounded: the group waits for this member to rejoin.
		ctx, cancel := context.WithTimeout(context.Background(), m.opts.RebalanceTimeout/2)
		if err := m.opts.Flush(ctx); err != nil {
			m.logf("cluster: end of generation %d: the next owners emit the unmarked change records again: %s", gen, err)
		}
		cancel()
	}
	if m.opts.Marks != nil {
		m.opts.Marks.end()
	}
	if m.opts.OnGeneration != nil {
		m.opts.OnGeneration(-1)
	}
}

// Generation returns the id of the generation this member is in, -1
// between generations.
func (m *Member) Generation() int32 { return m.generation.Load() }

// MemberID returns this member's id in the group; "" before it joined.
func (m *Member) MemberID() string {
	if p := m.memberID.Load(); p != nil {
		return *p
	}
	return ""
}

// API returns the URL this member advertises.
func (m *Member) API() string { return m.opts.API }

// Owned returns the partitions of the current (or last) generation.
func (m *Member) Owned() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.owned)
}

// AppendText appends the member's state for the body of /healthz:
// "cluster group=G member=\"ID\" generation=N api=URL partitions=0,1".
func (m *Member) AppendText(dst []byte) []byte {
	dst = fmt.Appendf(dst, "cluster group=%s member=%q generation=%d api=%s partitions=", m.opts.Group, m.MemberID(), m.Generation(), m.opts.API)
	for i, p := range m.Owned() {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = fmt.Appendf(dst, "%d", p)
	}
	return append(dst, '\n')
}

// Close leaves the group: the current generation ends (the Owner owns
// nothing) and the member stops. Idempotent.
func (m *Member) Close() error {
	var err error
	m.closeOnce.Do(func() {
		if m.cg == nil {
			return
		}
		err = m.cg.Close()
		m.cancel()
		<-m.done
	})
	return err
}

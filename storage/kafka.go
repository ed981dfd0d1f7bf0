package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/affinityhq/affinity/internal/logger"
)

// KafkaOptions configures a KafkaLog.
type KafkaOptions struct {
	// Brokers are the bootstrap brokers, host:port. Required.
	Brokers []string

	// Topic is the event topic. Default "affinity-events".
	Topic string

	// CreateTopic creates Topic at open when it does not exist, with
	// Partitions and ReplicationFactor. DefaultKafkaOptions sets it; a zero
	// KafkaOptions does not create topics.
	CreateTopic bool

	// Partitions is the partition count of a topic that OpenKafkaLog creates.
	// An existing topic keeps its own count. Default 8.
	Partitions int

	// ReplicationFactor is the replication factor of a topic that
	// OpenKafkaLog creates. Default 1.
	ReplicationFactor int

	// TopicConfig are the settings of a topic that OpenKafkaLog creates,
	// e.g. cleanup.policy=compact; nil: the brokers' defaults.
	TopicConfig map[string]string

	// Compression of produced batches: "snappy" (default), "lz4", "zstd",
	// "gzip" or "none".
	Compression string

	// BatchTimeout is how long the writer waits to fill a batch before it
	// sends it; concurrent Append calls share batches. Default 2ms.
	BatchTimeout time.Duration

	// BatchSize is the most messages per produced batch. Default 1000.
	BatchSize int

	// DialTimeout bounds connecting to a broker and the metadata requests of
	// OpenKafkaLog. Default 5s.
	DialTimeout time.Duration

	// WriteTimeout bounds one Append, retries included; when it passes the
	// Append fails with ErrFull. Default 5s.
	WriteTimeout time.Duration

	// ClientID names this client to the brokers. Default "affinity".
	ClientID string

	// Logger receives the errors kafka-go logs (reconnects, retries). Nil
	// discards them.
	Logger logger.Logger
}

// DefaultKafkaOptions returns the defaults for a log on brokers.
func DefaultKafkaOptions(brokers ...string) KafkaOptions {
	return KafkaOptions{
		Brokers:           brokers,
		Topic:             "affinity-events",
		CreateTopic:       true,
		Partitions:        8,
		ReplicationFactor: 1,
		Compression:       "snappy",
		BatchTimeout:      2 * time.Millisecond,
		BatchSize:         1000,
		DialTimeout:       5 * time.Second,
		WriteTimeout:      5 * time.Second,
		ClientID:          "affinity",
	}
}

const (
	// writableTTL is how long Writable reuses its last answer.
	writableTTL = time.Second

	// gatherWait is how long Fetch keeps taking records that are already
	// on their way after the first one.
	gatherWait = 2 * time.Millisecond

	// readerMaxWait is how long a fetch request waits on the broker for
	// new records; Fetch returns as soon as one arrives.
	readerMaxWait = 500 * time.Millisecond
)

// KafkaLog is the Log on a Kafka topic, through segmentio/kafka-go. Append
// produces with acks=all through one shared kafka.Writer, so concurrent
// calls share batches; keys go to PartitionFor's partition, as any Kafka
// client with the default partitioner would send them.
//
// Offsets and records are Kafka's own. Trim is a no-op: the topic's
// retention (retention.ms, retention.bytes) drops consumed records, so size
// it to hold more than the consumers' lag.
//
// The partition count is read once, at open: after partitions are added to
// the topic, restart the log, or Partition and the writer would disagree.
type KafkaLog struct {
	opts       KafkaOptions
	codec      kafka.Compression
	transport  *kafka.Transport
	client     *kafka.Client
	writer     *kafka.Writer
	partitions int
	g          gate

	mu      sync.Mutex
	readers map[*kafkaReader]struct{}

	writableMu  sync.Mutex
	writableAt  time.Time
	writableErr error

	closeOnce sync.Once
	closeErr  error
}

var _ Log = (*KafkaLog)(nil)

// OpenKafkaLog looks the topic up (creating it if it is missing and
// opts.CreateTopic is set) and returns a log on it. Zero fields of opts
// other than CreateTopic get their defaults. ctx bounds the open.
func OpenKafkaLog(ctx context.Context, opts KafkaOptions) (*KafkaLog, error) {
	def := DefaultKafkaOptions()
	if len(opts.Brokers) == 0 {
		return nil, errors.New("cannot open kafka log: KafkaOptions.Brokers is empty")
	}
	if opts.Topic == "" {
		opts.Topic = def.Topic
	}
	if opts.Partitions == 0 {
		opts.Partitions = def.Partitions
	}
	if opts.ReplicationFactor == 0 {
		opts.ReplicationFactor = def.ReplicationFactor
	}
	if opts.Compression == "" {
		opts.Compression = def.Compression
	}
	if opts.BatchTimeout == 0 {
		opts.BatchTimeout = def.BatchTimeout
	}
	if opts.BatchSize == 0 {
		opts.BatchSize = def.BatchSize
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = def.DialTimeout
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = def.WriteTimeout
	}
	if opts.ClientID == "" {
		opts.ClientID = def.ClientID
	}
	if opts.Partitions < 0 || opts.Partitions > math.MaxInt32 {
		return nil, fmt.Errorf("cannot open kafka log: Partitions=%d out of range", opts.Partitions)
	}
	if opts.ReplicationFactor < 0 || opts.ReplicationFactor > math.MaxInt16 {
		return nil, fmt.Errorf("cannot open kafka log: ReplicationFactor=%d out of range", opts.ReplicationFactor)
	}
	if opts.BatchTimeout < 0 || opts.BatchSize < 0 || opts.DialTimeout < 0 || opts.WriteTimeout < 0 {
		return nil, errors.New("cannot open kafka log: BatchTimeout, BatchSize, DialTimeout and WriteTimeout must not be negative")
	}
	codec, err := parseCompression(opts.Compression)
	if err != nil {
		return nil, fmt.Errorf("cannot open kafka log: %w", err)
	}

	dialer := &net.Dialer{Timeout: opts.DialTimeout}
	transport := &kafka.Transport{
		Dial:        dialer.DialContext,
		DialTimeout: opts.DialTimeout,
		ClientID:    opts.ClientID,
		MetadataTTL: 2 * time.Second,
	}
	l := &KafkaLog{
		opts:      opts,
		codec:     codec,
		transport: transport,
		client:    &kafka.Client{Addr: kafka.TCP(opts.Brokers...), Transport: transport, Timeout: opts.DialTimeout},
		g:         newGate(),
		readers:   make(map[*kafkaReader]struct{}),
	}

	ctx, cancel := context.WithTimeout(ctx, 2*opts.DialTimeout)
	defer cancel()
	n, err := l.lookupTopic(ctx)
	if err != nil {
		transport.CloseIdleConnections()
		return nil, err
	}
	l.partitions = n
	l.writer = &kafka.Writer{
		Addr:         kafka.TCP(opts.Brokers...),
		Topic:        opts.Topic,
		Balancer:     &kafka.Murmur2Balancer{Consistent: true}, // nil keys hash like PartitionFor's
		RequiredAcks: kafka.RequireAll,
		Compression:  codec,
		BatchTimeout: opts.BatchTimeout,
		BatchSize:    opts.BatchSize,
		WriteTimeout: opts.WriteTimeout,
		ReadTimeout:  opts.WriteTimeout,
		// Retries of a batch span about the default WriteTimeout; they go on
		// after an Append gave up, and Close waits for them (bounded).
		MaxAttempts:            10,
		WriteBackoffMin:        50 * time.Millisecond,
		WriteBackoffMax:        500 * time.Millisecond,
		Async:                  false,
		AllowAutoTopicCreation: false,
		Transport:              transport,
		ErrorLogger:            opts.Logger,
	}
	return l, nil
}

func parseCompression(s string) (kafka.Compression, error) {
	switch s {
	case "none":
		return 0, nil
	case "snappy":
		return kafka.Snappy, nil
	case "lz4":
		return kafka.Lz4, nil
	case "zstd":
		return kafka.Zstd, nil
	case "gzip":
		return kafka.Gzip, nil
	}
	return 0, fmt.Errorf("unknown Compression=%q; want snappy, lz4, zstd, gzip or none", s)
}

// lookupTopic returns the topic's partition count, creating the topic if it
// is missing and CreateTopic is set.
func (l *KafkaLog) lookupTopic(ctx context.Context) (int, error) {
	topic, brokers := l.opts.Topic, l.opts.Brokers
	t, err := l.topicMetadata(ctx)
	if err == nil {
		return len(t.Partitions), nil
	}
	if !errors.Is(err, kafka.UnknownTopicOrPartition) || !l.opts.CreateTopic {
		return 0, fmt.Errorf("cannot find topic %q on %v: %w", topic, brokers, err)
	}

	var entries []kafka.ConfigEntry
	for name, value := range l.opts.TopicConfig {
		entries = append(entries, kafka.ConfigEntry{ConfigName: name, ConfigValue: value})
	}
	resp, err := l.client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic:             topic,
		NumPartitions:     l.opts.Partitions,
		ReplicationFactor: l.opts.ReplicationFactor,
		ConfigEntries:     entries,
	}}})
	if err == nil {
		err = resp.Errors[topic]
	}
	if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return 0, fmt.Errorf("cannot create topic %q with %d partitions on %v: %w", topic, l.opts.Partitions, brokers, err)
	}

	// Creation is asynchronous: wait until every partition has a leader.
	for {
		t, err := l.topicMetadata(ctx)
		if err == nil {
			return len(t.Partitions), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("cannot find topic %q on %v after creating it: %w", topic, brokers, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// topicMetadata returns the topic's metadata, or an error if the topic is
// missing or has a partition without a leader.
func (l *KafkaLog) topicMetadata(ctx context.Context) (*kafka.Topic, error) {
	md, err := l.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{l.opts.Topic}})
	if err != nil {
		return nil, err
	}
	for i := range md.Topics {
		t := &md.Topics[i]
		if t.Name != l.opts.Topic {
			continue
		}
		if t.Error != nil {
			return nil, t.Error
		}
		if len(t.Partitions) == 0 {
			return nil, kafka.UnknownTopicOrPartition
		}
		for _, p := range t.Partitions {
			if p.Error != nil {
				return nil, fmt.Errorf("partition %d: %w", p.ID, p.Error)
			}
			if p.Leader.Host == "" {
				return nil, fmt.Errorf("partition %d: %w", p.ID, kafka.LeaderNotAvailable)
			}
		}
		return t, nil
	}
	return nil, kafka.UnknownTopicOrPartition
}

// Partitions returns the topic's partition count as of open.
func (l *KafkaLog) Partitions() int { return l.partitions }

// Partition returns PartitionFor(key, l.Partitions()), the partition the
// writer's murmur2 balancer picks.
func (l *KafkaLog) Partition(key []byte) int { return PartitionFor(key, l.partitions) }

// Append produces msgs with acks=all and returns once all are acknowledged.
// A message with a nil Value is a tombstone (a compacted topic drops its
// key).
// Broker failures and WriteTimeout passing return errors wrapping ErrFull;
// ctx ending returns ctx's error. msgs are copied first: kafka-go may still
// hold a batch after a cancelled call returns.
func (l *KafkaLog) Append(ctx context.Context, msgs []Message) error {
	if !l.g.enter() {
		return ErrClosed
	}
	defer l.g.leave()
	if len(msgs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	size := 0
	for i := range msgs {
		size += len(msgs[i].Key) + len(msgs[i].Value)
	}
	buf := make([]byte, 0, size)
	kms := make([]kafka.Message, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		km := &kms[i]
		if m.Key != nil {
			start := len(buf)
			buf = append(buf, m.Key...)
			km.Key = buf[start:len(buf):len(buf)]
		}
		if m.Value != nil { // nil stays nil: a tombstone of a compacted topic
			start := len(buf)
			buf = append(buf, m.Value...)
			km.Value = buf[start:len(buf):len(buf)]
		}
	}

	wctx, cancel := context.WithTimeout(ctx, l.opts.WriteTimeout)
	defer cancel()
	err := l.writer.WriteMessages(wctx, kms...)
	if err == nil {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var werrs kafka.WriteErrors
	if errors.As(err, &werrs) {
		for _, e := range werrs {
			if e != nil {
				err = e
				break
			}
		}
	}
	switch {
	case errors.Is(err, io.ErrClosedPipe):
		return ErrClosed
	case isPermanentKafkaError(err):
		return fmt.Errorf("cannot append %d messages to topic %q: %w", len(msgs), l.opts.Topic, err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("cannot append %d messages to topic %q within WriteTimeout=%s: %w: %w", len(msgs), l.opts.Topic, l.opts.WriteTimeout, ErrFull, err)
	}
	return fmt.Errorf("cannot append %d messages to topic %q: %w: %w", len(msgs), l.opts.Topic, ErrFull, err)
}

// isPermanentKafkaError reports whether retrying an append cannot help.
func isPermanentKafkaError(err error) bool {
	for _, e := range []kafka.Error{
		kafka.MessageSizeTooLarge,
		kafka.RecordListTooLarge,
		kafka.InvalidRecord,
		kafka.InvalidTopic,
		kafka.TopicAuthorizationFailed,
		kafka.ClusterAuthorizationFailed,
		kafka.SASLAuthenticationFailed,
		kafka.UnsupportedCompressionType,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Offsets asks the partition's leader for its log start offset and high
// watermark.
func (l *KafkaLog) Offsets(ctx context.Context, p int) (first, next int64, err error) {
	if !l.g.enter() {
		return 0, 0, ErrClosed
	}
	defer l.g.leave()
	if err := l.checkPartition(p); err != nil {
		return 0, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, l.opts.WriteTimeout)
	defer cancel()
	pos, err := l.listOffsets(ctx, []kafka.OffsetRequest{kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p)})
	if err != nil {
		return 0, 0, fmt.Errorf("cannot list offsets of partition %d of topic %q: %w", p, l.opts.Topic, err)
	}
	return pos[0].FirstOffset, pos[0].LastOffset, nil
}

func (l *KafkaLog) checkPartition(p int) error {
	if p < 0 || p >= l.partitions {
		return fmt.Errorf("partition %d out of range [0, %d) of topic %q", p, l.partitions, l.opts.Topic)
	}
	return nil
}

// Trim does nothing: the topic's retention drops old records. It only
// checks its arguments.
func (l *KafkaLog) Trim(ctx context.Context, p int, before int64) error {
	if l.g.isClosed() {
		return ErrClosed
	}
	if err := l.checkPartition(p); err != nil {
		return fmt.Errorf("cannot trim: %w", err)
	}
	return nil
}

// Writable checks, at most once per second, that the leader of every
// partition answers: it asks each for its high watermark (kafka-go sends one
// small request per partition, concurrently). Cluster metadata alone would
// not do: kafka-go serves it from a cache that outlives the brokers.
func (l *KafkaLog) Writable(ctx context.Context) error {
	if !l.g.enter() {
		return ErrClosed
	}
	defer l.g.leave()
	l.writableMu.Lock()
	defer l.writableMu.Unlock()
	if time.Since(l.writableAt) < writableTTL {
		return l.writableErr
	}
	ctx, cancel := context.WithTimeout(ctx, min(time.Second, l.opts.DialTimeout))
	defer cancel()
	reqs := make([]kafka.OffsetRequest, l.partitions)
	for p := range reqs {
		reqs[p] = kafka.LastOffsetOf(p)
	}
	_, err := l.listOffsets(ctx, reqs)
	if err != nil {
		err = fmt.Errorf("topic %q on %v is not writable: %w: %w", l.opts.Topic, l.opts.Brokers, ErrFull, err)
	}
	l.writableAt, l.writableErr = time.Now(), err
	return err
}

// listOffsets asks the partitions' leaders for offsets and returns the
// answers in the order of reqs (kafka-go merges the answers of one
// partition, so two requests for it give two copies of one answer).
func (l *KafkaLog) listOffsets(ctx context.Context, reqs []kafka.OffsetRequest) ([]kafka.PartitionOffsets, error) {
	resp, err := l.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{
		Topics: map[string][]kafka.OffsetRequest{l.opts.Topic: reqs},
	})
	if err != nil {
		return nil, err
	}
	got := resp.Topics[l.opts.Topic]
	out := make([]kafka.PartitionOffsets, 0, len(reqs))
	for _, req := range reqs {
		found := false
		for _, po := range got {
			if po.Partition != req.Partition {
				continue
			}
			if po.Error != nil {
				return nil, fmt.Errorf("partition %d: %w", po.Partition, po.Error)
			}
			out = append(out, po)
			found = true
			break
		}
		if !found {
			return nil, fmt.Errorf("partition %d: missing from the ListOffsets response", req.Partition)
		}
	}
	return out, nil
}

// Close waits for the Append calls in flight, closes the writer (waiting at
// most WriteTimeout for batches it still retries), the readers still open
// and the connections. It is idempotent.
func (l *KafkaLog) Close() error {
	l.closeOnce.Do(func() {
		l.g.shut()
		var errs []error
		// The writer waits for the batches it still retries; past
		// WriteTimeout they are abandoned (no Append waits for them).
		closed := make(chan error, 1)
		go func() { closed <- l.writer.Close() }()
		select {
		case err := <-closed:
			if err != nil {
				errs = append(errs, fmt.Errorf("cannot close writer of topic %q: %w", l.opts.Topic, err))
			}
		case <-time.After(l.opts.WriteTimeout):
			errs = append(errs, fmt.Errorf("cannot close writer of topic %q: batches still retried after WriteTimeout=%s", l.opts.Topic, l.opts.WriteTimeout))
		}
		l.mu.Lock()
		readers := l.readers
		l.readers = nil
		l.mu.Unlock()
		for r := range readers {
			errs = append(errs, r.Close())
		}
		l.transport.CloseIdleConnections()
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

// OpenReader returns a reader of partition p from offset from (a
// kafka.Reader without consumer group). Below the log start offset it
// skips to it; past the high watermark it waits.
func (l *KafkaLog) OpenReader(p int, from int64) (Reader, error) {
	if !l.g.enter() {
		return nil, ErrClosed
	}
	defer l.g.leave()
	if err := l.checkPartition(p); err != nil {
		return nil, fmt.Errorf("cannot open reader: %w", err)
	}
	if from < 0 {
		return nil, fmt.Errorf("cannot open reader of partition %d at offset %d: offset out of range", p, from)
	}
	cfg := kafka.ReaderConfig{
		Brokers:         l.opts.Brokers,
		Topic:           l.opts.Topic,
		Partition:       p,
		Dialer:          &kafka.Dialer{Timeout: l.opts.DialTimeout, ClientID: l.opts.ClientID, DualStack: true},
		MinBytes:        1,
		MaxBytes:        10 << 20,
		MaxWait:         readerMaxWait,
		ReadLagInterval: -1,
		ErrorLogger:     l.opts.Logger,
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cannot open reader of partition %d of topic %q: %w", p, l.opts.Topic, err)
	}
	kr := kafka.NewReader(cfg)
	if err := kr.SetOffset(from); err != nil {
		kr.Close()
		return nil, fmt.Errorf("cannot open reader of partition %d of topic %q at offset %d: %w", p, l.opts.Topic, from, err)
	}
	r := &kafkaReader{l: l, p: p, kr: kr, done: make(chan struct{})}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.readers == nil {
		kr.Close()
		return nil, ErrClosed
	}
	l.readers[r] = struct{}{}
	return r, nil
}

type kafkaReader struct {
	l  *KafkaLog
	p  int
	kr *kafka.Reader

	closeOnce sync.Once
	closeErr  error
	done      chan struct{}
}

// Fetch waits for one record, then takes the ones that arrive within a
// couple of milliseconds more, up to max.
func (r *kafkaReader) Fetch(ctx context.Context, dst []Record, max int) ([]Record, error) {
	if max <= 0 {
		return dst, fmt.Errorf("cannot fetch from partition %d: max=%d is not positive", r.p, max)
	}
	select {
	case <-r.done:
		return dst, ErrClosed
	default:
	}
	// Closing the reader (directly or through the log) ends a blocked
	// FetchMessage with io.EOF.
	m, err := r.kr.FetchMessage(ctx)
	if err != nil {
		return dst, r.fetchError(ctx, err)
	}
	dst = r.appendRecord(dst, &m)
	if max == 1 {
		return dst, nil
	}
	gctx, cancel := context.WithTimeout(ctx, gatherWait)
	defer cancel()
	for n := 1; n < max; n++ {
		m, err := r.kr.FetchMessage(gctx)
		if err != nil {
			break // the records so far are the answer; a real error recurs
		}
		dst = r.appendRecord(dst, &m)
	}
	return dst, nil
}

func (r *kafkaReader) fetchError(ctx context.Context, err error) error {
	select {
	case <-r.done:
		return ErrClosed
	default:
	}
	if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
		return ctxErr
	}
	if errors.Is(err, io.EOF) {
		return ErrClosed
	}
	return fmt.Errorf("cannot fetch from partition %d of topic %q: %w", r.p, r.l.opts.Topic, err)
}

// appendRecord copies m into one allocation owned by the caller.
func (r *kafkaReader) appendRecord(dst []Record, m *kafka.Message) []Record {
	buf := make([]byte, len(m.Key)+len(m.Value))
	copy(buf, m.Key)
	copy(buf[len(m.Key):], m.Value)
	k := len(m.Key)
	return append(dst, Record{Partition: m.Partition, Offset: m.Offset, Key: buf[:k:k], Value: buf[k:]})
}

// Close closes the kafka.Reader. It is idempotent.
func (r *kafkaReader) Close() error {
	r.closeOnce.Do(func() {
		close(r.done)
		if err := r.kr.Close(); err != nil {
			r.closeErr = fmt.Errorf("cannot close reader of partition %d of topic %q: %w", r.p, r.l.opts.Topic, err)
		}
		r.l.mu.Lock()
		if r.l.readers != nil {
			delete(r.l.readers, r)
		}
		r.l.mu.Unlock()
	})
	return r.closeErr
}

package storage

import (
	"context"
	"errors"
)

// Message is one record to append: Key routes it to a partition
// (site|<visitor uuid>, event.AppendLogKey, so one visitor's records keep
// their order), Value is the encoded event batch (tracker/event codec).
type Message struct {
	Key   []byte
	Value []byte
}

// Record is one stored message with its place in the log.
type Record struct {
	Partition int
	Offset    int64
	Key       []byte
	Value     []byte
}

// ErrFull is returned by Append when the log cannot take more right now
// (disk budget reached, broker unreachable, too many appends waiting). The
// collector answers 503 with Retry-After; the condition clears by itself.
var ErrFull = errors.New("event log is full or unavailable")

// ErrClosed is returned by every call after Close.
var ErrClosed = errors.New("event log is closed")

// Log is the durable, partitioned event log between the collector and the
// profile builder. Two implementations pass the same contract suite
// (logtest): Kafka (KafkaLog) and the embedded one on Badger (EmbeddedLog).
//
// All methods are safe for concurrent use.
type Log interface {
	// Append stores msgs durably and returns nil only when every one of them
	// is acknowledged by the log. On error none may be assumed stored (the
	// caller refuses the whole batch; a retry may store a message twice,
	// which the builder's dedup by event id absorbs). Append does not keep
	// msgs after it returns.
	Append(ctx context.Context, msgs []Message) error

	// Partitions returns the number of partitions, fixed for the log's life.
	Partitions() int

	// Partition returns the partition a message with key goes to.
	Partition(key []byte) int

	// Offsets returns the first offset still stored and the offset the next
	// appended record of partition p will get (both 0 in a new log; equal
	// when nothing is stored).
	Offsets(ctx context.Context, p int) (first, next int64, err error)

	// OpenReader returns a reader of partition p starting at offset from.
	// A reader below the first stored offset starts at the first one; a
	// reader past the next offset waits for the partition to reach it.
	OpenReader(p int, from int64) (Reader, error)

	// Trim tells the log that records of partition p below offset before
	// are consumed and checkpointed by every consumer: it may drop them
	// (the embedded log does, freeing its disk budget; Kafka leaves it to the
	// topic's retention).
	Trim(ctx context.Context, p int, before int64) error

	// Writable reports whether Append can currently succeed (for /healthz).
	Writable(ctx context.Context) error

	// Close flushes and releases the log. It is idempotent.
	Close() error
}

// Reader reads one partition in offset order.
type Reader interface {
	// Fetch appends to dst the next records, at most max (which must be
	// positive), blocking until at least one is available or ctx is done
	// (then it returns ctx.Err()). The records' bytes are owned by the
	// caller. After the reader or its log is closed it returns ErrClosed.
	Fetch(ctx context.Context, dst []Record, max int) ([]Record, error)

	// Close releases the reader; it is idempotent.
	Close() error
}

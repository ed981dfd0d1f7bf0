// Package storage is everything in affinity that keeps bytes. This package
// is the event log between the collector and the profile builder; its
// subpackages are the builder's Badger store, package storage/state (key
// layouts, consumed offsets, the one exactly-once write path; FORMAT.md
// beside it), and the log's contract suite, package storage/logtest.
//
// # The event log
//
// [Log] is a durable, partitioned, append-only log of opaque messages. A
// message's key picks its partition with [PartitionFor], Kafka's default
// (murmur2) partitioner, so one visitor's events keep their order and a
// deployment can move between the two implementations without re-keying:
//
//   - [EmbeddedLog], the single-node default, keeps the log in a Badger
//     database under a directory (layout in FORMAT.md). One writer goroutine
//     group-commits concurrent appends with one fsync per group.
//   - [KafkaLog] keeps it in a Kafka topic through segmentio/kafka-go.
//
// Both pass the same contract suite, package storage/logtest.
//
// # Concurrency and ownership
//
// Every method of a Log is safe for concurrent use. A [Reader] is used by one
// goroutine at a time; any number of readers may read the same partition.
// Append does not keep the caller's slices after it returns, and the records
// returned by Fetch are owned by the caller (they never alias storage
// buffers), so both sides may reuse or keep their bytes freely.
//
// Append returns nil only after the log has made the messages durable (fsync
// for the embedded log, acknowledgement by all in-sync replicas for Kafka). A
// reader never sees a record before that point, and never sees a gap: the
// offsets of a partition are dense and read in order.
//
// Conditions that clear by themselves (disk budget reached, broker
// unreachable, too many appends waiting) are reported as errors wrapping
// [ErrFull]; every call after Close fails with [ErrClosed].
package storage

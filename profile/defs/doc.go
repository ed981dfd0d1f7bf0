// Package defs carries the definitions the query API writes — segments,
// webhooks, static lists and catalog uploads — on one Kafka topic, so that
// every build node of a cluster applies the same definitions in the same
// order, and a node started later (or restarted) gets them all by reading
// the topic from its stored offset.
//
// The topic has one partition (one total order) and is compacted: a
// record's key names the definition (kind | site | name), so compaction
// keeps the latest write of each. A write is validated by the handler as
// before, then Submit produces it and waits until this node's own
// consumer has applied it (read-your-writes). Every node runs one
// consumer, which applies each record through the Applier — the query
// handler's own store calls — and then stores the offset after it in the
// state DB under an extension key. A body larger than ChunkBytes travels
// as chunk records keyed by its upload id, followed by a head record that
// names the upload and its chunk count; only the head applies it, from
// the chunks the consumer kept, so a crash between chunks applies nothing.
//
// A Log without a state DB is a reader (a collector's: campaign.Heads):
// it reads from offset 0 at each start, keeps its offset in memory,
// applies only Options.Kinds and keeps of a chunked body only what
// Options.Enough asks for; Follow starts it without waiting for the
// catch-up (CaughtUp tells).
//
// Concurrency: one goroutine consumes and applies; Submit may be called
// from any goroutine and waits on a channel the consumer answers. The
// wire layout is in FORMAT.md.
package defs

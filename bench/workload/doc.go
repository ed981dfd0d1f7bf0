// Package workload generates the benchmark's traffic: a seeded, reproducible
// stream of shop visitors arriving in sessions, each session a funnel of
// pageviews, product views (Zipf over a synthetic catalog of brands,
// category paths, child age ranges and prices), carts, removals, purchases
// and identifies, cut into the 1–20-event batches the snippet sends.
//
// A Generator holds only its open sessions, never the visitors or events it
// made, so it streams any volume (1M+ visitors, 10M+ events) in constant
// memory. The same Options (seed included) give the same batches, byte for
// byte; Shard/Shards split one workload across goroutines without overlap.
//
// Two encodings: AppendJSON, the HTTP body exactly as the snippet sends it,
// and AppendRecord, the log record and key exactly as the collector appends
// them (event.AppendBatch, event.AppendLogKey), so builder benchmarks can
// fill a storage.Log directly (Fill).
//
// # Concurrency
//
// A Generator is used by one goroutine; make one per worker (Shard). A
// Catalog is read-only once built and shared freely.
package workload

// Package bench runs affinity's end-to-end benchmarks with peers measured in
// the same run, on the same machine, interleaved in rounds, so that the
// figures that matter are ratios that survive a noisy, shared machine.
//
// Scenarios:
//   - ingest: one closed-loop HTTP load generator (fasthttp client,
//     keep-alive connections) against (a) a no-op fasthttp handler, the
//     ceiling, (b) affinity's collector on the embedded log, (c) the
//     collector on Kafka (kfake on loopback), (d) a naive peer — net/http,
//     encoding/json and a kafka-go Writer with its defaults — and (e) the
//     same peer with its writer tuned as affinity's is.
//   - build: events/s applied from a pre-filled log by the profile builder,
//     within a memory budget (--memory, split as `affinity serve` splits
//     it), against a Redis peer doing the same forward-decay updates with
//     pipelining; at two sizes (200k and 1M visitors by default) for the
//     CPU per event of each and their ratio, with the slowest 1-second
//     window of each run beside its median and the builder's peak RSS
//     beside the budget; with --trace-dips (EnvTraceDips), Go execution
//     traces of the builder's slowest seconds (dips.go).
//   - e2e: HTTP → log → profiles in one process (collector, embedded log,
//     builder): the maximum request rate, then an open loop at half of it,
//     with the event-to-profile lag measured in the builder's commit hook.
//   - query: a node as `affinity serve` runs it (collector, embedded log,
//     builder, segment membership, query API) pre-filled with visitors:
//     GET /v1/visitors latency idle and under ingest at half its maximum,
//     then the members of a segment every visitor matches, streamed as
//     NDJSON and CSV, with the node's memory before, during and after.
//   - soak (not in the default set; 10 minutes): the real `affinity serve`
//     binary under ingest at half its maximum, visitor lookups, and a
//     segment change and an export every minute; its resident memory, open
//     files (/proc/PID/fd) and goroutines (/metrics) at the start and the
//     end must be flat within stated tolerances, with no error anywhere.
//   - cluster (not in the default set): `affinity build` processes of the
//     real binary in one consumer group over a pre-written Kafka topic
//     (kfake in a role process, or AFFINITY_KAFKA's cluster): one node,
//     then two, building the whole topic (events/s, and each node's CPU-s
//     per million events and peak RSS from /proc); then one of the two is
//     SIGKILLed and the survivor's takeover is timed (detection and
//     rebalance, then the rebuild of the moved partitions from offset 0),
//     and a node with no state joins and rebuilds its share, per partition
//     and per 100k visitors.
//
// Every system under test runs in its own process: the bench binary
// re-executes itself with AFFINITY_BENCH_ROLE set (RunRole), so CPU time
// (getrusage) and peak RSS are per process. The workload is
// bench/workload; the command is bench/cmd/affinity-bench.
//
// # Concurrency
//
// A scenario runs one at a time; its load workers each own their generator
// and histograms, merged by the sampler under a per-worker mutex.
package bench

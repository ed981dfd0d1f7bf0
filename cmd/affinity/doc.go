// Command affinity runs the affinity service: one binary, one role per
// subcommand.
//
//	affinity serve    every role in one process, on the embedded log under --data
//	affinity collect  only the HTTP collector, writing to Kafka (--kafka)
//	affinity build    only the profile builder and query API, reading Kafka (--kafka)
//	affinity dump-log the events of the embedded log (serve stopped) or a Kafka topic as JSON lines
//
// main only parses flags (each also read from AFFINITY_<FLAG>), wires the
// packages together, and shuts them down in order on SIGINT/SIGTERM.
package main

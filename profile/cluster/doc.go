// Package cluster shares the event topic's partitions among `affinity
// build` nodes through a Kafka consumer group, and answers which node owns
// which partition.
//
// A Member joins the group (kafka-go's ConsumerGroup) with its API URL and
// the partitions it last owned in its member metadata (FORMAT.md); the
// group's leader assigns partitions with a sticky, balanced assignment, so
// a partition goes back to the node that has its state. For each
// generation the Member hands the assignment to its Owner (the builder's
// Own) and keeps it until the generation ends; it then revokes everything
// BEFORE it rejoins, so that no two nodes apply a partition at once: that
// is the fence between nodes. Consumed offsets stay in each node's state
// DB, committed with the profiles, never in Kafka: the group's committed
// offsets hold the emission marks instead (Marks, marks.go), with which
// the members' segment engines emit each change record once across the
// group and across moves; a member hands each generation's marks to the
// engine's TakeOver, which copies what was emitted below them into the
// new owner's feed.
//
// A Directory answers partition → owner API URL from the group's
// description (Kafka DescribeGroups: each member's metadata and
// assignment), cached briefly and dropped on a generation change. The
// query API serves it at GET /v1/cluster. A Router joins a Directory's
// View, the log's partition function and a pooled HTTP client: the query
// API routes a visitor's requests to its owner and fans exports out to
// every owner through it (profile/query route.go).
//
// Concurrency: a Member runs one goroutine; its Generation and Owned are
// safe to read from any goroutine. A Directory and a Router are safe for
// concurrent use.
package cluster

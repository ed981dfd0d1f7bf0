package main

import (
	"context"
	"flag"
	"fmt"
	"log"

	"github.com/VictoriaMetrics/metrics"

	"github.com/affinityhq/affinity/profile/cluster"
	"github.com/affinityhq/affinity/storage/state"
)

// groupFlags are build's flags of the consumer group its builder joins
// when no --own pins its partitions.
type groupFlags struct {
	opts      cluster.Options
	advertise string
	brokers   []string // set by runBuild from --kafka
	topic     string
	metrics   *metrics.Set
	// marks are the group's emission marks: the builder's segment engine
	// emits each change record once across the group through them.
	marks *cluster.Marks
	// token is the API token the person evaluator hands marks with.
	token string
}

func addGroupFlags(fs *flag.FlagSet) *groupFlags {
	g := &groupFlags{opts: cluster.DefaultOptions(), marks: cluster.NewMarks()}
	fs.StringVar(&g.opts.Group, "group", g.opts.Group, "Kafka consumer group the builders share the topic's partitions in (without --own)")
	fs.StringVar(&g.advertise, "advertise-api", "", "URL of this node's query API, told to the other members of --group; empty: http:// and the bound --api-listen address")
	fs.Var(durationFlag{&g.opts.SessionTimeout}, "group-session-timeout", "how long the group waits for a member that stopped heartbeating before its partitions move (s, m); the brokers bound it (group.min/max.session.timeout.ms)")
	fs.Var(durationFlag{&g.opts.RebalanceTimeout}, "group-rebalance-timeout", "how long a rebalance waits for the members to rejoin (s, m)")
	return g
}

// startMember joins the group with the node's builder as the Owner, serves
// GET /v1/cluster and routes the query API through the group; apiAddr is
// the bound internal listener.
func (n *node) startMember(g *groupFlags, apiAddr string) error {
	o := g.opts
	o.Brokers, o.Topic, o.Owner, o.Metrics, o.Logger = g.brokers, g.topic, n.prof.Builder, g.metrics, log.Printf
	o.Marks, o.Flush = g.marks, n.prof.Segments.Flush
	o.TakeOver = func(ctx context.Context, marks map[int]int64) {
		if d := n.prof.Definitions; d != nil {
			// Every erasure written before the assignment, before the
			// builder applies a partition from below it (it skips the
			// erased visitors' records there). Bounded: an erasure
			// applied later deletes what was rebuilt of its visitor.
			if err := d.CatchUp(ctx); err != nil {
				log.Printf("cluster: the partitions open before every erasure on the definitions topic is known: %s", err)
			}
		}
		// The feed's history of each partition, and the per-person
		// memberships of those it evaluates newly.
		n.prof.Segments.TakeOver(ctx, marks)
		n.prof.Segments.RestorePersons(ctx, marks)
	}
	o.API = g.advertise
	if o.API == "" {
		o.API = "http://" + apiAddr
	}
	o.Stateful = func() []int { return statefulPartitions(n.prof.DB, n.log.Partitions()) }
	var m *cluster.Member // set before the group or the API can ask
	n.directory = cluster.NewDirectory(cluster.DirectoryOptions{
		Brokers: o.Brokers, Topic: o.Topic, Group: o.Group, Partitions: n.log.Partitions(),
		Generation: func() int32 { return m.Generation() },
	})
	o.OnGeneration = n.directory.Invalidate
	m, err := cluster.New(o)
	if err != nil {
		return err
	}
	n.directory.Register(n.internal)
	// Any node answers any query: lookups go to the owner, exports fan out.
	router, err := cluster.NewRouter(cluster.RouterOptions{Lookup: n.directory.Lookup, Partitions: n.log.Partitions(), Owned: n.prof.Builder.Serving})
	if err != nil {
		return err
	}
	n.prof.Query.SetCluster(router)
	// Size samples by the partitions served, which the group's history sums.
	n.prof.Segments.SampleByPartition(n.prof.Builder.Serving, router.Partition)
	if err := m.Start(); err != nil {
		return err
	}
	n.member = m
	return nil
}

// statefulPartitions returns the partitions of n the state has consumed
// some of: a member asks for them back at its first join.
func statefulPartitions(db *state.DB, n int) []int {
	var parts []int
	for p := range n {
		if off, err := db.Offset(p); err == nil && off > 0 {
			parts = append(parts, p)
		}
	}
	return parts
}

// clusterStatus is the line /healthz adds for a member of a group.
func (n *node) clusterStatus(dst []byte) []byte {
	if n.member == nil {
		return fmt.Appendf(dst, "cluster joining\n")
	}
	return n.member.AppendText(dst)
}

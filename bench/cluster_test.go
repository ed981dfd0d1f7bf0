package bench

import (
	"slices"
	"strings"
	"testing"
)

// TestQuickCluster runs the quick cluster scenario on kfake with the real
// binary: one node and then two must each build every partition to the
// topic's end, the survivor of a SIGKILL must take over exactly the
// partitions the dead node owned and rebuild them, and a node joining
// with no state must get a share and rebuild it.
func TestQuickCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and starts five processes")
	}
	o := QuickClusterOptions()
	o.Dir = t.TempDir()
	rep, err := RunCluster(o)
	if rep != nil {
		var out strings.Builder
		PrintCluster(&out, rep)
		t.Logf("\n%s", out.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	sum := 0
	for _, v := range rep.PartitionVisitors {
		sum += v
	}
	if sum != o.Workload.Visitors {
		t.Errorf("visitors per partition %v sum to %d; want %d", rep.PartitionVisitors, sum, o.Workload.Visitors)
	}
	if len(rep.Runs) != 2 || len(rep.Runs[0].PerNode) != 1 || len(rep.Runs[1].PerNode) != 2 {
		t.Fatalf("runs %+v; want 1 node, then 2", rep.Runs)
	}
	if n := rep.Runs[0].PerNode[0]; n.Events != rep.Events || len(n.Partitions) != benchPartitions {
		t.Errorf("the single node applied %d events of partitions %v; want %d of all %d", n.Events, n.Partitions, rep.Events, benchPartitions)
	}
	var owned []int
	for _, n := range rep.Runs[1].PerNode {
		if n.Events == 0 || n.CPUPerMEvents <= 0 || n.PeakRSSMB <= 0 {
			t.Errorf("node %s: %d events, %.1f CPU-s/M, %.0f MB; want each > 0", n.Name, n.Events, n.CPUPerMEvents, n.PeakRSSMB)
		}
		owned = append(owned, n.Partitions...)
	}
	if slices.Sort(owned); !slices.Equal(owned, []int{0, 1, 2, 3, 4, 5, 6, 7}) {
		t.Errorf("the two nodes owned %v; want each partition once", owned)
	}
	if rep.Scaling <= 0 {
		t.Errorf("scaling %v; want > 0", rep.Scaling)
	}
	if len(rep.Moves) != 2 {
		t.Fatalf("%d moves; want 2", len(rep.Moves))
	}
	killed := slices.IndexFunc(rep.Runs[1].PerNode, func(n *ClusterNode) bool { return n.Name == rep.Moves[0].From })
	if killed < 0 || rep.Moves[0].To == rep.Moves[0].From {
		t.Fatalf("move from %q to %q; want from one of the two nodes to the other", rep.Moves[0].From, rep.Moves[0].To)
	}
	if got, want := rep.Moves[0].Partitions, rep.Runs[1].PerNode[killed].Partitions; !slices.Equal(got, want) {
		t.Errorf("the survivor took over %v; want the killed node's %v", got, want)
	}
	for _, m := range rep.Moves {
		if len(m.Partitions) == 0 || m.Visitors == 0 || len(m.PartitionSeconds) != len(m.Partitions) {
			t.Errorf("move %q: %+v; want partitions with their visitors and times", m.What, m)
		}
		// A member that owned the partitions before resumes from its own
		// offsets (at the topic's end, if it applied them all then).
		if m.Events == 0 && !m.Resumed {
			t.Errorf("move %q: %d events applied, resumed %v; want a rebuild, or a resume from the mover's own state", m.What, m.Events, m.Resumed)
		}
	}
	if rep.Moves[1].Resumed {
		t.Errorf("the node with no state resumed %v", rep.Moves[1].Partitions)
	}
	// Killing a node takes the session timeout to notice.
	if m := rep.Moves[0]; m.OwnedSeconds < o.SessionTimeout.Seconds()/2 {
		t.Errorf("the survivor owned everything %.1fs after the SIGKILL; want about the session timeout %s", m.OwnedSeconds, o.SessionTimeout)
	}
}

func TestParseHealth(t *testing.T) {
	body := "ok\nbuilder events_applied=120 dedup_hits=0 catalog_misses=3\n" +
		"cluster group=g member=\"affinity@a b\" generation=4 api=http://127.0.0.1:1 partitions=1,5\n" +
		"partition 1 consumed=40 head=40 lag=0\npartition 5 consumed=7 head=9 lag=2 error=\"x y\"\n"
	h, err := parseHealth(body)
	if err != nil {
		t.Fatal(err)
	}
	if h.generation != 4 || !slices.Equal(h.owned, []int{1, 5}) || h.applied != 120 || h.consumed[1] != 40 || h.consumed[5] != 7 {
		t.Errorf("parseHealth = %+v; want generation 4, partitions 1,5, 120 applied, consumed 40 and 7", h)
	}
	if got := h.caughtUp([]int{1, 5, 6}, []int64{0, 40, 0, 0, 0, 9, 0, 0}); !slices.Equal(got, []int{1}) {
		t.Errorf("caughtUp = %v; want [1]", got)
	}
	h, err = parseHealth("ok\ncluster group=g member=\"\" generation=-1 api=http://x partitions=\n")
	if err != nil || len(h.owned) != 0 {
		t.Errorf("between generations: %+v, %v; want nothing owned", h, err)
	}
	if _, err := parseHealth("ok\nbuilder events_applied=1\n"); err == nil {
		t.Error("a body without a cluster line: no error")
	}
	if _, err := parseHealth("cluster generation=x partitions=\n"); err == nil || !strings.Contains(err.Error(), `"x"`) {
		t.Errorf("a bad generation: %v; want an error naming it", err)
	}
}

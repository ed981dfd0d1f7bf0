package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/affinityhq/affinity/bench/workload"
	"github.com/affinityhq/affinity/internal/budget"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/tracker/event"
)

// ClusterOptions configure the cluster scenario: `affinity build` processes
// of the real binary in one consumer group over a pre-written event topic
// of benchPartitions partitions.
type ClusterOptions struct {
	// Workload is what the topic is pre-written with; Events must be
	// bounded.
	Workload workload.Options
	// SessionTimeout and RebalanceTimeout are the nodes'
	// --group-session-timeout and --group-rebalance-timeout: the first
	// bounds how long a dead node's partitions stay unowned.
	SessionTimeout, RebalanceTimeout time.Duration
	// Memory is each node's --memory; 0: budget.Default.
	Memory int64
	// Binary is the affinity binary; empty: go build it into Dir.
	Binary string
	// Kafka names the brokers of a real cluster (a fresh topic is created
	// on it); empty: kfake in a role process.
	Kafka string
	// Dir holds the nodes' data and logs; empty: a temp dir.
	Dir string
	// Progress, when set, gets a one-line status about every Poll.
	Progress func(string)
	// Poll is how often each node's /healthz is read; it bounds the
	// resolution of every time measured.
	Poll time.Duration
	// Timeout bounds each wait (caught up, owned).
	Timeout time.Duration
}

// DefaultClusterOptions returns issue 13's size: 100k visitors per
// partition (800k over the 8 partitions, 5 events each), so that a move
// of one partition is a move of 100k visitors.
func DefaultClusterOptions() ClusterOptions {
	w := workload.DefaultOptions()
	w.Visitors = 100_000 * benchPartitions
	w.Events = 5 * int64(w.Visitors)
	return ClusterOptions{Workload: w, SessionTimeout: 10 * time.Second, RebalanceTimeout: 10 * time.Second,
		Poll: 100 * time.Millisecond, Timeout: 30 * time.Minute}
}

// QuickClusterOptions returns a smoke run: 4k visitors, the shortest
// session timeout kfake allows.
func QuickClusterOptions() ClusterOptions {
	o := DefaultClusterOptions()
	o.Workload.Visitors = 4_000
	o.Workload.Events = 20_000
	o.SessionTimeout, o.RebalanceTimeout = 6*time.Second, 6*time.Second
	o.Timeout = 2 * time.Minute
	return o
}

// ClusterNode is one `affinity build` process's figures in one phase.
type ClusterNode struct {
	Name       string  `json:"name"`
	Partitions []int   `json:"partitions"` // owned at the end of the phase
	Events     int64   `json:"events_applied"`
	CPUSeconds float64 `json:"cpu_s"` // utime+stime from /proc/PID/stat
	// CPUPerMEvents is CPUSeconds per million of Events: the node's whole
	// cost (Kafka fetches, the group, the builder, Badger) per event.
	CPUPerMEvents float64 `json:"cpu_s_per_m_events"`
	PeakRSSMB     float64 `json:"peak_rss_mb"` // VmHWM
}

// ClusterRun is one build of the whole topic from an empty state by a
// group of Nodes processes.
type ClusterRun struct {
	Nodes int `json:"nodes"`
	// OwnedSeconds is from the start of the first process until the group
	// owns every partition; Seconds until every partition's consumed
	// offset is the topic's end.
	OwnedSeconds float64        `json:"owned_s"`
	Seconds      float64        `json:"seconds"`
	EPS          float64        `json:"events_per_s"` // the topic's events / Seconds
	PerNode      []*ClusterNode `json:"per_node"`
}

// ClusterMove is a move of partitions: to the survivor of a SIGKILL, or
// to a node that joins with no state. Either rebuilds each partition it
// gets from offset 0 of the topic.
type ClusterMove struct {
	What string `json:"what"`
	// From is the node SIGKILLed (none for a join); To the node the
	// partitions moved to.
	From       string `json:"from,omitempty"`
	To         string `json:"to"`
	Partitions []int  `json:"partitions"` // moved
	// Resumed says the mover had owned some of Partitions before (both
	// members of the group owned each other's partitions at its start):
	// it resumed them from its own older offsets, no full rebuild.
	Resumed  bool  `json:"resumed_own_state,omitempty"`
	Visitors int   `json:"visitors"` // of the partitions moved
	Events   int64 `json:"events"`   // the mover applied after the move
	// OwnedSeconds is detection + rebalance: from the SIGKILL (or the
	// start of the joining process) until the group's new assignment
	// holds; CatchUpSeconds from then until every moved partition's
	// consumed offset is the topic's end.
	OwnedSeconds   float64 `json:"owned_s"`
	CatchUpSeconds float64 `json:"catch_up_s"`
	// PartitionSeconds is each moved partition's rebuild, from the
	// assignment until it was caught up (in Partitions' order).
	PartitionSeconds []float64 `json:"partition_s"`
	// CatchUpPerPartition and CatchUpPer100kVisitors scale CatchUpSeconds.
	CatchUpPerPartition    float64 `json:"catch_up_s_per_partition"`
	CatchUpPer100kVisitors float64 `json:"catch_up_s_per_100k_visitors"`
	CPUPerMEvents          float64 `json:"cpu_s_per_m_events"` // the mover's, over the catch-up
}

// ClusterReport is the outcome of the cluster scenario.
type ClusterReport struct {
	Kafka      string `json:"kafka"`
	Partitions int    `json:"partitions"`
	Visitors   int    `json:"visitors"`
	Events     int64  `json:"events"`
	Records    int64  `json:"records"`
	// PartitionVisitors is how many visitors each partition holds.
	PartitionVisitors []int         `json:"partition_visitors"`
	FillSeconds       float64       `json:"fill_s"`
	MemoryMB          float64       `json:"node_memory_mb"`
	SessionTimeout    string        `json:"group_session_timeout"`
	Runs              []*ClusterRun `json:"runs"` // 1 node, then 2
	// Scaling is the 2-node run's events/s over the 1-node run's.
	Scaling float64        `json:"scaling_2_to_1"`
	Moves   []*ClusterMove `json:"moves"` // to the survivor, then to a new node
	// LoadAvg is /proc/loadavg's 1, 5 and 15 minutes at the end: the
	// machine's other tenants.
	LoadAvg  string   `json:"loadavg_at_end"`
	Timeline []Sample `json:"timeline"`
}

// clusterNode is a running `affinity build` in the scenario's group.
type clusterNode struct {
	*nodeProc
	name, group string
	last        nodeHealth
	// ever holds the partitions the node was seen owning: it has state
	// of them, and would resume them from its own offset, not rebuild.
	ever map[int]bool
}

// everOwned reports whether n was seen owning any of ps.
func (n *clusterNode) everOwned(ps []int) bool {
	return slices.ContainsFunc(ps, func(p int) bool { return n.ever[p] })
}

// nodeHealth is what a build node's /healthz says.
type nodeHealth struct {
	generation int64
	owned      []int
	consumed   map[int]int64
	applied    int64
}

// parseHealth reads the body of a build node's /healthz: "cluster …
// generation=N … partitions=0,1", "builder events_applied=N …" and
// "partition P consumed=N …" lines.
func parseHealth(body string) (nodeHealth, error) {
	h := nodeHealth{generation: -1, consumed: map[int]int64{}}
	field := func(line, name string) (string, bool) {
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, name+"="); ok {
				return v, true
			}
		}
		return "", false
	}
	seen := false
	for _, line := range strings.Split(body, "\n") {
		switch {
		case strings.HasPrefix(line, "cluster "):
			seen = true
			g, _ := field(line, "generation")
			n, err := strconv.ParseInt(g, 10, 64)
			if err != nil {
				return h, fmt.Errorf("invalid generation %q in /healthz line %q", g, line)
			}
			h.generation = n
			ps, _ := field(line, "partitions")
			for _, p := range strings.Split(ps, ",") {
				if p == "" || n < 0 {
					continue
				}
				x, err := strconv.Atoi(p)
				if err != nil {
					return h, fmt.Errorf("invalid partition %q in /healthz line %q", p, line)
				}
				h.owned = append(h.owned, x)
			}
		case strings.HasPrefix(line, "builder "):
			v, _ := field(line, "events_applied")
			h.applied, _ = strconv.ParseInt(v, 10, 64)
		case strings.HasPrefix(line, "partition "):
			f := strings.Fields(line)
			c, _ := field(line, "consumed")
			p, err1 := strconv.Atoi(f[1])
			n, err2 := strconv.ParseInt(c, 10, 64)
			if err1 != nil || err2 != nil {
				return h, fmt.Errorf("invalid /healthz line %q", line)
			}
			h.consumed[p] = n
		}
	}
	if !seen {
		return h, errors.New("no cluster line in /healthz: not a group member")
	}
	return h, nil
}

var healthClient = &http.Client{Timeout: 10 * time.Second}

// health reads n's /healthz (200 or 503: the body tells either way).
func (n *clusterNode) health() (nodeHealth, error) {
	resp, err := healthClient.Get("http://" + n.api + "/healthz")
	if err != nil {
		return nodeHealth{}, fmt.Errorf("%s: %w", n.name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nodeHealth{}, fmt.Errorf("%s: %w", n.name, err)
	}
	h, err := parseHealth(string(b))
	if err != nil {
		return h, fmt.Errorf("%s: %w", n.name, err)
	}
	n.last = h
	for _, p := range h.owned {
		n.ever[p] = true
	}
	return h, nil
}

// caughtUp returns the partitions of ps that h shows consumed to ends.
func (h nodeHealth) caughtUp(ps []int, ends []int64) []int {
	var done []int
	for _, p := range ps {
		if c, ok := h.consumed[p]; ok && slices.Contains(h.owned, p) && c >= ends[p] {
			done = append(done, p)
		}
	}
	return done
}

// procCPUSeconds returns the user+system CPU time of process pid from
// /proc/PID/stat (fields 14 and 15, in ticks of 1/100 s on Linux).
func procCPUSeconds(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3, state
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100
}

// figures returns n's figures now.
func (n *clusterNode) figures() *ClusterNode {
	pid := n.cmd.Process.Pid
	c := &ClusterNode{Name: n.name, Partitions: n.last.owned, Events: n.last.applied,
		CPUSeconds: procCPUSeconds(pid), PeakRSSMB: float64(procStatusKB(strconv.Itoa(pid), "VmHWM:")) / 1024}
	if c.Events > 0 {
		c.CPUPerMEvents = c.CPUSeconds / float64(c.Events) * 1e6
	}
	return c
}

// clusterRun is the scenario's state while it runs.
type clusterRun struct {
	o        ClusterOptions
	bin      string
	brokers  string
	topic    string
	ends     []int64
	rep      *ClusterReport
	runStart time.Time
	progress func(string)
	seq      int
}

// startNode starts an `affinity build` in group with an empty --data.
func (c *clusterRun) startNode(name, group string) (*clusterNode, error) {
	c.seq++
	data := filepath.Join(c.o.Dir, fmt.Sprintf("cluster-%d-%s", c.seq, name))
	if err := os.RemoveAll(data); err != nil {
		return nil, err
	}
	n, err := startNode(c.bin, data+".log", "build", "--data", data, "--kafka", c.brokers, "--topic", c.topic,
		"--group", group, "--changes-topic", "", "--api-listen", "127.0.0.1:0", "--memory", strconv.FormatInt(c.o.Memory, 10),
		"--group-session-timeout", c.o.SessionTimeout.String(), "--group-rebalance-timeout", c.o.RebalanceTimeout.String())
	if err != nil {
		return nil, fmt.Errorf("cluster: %s: %w", name, err)
	}
	return &clusterNode{nodeProc: n, name: name, group: group, ever: map[int]bool{}}, nil
}

// poll reads every node's /healthz each Poll, adds the nodes' events/s
// together to the timeline as system (about every second), and returns
// when done says so.
func (c *clusterRun) poll(what, system string, nodes []*clusterNode, done func(now time.Time) bool) error {
	deadline := time.Now().Add(c.o.Timeout)
	applied := func() (n int64) {
		for _, x := range nodes {
			n += x.last.applied
		}
		return n
	}
	last, lastT := applied(), time.Now()
	for {
		now := time.Now()
		for _, n := range nodes {
			if _, err := n.health(); err != nil {
				return fmt.Errorf("cluster: %s: %w", what, err)
			}
		}
		total := applied()
		if dt := now.Sub(lastT).Seconds(); dt >= 1 {
			c.rep.Timeline = append(c.rep.Timeline, Sample{T: now.Sub(c.runStart).Seconds(), System: system, Round: 1, EPS: float64(total-last) / dt})
			last, lastT = total, now
		}
		if done(now) {
			return nil
		}
		if now.After(deadline) {
			return fmt.Errorf("cluster: %s: not done after %s (see the node logs in %s)", what, c.o.Timeout, c.o.Dir)
		}
		c.progress(fmt.Sprintf("cluster: %s: %d events applied", what, total))
		time.Sleep(c.o.Poll)
	}
}

// ownership returns the partitions nodes own together, and whether each
// is owned exactly once.
func ownership(nodes []*clusterNode) (owned []int, exact bool) {
	exact = true
	for _, n := range nodes {
		for _, p := range n.last.owned {
			if slices.Contains(owned, p) {
				exact = false
			}
			owned = append(owned, p)
		}
	}
	slices.Sort(owned)
	return owned, exact
}

// all reports whether owned is every partition of the topic, once.
func (c *clusterRun) all(owned []int, exact bool) bool {
	return exact && len(owned) == len(c.ends)
}

// build starts count nodes in a fresh group and waits until they built
// the whole topic.
func (c *clusterRun) build(count int) (*ClusterRun, []*clusterNode, error) {
	run := &ClusterRun{Nodes: count}
	system := "1-node"
	if count > 1 {
		system = fmt.Sprintf("%d-nodes", count)
	}
	group := fmt.Sprintf("affinity-bench-%d-%d", count, time.Now().UnixNano())
	// The nodes start at once, as a deployment's would: each that joins
	// after the first rebalance makes the others hand partitions over,
	// which the newcomer then rebuilds from offset 0.
	start := time.Now()
	nodes := make([]*clusterNode, count)
	errs := make([]error, count)
	var wg sync.WaitGroup
	for i := range count {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i], errs[i] = c.startNode(fmt.Sprintf("node%d", i+1), group)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, n := range nodes {
			if n != nil {
				n.kill()
			}
		}
		return run, nil, err
	}
	err := c.poll(fmt.Sprintf("%d nodes building the topic", count), system, nodes, func(now time.Time) bool {
		owned, exact := ownership(nodes)
		if !c.all(owned, exact) {
			return false
		}
		for _, n := range nodes {
			if len(n.last.owned) == 0 {
				return false // not joined yet
			}
		}
		if run.OwnedSeconds == 0 {
			run.OwnedSeconds = now.Sub(start).Seconds()
		}
		done := 0
		for _, n := range nodes {
			done += len(n.last.caughtUp(n.last.owned, c.ends))
		}
		return done == len(c.ends)
	})
	if err != nil {
		return run, nodes, err
	}
	run.Seconds = time.Since(start).Seconds()
	run.EPS = float64(c.rep.Events) / run.Seconds
	for _, n := range nodes {
		run.PerNode = append(run.PerNode, n.figures())
	}
	return run, nodes, nil
}

// move measures a move to mover of the partitions moved (those it does
// not own yet): from t0 until nodes own every partition once and mover
// owns moved, then until mover has caught up on them.
func (c *clusterRun) move(what, system string, t0 time.Time, mover *clusterNode, nodes []*clusterNode, moved func() []int) (*ClusterMove, error) {
	m := &ClusterMove{What: what, To: mover.name}
	ever := maps.Clone(mover.ever)
	applied0, cpu0 := mover.last.applied, procCPUSeconds(mover.cmd.Process.Pid)
	var owned time.Time
	doneAt := map[int]time.Time{}
	err := c.poll(what, system, nodes, func(now time.Time) bool {
		if owned.IsZero() {
			all, exact := ownership(nodes)
			if !c.all(all, exact) {
				return false
			}
			if m.Partitions = moved(); len(m.Partitions) == 0 {
				return false
			}
			owned = now
		}
		for _, p := range mover.last.caughtUp(m.Partitions, c.ends) {
			if _, ok := doneAt[p]; !ok {
				doneAt[p] = now
			}
		}
		return len(doneAt) == len(m.Partitions)
	})
	if err != nil {
		return m, err
	}
	end := time.Now()
	m.OwnedSeconds, m.CatchUpSeconds = owned.Sub(t0).Seconds(), end.Sub(owned).Seconds()
	for _, p := range m.Partitions {
		m.Resumed = m.Resumed || ever[p]
		m.PartitionSeconds = append(m.PartitionSeconds, doneAt[p].Sub(owned).Seconds())
		m.Visitors += c.rep.PartitionVisitors[p]
	}
	m.Events = mover.last.applied - applied0
	m.CatchUpPerPartition = m.CatchUpSeconds / float64(len(m.Partitions))
	if m.Visitors > 0 {
		m.CatchUpPer100kVisitors = m.CatchUpSeconds / (float64(m.Visitors) / 100_000)
	}
	if m.Events > 0 {
		m.CPUPerMEvents = (procCPUSeconds(mover.cmd.Process.Pid) - cpu0) / float64(m.Events) * 1e6
	}
	return m, nil
}

// RunCluster runs the cluster scenario: the topic pre-written; one node
// builds it; two nodes in a fresh group build it; one of the two is
// SIGKILLed and the survivor takes its partitions over; a node with no
// state joins and rebuilds the partitions it is given.
func RunCluster(o ClusterOptions) (*ClusterReport, error) {
	if o.Workload.Events <= 0 || o.Workload.Visitors <= 0 || o.SessionTimeout <= 0 || o.RebalanceTimeout <= 0 || o.Poll <= 0 || o.Timeout <= 0 {
		return nil, fmt.Errorf("cannot run cluster: visitors %d, events %d, session timeout %s, rebalance timeout %s, poll %s and timeout %s must be > 0",
			o.Workload.Visitors, o.Workload.Events, o.SessionTimeout, o.RebalanceTimeout, o.Poll, o.Timeout)
	}
	if o.Memory == 0 {
		o.Memory = budget.Default
	}
	done, err := scratchDir(&o.Dir, "cluster")
	if err != nil {
		return nil, err
	}
	defer done()
	c := &clusterRun{o: o, progress: func(string) {}, runStart: time.Now()}
	if o.Progress != nil {
		c.progress = o.Progress
	}
	c.rep = &ClusterReport{Partitions: benchPartitions, Visitors: o.Workload.Visitors, Events: o.Workload.Events,
		MemoryMB: float64(o.Memory) / (1 << 20), SessionTimeout: o.SessionTimeout.String()}
	rep := c.rep
	if c.bin, err = affinityBinary(o.Binary, o.Dir, c.progress); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}

	// 1. The broker and the topic.
	c.brokers, c.topic, rep.Kafka = o.Kafka, fmt.Sprintf("affinity-bench-cluster-%d", time.Now().UnixNano()), "a Kafka cluster at "+o.Kafka
	if o.Kafka == "" {
		k, err := startProc(roleKfake, o.Dir)
		if err != nil {
			return rep, err
		}
		defer k.stop()
		c.brokers, c.topic, rep.Kafka = k.addr, topicCollector, "kfake (1 broker, in its own process)"
	}
	if err := c.fill(); err != nil {
		return rep, err
	}

	// 2. One node, then two in a fresh group.
	var nodes []*clusterNode
	stopAll := func() error {
		var errs []error
		for _, n := range nodes {
			select {
			case <-n.done: // killed
			default:
				errs = append(errs, n.stop(time.Minute))
			}
		}
		nodes = nil
		return errors.Join(errs...)
	}
	defer func() {
		for _, n := range nodes {
			n.kill()
		}
	}()
	for _, count := range []int{1, 2} {
		run, ns, err := c.build(count)
		nodes = ns
		if run != nil {
			rep.Runs = append(rep.Runs, run)
		}
		if err != nil {
			return rep, err
		}
		if count == 2 {
			break // the move starts from this group
		}
		if err := stopAll(); err != nil {
			return rep, fmt.Errorf("cluster: stopping the 1-node run: %w", err)
		}
	}
	if rep.Runs[0].EPS > 0 {
		rep.Scaling = rep.Runs[1].EPS / rep.Runs[0].EPS
	}

	// 3. SIGKILL one of the two: the survivor rebuilds its partitions. The
	// victim is one whose partitions the other never owned (a member that
	// joined first may have applied every partition before the second
	// joined): that one would resume them from its own offsets instead.
	victim, survivor := nodes[1], nodes[0]
	if survivor.everOwned(victim.last.owned) && !victim.everOwned(survivor.last.owned) {
		victim, survivor = survivor, victim
	}
	lost := victim.last.owned
	t0 := time.Now()
	victim.kill()
	mv, err := c.move("the survivor takes over a SIGKILLed node's partitions", "survivor-takeover", t0, survivor, []*clusterNode{survivor},
		func() []int { return lost })
	if mv != nil {
		mv.From = victim.name
		rep.Moves = append(rep.Moves, mv)
	}
	if err != nil {
		return rep, err
	}

	// 4. A node with no state joins the survivor's group.
	t0 = time.Now()
	fresh, err := c.startNode("fresh", survivor.group)
	if err != nil {
		return rep, err
	}
	nodes = append(nodes, fresh)
	mv, err = c.move("a node with no state joins and rebuilds its share", "joiner-rebuild", t0, fresh, []*clusterNode{survivor, fresh},
		func() []int { return fresh.last.owned })
	if mv != nil {
		rep.Moves = append(rep.Moves, mv)
	}
	if err != nil {
		return rep, err
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			rep.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	c.progress("")
	return rep, stopAll()
}

// fill pre-writes the topic with the workload and notes each partition's
// end offset and visitors.
func (c *clusterRun) fill() error {
	ko := storage.DefaultKafkaOptions(strings.Split(c.brokers, ",")...)
	ko.Topic, ko.Partitions = c.topic, benchPartitions
	ctx := context.Background()
	l, err := storage.OpenKafkaLog(ctx, ko)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	defer l.Close()
	w := c.o.Workload
	start := time.Now()
	st, err := workload.Fill(ctx, l, w, 2, 256, func(n int64) {
		c.progress(fmt.Sprintf("cluster: writing the topic: %d of %d events", n, w.Events))
	})
	if err != nil {
		return fmt.Errorf("cluster: cannot write the topic %s: %w", c.topic, err)
	}
	c.rep.FillSeconds, c.rep.Records = time.Since(start).Seconds(), st.Batches
	parts := l.Partitions()
	if parts != benchPartitions {
		return fmt.Errorf("cluster: topic %s has %d partitions; want %d", c.topic, parts, benchPartitions)
	}
	c.ends = make([]int64, parts)
	for p := range parts {
		if _, c.ends[p], err = l.Offsets(ctx, p); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
	}
	seed := w.VisitorSeed
	if seed == 0 {
		seed = w.Seed
	}
	c.rep.PartitionVisitors = make([]int, parts)
	var key []byte
	for i := range w.Visitors {
		key = event.AppendLogKey(key[:0], w.Site, workload.VisitorID(seed, i))
		c.rep.PartitionVisitors[storage.PartitionFor(key, parts)]++
	}
	return nil
}

// PrintCluster writes the cluster figures.
func PrintCluster(w io.Writer, r *ClusterReport) {
	fmt.Fprintf(w, "cluster: `affinity build` processes (the real binary) in one consumer group on %s; topic of %d partitions pre-written with %d events of %d visitors (%d records, %.1fs); --memory %.0f MiB, --group-session-timeout %s\n",
		r.Kafka, r.Partitions, r.Events, r.Visitors, r.Records, r.FillSeconds, r.MemoryMB, r.SessionTimeout)
	fmt.Fprintf(w, "  visitors per partition: %v\n\n", r.PartitionVisitors)
	fmt.Fprintf(w, "%-7s %-6s %10s %10s %11s %14s %10s %11s %12s %s\n", "nodes", "node", "owned s", "seconds", "events/s", "events applied", "CPU-s", "CPU-s/M ev", "peak RSS MB", "partitions")
	for _, run := range r.Runs {
		for i, n := range run.PerNode {
			head := fmt.Sprintf("%-7d %-6s %10.1f %10.1f %11.0f", run.Nodes, n.Name, run.OwnedSeconds, run.Seconds, run.EPS)
			if i > 0 {
				head = fmt.Sprintf("%-7s %-6s %10s %10s %11s", "", n.Name, "", "", "")
			}
			fmt.Fprintf(w, "%s %14d %10.1f %11.1f %12.0f %v\n", head, n.Events, n.CPUSeconds, n.CPUPerMEvents, n.PeakRSSMB, n.Partitions)
		}
	}
	fmt.Fprintf(w, "  2 nodes / 1 node, aggregate events/s: %.2f (both nodes share this machine's cores: a gain needs a core per node; the figure that carries over is CPU-s/M per node)\n\n", r.Scaling)
	for _, m := range r.Moves {
		from := "the group"
		if m.From != "" {
			from = m.From
		}
		fmt.Fprintf(w, "move: %s: partitions %v from %s to %s, %d visitors, %d events\n", m.What, m.Partitions, from, m.To, m.Visitors, m.Events)
		fmt.Fprintf(w, "  until the new assignment holds (detection or join, + rebalance) %.1fs, catch-up (rebuild from offset 0) %.1fs: %.1fs a partition, %.1fs per 100k visitors, %.1f CPU-s/M events\n",
			m.OwnedSeconds, m.CatchUpSeconds, m.CatchUpPerPartition, m.CatchUpPer100kVisitors, m.CPUPerMEvents)
		ps := make([]string, len(m.Partitions))
		for i, p := range m.Partitions {
			ps[i] = fmt.Sprintf("%d: %.1fs", p, m.PartitionSeconds[i])
		}
		fmt.Fprintf(w, "  each partition caught up after the assignment: %s\n", strings.Join(ps, ", "))
		if m.Resumed {
			fmt.Fprintf(w, "  (%s had owned some of them before: it resumed from its own offsets, not a rebuild from offset 0)\n", m.To)
		}
	}
	fmt.Fprintf(w, "  load average at the end: %s\n", r.LoadAvg)
}

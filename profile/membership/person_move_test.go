package membership_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/affinityhq/affinity/profile/defs"
	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/people"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// assign gives node n the evaluating partitions parts, as a member's
// generation does, and waits until their persons are restored.
func assign(t *testing.T, n *env, parts ...int) {
	t.Helper()
	marks := map[int]int64{}
	for _, p := range parts {
		marks[p] = 0
	}
	n.Segments.RestorePersons(context.Background(), marks)
	restored(t, n, parts...)
}

// restored waits until n restored the persons of parts.
func restored(t *testing.T, n *env, parts ...int) {
	t.Helper()
	profiletest.WaitUntil(t, "the persons are restored", func() bool {
		for _, p := range parts {
			if !n.Segments.PersonsReady(p) {
				return false
			}
		}
		return true
	})
}

// TestPersonsMove: node 1 of a two-node group dies with a change it
// evaluated but never produced (its sink fails), and node 0 takes over
// every partition: it restores node 1's persons from the changes topic,
// rebuilds node 1's events, and goes on. The members and the records the
// group emitted (node 1's produced ones and node 0's) are a single node's
// over the same events at every step: no person enters again after the
// move (the rebuild marks every person of node 1's visitors), the change
// node 1 owed is emitted once, by node 0, and a time-caused exit of a
// restored person comes at its exact instant.
func TestPersonsMove(t *testing.T) {
	brokers := profiletest.StartKafka(t, kfake.SeedTopics(1, "changes"))
	topic := profiletest.OpenTopic(t, brokers, "changes")
	defer topic.Close()
	clk := &profiletest.Clock{}
	clk.Set(t0 + hour)
	var dead atomic.Bool // node 1's sink fails: its records stay in its outbox
	sink := membership.LogSink(topic)
	ref, store := openGroup(t, clk, func(i int, o *membership.Options) {
		o.History = membership.LogHistory(topic)
		o.Sink = func(ctx context.Context, cs []membership.Change) error {
			if i == 1 && dead.Load() {
				return errors.New("node 1 is dead")
			}
			return sink(ctx, cs)
		}
	})
	n0, n1 := store.nodes[0], store.nodes[1]
	assign(t, n0, 0, 2)
	assign(t, n1, 1, 3)
	for _, n := range []*env{ref, n0, n1} {
		n.putPerson(t, "shop", "fans", `count(view, 7d) >= 3`)
		n.putPerson(t, "shop", "known", `identified`)
	}
	var rebuild []*event.Batch // node 1's events, which node 0 applies after the move
	send := func(on []int, batches ...*event.Batch) {
		t.Helper()
		for i, b := range batches {
			store.all()[on[i]].Append(t, b)
			if on[i] == 1 {
				rebuild = append(rebuild, b)
			}
			ref.Append(t, b)
		}
		settle(t, append([]*env{ref}, store.all()...))
	}
	check := func(when string, emitted []membership.Change) {
		t.Helper()
		for _, seg := range []string{"fans", "known"} {
			var gone []membership.Change
			for _, c := range emitted {
				if c.Segment == seg {
					gone = append(gone, c)
				}
			}
			sameAsReference(t, when, ref, store.all(), gone, "shop", seg)
			// The group's feed by source, each node answering for the
			// partitions it evaluates: the reference's records, each
			// once, every one of a partition after the one before.
			var got, want []string
			ids := map[state.Source]bool{}
			nodes := store.all()
			for i, n := range nodes {
				var from []state.Source
				for p := range groupPartitions {
					if p%len(nodes) == i {
						from = append(from, state.Source{Partition: int32(p), Offset: -1})
					}
				}
				for _, c := range n.sourceChanges(t, "shop", seg, from...) {
					if ids[c.Src] || c.Src.Offset <= 0 {
						t.Fatalf("%s: %s: record %+v of source %+v again or without a position", when, seg, c, c.Src)
					}
					ids[c.Src] = true
					got = append(got, changeLine(c))
				}
			}
			for _, c := range ref.changes(t, "shop", seg) {
				want = append(want, changeLine(c))
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("%s: %s: the group's feed by source\n%v\nwant the reference's records\n%v", when, seg, got, want)
			}
		}
	}
	a, b, c, d := profiletest.Visitor(1), profiletest.Visitor(2), profiletest.Visitor(3), profiletest.Visitor(4)
	ann := keyOn("shop", "ann", 1, 2) // evaluated on node 1; a is on node 0, b on node 1
	cat := keyOn("shop", "cat", 1, 2) // evaluated on node 1; c is on node 0
	dan := keyOn("shop", "dan", 0, 2) // evaluated on node 0; d is on node 1
	send([]int{0, 1, 0, 1},
		profiletest.Batch("shop", a, append(views(t0, t0+10), profiletest.Identify(t0+20, ann))...),
		profiletest.Batch("shop", b, views(t0+30)...),
		profiletest.Batch("shop", c, profiletest.Identify(t0+31, cat)),
		profiletest.Batch("shop", d, append(views(t0+32, t0+33, t0+34), profiletest.Identify(t0+35, dan))...))
	send([]int{1}, profiletest.Batch("shop", b, profiletest.Identify(t0+40, ann)))
	check("before the move", nil)

	// Node 1 evaluates cat's three views (handed by node 0) and commits
	// cat's entry into fans, but dies before producing it.
	dead.Store(true)
	late := profiletest.Batch("shop", c, views(t0+50, t0+51, t0+52)...)
	n0.Append(t, late)
	ref.Append(t, late)
	settle(t, []*env{ref})
	catID := membership.PersonID("shop", "e:"+cat)
	profiletest.WaitUntil(t, "node 1 commits cat's entry", func() bool {
		_, ok := n1.members(t, "shop", "fans")[catID]
		return ok
	})
	var emitted []membership.Change // what node 1 produced: its feed
	for _, seg := range []string{"fans", "known"} {
		emitted = append(emitted, n1.changes(t, "shop", seg)...)
	}
	for _, ch := range emitted {
		if ch.Visitor == catID && ch.Segment == "fans" {
			t.Fatalf("node 1 produced cat's entry %+v; want it stuck in its outbox", ch)
		}
	}

	// Node 1's evaluator stops; eve's mark, handed to it, is stored there
	// and never evaluated.
	if err := n1.Segments.Close(); err != nil {
		t.Fatal(err)
	}
	e := profiletest.Visitor(5)
	eve := keyOn("shop", "eve", 1, 2) // evaluated on node 1; e is on node 0
	eveBatch := profiletest.Batch("shop", e, append(views(t0+53, t0+54, t0+55), profiletest.Identify(t0+56, eve))...)
	n0.Append(t, eveBatch)
	ref.Append(t, eveBatch)
	settle(t, []*env{ref, n0})
	if _, ok := n0.members(t, "shop", "known")[membership.PersonID("shop", "e:"+eve)]; ok {
		t.Fatal("eve is known on node 0 before the move; want her mark at node 1")
	}

	// The move, as a rebalance does it: no node evaluates while the group
	// rebalances; node 0 is assigned every partition, so it restores node
	// 1's persons before it evaluates them, hands again the marks it
	// handed before, and rebuilds node 1's events.
	store.own(nil)
	n0.Segments.RestorePersons(context.Background(), map[int]int64{0: 0, 1: 0, 2: 0, 3: 0})
	n0.Append(t, rebuild...)
	if err := n0.Builder.WaitCaughtUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	store.set(n0)
	store.own(n0)
	n1.Close(t)
	restored(t, n0, 0, 1, 2, 3)
	eveID := membership.PersonID("shop", "e:"+eve)
	profiletest.WaitUntil(t, "eve's mark handed again and evaluated", func() bool {
		_, ok := n0.members(t, "shop", "known")[eveID]
		return ok
	})
	settle(t, []*env{ref, n0})
	check("after the move", emitted)
	if _, ok := n0.members(t, "shop", "fans")[catID]; !ok {
		t.Fatal("cat is not in fans on node 0 after the move; want the entry node 1 owed")
	}

	// Traffic goes on: b views again (ann stays), d leaves... by time.
	send([]int{0}, profiletest.Batch("shop", b, views(t0+60)...))
	check("after more views", emitted)
	for _, n := range []*env{ref, n0} {
		n.Advance(t, t0+8*day)
	}
	settle(t, []*env{ref, n0})
	check("at t0+8d", emitted)
	if got := ref.members(t, "shop", "fans"); len(got) != 0 {
		t.Fatalf("reference fans at t0+8d = %v; want none (every view is older than 7 days)", got)
	}
}

// TestPersonsMoveAfterErasure: a person's only visitor is erased — the
// person leaves, with a record of its id alone — and then its evaluating
// partition moves; when the person's next visitor identifies, the new
// evaluator records the person entering again, as one node does. Before
// the erased leave had a record, the restore took the person's entry on
// the changes topic as its state, and the second entry never came
// (TestClusterFull, 2 runs of about 11).
func TestPersonsMoveAfterErasure(t *testing.T) {
	brokers := profiletest.StartKafka(t, kfake.SeedTopics(1, "changes"))
	topic := profiletest.OpenTopic(t, brokers, "changes")
	defer topic.Close()
	clk := &profiletest.Clock{}
	clk.Set(t0 + hour)
	ref, store := openGroup(t, clk, func(_ int, o *membership.Options) {
		o.History, o.Sink = membership.LogHistory(topic), membership.LogSink(topic)
	})
	n0, n1 := store.nodes[0], store.nodes[1]
	assign(t, n0, 0, 2)
	assign(t, n1, 1, 3)
	for _, n := range []*env{ref, n0, n1} {
		n.putPerson(t, "shop", "known", `identified`)
	}
	fay := keyOn("shop", "fay", 1, 2) // evaluated on node 1; her visitors are on node 0
	fayID := membership.PersonID("shop", "e:"+fay)
	f, g := profiletest.Visitor(1), profiletest.Visitor(2)
	first := profiletest.Batch("shop", f, profiletest.Identify(t0, fay))
	n0.Append(t, first)
	ref.Append(t, first)
	settle(t, []*env{ref, n0, n1})
	if _, ok := n1.members(t, "shop", "known")[fayID]; !ok {
		t.Fatal("fay is not known on node 1; want her entry")
	}

	// Her only visitor is erased, on its owner and on the reference, and
	// the erasure reaches node 1 as the definitions topic brings it.
	for _, n := range []*env{ref, n0} {
		if _, _, err := people.Erase(n.Builder, n.Segments, "shop", []event.UUID{f}, nil, nil); err != nil {
			t.Fatalf("Erase: %s", err)
		}
	}
	if _, err := n1.Segments.Erase("shop", []defs.Erased{{Visitor: f}}, nil, t0+50); err != nil {
		t.Fatalf("Erase on node 1: %s", err)
	}
	settle(t, []*env{ref, n0, n1})
	if _, ok := n1.members(t, "shop", "known")[fayID]; ok {
		t.Fatal("fay is still known on node 1 after her only visitor's erasure")
	}
	sameAsReference(t, "after the erasure", ref, store.all(), nil, "shop", "known")
	var left *membership.Change
	for _, c := range ref.changes(t, "shop", "known") {
		if c.Visitor == fayID && !c.Entered {
			left = &c
		}
	}
	if left == nil || left.Why != "erased" || left.Email != "" || left.Facts != "{}" || left.Person != "i:"+fayID.String() {
		t.Fatalf("fay's leave = %+v; want why erased, no email, no facts, person i:%s", left, fayID)
	}
	emitted := n1.changes(t, "shop", "known") // what node 1 produced

	// Node 1 leaves; node 0 evaluates every partition, restoring node
	// 1's persons from the changes topic.
	store.own(nil)
	n0.Segments.RestorePersons(context.Background(), map[int]int64{0: 0, 1: 0, 2: 0, 3: 0})
	store.set(n0)
	store.own(n0)
	n1.Close(t)
	restored(t, n0, 0, 1, 2, 3)
	if _, ok := n0.members(t, "shop", "known")[fayID]; ok {
		t.Fatal("fay is known on node 0 after the restore; want her leave restored")
	}

	// Her next visitor identifies: she enters again, on both.
	next := profiletest.Batch("shop", g, profiletest.Identify(t0+100, fay))
	n0.Append(t, next)
	ref.Append(t, next)
	settle(t, []*env{ref, n0})
	sameAsReference(t, "after her next visitor", ref, []*env{n0}, emitted, "shop", "known")
	entries := 0
	for _, c := range ref.changes(t, "shop", "known") {
		if c.Visitor == fayID && c.Entered {
			entries++
		}
	}
	if entries != 2 {
		t.Fatalf("the reference recorded %d entries of fay; want 2", entries)
	}
}

// BenchmarkRestorePersons: a node takes over the evaluating partitions of
// 5 000 persons, each a member of two per-person segments, from a kfake
// changes topic: it reads the topic, restores the memberships and
// evaluates every person against the group's profiles (here its own).
func BenchmarkRestorePersons(b *testing.B) {
	const persons = 5000
	brokers := profiletest.StartKafka(b, kfake.SeedTopics(1, "changes"))
	topic := profiletest.OpenTopic(b, brokers, "changes")
	defer topic.Close()
	clk := &profiletest.Clock{}
	clk.Set(t0 + hour)
	store := &groupStore{}
	g := &groupNode{store: store}
	n := openEnv(b, "", clk, func(o *membership.Options) {
		o.Persons, o.History, o.Sink = g, membership.LogHistory(topic), membership.LogSink(topic)
	})
	g.self.Store(n)
	store.set(n)
	all := map[int]int64{0: 0, 1: 0, 2: 0, 3: 0}
	n.Segments.RestorePersons(context.Background(), all)
	n.putPerson(b, "shop", "fans", `count(view) >= 3`)
	n.putPerson(b, "shop", "known", `identified`)
	var bs []*event.Batch
	for i := range persons {
		bs = append(bs, profiletest.Batch("shop", profiletest.Visitor(i+1), append(views(t0, t0+1, t0+2), profiletest.Identify(t0+3, fmt.Sprintf("p%d@x.io", i)))...))
	}
	n.Append(b, bs...)
	n.Wait(b)
	records := 2 * persons
	if got := profiletest.TopicEnd(b, brokers, "changes"); got != int64(records) {
		b.Fatalf("changes topic holds %d records; want %d", got, records)
	}
	b.ReportAllocs()
	for b.Loop() {
		n.Segments.RestorePersons(context.Background(), map[int]int64{}) // the partitions go
		n.Segments.RestorePersons(context.Background(), all)             // and come back
		for p := range all {
			for !n.Segments.PersonsReady(p) {
				time.Sleep(time.Millisecond)
			}
		}
	}
	b.StopTimer()
	if got := len(n.members(b, "shop", "fans")); got != persons {
		b.Fatalf("fans has %d members after the restores; want %d", got, persons)
	}
	if got := profiletest.TopicEnd(b, brokers, "changes"); got != int64(records) {
		b.Fatalf("changes topic holds %d records after the restores; want %d (a restore changed nothing)", got, records)
	}
	b.ReportMetric(float64(records*b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(persons*b.N)/b.Elapsed().Seconds(), "persons/s")
}

package membership_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/valyala/fastjson"

	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// movedGroup is a build group's new owner of events partition 1, whose
// old owner emitted its records up to a mark: the events topic and the
// changes topic on kfake, the node's builder owning partition 0 only
// until the test hands it partition 1 (take).
type movedGroup struct {
	brokers []string
	events  *storage.KafkaLog
	changes *storage.KafkaLog
	gate    *testGate
	dir     string
	clk     *profiletest.Clock
}

func newMovedGroup(t testing.TB) *movedGroup {
	t.Helper()
	brokers := profiletest.StartKafka(t, kfake.SeedTopics(2, "events"), kfake.SeedTopics(1, "changes"))
	g := &movedGroup{brokers: brokers, events: profiletest.OpenTopic(t, brokers, "events"), changes: profiletest.OpenTopic(t, brokers, "changes"),
		gate: &testGate{gen: 1, marks: map[int]int64{0: 0}}, dir: t.TempDir(), clk: &profiletest.Clock{}}
	t.Cleanup(func() { g.events.Close(); g.changes.Close() })
	return g
}

// open starts the node on the group's directory, owning partition 0, its
// membership options adjusted by tune.
func (g *movedGroup) open(t testing.TB, tune ...func(*membership.Options)) *env {
	t.Helper()
	return &env{profiletest.Open(t, profiletest.Options{Dir: g.dir, Events: g.events, Clock: g.clk,
		Membership: func(o *membership.Options) {
			o.Gate, o.History, o.Sink = g.gate, membership.LogHistory(g.changes), membership.LogSink(g.changes)
			for _, f := range tune {
				f(o)
			}
		},
		Builder: func(o *builder.Options) { o.Partitions, o.EmitMark = []int{0}, g.gate.mark },
	})}
}

// take hands the node partition 1 with the old owner's mark, as a
// member's assignment does: the Gate's marks, TakeOver, then the builder.
func (g *movedGroup) take(t testing.TB, e *env, gen int32, mark int64) {
	t.Helper()
	marks := map[int]int64{0: 0, 1: mark}
	g.gate.set(gen, maps.Clone(marks))
	e.Segments.TakeOver(context.Background(), marks)
	if err := e.Builder.Own([]int{0, 1}); err != nil {
		t.Fatal(err)
	}
}

// topicRecords returns the changes topic's records of a segment, as
// "id visitor change".
func (g *movedGroup) topicRecords(t *testing.T, segment string) []string {
	t.Helper()
	var (
		p   fastjson.Parser
		c   membership.Change
		got []string
	)
	err := membership.LogHistory(g.changes)(context.Background(), func(v []byte) error {
		if err := membership.ParseChangeJSON(&c, &p, v); err != nil {
			return err
		}
		if c.Segment == segment {
			got = append(got, fmt.Sprintf("%s %s %t", membership.AppendID(nil, c.Src), c.Visitor, c.Entered))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// memberSet is a segment's members as a sorted list.
func memberSet(t *testing.T, e *env, segment string) []event.UUID {
	t.Helper()
	return slices.SortedFunc(maps.Keys(e.members(t, "shop", segment)), func(a, b event.UUID) int { return slices.Compare(a[:], b[:]) })
}

// lastChange is the last change of each visitor in cs, "entered" or
// "left", and how many records each has.
func lastChange(cs []membership.Change) (map[event.UUID]bool, map[event.UUID]int) {
	last, n := map[event.UUID]bool{}, map[event.UUID]int{}
	for _, c := range cs {
		last[c.Visitor] = c.Entered
		n[c.Visitor]++
	}
	return last, n
}

// checkAgainst holds the new owner's segment to the single node's answer
// over the same events: the same members, and in its feed, its feed by
// source of partition 1 and the changes topic one entry per member; with
// again, the topic may hold a record twice under its id (produced again
// after a crash: at least once, deduplicated by id).
func checkAgainst(t *testing.T, g *movedGroup, e, single *env, segment string, again ...bool) {
	t.Helper()
	want := memberSet(t, single, segment)
	if got := memberSet(t, e, segment); !slices.Equal(got, want) {
		t.Errorf("members of %s: %v; want the single node's %v", segment, got, want)
	}
	wantLast, _ := lastChange(single.changes(t, "shop", segment))
	for what, cs := range map[string][]membership.Change{
		"feed":                        e.changes(t, "shop", segment),
		"feed by source, partition 1": e.sourceChanges(t, "shop", segment, state.Source{Partition: 1, Offset: -1}),
	} {
		last, n := lastChange(cs)
		if !maps.Equal(last, wantLast) {
			t.Errorf("%s of %s: last changes %v; want the single node's %v", what, segment, last, wantLast)
		}
		for v, k := range n {
			if k != 1 {
				t.Errorf("%s of %s: %d records of visitor %s; want 1", what, segment, k, v)
			}
		}
	}
	recs := g.topicRecords(t, segment)
	if len(again) > 0 {
		slices.Sort(recs)
		recs = slices.Compact(recs)
	}
	if len(recs) != len(want) {
		t.Errorf("changes topic of %s: %v; want one entry of each of %v", segment, recs, want)
	}
	seen := map[string]bool{}
	for _, r := range recs {
		id, visitor, _ := strings.Cut(r, " ")
		if seen[id] || seen[visitor] {
			t.Errorf("changes topic of %s: %s; its id or visitor twice", segment, r)
		}
		seen[id], seen[visitor] = true, true
	}
}

func cartOf(v event.UUID) *event.Batch {
	return profiletest.Batch("shop", v, profiletest.Event(event.TypeCart, t0, &event.Product{ID: "l1", Brand: "Lego"}))
}

// visitorsOn returns n distinct visitors of events partition part.
func visitorsOn(e *env, part, n int) []event.UUID {
	var vs []event.UUID
	for k := 1; len(vs) < n; k++ {
		if v := e.VisitorOn("shop", part, k); !slices.Contains(vs, v) {
			vs = append(vs, v)
		}
	}
	return vs
}

// TestReconcileSegmentPutDuringCatchUp: a segment put while a partition's
// new owner catches up from 0 to its mark of 3 is evaluated by the
// catch-up's commits, whose records the sequencer drops as emitted; at the
// mark the owner records its 3 members' entries, once, as the single node
// answers. A restart at the mark records nothing again.
func TestReconcileSegmentPutDuringCatchUp(t *testing.T) {
	g := newMovedGroup(t)
	e := g.open(t)
	vs := visitorsOn(e, 1, 4)
	for _, v := range vs[:3] {
		e.Append(t, cartOf(v)) // offsets 0, 1, 2 of partition 1
	}
	e.put(t, "shop", "carts", `count(cart) >= 1`)
	g.take(t, e, 2, 3)
	e.Wait(t)
	profiletest.WaitUntil(t, "the entries", func() bool {
		e.Wait(t)
		return len(e.changes(t, "shop", "carts")) >= 3
	})

	single := openEnv(t, "", nil, nil)
	single.put(t, "shop", "carts", `count(cart) >= 1`)
	for _, v := range vs[:3] {
		single.Send(t, cartOf(v))
	}
	checkAgainst(t, g, e, single, "carts")

	// The node restarts at the mark: it reconciles again, before it
	// applies a record above the mark, and records nothing more.
	e.Close(t)
	e = g.open(t)
	g.take(t, e, 3, 3)
	e.Append(t, cartOf(vs[3]))
	profiletest.WaitUntil(t, "the entry above the mark", func() bool {
		e.Wait(t)
		return len(e.changes(t, "shop", "carts")) >= 4
	})
	single.Send(t, cartOf(vs[3]))
	checkAgainst(t, g, e, single, "carts")
}

// TestReconcileBackfillDuringCatchUp: a backfill that runs while a
// partition's new owner is caught up below its mark writes its entries in
// Visit commits at the partition's offset, below the mark, which the
// sequencer drops; at the mark the owner records them with the catch-up's
// own. A backfill that runs while the partition stays at its mark (no
// event above it yet) goes out too, and so do the records above the mark:
// each once, as the single node answers.
func TestReconcileBackfillDuringCatchUp(t *testing.T) {
	g := newMovedGroup(t)
	e := g.open(t)
	vs := visitorsOn(e, 1, 6)
	for _, v := range vs[:2] {
		e.Append(t, cartOf(v)) // offsets 0, 1
	}
	g.take(t, e, 2, 5)
	e.Wait(t)
	e.put(t, "shop", "carts", `count(cart) >= 1`) // backfills a and b at offset 2
	for _, v := range vs[2:5] {
		e.Append(t, cartOf(v)) // offsets 2, 3, 4: the catch-up reaches the mark
	}
	profiletest.WaitUntil(t, "the entries up to the mark", func() bool {
		e.Wait(t)
		return len(e.changes(t, "shop", "carts")) >= 5
	})
	e.put(t, "shop", "again", `count(cart) >= 1`) // backfills all five at the mark
	e.Append(t, cartOf(vs[5]))                    // offset 5, above the mark
	profiletest.WaitUntil(t, "the entries above the mark", func() bool {
		e.Wait(t)
		return len(e.changes(t, "shop", "carts")) >= 6 && len(e.changes(t, "shop", "again")) >= 6
	})

	single := openEnv(t, "", nil, nil)
	for _, v := range vs[:2] {
		single.Send(t, cartOf(v))
	}
	single.put(t, "shop", "carts", `count(cart) >= 1`)
	for _, v := range vs[2:5] {
		single.Send(t, cartOf(v))
	}
	single.put(t, "shop", "again", `count(cart) >= 1`)
	single.Send(t, cartOf(vs[5]))
	checkAgainst(t, g, e, single, "carts")
	checkAgainst(t, g, e, single, "again")
}

// TestReconcileCrash: a node that dies after its reconcile committed its
// records but while producing them (the first reached the changes topic,
// the sequencer never committed) reconciles again at its restart: each
// difference goes out under one id, the feed and the feed by source hold
// one entry per member.
func TestReconcileCrash(t *testing.T) {
	g := newMovedGroup(t)
	broken := func(o *membership.Options) {
		sink := o.Sink
		o.Sink = func(ctx context.Context, cs []membership.Change) error {
			if err := sink(ctx, cs[:1]); err != nil {
				return err
			}
			return errors.New("the node dies while producing")
		}
	}
	e := g.open(t, broken)
	vs := visitorsOn(e, 1, 3)
	for _, v := range vs {
		e.Append(t, cartOf(v))
	}
	e.put(t, "shop", "carts", `count(cart) >= 1`)
	g.take(t, e, 2, 3)
	profiletest.WaitUntil(t, "a record produced", func() bool { return len(g.topicRecords(t, "carts")) > 0 })
	e.Close(t)
	if got := e.MembershipOptions.Gate.(*testGate).mark(1); got != 3 {
		t.Fatalf("mark %d after the crash; want 3", got)
	}

	e = g.open(t)
	g.take(t, e, 3, 3)
	profiletest.WaitUntil(t, "the entries", func() bool {
		e.Wait(t)
		return len(e.changes(t, "shop", "carts")) >= 3
	})
	single := openEnv(t, "", nil, nil)
	single.put(t, "shop", "carts", `count(cart) >= 1`)
	for _, v := range vs {
		single.Send(t, cartOf(v))
	}
	checkAgainst(t, g, e, single, "carts", true)
}

// TestReconcileExitOfAnnounced: the old owner announced x's entry of a
// segment with a time bound; the new owner catches up after the bound
// and finds x no member, which its catch-up records nowhere (x never
// entered in its state); at the mark it records x's exit, once, and the
// feed by source holds the old owner's entry, then the exit — as the
// single node ends: x out.
func TestReconcileExitOfAnnounced(t *testing.T) {
	g := newMovedGroup(t)
	g.clk.Set(t0)
	e := g.open(t)
	e.put(t, "shop", "recent", `since(cart) <= 24h`)
	x := e.VisitorOn("shop", 1, 1)
	e.Append(t, cartOf(x)) // offset 0
	produce(t, g.changes, membership.Change{Seq: 9, Site: "shop", Segment: "recent", Visitor: x, Entered: true, At: t0, Why: "event",
		Facts: `{"since(cart)":0}`, Src: state.Source{Partition: 1, Offset: 1}, Created: e.created(t, "shop", "recent")})
	g.clk.Set(t0 + 30*hour)
	g.take(t, e, 2, 1)
	profiletest.WaitUntil(t, "x's exit", func() bool {
		e.Wait(t)
		return len(e.changes(t, "shop", "recent")) >= 1
	})
	if got := memberSet(t, e, "recent"); len(got) != 0 {
		t.Errorf("members of recent: %v; want none", got)
	}
	var got []string
	for _, c := range e.sourceChanges(t, "shop", "recent", state.Source{Partition: 1, Offset: -1}) {
		got = append(got, fmt.Sprintf("%s %t seq>0:%t", membership.AppendID(nil, c.Src), c.Entered, c.Seq > 0))
	}
	want := fmt.Sprintf("[1-1-0 true seq>0:false 1-1-%d false seq>0:true]", 3<<30)
	if fmt.Sprint(got) != want {
		t.Errorf("feed by source of partition 1: %v; want %s (the old owner's entry, the reconciled exit)", got, want)
	}
	if recs := g.topicRecords(t, "recent"); fmt.Sprint(recs) != fmt.Sprintf("[1-1-0 %s true 1-1-%d %s false]", x, 3<<30, x) {
		t.Errorf("changes topic: %v; want the old owner's entry, then the exit", recs)
	}
	if cs := e.changes(t, "shop", "recent"); len(cs) != 1 || cs[0].Entered || cs[0].Why != "event" {
		t.Errorf("feed: %+v; want x's exit alone, why event", cs)
	}

	single := openEnv(t, "", g.clk, nil)
	g.clk.Set(t0)
	single.put(t, "shop", "recent", `since(cart) <= 24h`)
	single.Send(t, cartOf(x))
	single.Advance(t, t0+30*hour)
	if last, _ := lastChange(single.changes(t, "shop", "recent")); last[x] || len(memberSet(t, single, "recent")) != 0 {
		t.Errorf("the single node: x's last change entered %t; want it out, as here", last[x])
	}
}

// BenchmarkReconcile: a new owner catches up 5 000 visitors of partition
// 1 to its mark with a segment nobody announced, so at the mark every one
// differs: it reconciles each (a Visit commit) and the sequencer emits
// the entries. Reported per visitor, from the assignment to the last
// entry in the feed (the catch-up's apply included).
func BenchmarkReconcile(b *testing.B) {
	const n = 5000
	for range b.N {
		b.StopTimer()
		g := newMovedGroup(b)
		e := g.open(b)
		vs := visitorsOn(e, 1, n)
		bs := make([]*event.Batch, n)
		for i, v := range vs {
			bs[i] = cartOf(v)
		}
		e.Append(b, bs...)
		e.put(b, "shop", "carts", `count(cart) >= 1`)
		b.StartTimer()
		g.take(b, e, 2, n)
		profiletest.WaitUntil(b, "the entries", func() bool {
			e.Wait(b)
			return len(e.changes(b, "shop", "carts")) >= n
		})
		b.StopTimer()
		e.Close(b)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n)/1e3, "µs/visitor")
}

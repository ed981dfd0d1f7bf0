package membership_test

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// testGate is a Gate with its partitions and marks set by the test, as a
// cluster member's generations set cluster.Marks.
type testGate struct {
	mu      sync.Mutex
	gen     int32
	marks   map[int]int64 // the emitted partitions
	emitted []map[int]int64
}

func (g *testGate) set(gen int32, marks map[int]int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gen, g.marks = gen, marks
}

func (g *testGate) Emits(p int) (bool, int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m, ok := g.marks[p]
	return ok, m
}

func (g *testGate) Generation() int32 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.gen
}

func (g *testGate) Emitted(gen int32, marks map[int]int64) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if gen != g.gen {
		return nil
	}
	for p, off := range marks {
		g.marks[p] = max(g.marks[p], off)
	}
	g.emitted = append(g.emitted, maps.Clone(marks))
	return nil
}

func (g *testGate) mark(p int) int64 {
	_, m := g.Emits(p)
	return m
}

// TestSequencerGate: the sequencer moves a partition's change records
// only while the Gate emits the partition, drops those at or below its
// mark (another node emitted them), moves those above, and Flush reports
// the marks it reached.
func TestSequencerGate(t *testing.T) {
	gate := &testGate{gen: 1, marks: map[int]int64{0: 0}}
	var (
		sunk []membership.Change
		mu   sync.Mutex
	)
	e := openEnv(t, "", nil, func(o *membership.Options) {
		o.Gate = gate
		o.Sink = func(_ context.Context, cs []membership.Change) error {
			mu.Lock()
			defer mu.Unlock()
			sunk = append(sunk, cs...)
			return nil
		}
	})
	e.put(t, "shop", "carts", `count(cart) >= 1`)
	cart := func(v event.UUID) *event.Batch {
		return profiletest.Batch("shop", v, profiletest.Event(event.TypeCart, t0, &event.Product{ID: "l1", Brand: "Lego"}))
	}
	a0, a1 := e.VisitorOn("shop", 0, 1), e.VisitorOn("shop", 1, 1)
	e.Send(t, cart(a0), cart(a1))
	feed := func() map[event.UUID]membership.Change {
		got := map[event.UUID]membership.Change{}
		for _, c := range e.changes(t, "shop", "carts") {
			if _, dup := got[c.Visitor]; dup {
				t.Errorf("visitor %s twice in the feed", c.Visitor)
			}
			got[c.Visitor] = c
		}
		return got
	}
	got := feed()
	if _, ok := got[a0]; !ok || len(got) != 1 {
		t.Fatalf("feed with partition 1 not emitted: %v; want only %s of partition 0", got, a0)
	}
	if c := got[a0]; c.Src.Partition != 0 || c.Src.Offset != 1 {
		t.Errorf("a0's record source %+v; want partition 0, offset 1", c.Src)
	}

	// The generation ends (as a cluster member does it): Flush marks what
	// went out.
	if err := e.Segments.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ok, m := gate.Emits(1); gate.mark(0) != 1 || ok {
		t.Fatalf("marks after the first Flush: partition 0 %d, 1 %d (%t); want 1 and none", gate.mark(0), m, ok)
	}
	// Partition 1 comes with a mark past a1's record: another node emitted
	// it, so it is dropped; b1's later record is moved.
	gate.set(2, map[int]int64{0: gate.mark(0), 1: 1})
	if _, err := e.Segments.Sequence(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := feed(); len(got) != 1 {
		t.Fatalf("feed after partition 1 with mark 1: %v; want a1's record dropped", got)
	}
	// The feed by source keeps it, in no feed of this node (seq 0): a
	// build group's cursor reads a moved partition from its new owner.
	if by := e.sourceChanges(t, "shop", "carts", state.Source{Partition: 1, Offset: -1}); len(by) != 1 || by[0].Visitor != a1 || by[0].Seq != 0 {
		t.Fatalf("feed by source of partition 1: %+v; want a1's dropped record, seq 0", by)
	}
	b1 := e.VisitorOn("shop", 1, 100)
	e.Send(t, cart(b1))
	got = feed()
	if c, ok := got[b1]; !ok || len(got) != 2 || c.Src.Partition != 1 || c.Src.Offset != 2 {
		t.Fatalf("feed after b1: %v; want a0 and b1 (partition 1, offset 2)", got)
	}
	if err := e.Segments.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if m0, m1 := gate.mark(0), gate.mark(1); m0 != 1 || m1 != 2 {
		t.Errorf("marks after Flush: partition 0 %d, 1 %d; want 1 and 2", m0, m1)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sunk) != 2 || sunk[0].Visitor != a0 || sunk[1].Visitor != b1 {
		t.Errorf("sink got %d records %v; want a0's, then b1's", len(sunk), sunk)
	}
}

// TestDeletedSegmentsOutbox: records still in the outbox when their
// segment is deleted reach no feed — neither a re-created segment's of the
// same name nor, when it is not re-created, a feed of the deleted name.
func TestDeletedSegmentsOutbox(t *testing.T) {
	for _, recreate := range []bool{true, false} {
		t.Run(fmt.Sprint("recreate=", recreate), func(t *testing.T) {
			gate := &testGate{gen: 1, marks: map[int]int64{}} // holds every partition's records in the outbox
			e := openEnv(t, "", nil, func(o *membership.Options) { o.Gate = gate })
			e.put(t, "shop", "carts", `count(cart) >= 1`)
			before := e.created(t, "shop", "carts")
			v := e.VisitorOn("shop", 1, 1)
			e.Send(t, profiletest.Batch("shop", v, profiletest.Event(event.TypeCart, t0, &event.Product{ID: "l1", Brand: "Lego"})))
			if found, err := e.Segments.Delete("shop", "carts"); err != nil || !found {
				t.Fatalf("Delete = %t, %v", found, err)
			}
			if recreate {
				profiletest.WaitUntil(t, "a new created time", func() bool { return time.Now().UnixMilli() > before })
				e.put(t, "shop", "carts", `count(cart) >= 1`)
			}
			gate.set(2, map[int]int64{1: -1})
			if _, err := e.Segments.Sequence(context.Background()); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range e.changes(t, "shop", "carts") {
				got = append(got, fmt.Sprintf("%s %t %t", c.Why, c.Created == before, c.Visitor == v))
			}
			want := "[]"
			if recreate {
				want = "[backfill false true]" // the new segment's own entry, not the old one's event record
			}
			if fmt.Sprint(got) != want {
				t.Errorf("feed of carts: %v; want %s (why, of the deleted segment, the visitor)", got, want)
			}
		})
	}
}

// TestSequencerGateOwnDueExit: a due exit this node evaluates after it
// emitted its partition's last event commit (and committed that offset as
// the mark) is its own, not one another node emitted: it goes out — in
// the generation that moved the mark, and in the next one, which opens
// the partition at that mark (the reconcile there sets the floor).
func TestSequencerGateOwnDueExit(t *testing.T) {
	brokers := profiletest.StartKafka(t, kfake.SeedTopics(1, "changes"))
	topic := profiletest.OpenTopic(t, brokers, "changes")
	defer topic.Close()
	clk := &profiletest.Clock{}
	clk.Set(t0)
	gate := &testGate{gen: 1, marks: map[int]int64{0: 0, 1: 0}}
	e := &env{profiletest.Open(t, profiletest.Options{Clock: clk,
		Membership: func(o *membership.Options) {
			o.Gate, o.History, o.Sink = gate, membership.LogHistory(topic), membership.LogSink(topic)
		},
		Builder: func(o *builder.Options) { o.EmitMark = gate.mark },
	})}
	e.put(t, "shop", "recent", `since(cart) <= 24h`)
	a0 := e.VisitorOn("shop", 0, 1)
	cart := func(at int64) *event.Batch {
		return profiletest.Batch("shop", a0, profiletest.Event(event.TypeCart, at, &event.Product{ID: "l1", Brand: "Lego"}))
	}
	feed := func() string {
		var got []string
		for _, c := range e.changes(t, "shop", "recent") {
			got = append(got, fmt.Sprintf("%t@%d", c.Entered, c.Src.Offset))
		}
		return fmt.Sprint(got)
	}
	e.Send(t, cart(t0))
	if err := e.Segments.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if m := gate.mark(0); m != 1 {
		t.Fatalf("mark %d after the entry; want 1", m)
	}
	e.Advance(t, t0+25*hour)
	if got := feed(); got != "[true@1 false@1]" {
		t.Errorf("feed of recent: %s; want [true@1 false@1] (the entry, then the due exit, both at offset 1)", got)
	}

	// The next generation keeps the partition, idle at the mark.
	clk.Set(t0 + 30*hour)
	e.Send(t, cart(t0+30*hour))
	if err := e.Segments.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := e.Builder.Own([]int{}); err != nil {
		t.Fatal(err)
	}
	marks := map[int]int64{0: gate.mark(0), 1: 0}
	gate.set(2, maps.Clone(marks))
	e.Segments.TakeOver(context.Background(), marks)
	if err := e.Builder.Own([]int{0, 1}); err != nil {
		t.Fatal(err)
	}
	profiletest.WaitUntil(t, "the copy", func() bool { return e.Segments.HistoryReady(0) })
	e.Wait(t)
	// The due exit runs before the reconcile at the mark (which then
	// records it) or after it (above its floor): once either way.
	e.Advance(t, t0+56*hour)
	profiletest.WaitUntil(t, "the second exit", func() bool {
		e.Wait(t)
		return len(e.changes(t, "shop", "recent")) >= 4
	})
	if got := feed(); got != "[true@1 false@1 true@2 false@2]" {
		t.Errorf("feed of recent after the next generation: %s; want [true@1 false@1 true@2 false@2]", got)
	}
}

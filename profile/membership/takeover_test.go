package membership_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/valyala/fastjson"

	"github.com/affinityhq/affinity/profile/defs"
	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// created returns the created time of a segment, which its records carry.
func (e *env) created(t testing.TB, site, name string) int64 {
	t.Helper()
	d, ok, err := e.Segments.Definition(site, name)
	if err != nil || !ok {
		t.Fatalf("Definition %s: %t, %v", name, ok, err)
	}
	return d.Created
}

// produce appends cs to the changes topic l as a node's Sink does.
func produce(t testing.TB, l storage.Log, cs ...membership.Change) {
	t.Helper()
	if err := membership.LogSink(l)(context.Background(), cs); err != nil {
		t.Fatal(err)
	}
}

// TestTakeOver: a new owner of a partition answers its feed by source at
// or below the mark with the records the changes topic holds (an old
// owner's, each id once, as produced), not its own re-application; the
// partition's feed is refused until the copy is done; a copy cut short
// leaves the partition not ready and a second one writes each record
// once; a take-over with a mark the copy reached reads nothing.
func TestTakeOver(t *testing.T) {
	brokers := profiletest.StartKafka(t, kfake.SeedTopics(1, "changes"))
	topic := profiletest.OpenTopic(t, brokers, "changes")
	defer topic.Close()
	var (
		release  = make(chan struct{})
		reads    atomic.Int32
		failAt   atomic.Int32 // fail a read at this record; 0: never
		readHist = membership.LogHistory(topic)
	)
	gate := &testGate{gen: 1, marks: map[int]int64{0: 0}}
	e := openEnv(t, "", nil, func(o *membership.Options) {
		o.Gate = gate
		o.History = func(ctx context.Context, fn func([]byte) error) error {
			<-release
			defer reads.Add(1)
			n := int32(0)
			return readHist(ctx, func(v []byte) error {
				if n++; n == failAt.Load() {
					return errors.New("the node crashed")
				}
				return fn(v)
			})
		}
	})
	e.put(t, "shop", "carts", `count(cart) >= 1`)

	// The old owner of partition 1 emitted x's entry and exit up to offset
	// 5 (the mark), x's entry twice (the SIGKILL window), a record above
	// the mark (the new owner emits those itself), one of partition 0 and
	// one of a segment this node does not have.
	x := profiletest.Visitor(900)
	created := e.created(t, "shop", "carts")
	rec := func(p int32, off int64, entered bool, seg string) membership.Change {
		return membership.Change{Seq: uint64(off), Site: "shop", Segment: seg, Visitor: x, Email: "x@example.com", Entered: entered,
			At: t0 + off, Why: "event", Facts: `{"count(cart)":1}`, Src: state.Source{Partition: p, Offset: off}, Created: created}
	}
	entry, exit := rec(1, 3, true, "carts"), rec(1, 5, false, "carts")
	produce(t, topic, entry, entry, exit, rec(1, 6, true, "carts"), rec(0, 2, true, "carts"), rec(1, 4, true, "gone"))

	// This node re-applies partition 1's events below the mark: the
	// sequencer drops their records, and keeps them nowhere.
	cart := func(v event.UUID) *event.Batch {
		return profiletest.Batch("shop", v, profiletest.Event(event.TypeCart, t0, &event.Product{ID: "l1", Brand: "Lego"}))
	}
	a1 := e.VisitorOn("shop", 1, 1)
	gate.set(2, map[int]int64{0: 0, 1: 5})
	e.Segments.TakeOver(context.Background(), map[int]int64{0: 0, 1: 5})
	e.Send(t, cart(a1))
	if _, err := e.Segments.Sequence(context.Background()); err != nil {
		t.Fatal(err)
	}

	// Refused until the copy is done; partition 0 (mark 0) answers.
	var pending *membership.HistoryPendingError
	if err := e.Segments.SourceChanges("shop", "carts", []state.Source{{Partition: 1, Offset: -1}}, func(*membership.Change) bool { return true }); !errors.As(err, &pending) || pending.Partition != 1 {
		t.Fatalf("feed of partition 1 during the copy: %v; want HistoryPendingError of partition 1", err)
	}
	if e.Segments.HistoryReady(1) || !e.Segments.HistoryReady(0) {
		t.Fatalf("ready during the copy: partition 0 %t, 1 %t; want true, false", e.Segments.HistoryReady(0), e.Segments.HistoryReady(1))
	}

	want := []membership.Change{entry, exit}
	want[0].Seq, want[1].Seq = 0, 0
	check := func(what string) {
		t.Helper()
		got := e.sourceChanges(t, "shop", "carts", state.Source{Partition: 1, Offset: -1})
		if len(got) != len(want) {
			t.Fatalf("%s: feed by source of partition 1 %+v; want %+v", what, got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s: record %d %+v; want %+v", what, i, got[i], want[i])
			}
		}
	}

	// A copy cut short (the node crashed at the duplicate) leaves the
	// partition refused; the next assignment copies again, each id once.
	failAt.Store(2)
	close(release)
	profiletest.WaitUntil(t, "the cut copy ends", func() bool { return reads.Load() == 1 })
	if e.Segments.HistoryReady(1) {
		t.Fatal("partition 1 ready after its copy failed")
	}
	failAt.Store(0)
	e.Segments.TakeOver(context.Background(), map[int]int64{0: 0, 1: 5})
	profiletest.WaitUntil(t, "the copy is done", func() bool { return e.Segments.HistoryReady(1) })
	check("after the copy")

	// A later assignment with the mark the copy reached reads nothing and
	// is ready at once.
	e.Segments.TakeOver(context.Background(), map[int]int64{0: 0, 1: 5})
	if !e.Segments.HistoryReady(1) || reads.Load() != 2 {
		t.Errorf("a take-over with the mark the copy reached: ready %t after %d reads; want true after 2", e.Segments.HistoryReady(1), reads.Load())
	}
	check("at a take-over with the same mark")
}

// TestParseChangeJSON: a record as AppendJSON writes it decodes to itself,
// facts byte for byte; a bad one is refused naming what is wrong.
func TestParseChangeJSON(t *testing.T) {
	var p fastjson.Parser
	for _, c := range []membership.Change{
		{Seq: 12, Site: "shop", Segment: "mums", Visitor: profiletest.Visitor(1), Email: "a@b.c", Entered: true, At: t0, Why: "event",
			Facts: `{"count(cart)":2,"s":"\u00e9\"x\",\"facts\":"}`, Src: state.Source{Partition: 3, Offset: 1200, Ord: 7}},
		{Seq: 1, Site: "shop", Segment: "left", Visitor: profiletest.Visitor(2), At: -5, Why: "time", Facts: "{}", Src: state.Source{Partition: -1}},
		{Seq: 2, Site: "shop", Segment: "fans", Visitor: membership.PersonID("shop", "c:C7"), Entered: true, At: t0, Why: "event", Facts: "{}", Src: state.Source{Partition: -1}, Person: "c:C7"},
		{Seq: 3, Site: "shop", Segment: "mums", Visitor: profiletest.Visitor(3), At: t0, Why: "event", Facts: "{}", Src: state.Source{Partition: 1}, Created: t0 - 1},
	} {
		var got membership.Change
		if err := membership.ParseChangeJSON(&got, &p, c.AppendJSON(nil)); err != nil || got != c {
			t.Errorf("ParseChangeJSON(%s) = %+v, %v; want %+v", c.AppendJSON(nil), got, err, c)
		}
	}
	good := string((&membership.Change{Seq: 1, Site: "shop", Segment: "s", Visitor: profiletest.Visitor(1), Why: "event", Facts: "{}", Src: state.Source{Offset: 4}}).AppendJSON(nil))
	for _, tc := range []struct{ in, want string }{
		{`{`, `invalid change record`},
		{strings.Replace(good, `"why":"event"`, "\"why\":\"\xff\"", 1), `not UTF-8`},
		{strings.Replace(good, `"seq":"1"`, `"seq":1`, 1), `"seq" is not a string`},
		{strings.Replace(good, `"0-4-0"`, `"0-4"`, 1), `"id" is not partition-offset-ordinal`},
		{strings.Replace(good, `"0-4-0"`, `"-1-4-0"`, 1), `"id" is not partition-offset-ordinal`},
		{strings.Replace(good, `"0-4-0"`, `4`, 1), `"id" is neither a string nor null`},
		{strings.Replace(good, `"site":"shop"`, `"site":""`, 1), `"site"`},
		{strings.Replace(good, `"left"`, `"gone"`, 1), `"change" is neither entered nor left`},
		{strings.Replace(good, `"at_ms":0`, `"at_ms":"0"`, 1), `"at_ms" is not an integer`},
		{strings.Replace(good, `"at_ms":0`, `"at_ms":0,"segment_created_ms":0`, 1), `"segment_created_ms" is not a non-zero integer`},
		{strings.Replace(good, `"at_ms":0`, `"at_ms":0,"segment_created_ms":"5"`, 1), `"segment_created_ms" is not a non-zero integer`},
		{strings.Replace(good, `"facts":{}`, `"facts":[]`, 1), `"facts" is not an object`},
		{strings.Replace(good, `,"facts":{}}`, `,"facts":{},"x":1}`, 1), `"facts" is not the last field`},
		{strings.Replace(good, `"email":null`, `"email":null,"person":"x:1"`, 1), `"person" is not a person key`},
	} {
		var c membership.Change
		err := membership.ParseChangeJSON(&c, &p, []byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, new(*invalid.Error)) {
			t.Errorf("ParseChangeJSON(%s) = %v; want an invalid.Error with %q", tc.in, err, tc.want)
		}
	}
}

// FuzzParseChangeJSON: no input panics, and what decodes writes back to
// the same record.
func FuzzParseChangeJSON(f *testing.F) {
	f.Add([]byte(`{"seq":"12","id":"3-1200-0","site":"shop","segment":"mums","visitor":"00000000-0000-4000-8000-000000000001","email":null,"change":"entered","at":"2026-01-01T00:00:00Z","at_ms":1767225600000,"why":"event","facts":{"a":1}}`))
	var p fastjson.Parser
	f.Fuzz(func(t *testing.T, b []byte) {
		var c, again membership.Change
		if membership.ParseChangeJSON(&c, &p, b) != nil {
			return
		}
		out := c.AppendJSON(nil)
		if err := membership.ParseChangeJSON(&again, &p, out); err != nil || again != c {
			t.Fatalf("%s decoded to %+v, written as %s, decoded to %+v (%v)", b, c, out, again, err)
		}
	})
}

// BenchmarkTakeOver: a new owner copies a partition's 20 000 records from
// the changes topic (kfake, one partition) into its feed by source, from
// TakeOver to HistoryReady: what a move costs per record of the topic.
func BenchmarkTakeOver(b *testing.B) {
	const n = 20000
	brokers := profiletest.StartKafka(b, kfake.SeedTopics(1, "changes"))
	topic := profiletest.OpenTopic(b, brokers, "changes")
	defer topic.Close()
	cs := make([]membership.Change, 0, 1000)
	var size int64
	for i := range n {
		c := membership.Change{Seq: uint64(i + 1), Site: "shop", Segment: "carts", Visitor: profiletest.Visitor(i % 5000), Entered: i%2 == 0,
			At: t0 + int64(i), Why: "event", Facts: `{"count(cart)":1}`, Src: state.Source{Partition: 0, Offset: int64(i + 1)}, Created: t0}
		size += int64(len(c.AppendJSON(nil)))
		if cs = append(cs, c); len(cs) == cap(cs) {
			produce(b, topic, cs...)
			cs = cs[:0]
		}
	}
	b.SetBytes(size)
	b.ReportAllocs()
	var took time.Duration
	for b.Loop() {
		b.StopTimer()
		e := openEnv(b, "", nil, func(o *membership.Options) { o.History = membership.LogHistory(topic) })
		if _, _, err := e.Segments.PutPerAt("shop", "carts", `count(cart) >= 1`, membership.PerVisitor, t0); err != nil { // created t0, as the records say
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		e.Segments.TakeOver(context.Background(), map[int]int64{0: n})
		for !e.Segments.HistoryReady(0) {
			time.Sleep(time.Millisecond)
		}
		took += time.Since(start)
		b.StopTimer()
		if got := e.sourceChanges(b, "shop", "carts", state.Source{Partition: 0, Offset: -1}); len(got) != n {
			b.Fatalf("copied %d records; want %d", len(got), n)
		}
		e.Close(b)
		b.StartTimer()
	}
	b.ReportMetric(float64(n)*float64(b.N)/took.Seconds(), "records/s")
}

// BenchmarkParseChangeJSON: decoding one record of the changes topic.
func BenchmarkParseChangeJSON(b *testing.B) {
	c := membership.Change{Seq: 12, Site: "shop", Segment: "carts", Visitor: profiletest.Visitor(1), Email: "a@b.c", Entered: true,
		At: t0, Why: "event", Facts: `{"count(cart)":2,"brand":"Lego"}`, Src: state.Source{Partition: 3, Offset: 1200}}
	v := c.AppendJSON(nil)
	var (
		p   fastjson.Parser
		got membership.Change
	)
	b.SetBytes(int64(len(v)))
	b.ReportAllocs()
	for b.Loop() {
		if err := membership.ParseChangeJSON(&got, &p, v); err != nil {
			b.Fatal(err)
		}
	}
}

// TestTakeOverErased: a copy of the changes topic leaves out the records
// of a visitor erased at or after they were made — erased before the
// copy, or while it runs — and keeps its records made after the erasure
// (its new profile's) and other visitors'; what the node held of it
// before is scrubbed by the erasure itself.
func TestTakeOverErased(t *testing.T) {
	brokers := profiletest.StartKafka(t, kfake.SeedTopics(1, "changes"))
	topic := profiletest.OpenTopic(t, brokers, "changes")
	defer topic.Close()
	var eraseDuring func() // called before the copy's second record
	readHist := membership.LogHistory(topic)
	e := openEnv(t, "", nil, func(o *membership.Options) {
		o.History = func(ctx context.Context, fn func([]byte) error) error {
			n := 0
			return readHist(ctx, func(v []byte) error {
				if n++; n == 2 && eraseDuring != nil {
					eraseDuring()
				}
				return fn(v)
			})
		}
	})
	e.put(t, "shop", "carts", `count(cart) >= 1`)
	x, y, z := profiletest.Visitor(900), profiletest.Visitor(901), profiletest.Visitor(902)
	created := e.created(t, "shop", "carts")
	rec := func(v event.UUID, off, at int64, entered bool) membership.Change {
		return membership.Change{Site: "shop", Segment: "carts", Visitor: v, Entered: entered,
			At: at, Why: "event", Facts: `{"count(cart)":1}`, Src: state.Source{Partition: 1, Offset: off}, Created: created}
	}
	const erasedAt = t0 + 50
	xIn, xOut, yIn, zIn := rec(x, 3, t0+3, true), rec(x, 5, t0+5, false), rec(y, 4, t0+4, true), rec(z, 6, t0+6, true)
	xBack := rec(x, 7, erasedAt+1, true) // x came back after its erasure
	produce(t, topic, xIn, yIn, xOut, zIn)
	// A record by its visitor and id.
	id := func(c membership.Change) string {
		return string(membership.AppendID(append(c.Visitor.Append(nil), ' '), c.Src))
	}
	check := func(what string, want ...membership.Change) {
		t.Helper()
		var got, ws []string
		for _, c := range e.sourceChanges(t, "shop", "carts", state.Source{Partition: 1, Offset: -1}) {
			got = append(got, id(c))
		}
		for _, c := range want {
			ws = append(ws, id(c))
		}
		if strings.Join(got, ",") != strings.Join(ws, ",") {
			t.Errorf("%s: feed by source of partition 1 %q; want %q", what, got, ws)
		}
	}

	// The node copied x's records at an earlier assignment; the erasure
	// scrubs them, and a later copy does not bring them back.
	e.Segments.TakeOver(context.Background(), map[int]int64{1: 5})
	profiletest.WaitUntil(t, "the first copy", func() bool { return e.Segments.HistoryReady(1) })
	check("before the erasure", xIn, yIn, xOut)
	if n, err := e.Segments.Erase("shop", []defs.Erased{{Visitor: x}}, nil, erasedAt); err != nil || n != 2 {
		t.Fatalf("Erase = %d, %v; want 2 records scrubbed", n, err)
	}
	check("after the erasure", yIn)
	produce(t, topic, xBack)
	e.Segments.TakeOver(context.Background(), map[int]int64{1: 7})
	profiletest.WaitUntil(t, "the second copy", func() bool { return e.Segments.HistoryReady(1) })
	check("after a copy", yIn, zIn, xBack)

	// z is erased while a copy reads the topic: the copy read the marks
	// before, so z's record reaches its pending writes, and it reads them
	// again before it writes.
	eraseDuring = func() {
		if _, err := e.Segments.Erase("shop", []defs.Erased{{Visitor: z}}, nil, erasedAt); err != nil {
			t.Error(err)
		}
	}
	e.Segments.TakeOver(context.Background(), map[int]int64{1: 8})
	profiletest.WaitUntil(t, "the third copy", func() bool { return e.Segments.HistoryReady(1) })
	check("after a copy during z's erasure", yIn, xBack)
}

// TestTakeOverErasedByOffset: when the erasure mark has its partition's
// offset, a copy tells the erased profile's records from the new one's by
// their source, not by the nodes' clocks: a record at or below the offset
// is left out even if a clock ahead of the erasing owner's made it after
// the erasure's instant, and one above it is kept even if made at the
// erasure's instant (a millisecond's work) or before it by a clock
// behind.
func TestTakeOverErasedByOffset(t *testing.T) {
	brokers := profiletest.StartKafka(t, kfake.SeedTopics(1, "changes"))
	topic := profiletest.OpenTopic(t, brokers, "changes")
	defer topic.Close()
	e := openEnv(t, "", nil, func(o *membership.Options) { o.History = membership.LogHistory(topic) })
	e.put(t, "shop", "carts", `count(cart) >= 1`)
	x, y := profiletest.Visitor(900), profiletest.Visitor(901)
	created := e.created(t, "shop", "carts")
	rec := func(v event.UUID, off, at int64, entered bool) membership.Change {
		return membership.Change{Site: "shop", Segment: "carts", Visitor: v, Entered: entered,
			At: at, Why: "event", Facts: `{"count(cart)":1}`, Src: state.Source{Partition: 1, Offset: off}, Created: created}
	}
	const erasedAt, erasedOffset = t0 + 50, 6
	cases := []struct {
		name string
		c    membership.Change
		kept bool
	}{
		{"below the offset, at an earlier instant", rec(x, 3, t0+3, true), false},
		// Its source is the offset after the last record it applied: the
		// last before the erasure.
		{"at the offset, made after the instant by a clock ahead", rec(x, erasedOffset, erasedAt+20, false), false},
		{"above the offset, at the erasure's instant", rec(x, erasedOffset+1, erasedAt, true), true},
		{"above the offset, made before the instant by a clock behind", rec(x, erasedOffset+2, erasedAt-30, false), true},
		{"another visitor below the offset", rec(y, 4, t0+4, true), true},
	}
	var want []string // by source, as the feed holds them
	for _, tc := range cases {
		produce(t, topic, tc.c)
		if tc.kept {
			want = append(want, fmt.Sprintf("%d %s (%s)", tc.c.Src.Offset, tc.c.Visitor, tc.name))
		}
	}
	slices.Sort(want)
	if _, err := e.Segments.Erase("shop", []defs.Erased{{Visitor: x, Partition: 1, Offset: erasedOffset}}, nil, erasedAt); err != nil {
		t.Fatal(err)
	}
	e.Segments.TakeOver(context.Background(), map[int]int64{1: erasedOffset + 2})
	profiletest.WaitUntil(t, "the copy", func() bool { return e.Segments.HistoryReady(1) })
	var got []string
	for _, c := range e.sourceChanges(t, "shop", "carts", state.Source{Partition: 1, Offset: -1}) {
		for _, tc := range cases {
			if tc.c.Src == c.Src {
				got = append(got, fmt.Sprintf("%d %s (%s)", c.Src.Offset, c.Visitor, tc.name))
			}
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("feed by source of partition 1 after the copy:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestTakeOverRecreated: a segment deleted and created again under its
// name starts with an empty feed, as on one node: a copy leaves out the
// changes topic's records of the earlier segment — by the created time
// the records carry, or, in a record written before it, by its at.
func TestTakeOverRecreated(t *testing.T) {
	brokers := profiletest.StartKafka(t, kfake.SeedTopics(1, "changes"))
	topic := profiletest.OpenTopic(t, brokers, "changes")
	defer topic.Close()
	e := openEnv(t, "", nil, func(o *membership.Options) { o.History = membership.LogHistory(topic) })
	e.put(t, "shop", "carts", `count(cart) >= 1`)
	before := e.created(t, "shop", "carts")
	if found, err := e.Segments.Delete("shop", "carts"); err != nil || !found {
		t.Fatalf("Delete = %t, %v", found, err)
	}
	profiletest.WaitUntil(t, "a new created time", func() bool { return time.Now().UnixMilli() > before })
	e.put(t, "shop", "carts", `count(cart) >= 2`)
	after := e.created(t, "shop", "carts")
	rec := func(off, at, created int64) membership.Change {
		return membership.Change{Site: "shop", Segment: "carts", Visitor: profiletest.Visitor(int(off)), Entered: true,
			At: at, Why: "event", Facts: `{"count(cart)":1}`, Src: state.Source{Partition: 0, Offset: off}, Created: created}
	}
	produce(t, topic,
		rec(1, before, before), // the earlier segment's
		rec(2, before, 0),      // an earlier segment's, written before records carried created
		rec(3, after, after),   // the segment's
		rec(4, after, 0))       // the segment's, from a node built before records carried created
	e.Segments.TakeOver(context.Background(), map[int]int64{0: 4})
	profiletest.WaitUntil(t, "the copy", func() bool { return e.Segments.HistoryReady(0) })
	var got []int64
	for _, c := range e.sourceChanges(t, "shop", "carts", state.Source{Partition: 0, Offset: -1}) {
		got = append(got, c.Src.Offset)
	}
	if fmt.Sprint(got) != "[3 4]" {
		t.Errorf("copied the records at offsets %v; want [3 4] (the earlier segment's left out)", got)
	}
}

// TestTakeOverReplacesReapplied: the entries of seq 0 a node's sequencer
// kept below a mark before the copy existed (its re-application of the
// records its Gate dropped, as without a changes topic) give way to the
// topic's records at the first copy, so the feed below the mark is what
// was emitted and nothing else; what this node emitted itself stays.
func TestTakeOverReplacesReapplied(t *testing.T) {
	brokers := profiletest.StartKafka(t, kfake.SeedTopics(1, "changes"))
	topic := profiletest.OpenTopic(t, brokers, "changes")
	defer topic.Close()
	dir := t.TempDir()
	gate := &testGate{gen: 1, marks: map[int]int64{1: 0}}

	// Built before the copy: the node emits partition 1 up to offset 1,
	// then the partition moves away and comes back with mark 5; it
	// re-applies offsets 2 to 5 and keeps their records, seq 0.
	old := openEnv(t, dir, nil, func(o *membership.Options) { o.Gate = gate })
	old.put(t, "shop", "carts", `count(cart) >= 1`)
	cart := func(v event.UUID) *event.Batch {
		return profiletest.Batch("shop", v, profiletest.Event(event.TypeCart, t0, &event.Product{ID: "l1", Brand: "Lego"}))
	}
	mine := old.VisitorOn("shop", 1, 1)
	old.Send(t, cart(mine))
	if _, err := old.Segments.Sequence(context.Background()); err != nil {
		t.Fatal(err)
	}
	gate.set(2, map[int]int64{1: 5})
	reapplied := mine
	for k := 2; reapplied == mine; k++ {
		reapplied = old.VisitorOn("shop", 1, k)
	}
	old.Send(t, cart(reapplied))
	if _, err := old.Segments.Sequence(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := old.sourceChanges(t, "shop", "carts", state.Source{Partition: 1, Offset: -1})
	if len(got) != 2 || got[0].Visitor != mine || got[0].Seq == 0 || got[1].Visitor != reapplied || got[1].Seq != 0 {
		t.Fatalf("before the upgrade: feed by source %+v; want this node's record, then the re-applied one (seq 0)", got)
	}
	created := old.created(t, "shop", "carts")
	old.Close(t)

	// The old owner of offsets 2 to 5 emitted another record there.
	emitted := membership.Change{Site: "shop", Segment: "carts", Visitor: profiletest.Visitor(990), Entered: true, At: t0 + 1,
		Why: "event", Facts: `{"count(cart)":1}`, Src: state.Source{Partition: 1, Offset: 4}, Created: created}
	produce(t, topic, emitted)
	e := openEnv(t, dir, nil, func(o *membership.Options) { o.Gate = gate; o.History = membership.LogHistory(topic) })
	e.Segments.TakeOver(context.Background(), map[int]int64{1: 5})
	profiletest.WaitUntil(t, "the copy", func() bool { return e.Segments.HistoryReady(1) })
	got = e.sourceChanges(t, "shop", "carts", state.Source{Partition: 1, Offset: -1})
	if len(got) != 2 || got[0].Visitor != mine || got[0].Seq == 0 || got[1].Visitor != emitted.Visitor || got[1].Seq != 0 {
		t.Errorf("after the copy: feed by source %+v; want this node's record, then the emitted one", got)
	}
}

// TestTakeOverLostMarks: an assignment whose mark of a partition is below
// the mark this node copied its history up to at an earlier one (Kafka
// dropped the group's committed offsets) is reported, and the sequencer
// emits no record of the partition at or below the earlier mark again;
// those above it it emits.
func TestTakeOverLostMarks(t *testing.T) {
	brokers := profiletest.StartKafka(t, kfake.SeedTopics(1, "changes"))
	topic := profiletest.OpenTopic(t, brokers, "changes")
	defer topic.Close()
	gate := &testGate{gen: 1, marks: map[int]int64{1: 5}}
	e := openEnv(t, "", nil, func(o *membership.Options) { o.Gate = gate; o.History = membership.LogHistory(topic) })
	e.put(t, "shop", "carts", `count(cart) >= 1`)
	e.Segments.TakeOver(context.Background(), map[int]int64{1: 5})
	profiletest.WaitUntil(t, "the copy", func() bool { return e.Segments.HistoryReady(1) })

	// The group restarts with its offsets gone: mark 0.
	gate.set(2, map[int]int64{1: 0})
	e.Segments.TakeOver(context.Background(), map[int]int64{1: 0})
	var vs []event.UUID
	for k := 1; len(vs) < 6; k++ {
		if v := e.VisitorOn("shop", 1, k); !slices.Contains(vs, v) {
			vs = append(vs, v)
		}
	}
	for _, v := range vs { // sources 1 to 6
		e.Send(t, profiletest.Batch("shop", v, profiletest.Event(event.TypeCart, t0, &event.Product{ID: "l1", Brand: "Lego"})))
	}
	if _, err := e.Segments.Sequence(context.Background()); err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, c := range e.changes(t, "shop", "carts") {
		got = append(got, c.Src.Offset)
	}
	if fmt.Sprint(got) != "[6]" {
		t.Errorf("emitted the records of sources %v after the marks were lost; want [6] (1 to 5 were emitted before)", got)
	}
}

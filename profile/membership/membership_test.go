package membership_test

import (
	"fmt"
	"testing"

	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

var (
	nutrilon = &event.Product{ID: "n1", Brand: "Nutrilon", Category: "baby/food", Age: "0-3", Price: 12, HasPrice: true}
	lego     = &event.Product{ID: "l1", Brand: "Lego", Category: "toys", Age: "6-9", Price: 40, HasPrice: true}
)

type wantChange struct {
	visitor event.UUID
	entered bool
	at      int64
	why     string
}

func checkChanges(t *testing.T, got []membership.Change, want []wantChange) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d changes %+v; want %d %+v", len(got), got, len(want), want)
	}
	for i, w := range want {
		g := got[i]
		if g.Visitor != w.visitor || g.Entered != w.entered || g.At != w.at || g.Why != w.why {
			t.Errorf("change %d: got visitor %s entered=%v at=%d why=%q; want %s entered=%v at=%d why=%q",
				i, g.Visitor, g.Entered, g.At, g.Why, w.visitor, w.entered, w.at, w.why)
		}
		if i > 0 && g.Seq <= got[i-1].Seq {
			t.Errorf("change %d: seq %d not above %d", i, g.Seq, got[i-1].Seq)
		}
	}
}

// An abandoned cart enters on the cart event and leaves when 24 h pass,
// recorded at the exact instant it stopped holding.
func TestAbandonedCartLeavesWhenTimePasses(t *testing.T) {
	clk := &profiletest.Clock{}
	clk.Set(t0 + hour)
	e := openEnv(t, t.TempDir(), clk, nil)
	e.put(t, "shop", "abandoned", `since(cart) <= 24h and since(purchase) > since(cart)`)
	v1, v2 := profiletest.Visitor(1), profiletest.Visitor(2)
	e.Send(t,
		profiletest.Batch("shop", v1, profiletest.Event(event.TypeCart, t0, nutrilon), profiletest.Identify(t0, "Mum@Example.com ")),
		profiletest.Batch("shop", v2, profiletest.Event(event.TypeCart, t0, nutrilon), profiletest.Event(event.TypePurchase, t0+1, nutrilon)),
	)
	m := e.members(t, "shop", "abandoned")
	if len(m) != 1 || m[v1].Email != "mum@example.com" || m[v1].Entered != t0+hour {
		t.Fatalf("members after the cart: got %+v; want only %s with email mum@example.com entered at %d", m, v1, t0+hour)
	}
	segs, due, err := e.Segments.VisitorSegments("shop", v1)
	if err != nil || len(segs) != 1 || segs[0].Segment != "abandoned" || due != t0+24*hour+1 {
		t.Fatalf("VisitorSegments: got %+v due %d err %v; want [abandoned] due %d", segs, due, err, t0+24*hour+1)
	}
	// Not yet: one ms before the edge.
	e.Advance(t, t0+24*hour)
	if m := e.members(t, "shop", "abandoned"); len(m) != 1 {
		t.Fatalf("members at the edge: got %d; want 1", len(m))
	}
	// Processed late: the exit is still recorded at the due instant.
	e.Advance(t, t0+30*hour)
	if m := e.members(t, "shop", "abandoned"); len(m) != 0 {
		t.Fatalf("members past 24h: got %+v; want none", m)
	}
	checkChanges(t, e.changes(t, "shop", "abandoned"), []wantChange{
		{v1, true, t0 + hour, "event"},
		{v1, false, t0 + 24*hour + 1, "time"},
	})
	cs := e.changes(t, "shop", "abandoned")
	if cs[1].Email != "mum@example.com" || cs[1].Facts == "" {
		t.Errorf("exit record: got email %q facts %q; want the email and facts", cs[1].Email, cs[1].Facts)
	}
	if _, due, _ := e.Segments.VisitorSegments("shop", v1); due != 0 {
		t.Errorf("due after leaving: got %d; want 0 (nothing can change without an event)", due)
	}
}

// An interest decaying below its threshold leaves at the crossing instant:
// two views score 2 at t0, which halves to 1 after one half-life (14 d).
func TestInterestDecayLeaves(t *testing.T) {
	clk := &profiletest.Clock{}
	clk.Set(t0)
	e := openEnv(t, t.TempDir(), clk, nil)
	e.put(t, "shop", "mums", `top(age) == "0-3" and (interest(brand, "Nutrilon") >= 1 or interest(brand, "Merries") >= 1 or interest(brand, "Philips") >= 1)`)
	v1, v2 := profiletest.Visitor(1), profiletest.Visitor(2)
	e.Send(t,
		profiletest.Batch("shop", v1, profiletest.Event(event.TypeView, t0, nutrilon), profiletest.Event(event.TypeView, t0, nutrilon)),
		profiletest.Batch("shop", v2, profiletest.Event(event.TypeView, t0, lego), profiletest.Event(event.TypeView, t0, lego), profiletest.Event(event.TypeView, t0, nutrilon)),
	)
	if m := e.members(t, "shop", "mums"); len(m) != 1 || m[v1].Visitor != v1 {
		t.Fatalf("members: got %+v; want only %s", m, v1)
	}
	_, due, _ := e.Segments.VisitorSegments("shop", v1)
	if d := due - (t0 + 14*day); d < -1 || d > 1 {
		t.Fatalf("due: got %d; want t0+14d = %d (±1 ms)", due, t0+14*day)
	}
	e.Advance(t, due-1)
	if m := e.members(t, "shop", "mums"); len(m) != 1 {
		t.Fatalf("members 1 ms before the crossing: got %d; want 1", len(m))
	}
	e.Advance(t, t0+20*day)
	if m := e.members(t, "shop", "mums"); len(m) != 0 {
		t.Fatalf("members after the crossing: got %+v; want none", m)
	}
	checkChanges(t, e.changes(t, "shop", "mums"), []wantChange{
		{v1, true, t0, "event"},
		{v1, false, due, "time"},
	})
}

// Catch-up: a visitor that entered and would leave several times while the
// scheduler was not running has each flip recorded at its own instant.
func TestDueCatchUpRecordsEveryFlip(t *testing.T) {
	clk := &profiletest.Clock{}
	clk.Set(t0)
	e := openEnv(t, t.TempDir(), clk, nil)
	// in between 1 h and 2 h after the cart, and again after 3 h.
	e.put(t, "shop", "odd", `(since(cart) >= 1h and since(cart) < 2h) or since(cart) >= 3h`)
	v := profiletest.Visitor(7)
	e.Send(t, profiletest.Batch("shop", v, profiletest.Event(event.TypeCart, t0, lego)))
	e.Advance(t, t0+10*hour)
	checkChanges(t, e.changes(t, "shop", "odd"), []wantChange{
		{v, true, t0 + hour, "time"},
		{v, false, t0 + 2*hour, "time"},
		{v, true, t0 + 3*hour, "time"},
	})
}

// A forgotten visitor leaves every segment without a record (one would
// name it); its keys are gone, and Scrub removes its past records.
func TestDeleteVisitorLeaves(t *testing.T) {
	clk := &profiletest.Clock{}
	clk.Set(t0)
	e := openEnv(t, t.TempDir(), clk, nil)
	e.put(t, "shop", "viewers", `count(view) >= 1`)
	e.put(t, "shop", "known", `identified`)
	v := profiletest.Visitor(3)
	e.Send(t, profiletest.Batch("shop", v, profiletest.Event(event.TypeView, t0, lego), profiletest.Identify(t0, "a@b.c")))
	if _, err := e.Builder.DeleteVisitor("shop", v); err != nil {
		t.Fatal(err)
	}
	e.Wait(t)
	for _, name := range []string{"viewers", "known"} {
		if m := e.members(t, "shop", name); len(m) != 0 {
			t.Errorf("%s after delete: got %+v; want none", name, m)
		}
		checkChanges(t, e.changes(t, "shop", name), []wantChange{{v, true, t0, "event"}})
	}
	if segs, due, err := e.Segments.VisitorSegments("shop", v); len(segs) != 0 || due != 0 || err != nil {
		t.Errorf("VisitorSegments after delete: got %+v %d %v; want none", segs, due, err)
	}
	// Another visitor's records stay; the erased one's go, by id or email.
	w := profiletest.Visitor(4)
	e.Send(t, profiletest.Batch("shop", w, profiletest.Event(event.TypeView, t0, lego)))
	if n, err := e.Segments.Scrub("shop", []event.UUID{v}, nil, nil); n != 2 || err != nil {
		t.Fatalf("Scrub = %d, %v; want 2 records (one per segment), nil", n, err)
	}
	checkChanges(t, e.changes(t, "shop", "viewers"), []wantChange{{w, true, t0, "event"}})
	checkChanges(t, e.changes(t, "shop", "known"), nil)
	u := profiletest.Visitor(5)
	e.Send(t, profiletest.Batch("shop", u, profiletest.Identify(t0, "u@b.c")))
	if n, err := e.Segments.Scrub("shop", nil, []string{"u@b.c"}, nil); n != 1 || err != nil {
		t.Fatalf("Scrub by email = %d, %v; want 1, nil", n, err)
	}
	checkChanges(t, e.changes(t, "shop", "known"), nil)
}

// Backfill: a segment created after the events evaluates existing
// profiles, from the interest index when the rule allows.
func TestBackfill(t *testing.T) {
	clk := &profiletest.Clock{}
	clk.Set(t0)
	e := openEnv(t, t.TempDir(), clk, nil)
	var bs []*event.Batch
	for i := range 300 {
		p := lego
		if i%3 == 0 {
			p = nutrilon
		}
		bs = append(bs, profiletest.Batch("shop", profiletest.Visitor(i), profiletest.Event(event.TypeView, t0, p), profiletest.Event(event.TypeView, t0, p)))
	}
	e.Send(t, bs...)
	for _, tc := range []struct {
		name, rule string
		index      bool
		want       int
	}{
		{"nutrilon", `interest(brand, "Nutrilon") >= 1.5`, true, 100},
		{"lego", `top(brand) == "Lego"`, false, 200},
	} {
		e.put(t, "shop", tc.name, tc.rule)
		bf := e.Segments.BackfillOf("shop", tc.name)
		scanned, total, done := bf.Progress()
		if !done || bf.FromIndex() != tc.index || scanned != total {
			t.Errorf("%s: backfill got scanned=%d total=%d done=%v fromIndex=%v; want done, fromIndex=%v", tc.name, scanned, total, done, bf.FromIndex(), tc.index)
		}
		if tc.index && total != int64(tc.want) {
			t.Errorf("%s: candidates from the index: got %d; want %d", tc.name, total, tc.want)
		}
		if n, _ := e.Segments.Size("shop", tc.name); n != tc.want {
			t.Errorf("%s: size got %d; want %d", tc.name, n, tc.want)
		}
		d, _, _ := e.Segments.Definition("shop", tc.name)
		if d.Backfilled != d.Gen {
			t.Errorf("%s: backfilled gen %d; want %d", tc.name, d.Backfilled, d.Gen)
		}
		if cs := e.changes(t, "shop", tc.name); len(cs) != tc.want || cs[0].Why != "backfill" {
			t.Errorf("%s: got %d changes; want %d backfill entries", tc.name, len(cs), tc.want)
		}
	}
	// Changing a rule re-evaluates the members too.
	e.put(t, "shop", "nutrilon", `interest(brand, "Nutrilon") >= 5`)
	if n, _ := e.Segments.Size("shop", "nutrilon"); n != 0 {
		t.Errorf("after narrowing: size got %d; want 0", n)
	}
}

// The feed read page by page with the last seq as cursor sees every
// record exactly once, while changes keep being added.
func TestChangesPagination(t *testing.T) {
	clk := &profiletest.Clock{}
	clk.Set(t0)
	e := openEnv(t, t.TempDir(), clk, nil)
	e.put(t, "shop", "carts", `since(cart) <= 1h`)
	var after uint64
	seen := map[string]int{}
	read := func() {
		for {
			n := 0
			if err := e.Segments.Changes("shop", "carts", after, func(c *membership.Change) bool {
				seen[fmt.Sprintf("%s/%v/%d", c.Visitor, c.Entered, c.At)]++
				after = c.Seq
				n++
				return n < 7
			}); err != nil {
				t.Fatal(err)
			}
			if n < 7 {
				return
			}
		}
	}
	for round := range 5 {
		var bs []*event.Batch
		for i := range 20 {
			bs = append(bs, profiletest.Batch("shop", profiletest.Visitor(round*100+i), profiletest.Event(event.TypeCart, t0+int64(round)*hour, lego)))
		}
		e.Send(t, bs...)
		read()
		e.Advance(t, t0+int64(round)*hour+hour+1)
		read()
	}
	if len(seen) != 200 {
		t.Errorf("distinct changes: got %d; want 200 (100 entries, 100 exits)", len(seen))
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("change %s seen %d times; want once", k, n)
		}
	}
}

func TestDeleteSegment(t *testing.T) {
	clk := &profiletest.Clock{}
	clk.Set(t0)
	e := openEnv(t, t.TempDir(), clk, nil)
	e.put(t, "shop", "viewers", `count(view) >= 1`)
	e.Send(t, profiletest.Batch("shop", profiletest.Visitor(1), profiletest.Event(event.TypeView, t0, lego)))
	if ok, err := e.Segments.Delete("shop", "viewers"); !ok || err != nil {
		t.Fatalf("Delete: got %v %v; want true nil", ok, err)
	}
	if _, ok, _ := e.Segments.Definition("shop", "viewers"); ok {
		t.Error("definition still there")
	}
	if m := e.members(t, "shop", "viewers"); len(m) != 0 {
		t.Errorf("members after delete: %+v", m)
	}
	if segs, _, _ := e.Segments.VisitorSegments("shop", profiletest.Visitor(1)); len(segs) != 0 {
		t.Errorf("visitor segments after delete: %+v", segs)
	}
	// Recreated: starts empty, backfills.
	e.put(t, "shop", "viewers", `count(view) >= 1`)
	if cs := e.changes(t, "shop", "viewers"); len(cs) != 1 || cs[0].Why != "backfill" {
		t.Errorf("changes after re-create: %+v; want one backfill entry", cs)
	}
	if ok, _ := e.Segments.Delete("shop", "nope"); ok {
		t.Error("Delete of a missing segment reported true")
	}
}

// A change record's source names the events partition, the offset after
// the visitor's last record in the commit that wrote the record (here
// one record a commit, so the commit's offset) and the record's ordinal
// there: an event commit numbers from 0, a due re-evaluation after it
// numbers on, and one before any event commit of the process (after a
// restart) from state.VisitOrdinals.
func TestChangeSources(t *testing.T) {
	dir := t.TempDir()
	clk := &profiletest.Clock{}
	clk.Set(t0 + hour)
	e := openEnv(t, dir, clk, nil)
	e.put(t, "shop", "abandoned", `since(cart) <= 24h and since(purchase) > since(cart)`)
	e.put(t, "shop", "carted", `since(cart) <= 48h`)
	v0, v1 := e.VisitorOn("shop", 0, 1), e.VisitorOn("shop", 1, 1)
	e.Send(t, profiletest.Batch("shop", v0, profiletest.Event(event.TypeCart, t0, nutrilon)))
	e.Send(t, profiletest.Batch("shop", v1, profiletest.Event(event.TypeView, t0, nutrilon)))
	e.Send(t, profiletest.Batch("shop", v1, profiletest.Event(event.TypeCart, t0, nutrilon)))
	e.Advance(t, t0+30*hour) // v0 leaves abandoned
	e.Close(t)
	e = openEnv(t, dir, clk, nil)
	e.Advance(t, t0+50*hour) // v0 and v1 leave carted, after the restart

	type src struct {
		visitor event.UUID
		entered bool
		state.Source
	}
	f := func(name string, want []src) {
		t.Helper()
		cs := e.changes(t, "shop", name)
		if len(cs) != len(want) {
			t.Fatalf("%s: got %d changes %+v; want %d", name, len(cs), cs, len(want))
		}
		for i, w := range want {
			if g := cs[i]; g.Visitor != w.visitor || g.Entered != w.entered || g.Src != w.Source {
				t.Errorf("%s change %d: got visitor %s entered=%v source %+v; want %s entered=%v %+v", name, i, g.Visitor, g.Entered, g.Src, w.visitor, w.entered, w.Source)
			}
		}
	}
	const vo = state.VisitOrdinals
	// Segments evaluate in name order: abandoned, then carted.
	f("abandoned", []src{
		{v0, true, state.Source{Partition: 0, Offset: 1, Ord: 0}},
		{v1, true, state.Source{Partition: 1, Offset: 2, Ord: 0}},
		{v0, false, state.Source{Partition: 0, Offset: 1, Ord: 2}},
		{v1, false, state.Source{Partition: 1, Offset: 2, Ord: 2}},
	})
	f("carted", []src{
		{v0, true, state.Source{Partition: 0, Offset: 1, Ord: 1}},
		{v1, true, state.Source{Partition: 1, Offset: 2, Ord: 1}},
		{v0, false, state.Source{Partition: 0, Offset: 1, Ord: vo}},
		{v1, false, state.Source{Partition: 1, Offset: 2, Ord: vo}},
	})
}

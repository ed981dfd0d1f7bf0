package membership_test

import (
	"cmp"
	"slices"
	"testing"

	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// sourceChanges reads SourceChanges from from to the end.
func (e *env) sourceChanges(t testing.TB, site, name string, from ...state.Source) []membership.Change {
	t.Helper()
	var cs []membership.Change
	if err := e.Segments.SourceChanges(site, name, from, func(c *membership.Change) bool {
		cs = append(cs, *c)
		return true
	}); err != nil {
		t.Fatalf("SourceChanges: %s", err)
	}
	return cs
}

// The feed by source gives each partition's records in source order,
// interleaved by At then partition, from any partition's position on; a
// scrubbed record is left out.
func TestSourceChanges(t *testing.T) {
	clk := &profiletest.Clock{}
	clk.Set(t0)
	e := openEnv(t, t.TempDir(), clk, nil)
	e.put(t, "shop", "viewers", `count(view) >= 1 and since(view) <= 2h`)
	// Past a chunk of the index per partition, at instants that
	// interleave the partitions, then their time-driven exits.
	for i := range 150 {
		clk.Set(t0 + int64(i/7)*60000)
		v := profiletest.Visitor(100 + i)
		e.Send(t, profiletest.Batch("shop", v, profiletest.Event(event.TypeView, t0, nutrilon)))
	}
	e.Advance(t, t0+3*hour)
	all := e.changes(t, "shop", "viewers")
	if len(all) != 300 {
		t.Fatalf("changes: got %d; want 300 (150 entries, 150 exits)", len(all))
	}
	want := slices.Clone(all)
	slices.SortStableFunc(want, func(a, b membership.Change) int { // seq order is each partition's source order
		return cmp.Or(cmp.Compare(a.At, b.At), cmp.Compare(a.Src.Partition, b.Src.Partition))
	})
	from := []state.Source{{Partition: 0, Offset: -1}, {Partition: 1, Offset: -1}}
	same := func(what string, got, want []membership.Change) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: got %d records; want %d", what, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: record %d: got %+v; want %+v", what, i, got[i], want[i])
			}
		}
	}
	same("both partitions", e.sourceChanges(t, "shop", "viewers", from...), want)
	var ofOne []membership.Change
	for _, c := range want {
		if c.Src.Partition == 1 {
			ofOne = append(ofOne, c)
		}
	}
	same("partition 1", e.sourceChanges(t, "shop", "viewers", from[1]), ofOne)
	// Resumed after every record: the positions of the records before it.
	for k := range want {
		pos := slices.Clone(from)
		for _, c := range want[:k+1] {
			pos[c.Src.Partition] = c.Src
		}
		same("resumed", e.sourceChanges(t, "shop", "viewers", pos...), want[k+1:])
	}
	// A position between two records (an ordinal no record has) resumes
	// at the next.
	mid := want[10].Src
	mid.Ord++
	for _, c := range e.sourceChanges(t, "shop", "viewers", mid) {
		if c.Src.Offset < mid.Offset || c.Src.Offset == mid.Offset && c.Src.Ord <= mid.Ord {
			t.Fatalf("record %+v at or before the position %+v", c.Src, mid)
		}
	}
	gone := want[0].Visitor
	if n, err := e.Segments.Scrub("shop", []event.UUID{gone}, nil, nil); err != nil || n != 2 {
		t.Fatalf("Scrub: %d %v; want 2 records", n, err)
	}
	same("after a scrub", e.sourceChanges(t, "shop", "viewers", from...), slices.DeleteFunc(slices.Clone(want), func(c membership.Change) bool { return c.Visitor == gone }))
	if err := e.Segments.SourceChanges("", "viewers", from, func(*membership.Change) bool { return true }); err == nil {
		t.Error("SourceChanges of a bad site: no error")
	}
}

package membership_test

import (
	"fmt"
	"testing"

	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/tracker/event"
)

// Sizes sampled as the segment grows are read back in order, by step, and
// thinned as they age: every sample for a day, hourly for 30 days, daily
// after; a deleted segment takes its history with it.
func TestSizeHistory(t *testing.T) {
	clk := &profiletest.Clock{}
	clk.Set(t0)
	e := openEnv(t, t.TempDir(), clk, nil)
	e.put(t, "shop", "viewers", `count(view) >= 1`)
	const minute = hour / 60
	history := func(from, to, step int64) []membership.SizePoint {
		t.Helper()
		var ps []membership.SizePoint
		if err := e.Segments.History("shop", "viewers", from, to, step, func(p membership.SizePoint) bool {
			ps = append(ps, p)
			return true
		}); err != nil {
			t.Fatalf("History: %s", err)
		}
		return ps
	}
	// A sample every 10 minutes for 32 days; a visitor more at the start
	// and at each hour of the last day.
	const every = 10 * minute
	end := t0 + 32*day
	lastDay := end - day
	n := 0
	sizeAt := func(at int64) int { // the size the sample at at saw
		if at < lastDay {
			return 1
		}
		return 1 + int((at-lastDay)/hour) + 1
	}
	for at := t0; at < end; at += every {
		clk.Set(at)
		if at == t0 || at >= lastDay && at%hour == 0 {
			e.Send(t, profiletest.Batch("shop", profiletest.Visitor(n), profiletest.Event(event.TypeView, at, lego)))
			n++
		}
		if _, err := e.Segments.RecordSizes(); err != nil {
			t.Fatalf("RecordSizes: %s", err)
		}
	}
	now := end - every
	// The last day: every sample.
	ps := history(now-day+1, now, 0)
	if len(ps) != int(day/every) {
		t.Fatalf("last day: %d points; want %d", len(ps), day/every)
	}
	for i, p := range ps {
		if at := now - day + every*int64(i+1); p.At != at || p.Size != sizeAt(at) {
			t.Fatalf("last day, point %d: got %+v; want size %d at %d", i, p, sizeAt(at), at)
		}
	}
	// A day 10 days back (thinned at the hour before now): 24 hourly
	// points, each the last sample of its hour.
	from := t0 + 21*day
	ps = history(from, from+day-1, 0)
	if len(ps) != 24 {
		t.Fatalf("hourly day: %d points %+v; want 24", len(ps), ps)
	}
	for _, p := range ps {
		if p.At%hour != hour-every || p.Size != 1 {
			t.Errorf("hourly point %+v: want the last sample of its hour, size 1", p)
		}
	}
	// The first day, past 30 days: one point, the day's last sample.
	ps = history(t0, t0+day-1, 0)
	if len(ps) != 1 || ps[0].At != t0+day-every || ps[0].Size != 1 {
		t.Errorf("daily: got %+v; want one point at %d size 1", ps, t0+day-every)
	}
	// By step: the last point of each 6 hours of the last day.
	ps = history(now-day+1, now, 6*hour)
	if len(ps) != 4 {
		t.Fatalf("step 6h: %d points %+v; want 4", len(ps), ps)
	}
	if last := ps[3]; last.At != now || last.Size != n {
		t.Errorf("step 6h, last: %+v; want at %d size %d", last, now, n)
	}

	if _, err := e.Segments.Delete("shop", "viewers"); err != nil {
		t.Fatal(err)
	}
	e.put(t, "shop", "viewers", `count(view) >= 1`)
	if ps := history(0, end, 0); len(ps) != 0 {
		t.Errorf("after delete and put: %d points of the old segment; want none", len(ps))
	}
}

// On a node of a build group (SampleByPartition) a sample of a
// segment counts the members of the partitions owned then, each on its
// own: a person at the partition of its id (its evaluating partition).
func TestSizeHistoryByPartition(t *testing.T) {
	clk := &profiletest.Clock{}
	clk.Set(t0)
	owned := []int{1}
	e := openEnv(t, t.TempDir(), clk, nil)
	e.Segments.SampleByPartition(func() []int { return owned }, func(site string, v event.UUID) int { return e.Log.Partition(event.AppendLogKey(nil, site, v)) })
	e.put(t, "shop", "viewers", `count(view) >= 1`)
	if _, _, err := e.Segments.PutPer("shop", "people", `count(view) >= 1`, membership.PerPerson); err != nil {
		t.Fatal(err)
	}
	var bs []*event.Batch
	onOne := 0
	for i := range 20 {
		v := profiletest.Visitor(i)
		if e.Log.Partition(event.AppendLogKey(nil, "shop", v)) == 1 {
			onOne++
		}
		bs = append(bs, profiletest.Batch("shop", v, profiletest.Identify(t0, "a@b.c"), profiletest.Event(event.TypeView, t0, lego)))
	}
	e.Send(t, bs...)
	e.Advance(t, t0+hour)
	if _, err := e.Segments.RecordSizes(); err != nil {
		t.Fatal(err)
	}
	owned = []int{0, 1}
	e.Advance(t, t0+2*hour)
	if _, err := e.Segments.RecordSizes(); err != nil {
		t.Fatal(err)
	}
	read := func(name string) []string {
		var got []string
		if err := e.Segments.History("shop", name, t0+1, t0+2*hour, 0, func(p membership.SizePoint) bool {
			got = append(got, fmt.Sprintf("%d %v", p.Size, p.Parts))
			return true
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	want := []string{fmt.Sprintf("%d [{1 %d}]", onOne, onOne), fmt.Sprintf("20 [{0 %d} {1 %d}]", 20-onOne, onOne)}
	if got := read("viewers"); fmt.Sprint(got) != fmt.Sprint(want) || onOne == 0 || onOne == 20 {
		t.Errorf("viewers: got %q; want %q", got, want)
	}
	// The person counts at the partition of its id, its evaluating one.
	pp := e.Log.Partition(event.AppendLogKey(nil, "shop", membership.PersonID("shop", "e:a@b.c")))
	want = []string{fmt.Sprintf("%d [{1 %d}]", pp, pp), fmt.Sprintf("1 [{0 %d} {1 %d}]", 1-pp, pp)}
	if got := read("people"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("people: got %q; want %q: the person by its evaluating partition", got, want)
	}
}

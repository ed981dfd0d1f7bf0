package membership_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/profile/segment"
	"github.com/affinityhq/affinity/tracker/event"
)

// A preview counts what the saved segment's backfill then holds, off the
// index when the rule allows, with a sample carrying the rule's facts; a
// bound on the work says the count is not exact.
func TestPreview(t *testing.T) {
	clk := &profiletest.Clock{}
	clk.Set(t0)
	e := openEnv(t, t.TempDir(), clk, nil)
	var bs []*event.Batch
	for i := range 300 {
		evs := []event.Event{profiletest.Event(event.TypeView, t0, lego)}
		if i%3 == 0 {
			// twice Nutrilon and once Merries: the index gives it twice
			evs = append(evs, profiletest.Event(event.TypeView, t0, nutrilon), profiletest.Event(event.TypeView, t0, nutrilon),
				profiletest.Event(event.TypeView, t0, &event.Product{ID: "m1", Brand: "Merries"}), profiletest.Identify(t0, "mum@example.com"))
		}
		bs = append(bs, profiletest.Batch("shop", profiletest.Visitor(i), evs...))
	}
	e.Send(t, bs...)
	for _, tc := range []struct {
		name, rule string
		index      bool
		want       int
	}{
		{"mums", `interest(brand, "Nutrilon") >= 1.5 or interest(brand, "Merries") >= 0.5`, true, 100},
		{"lego", `top(brand) == "Lego"`, false, 200},
		{"nobody", `interest(brand, "Nutrilon") >= 50`, true, 0},
	} {
		res, err := e.Segments.Preview("shop", tc.rule, membership.PreviewOptions{Sample: 3, MaxScan: 1000, Deadline: time.Now().Add(time.Minute)})
		if err != nil {
			t.Fatalf("%s: Preview: %s", tc.name, err)
		}
		if res.Count != tc.want || !res.Exact || res.FromIndex != tc.index || res.At != t0 {
			t.Errorf("%s: got count %d exact %v fromIndex %v at %d; want %d exact, fromIndex %v at %d", tc.name, res.Count, res.Exact, res.FromIndex, res.At, tc.want, tc.index, t0)
		}
		if want := min(3, tc.want); len(res.Sample) != want {
			t.Fatalf("%s: sample of %d; want %d", tc.name, len(res.Sample), want)
		}
		for _, m := range res.Sample {
			var facts map[string]any
			if err := json.Unmarshal([]byte(m.Facts), &facts); err != nil || len(facts) != len(res.Rule.Refs()) {
				t.Errorf("%s: facts of %s: %q (%v); want one per term of %d", tc.name, m.Visitor, m.Facts, err, len(res.Rule.Refs()))
			}
			if tc.index && m.Email != "mum@example.com" {
				t.Errorf("%s: sample %s email %q; want mum@example.com", tc.name, m.Visitor, m.Email)
			}
		}
		e.put(t, "shop", tc.name, tc.rule)
		if n, _ := e.Segments.Size("shop", tc.name); n != res.Count {
			t.Errorf("%s: saved segment's size %d; preview counted %d", tc.name, n, res.Count)
		}
	}

	res, err := e.Segments.Preview("shop", `top(brand) == "Lego"`, membership.PreviewOptions{MaxScan: 50})
	if err != nil || res.Exact || res.Scanned != 50 || res.Count > 50 || len(res.Sample) != 0 {
		t.Errorf("MaxScan 50: got %+v, %v; want 50 scanned, count ≤ 50, not exact, no sample", res, err)
	}
	res, err = e.Segments.Preview("shop", `top(brand) == "Lego"`, membership.PreviewOptions{MaxScan: 1000, Deadline: time.Now().Add(-time.Second)})
	if err != nil || res.Exact || res.Scanned >= 300 {
		t.Errorf("past deadline: got %+v, %v; want stopped early, not exact", res, err)
	}

	_, err = e.Segments.Preview("shop", `since(cart) <= 24`, membership.PreviewOptions{MaxScan: 10})
	var ie *invalid.Error
	var se *segment.Error
	if !errors.As(err, &ie) || !errors.As(err, &se) || se.Pos != 16 {
		t.Errorf("syntax error: got %v; want an invalid.Error with a segment.Error at 16", err)
	}
	if _, err := e.Segments.Preview("", `identified`, membership.PreviewOptions{MaxScan: 10}); !errors.As(err, &ie) {
		t.Errorf("empty site: got %v; want an invalid.Error", err)
	}
}

// A preview's share (Keep, At) counts only the kept profiles at the
// instant given; each sample member keeps its own email, also when a
// later candidate's profile is read into the same buffer (off the index).
func TestPreviewShare(t *testing.T) {
	clk := &profiletest.Clock{}
	clk.Set(t0)
	e := openEnv(t, t.TempDir(), clk, nil)
	var bs []*event.Batch
	emails := map[event.UUID]string{}
	for i := range 40 {
		v := profiletest.Visitor(i)
		emails[v] = fmt.Sprintf("p%d@example.com", i)
		bs = append(bs, profiletest.Batch("shop", v, profiletest.Event(event.TypeView, t0-int64(i)*day, lego), profiletest.Identify(t0, emails[v])))
	}
	e.Send(t, bs...)
	rule := `interest(brand, "Lego") > 0.1`
	all, err := e.Segments.Preview("shop", rule, membership.PreviewOptions{Sample: 40, MaxScan: 1000})
	if err != nil || all.Count != 40 || !all.FromIndex || len(all.Sample) != 40 {
		t.Fatalf("Preview: %+v, %v; want 40 off the index", all, err)
	}
	for _, m := range all.Sample {
		if m.Email != emails[m.Visitor] || len(m.Order) != 2+8+16 {
			t.Errorf("sample %s: email %q order %x; want %q and a 26-byte order", m.Visitor, m.Email, m.Order, emails[m.Visitor])
		}
	}
	even := func(v event.UUID) bool { return v[15]%2 == 0 }
	at := t0 + 30*day // 2^(-(30+i)/14) > 0.1 for the views of i ≤ 16 days before t0
	share, err := e.Segments.Preview("shop", rule, membership.PreviewOptions{Sample: 40, MaxScan: 1000, At: at, Keep: even})
	if err != nil || share.At != at {
		t.Fatalf("share: %+v, %v", share, err)
	}
	want := 0
	for i := range 17 {
		if even(profiletest.Visitor(i)) {
			want++
		}
	}
	if share.Count != want || want == 0 {
		t.Errorf("share at +30d: count %d of %d scanned; want the %d kept above the threshold then", share.Count, share.Scanned, want)
	}
	for _, m := range share.Sample {
		if !even(m.Visitor) {
			t.Errorf("share sample %s: not kept", m.Visitor)
		}
	}
}

package query_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/profile/query"
	"github.com/affinityhq/affinity/tracker/event"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// exportRule reads every kind of term, so that the golden export covers
// every fact encoding (numbers, durations, null, strings needing CSV
// quoting and JSON escapes, booleans).
const exportRule = `count(view) >= 1 and (since(view) <= 1000d or identified or top(brand) == "x" or ` +
	`top(age) == "x" or share(category, "x,y/z") > 0.5 or interest(price, "x") > 1 or trait("name") == "x" or ` +
	`until_birthday <= 7d or lifecycle == "new" or rfm.r >= 1 or rfm.f >= 1 or rfm.m >= 1 or ` +
	`count(cart, 30d) >= 1 or first(purchase) <= 1d or since(identify) > 1h)`

// TestMembersExportGolden pins the bytes of the members export (every
// format and option) to testdata/members_export.golden: a speed-up must
// not change a byte. Run with -update to rewrite it after a deliberate
// change of the output.
func TestMembersExportGolden(t *testing.T) {
	e := newSegEnv(t)
	for name, rule := range map[string]string{"all": exportRule, "mums": mumsRule} {
		if code, body := e.putSegment(t, name, rule); code != 201 {
			t.Fatalf("PUT %s: %d %s", name, code, body)
		}
	}
	odd := event.Product{ID: "o,1", Brand: `Ac,"me"`, Category: "x,y/z", Age: "=cmd", Price: 7, HasPrice: true}
	traits := func(ts int64, email string, tr ...event.Trait) event.Event {
		ev := profiletest.Identify(ts, email)
		ev.Traits = tr
		return ev
	}
	cart := func(ts int64, p event.Product) event.Event {
		return event.Event{ID: profiletest.NewEventID(), Type: event.TypeCart, TS: ts, Product: p, HasProduct: true}
	}
	buy := func(ts int64, p event.Product, total float64) event.Event {
		return event.Event{ID: profiletest.NewEventID(), Type: event.TypePurchase, TS: ts, Product: p, HasProduct: true,
			HasOrder: true, Order: event.Order{ID: fmt.Sprint(ts), Total: total, HasTotal: true}}
	}
	var bs []*event.Batch
	for i := range 12 {
		evs := []event.Event{profiletest.View(t0-int64(i)*day, nutrilon)}
		switch i % 4 {
		case 0:
			evs = append(evs, profiletest.View(t0, odd), profiletest.View(t0, odd), cart(t0-day, odd),
				traits(t0-2*day, fmt.Sprintf("p%d@example.com", i%3),
					event.Trait{Key: "name", Value: "O'Brien, \"Jr\"\x01 Zoë"},
					event.Trait{Key: "birthday", Value: "1990-02-03"}))
		case 1:
			evs = append(evs, profiletest.View(t0, lego), buy(t0-40*day, lego, 80), buy(t0-3*day, nutrilon, 12.5),
				profiletest.Identify(t0, fmt.Sprintf("p%d@example.com", i%3)))
		case 2:
			evs = append(evs, cart(t0, nutrilon), traits(t0, "", event.Trait{Key: "name", Value: "=SUM(A1)"}))
		}
		bs = append(bs, profiletest.Batch(site, profiletest.Visitor(i), evs...))
	}
	bs = append(bs, profiletest.Batch(site, profiletest.Visitor(99), profiletest.View(t0, lego))) // a member of "all" only
	e.Send(t, bs...)

	// A second handler on the same state, to read exports through Read.
	h, err := query.New(query.Options{State: e.DB, Segments: e.Segments, Config: e.Config, Now: e.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	for _, q := range []string{
		"all/members",
		"all/members?format=csv",
		"all/members?facts=false",
		"all/members?format=csv&facts=false",
		"all/members?by=email",
		"all/members?format=csv&by=email",
		"all/members?by=email&facts=false",
		"all/members?limit=5",
		"all/members?limit=5&format=csv",
		"all/members?limit=5&cursor=" + profiletest.Visitor(4).String(),
		"all/members?cursor=" + profiletest.Visitor(11).String(),
		"all/members?holdout=40&salt=s",
		"all/members?holdout=40&salt=s&group=control&format=csv",
		"all/members?holdout=50&salt=s&by=email",
		"all/members?at=2027-01-01T00:00:00Z",
		"mums/members",
		"mums/members?format=csv",
	} {
		code, body := e.Get(t, "/v1/segments/"+site+"/"+q)
		fmt.Fprintf(&got, "GET %s %d\n%s\n", q, code, body)
		name, args, _ := strings.Cut(q, "/members?")
		name = strings.TrimSuffix(name, "/members")
		if read, err := query.ReadMembers(h, site, name, args); err != nil || string(read) != body {
			t.Errorf("%s read through Read: %v\n%s\nwant\n%s", q, err, read, body)
		}
	}
	path := filepath.Join("testdata", "members_export.golden")
	var want []byte
	if *updateGolden {
		if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err = os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s (run with -update to create it)", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		gl, wl := bytes.Split(got.Bytes(), []byte("\n")), bytes.Split(want, []byte("\n"))
		for i := range max(len(gl), len(wl)) {
			var g, w []byte
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if !bytes.Equal(g, w) {
				t.Fatalf("export differs from %s at line %d:\ngot  %q\nwant %q", path, i+1, g, w)
			}
		}
	}
}

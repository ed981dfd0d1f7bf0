package query_test

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/tracker/event"
)

// segEnv is env on a clock the test sets, starting at t0.
type segEnv = env

func newSegEnv(t testing.TB) *segEnv {
	t.Helper()
	e := newEnv(t, nil)
	e.Clock.Set(t0)
	return e
}

func (e *segEnv) putSegment(t testing.TB, name, rule string) (int, string) {
	t.Helper()
	code, body := e.Do(t, http.MethodPut, "/v1/segments/"+site+"/"+name, "text/plain", []byte(rule), true)
	if bf := e.Segments.BackfillOf(site, name); bf != nil {
		bf.Wait()
	}
	return code, body
}

var (
	nutrilon = event.Product{ID: "n1", Brand: "Nutrilon", Category: "baby/food", Age: "0-3", Price: 12, HasPrice: true}
	lego     = event.Product{ID: "l1", Brand: "Lego", Category: "toys", Age: "6-9", Price: 40, HasPrice: true}
)

const mumsRule = `top(age) == "0-3" and (interest(brand, "Nutrilon") >= 1 or interest(brand, "Merries") >= 1 or interest(brand, "Philips") >= 1)`

func TestSegmentDefinitions(t *testing.T) {
	e := newSegEnv(t)
	for _, tc := range []struct {
		rule string
		code int
		want string
	}{
		{`since(cart) <= 24`, 400, "at 16: expected a duration"},
		{`since(click) <= 24h`, 400, "at 7: expected an event type"},
		{mumsRule, 201, `"canonical":`},
		{mumsRule, 200, `"size":0`},
	} {
		code, body := e.putSegment(t, "mums", tc.rule)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("PUT %q: got %d %s; want %d containing %q", tc.rule, code, body, tc.code, tc.want)
		}
	}
	if code, body := e.Do(t, http.MethodPut, "/v1/segments/"+site+"/bad name", "", []byte("identified"), true); code != 400 {
		t.Errorf("PUT with a bad name: got %d %s; want 400", code, body)
	}
	e.Send(t, profiletest.Batch(site, profiletest.Visitor(1), profiletest.View(t0, nutrilon), profiletest.View(t0, nutrilon)))
	code, body := e.Get(t, "/v1/segments/"+site+"/mums")
	var d struct {
		Size     int
		Rule     string
		Terms    []string
		Backfill struct{ State string }
	}
	if err := json.Unmarshal([]byte(body), &d); err != nil || code != 200 {
		t.Fatalf("GET segment: %d %s (%v)", code, body, err)
	}
	if d.Size != 1 || d.Rule != mumsRule || len(d.Terms) != 4 || d.Backfill.State != "done" {
		t.Errorf("GET segment: got %+v; want size 1, the rule, 4 terms, backfill done", d)
	}
	if code, body := e.Do(t, http.MethodGet, "/v1/segments/"+site, "", nil, false); code != 401 {
		t.Errorf("GET without token: got %d %s; want 401", code, body)
	}
	code, body = e.Get(t, "/v1/segments/"+site)
	if code != 200 || !strings.Contains(body, `"name":"mums"`) || !strings.Contains(body, `"size":1`) {
		t.Errorf("list: got %d %s", code, body)
	}
	code, body = e.Get(t, "/v1/visitors/"+site+"/"+profiletest.Visitor(1).String()+"/segments")
	if code != 200 || !strings.Contains(body, `"segments":[{"name":"mums","entered":"`) {
		t.Errorf("visitor segments: got %d %s", code, body)
	}
	if code, _ := e.Do(t, http.MethodDelete, "/v1/segments/"+site+"/mums", "", nil, true); code != 204 {
		t.Errorf("DELETE: got %d; want 204", code)
	}
	for _, p := range []string{"/v1/segments/" + site + "/mums", "/v1/segments/" + site + "/mums/members", "/v1/segments/" + site + "/mums/changes"} {
		if code, body := e.Get(t, p); code != 404 {
			t.Errorf("GET %s after DELETE: got %d %s; want 404", p, code, body)
		}
	}
	if code, body := e.Get(t, "/v1/visitors/"+site+"/"+profiletest.Visitor(1).String()+"/segments"); code != 200 || !strings.Contains(body, `"segments":[]`) {
		t.Errorf("visitor segments after DELETE: %d %s", code, body)
	}
}

type memberRow struct {
	Visitor  string
	Visitors []string
	Email    *string
	Entered  string
	Facts    map[string]any
	Cursor   string
}

func (e *segEnv) members(t testing.TB, path string) (rows []memberRow, cursor string) {
	t.Helper()
	code, body := e.Get(t, path)
	if code != 200 {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		var r memberRow
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("row %q: %s", sc.Text(), err)
		}
		if r.Cursor != "" {
			cursor = r.Cursor
			continue
		}
		rows = append(rows, r)
	}
	return rows, cursor
}

func TestMembersExport(t *testing.T) {
	e := newSegEnv(t)
	if code, body := e.putSegment(t, "mums", mumsRule); code != 201 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	var bs []*event.Batch
	for i := range 10 {
		evs := []event.Event{profiletest.View(t0, nutrilon), profiletest.View(t0, nutrilon)}
		switch {
		case i < 4: // persons 0 and 1 have two visitors each
			evs = append(evs, profiletest.Identify(t0, fmt.Sprintf("p%d@example.com", i/2)))
		case i < 7:
			evs = append(evs, profiletest.Identify(t0, fmt.Sprintf("Solo%d@Example.com", i)))
		}
		bs = append(bs, profiletest.Batch(site, profiletest.Visitor(i), evs...))
	}
	bs = append(bs, profiletest.Batch(site, profiletest.Visitor(99), profiletest.View(t0, lego))) // not a member
	e.Send(t, bs...)
	base := "/v1/segments/" + site + "/mums/members"

	rows, _ := e.members(t, base)
	if len(rows) != 10 {
		t.Fatalf("ndjson rows: got %d; want 10", len(rows))
	}
	for _, r := range rows {
		if r.Facts[`interest(brand, "Nutrilon")`] != 2.0 || r.Facts["top(age)"] != "0-3" || r.Entered == "" {
			t.Errorf("row %+v: want facts interest 2 and top 0-3", r)
		}
	}

	// Pages of 3 with the cursor: every member once.
	seen := map[string]int{}
	cursor := ""
	for page := 0; ; page++ {
		rs, next := e.members(t, base+"?limit=3&cursor="+cursor)
		for _, r := range rs {
			seen[r.Visitor]++
		}
		if next == "" {
			break
		}
		if page > 10 {
			t.Fatal("pagination does not end")
		}
		cursor = next
	}
	if len(seen) != 10 {
		t.Errorf("paged: got %d distinct; want 10", len(seen))
	}
	for v, n := range seen {
		if n != 1 {
			t.Errorf("paged: %s seen %d times", v, n)
		}
	}

	// by=email: one row per person; anonymous visitors left out.
	rows, _ = e.members(t, base+"?by=email")
	if len(rows) != 5 {
		t.Fatalf("by=email rows: got %d %+v; want 5 persons", len(rows), rows)
	}
	for _, r := range rows {
		want := 1
		if strings.HasPrefix(*r.Email, "p") {
			want = 2
		}
		if len(r.Visitors) != want {
			t.Errorf("person %s: got visitors %v; want %d", *r.Email, r.Visitors, want)
		}
	}

	// CSV parses with a standard parser.
	code, body := e.Get(t, base+"?format=csv")
	recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if code != 200 || err != nil {
		t.Fatalf("csv: %d %v\n%s", code, err, body)
	}
	if len(recs) != 11 || strings.Join(recs[0], "|") != `visitor|email|entered|top(age)|interest(brand, "Nutrilon")|interest(brand, "Merries")|interest(brand, "Philips")` {
		t.Fatalf("csv: got %d records, header %q", len(recs), recs[0])
	}
	emails := 0
	for _, r := range recs[1:] {
		if r[1] != "" {
			emails++
		}
		if r[3] != "0-3" || r[4] != "2" {
			t.Errorf("csv row %q: want top 0-3, interest 2", r)
		}
	}
	if emails != 7 {
		t.Errorf("csv rows with email: got %d; want 7", emails)
	}
	code, body = e.Get(t, base+"?format=csv&by=email")
	if recs, err := csv.NewReader(strings.NewReader(body)).ReadAll(); code != 200 || err != nil || len(recs) != 6 {
		t.Errorf("csv by=email: %d %v %d records; want 1+5", code, err, len(recs))
	}
	for _, q := range []string{"?format=xml", "?by=name", "?cursor=x", "?limit=0", "?holdout=10", "?holdout=100&salt=a", "?group=control"} {
		if code, body := e.Get(t, base+q); code != 400 {
			t.Errorf("%s: got %d %s; want 400", q, code, body)
		}
	}
}

func TestMembersHoldout(t *testing.T) {
	e := newSegEnv(t)
	if code, body := e.putSegment(t, "viewers", `count(view) >= 1`); code != 201 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	const n = 10000
	var bs []*event.Batch
	for i := range n {
		bs = append(bs, profiletest.Batch(site, profiletest.Visitor(i), profiletest.View(t0, lego)))
	}
	e.Send(t, bs...)
	base := "/v1/segments/" + site + "/viewers/members?holdout=10&salt=spring"
	split := func(path string) map[string]bool {
		rows, _ := e.members(t, path)
		m := map[string]bool{}
		for _, r := range rows {
			m[r.Visitor] = true
		}
		return m
	}
	treat, control := split(base), split(base+"&group=control")
	if len(treat)+len(control) != n {
		t.Fatalf("treatment %d + control %d; want %d", len(treat), len(control), n)
	}
	for v := range control {
		if treat[v] {
			t.Fatalf("%s in both groups", v)
		}
		if !membership.InHoldout("spring", v, 10) {
			t.Fatalf("%s in control but InHoldout false", v)
		}
	}
	// 10% of 10000: binomial sd = 30; ±5 sd.
	if len(control) < 850 || len(control) > 1150 {
		t.Errorf("control group: %d of %d; want 10%% ± 1.5%%", len(control), n)
	}
	again := split(base + "&group=control")
	if len(again) != len(control) {
		t.Errorf("same salt: control %d then %d", len(control), len(again))
	}
	for v := range control {
		if !again[v] {
			t.Errorf("same salt: %s left the control group", v)
		}
	}
	other := split("/v1/segments/" + site + "/viewers/members?holdout=10&salt=autumn&group=control")
	common := 0
	for v := range other {
		if control[v] {
			common++
		}
	}
	if common > len(control)/3 {
		t.Errorf("another salt: %d of %d in common; want an independent split (≈10%%)", common, len(control))
	}
}

func TestChangesFeedHTTP(t *testing.T) {
	e := newSegEnv(t)
	if code, body := e.putSegment(t, "carts", `since(cart) <= 1h`); code != 201 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	cart := func(ts int64) event.Event {
		return event.Event{ID: profiletest.NewEventID(), Type: event.TypeCart, TS: ts, Product: lego, HasProduct: true}
	}
	var bs []*event.Batch
	for i := range 25 {
		bs = append(bs, profiletest.Batch(site, profiletest.Visitor(i), cart(t0)))
	}
	e.Send(t, bs...)
	e.Clock.Set(t0 + 2*3600*1000)
	if _, err := e.Segments.RunDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Segments.Sequence(context.Background()); err != nil {
		t.Fatal(err)
	}
	type page struct {
		Changes []struct {
			Seq, Visitor, Change, At, Why string
			Facts                         map[string]any
		}
		Cursor string
	}
	after := ""
	seen := map[string]int{}
	for {
		code, body := e.Get(t, "/v1/segments/"+site+"/carts/changes?limit=10&after="+after)
		var p page
		if err := json.Unmarshal([]byte(body), &p); err != nil || code != 200 {
			t.Fatalf("changes: %d %s %v", code, body, err)
		}
		for _, c := range p.Changes {
			seen[c.Visitor+"/"+c.Change]++
			if c.Change == "left" && (c.At != "2026-01-31T01:00:00.001Z" || c.Why != "time") {
				t.Errorf("exit %+v: want at 2026-01-31T01:00:00.001Z (cart + 1h + 1ms), why time", c)
			}
		}
		if len(p.Changes) == 0 {
			if p.Cursor != after && after != "" {
				t.Errorf("empty page moved the cursor from %s to %s", after, p.Cursor)
			}
			break
		}
		after = p.Cursor
	}
	if len(seen) != 50 {
		t.Errorf("changes: got %d distinct; want 50", len(seen))
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s seen %d times", k, n)
		}
	}
	if code, body := e.Get(t, "/v1/segments/"+site+"/carts/changes?after=x"); code != 400 {
		t.Errorf("after=x: %d %s; want 400", code, body)
	}
}

func TestWebhookHTTP(t *testing.T) {
	e := newSegEnv(t)
	e.putSegment(t, "viewers", `count(view) >= 1`)
	path := "/v1/segments/" + site + "/viewers/webhook"
	if code, body := e.Do(t, http.MethodPut, path, "application/json", []byte(`{"url":"http://127.0.0.1:1/x","secret":"k"}`), true); code != 200 || !strings.Contains(body, `"delivered":"0"`) || strings.Contains(body, `"k"`) {
		t.Errorf("PUT webhook: %d %s", code, body)
	}
	if code, body := e.Do(t, http.MethodPut, path, "application/json", []byte(`{"url":"nope","secret":"k"}`), true); code != 400 {
		t.Errorf("PUT bad webhook: %d %s; want 400", code, body)
	}
	if code, _ := e.Do(t, http.MethodDelete, path, "", nil, true); code != 204 {
		t.Errorf("DELETE webhook: %d; want 204", code)
	}
	if code, _ := e.Get(t, path); code != 404 {
		t.Errorf("GET deleted webhook: %d; want 404", code)
	}
}

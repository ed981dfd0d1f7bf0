package query_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/profile/query"
)

type previewAnswer struct {
	Count     int  `json:"count"`
	Exact     bool `json:"exact"`
	Scanned   int  `json:"scanned"`
	FromIndex bool `json:"from_index"`
	Sample    []struct {
		Visitor string         `json:"visitor"`
		Email   string         `json:"email"`
		Facts   map[string]any `json:"facts"`
	} `json:"sample"`
}

// POST _preview counts what PUT then holds, with a sample and its facts,
// stores nothing, and refuses a bad rule with its position as PUT does.
func TestPreviewRule(t *testing.T) {
	e := newSegEnv(t)
	for i := range 30 {
		p := lego
		if i%3 == 0 {
			p = nutrilon
		}
		e.Send(t, profiletest.Batch(site, profiletest.Visitor(i), profiletest.View(t0, p), profiletest.View(t0, p), profiletest.Identify(t0, "u@example.com")))
	}
	preview := func(query, rule string) (int, string) {
		t.Helper()
		return e.Do(t, http.MethodPost, "/v1/segments/"+site+"/_preview"+query, "text/plain", []byte(rule), true)
	}
	for _, tc := range []struct {
		rule  string
		index bool
		want  int
	}{
		{mumsRule, true, 10},
		{`top(brand) == "Lego"`, false, 20},
	} {
		code, body := preview("?sample=2", tc.rule)
		var a previewAnswer
		if code != 200 || json.Unmarshal([]byte(body), &a) != nil {
			t.Fatalf("preview %q: got %d %s; want 200 JSON", tc.rule, code, body)
		}
		if a.Count != tc.want || !a.Exact || a.FromIndex != tc.index || len(a.Sample) != 2 || a.Sample[0].Email != "u@example.com" || len(a.Sample[0].Facts) == 0 {
			t.Errorf("preview %q: got %s; want count %d exact, from_index %v, 2 samples with email and facts", tc.rule, body, tc.want, tc.index)
		}
		if _, ok, _ := e.Segments.Definition(site, "_preview"); ok {
			t.Fatalf("preview stored a segment")
		}
		e.putSegment(t, "s", tc.rule)
		if n, _ := e.Segments.Size(site, "s"); n != a.Count {
			t.Errorf("preview %q counted %d; the saved segment holds %d", tc.rule, a.Count, n)
		}
	}
	for _, tc := range []struct {
		method, query, rule string
		code                int
		want                string
	}{
		{http.MethodPost, "", `since(cart) <= 24`, 400, "invalid rule: at 16: expected a duration"},
		{http.MethodPost, "?sample=101", `identified`, 400, `invalid sample="101": want 0..100`},
		{http.MethodPost, "?sample=x", `identified`, 400, `invalid sample="x"`},
		{http.MethodGet, "", ``, 405, "allowed: POST"},
		{http.MethodPut, "", `identified`, 405, "allowed: POST"},
	} {
		code, body := e.Do(t, tc.method, "/v1/segments/"+site+"/_preview"+tc.query, "text/plain", []byte(tc.rule), true)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s _preview%s %q: got %d %s; want %d containing %q", tc.method, tc.query, tc.rule, code, body, tc.code, tc.want)
		}
	}
	if code, _ := e.Do(t, http.MethodPost, "/v1/segments/"+site+"/_preview", "text/plain", []byte(`identified`), false); code != 401 {
		t.Errorf("preview without the token: got %d; want 401", code)
	}
}

// With Options.MaxPreviews (2) previews running, another answers 429 with
// Retry-After and the bound; with a slot free it runs and gives its slot
// back, also after a refusal.
func TestPreviewConcurrencyBound(t *testing.T) {
	e := newSegEnv(t)
	e.Send(t, profiletest.Batch(site, profiletest.Visitor(1), profiletest.View(t0, nutrilon)))
	preview := func() (int, http.Header, string) {
		t.Helper()
		return e.DoResponse(t, http.MethodPost, "/v1/segments/"+site+"/_preview", nil, []byte(`identified or not identified`), true)
	}
	hold := func() func() {
		t.Helper()
		release, ok := query.HoldPreview(e.Query)
		if !ok {
			t.Fatal("no preview slot free: a finished or refused preview kept its slot")
		}
		return release
	}
	first, second := hold(), hold()
	if _, ok := query.HoldPreview(e.Query); ok {
		t.Fatal("a third preview slot; want MaxPreviews 2")
	}
	if code, h, body := preview(); code != http.StatusTooManyRequests || h.Get("Retry-After") != "1" || !strings.Contains(body, "2 previews are running") {
		t.Errorf("preview with 2 running: got %d Retry-After %q %s; want 429, 1, the bound", code, h.Get("Retry-After"), body)
	}
	second()
	if code, _, body := preview(); code != http.StatusOK || !strings.Contains(body, `"count":1,`) {
		t.Errorf("preview with 1 running: got %d %s; want 200 counting 1", code, body)
	}
	second = hold() // the finished preview gave its slot back
	if code, _, _ := preview(); code != http.StatusTooManyRequests {
		t.Errorf("preview with 2 running again: got %d; want 429", code)
	}
	first()
	second()
	first, second = hold(), hold() // the refused ones took none
	first()
	second()
}

// The history API gives the sampled sizes, by step, and refuses bad
// arguments naming them.
func TestSegmentHistory(t *testing.T) {
	e := newSegEnv(t)
	e.putSegment(t, "viewers", `count(view) >= 1`)
	const minute = profiletest.Hour / 60
	for i := range 10 {
		e.Clock.Set(t0 + int64(i)*minute)
		e.Send(t, profiletest.Batch(site, profiletest.Visitor(i), profiletest.View(t0, lego)))
		if _, err := e.Segments.RecordSizes(); err != nil {
			t.Fatal(err)
		}
	}
	type answer struct {
		Step   *string `json:"step"`
		Points []struct {
			At   string `json:"at"`
			Size int    `json:"size"`
		} `json:"points"`
	}
	get := func(q string) answer {
		t.Helper()
		code, body := e.Get(t, "/v1/segments/"+site+"/viewers/history"+q)
		var a answer
		if code != 200 || json.Unmarshal([]byte(body), &a) != nil {
			t.Fatalf("history%s: got %d %s; want 200 JSON", q, code, body)
		}
		return a
	}
	a := get("")
	if len(a.Points) != 10 || a.Points[0].Size != 1 || a.Points[9].Size != 10 || a.Points[9].At != "2026-01-31T00:09:00.000Z" || a.Step != nil {
		t.Errorf("last 24 h: got %+v; want 10 points, sizes 1..10, the last at 00:09", a)
	}
	a = get("?from=2026-01-31T00:00:00Z&to=2026-01-31T00:09:00Z&step=5m")
	if len(a.Points) != 2 || a.Points[0].Size != 5 || a.Points[1].Size != 10 || a.Step == nil || *a.Step != "5m0s" {
		t.Errorf("step 5m: got %+v; want sizes 5 and 10", a)
	}
	if a := get("?from=2026-01-31T00:02:00Z&to=2026-01-31T00:03:00Z"); len(a.Points) != 2 || a.Points[0].Size != 3 {
		t.Errorf("from 00:02 to 00:03: got %+v; want sizes 3 and 4", a)
	}
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"viewers/history?step=0s", 400, `invalid step="0s"`},
		{"viewers/history?step=1ms&from=2026-01-01T00:00:00Z", 400, "at most 10000"},
		{"viewers/history?from=yesterday", 400, `invalid from="yesterday": want an RFC 3339 time`},
		{"viewers/history?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", 400, "after to="},
		{"nope/history", 404, `no segment "nope"`},
	} {
		if code, body := e.Get(t, "/v1/segments/"+site+"/"+tc.path); code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s: got %d %s; want %d containing %q", tc.path, code, body, tc.code, tc.want)
		}
	}
}

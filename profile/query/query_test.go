package query_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/profile/query"
	"github.com/affinityhq/affinity/tracker/event"
)

const (
	token = profiletest.Token
	site  = "shop"
	day   = profiletest.Day
	t0    = profiletest.T0 // event times start 30 days past the landmark
)

// env is the profile side with segment membership and the query API on
// 127.0.0.1:0. Its clock reads real time until a test sets it.
type env struct{ *profiletest.Env }

// newEnv starts an env, with the query options adjusted by mutate if not nil.
func newEnv(t testing.TB, mutate func(*query.Options)) *env {
	t.Helper()
	return &env{profiletest.Open(t, profiletest.Options{Serve: true, Query: mutate})}
}

func rfc3339(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano) }

// direct returns Σ w·2^(−(at−t)/H) over (w, t) pairs: the score computed
// without the log-space store.
func direct(h time.Duration, at int64, wts ...[2]float64) float64 {
	s := 0.0
	for _, wt := range wts {
		s += wt[0] * math.Exp2(-(float64(at)-wt[1])/float64(h.Milliseconds()))
	}
	return s
}

func near(got, want float64) bool {
	return math.Abs(got-want) <= 1e-9*math.Abs(want)
}

func TestAuth(t *testing.T) {
	e := newEnv(t, nil)
	for _, path := range []string{"/v1/visitors/shop/" + profiletest.Visitor(1).String(), "/v1/interests/shop/brand/x", "/v1/catalog/shop/p1"} {
		if code, body := e.Do(t, http.MethodGet, path, "", nil, false); code != http.StatusUnauthorized {
			t.Fatalf("GET %s without a token: got %d %q; want 401", path, code, body)
		}
	}
	if code, _ := e.Do(t, http.MethodPut, "/v1/catalog/shop", "text/csv", []byte("id\na\n"), false); code != http.StatusUnauthorized {
		t.Fatalf("PUT without a token: got %d; want 401", code)
	}
}

func TestVisitor(t *testing.T) {
	e := newEnv(t, nil)
	v := profiletest.Visitor(1)
	acme := event.Product{ID: "p1", Brand: "acme", Category: "baby/food", Age: "0-3", Price: 12, HasPrice: true}
	other := event.Product{ID: "p2", Brand: "other"}
	care := event.Product{ID: "p3", Brand: "Baby Care/2"}
	e.Send(t,
		profiletest.Batch(site, v, profiletest.View(t0, acme), profiletest.View(t0+3*day, other), profiletest.View(t0+4*day, care)),
		profiletest.Batch(site, v, event.Event{ID: profiletest.NewEventID(), Type: event.TypeCart, TS: t0 + 5*day, Product: acme, HasProduct: true},
			event.Event{ID: profiletest.NewEventID(), Type: event.TypeIdentify, TS: t0 + 5*day, Email: " Ann@Example.com "}))
	at := t0 + 10*day
	code, body := e.Get(t, "/v1/visitors/shop/"+v.String()+"?at="+rfc3339(at))
	if code != http.StatusOK {
		t.Fatalf("got %d %q; want 200", code, body)
	}
	var got struct {
		At        string `json:"at"`
		Email     string `json:"email"`
		Interests map[string][]struct {
			Value string  `json:"value"`
			Score float64 `json:"score"`
		} `json:"interests"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("cannot parse %s: %v", body, err)
	}
	h := 14 * 24 * time.Hour
	wantBrand := map[string]float64{
		"acme":        direct(h, at, [2]float64{1, float64(t0)}, [2]float64{3, float64(t0 + 5*day)}),
		"other":       direct(h, at, [2]float64{1, float64(t0 + 3*day)}),
		"Baby Care/2": direct(h, at, [2]float64{1, float64(t0 + 4*day)}),
	}
	if len(got.Interests["brand"]) != 3 {
		t.Fatalf("got brand interests %+v; want acme, other, Baby Care/2", got.Interests["brand"])
	}
	for _, it := range got.Interests["brand"] {
		if !near(it.Score, wantBrand[it.Value]) {
			t.Fatalf("brand %s: got score %v; want %v", it.Value, it.Score, wantBrand[it.Value])
		}
	}
	if got.Interests["brand"][0].Value != "acme" {
		t.Fatalf("got brands %+v; want acme first", got.Interests["brand"])
	}
	if wantAt := time.UnixMilli(at).UTC().Format(profile.TimeLayout); got.Email != "ann@example.com" || got.At != wantAt {
		t.Fatalf("got email %q at %q; want ann@example.com at %s", got.Email, got.At, wantAt)
	}

	// Values with '/' and escaped bytes in the path.
	for _, path := range []string{"/v1/interests/shop/category/baby/food", "/v1/interests/shop/category/baby", "/v1/interests/shop/brand/Baby%20Care%2F2"} {
		rows, _ := e.interests(t, path+"?at="+rfc3339(at))
		if len(rows) != 1 || rows[0].Visitor != v.String() || rows[0].Email != "ann@example.com" {
			t.Fatalf("GET %s: got %+v; want visitor %s with its email", path, rows, v)
		}
	}

	// The same profile read later has decayed by exactly one half-life.
	code, body2 := e.Get(t, "/v1/visitors/shop/"+v.String()+"?at="+rfc3339(at+14*day))
	if code != http.StatusOK || !strings.Contains(body2, `"brand":[{"value":"acme"`) {
		t.Fatalf("got %d %s", code, body2)
	}

	f := func(path string, wantCode int, wantBody string) {
		t.Helper()
		code, body := e.Get(t, path)
		if code != wantCode || !strings.Contains(body, wantBody) || strings.Count(body, "\n") != 1 {
			t.Fatalf("GET %s: got %d %q; want %d with one line containing %q", path, code, body, wantCode, wantBody)
		}
	}
	f("/v1/visitors/shop/"+profiletest.Visitor(2).String(), 404, "never seen")
	f("/v1/visitors/other-site/"+v.String(), 404, "never seen")
	f("/v1/visitors/shop/not-a-uuid", 400, `invalid visitor id "not-a-uuid"`)
	f("/v1/visitors/shop/"+v.String()+"?at=yesterday", 400, `invalid at="yesterday"`)
	f("/v1/visitors/shop", 404, "want /v1/visitors/{site}/{visitor}")
	f("/v1/visitors/"+strings.Repeat("s", 300)+"/"+v.String(), 400, "longer than 255 bytes")
	if code, _ := e.Do(t, http.MethodPost, "/v1/visitors/shop/"+v.String(), "", nil, true); code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: got %d; want 405", code)
	}
}

func TestDelete(t *testing.T) {
	e := newEnv(t, nil)
	v, w := profiletest.Visitor(1), profiletest.Visitor(2)
	p := event.Product{ID: "p1", Brand: "acme"}
	e.Send(t, profiletest.Batch(site, v, profiletest.View(t0, p)), profiletest.Batch(site, w, profiletest.View(t0, p)))
	path := "/v1/visitors/shop/" + v.String()
	if code, body := e.Do(t, http.MethodDelete, path, "", nil, true); code != http.StatusNoContent {
		t.Fatalf("DELETE: got %d %q; want 204", code, body)
	}
	if code, body := e.Get(t, path); code != http.StatusNotFound {
		t.Fatalf("GET after DELETE: got %d %q; want 404", code, body)
	}
	if code, body := e.Do(t, http.MethodDelete, path, "", nil, true); code != http.StatusNotFound {
		t.Fatalf("second DELETE: got %d %q; want 404", code, body)
	}
	_, body := e.Get(t, "/v1/interests/shop/brand/acme?at="+rfc3339(t0))
	if strings.Contains(body, v.String()) || !strings.Contains(body, w.String()) {
		t.Fatalf("interests after DELETE: got %s; want only %s", body, w)
	}
}

// row is one line of GET /v1/interests.
type row struct {
	Visitor string  `json:"visitor"`
	Score   float64 `json:"score"`
	Email   string  `json:"email"`
	Cursor  string  `json:"cursor"`
	Error   string  `json:"error"`
}

func (e *env) interests(t testing.TB, path string) (rows []row, cursor string) {
	t.Helper()
	code, body := e.Get(t, path)
	if code != http.StatusOK {
		t.Fatalf("GET %s: got %d %q", path, code, body)
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		var r row
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("bad row %q: %v", sc.Text(), err)
		}
		switch {
		case r.Error != "":
			t.Fatalf("GET %s: error row %q", path, r.Error)
		case r.Cursor != "":
			if cursor != "" {
				t.Fatalf("two cursors in %s", body)
			}
			cursor = r.Cursor
		case cursor != "":
			t.Fatalf("a row after the cursor in %s", body)
		default:
			rows = append(rows, r)
		}
	}
	return rows, cursor
}

// seedInterests posts n visitors with 1..3 views of brand "acme" at
// different times, every 7th identified, and returns per visitor the
// directly computed score at at.
func seedInterests(t testing.TB, e *env, n int, at int64) map[string]float64 {
	t.Helper()
	h := e.Config.HalfLife(profile.DimBrand)
	want := make(map[string]float64, n)
	const chunk = 2000
	var batches []*event.Batch
	for i := range n {
		v := profiletest.Visitor(i)
		var evs []event.Event
		var wts [][2]float64
		for j := range 1 + i%3 {
			ts := t0 + int64(i*7919+j*104729)*1_000_003%(20*day)
			evs = append(evs, profiletest.View(ts, event.Product{ID: "p", Brand: "acme"}))
			wts = append(wts, [2]float64{1, float64(ts)})
		}
		if i%7 == 0 {
			evs = append(evs, event.Event{ID: profiletest.NewEventID(), Type: event.TypeIdentify, TS: t0, Email: fmt.Sprintf("v%d@example.com", i)})
		}
		batches = append(batches, profiletest.Batch(site, v, evs...))
		want[v.String()] = direct(h, at, wts...)
		if len(batches) == chunk {
			e.Send(t, batches...)
			batches = batches[:0]
		}
	}
	if len(batches) > 0 {
		e.Send(t, batches...)
	}
	return want
}

// checkInterests checks rows against the brute-force answer: exactly the
// visitors scoring ≥ min, best first, each with its direct score.
func checkInterests(t testing.TB, rows []row, want map[string]float64, min float64) {
	t.Helper()
	var above []string
	for v, s := range want {
		if math.Abs(s-min) <= 1e-9*min {
			t.Fatalf("BUG: visitor %s scores %v, too near min %v for an exact test", v, s, min)
		}
		if s >= min {
			above = append(above, v)
		}
	}
	got := make([]string, len(rows))
	seen := make(map[string]bool, len(rows))
	for i, r := range rows {
		got[i] = r.Visitor
		if seen[r.Visitor] {
			t.Fatalf("visitor %s listed twice", r.Visitor)
		}
		seen[r.Visitor] = true
		if !near(r.Score, want[r.Visitor]) {
			t.Fatalf("visitor %s: got score %v; want %v", r.Visitor, r.Score, want[r.Visitor])
		}
		if i > 0 && r.Score > rows[i-1].Score {
			t.Fatalf("row %d scores %v after %v: not best first", i, r.Score, rows[i-1].Score)
		}
	}
	slices.Sort(above)
	slices.Sort(got)
	if !slices.Equal(got, above) {
		t.Fatalf("got %d visitors; want the %d above %v", len(got), len(above), min)
	}
}

// TestInterestsWhileRebuilt: while the interest index is rebuilt from the
// stored profiles (the builder's start), /v1/interests answers 503 with
// the reason, never a partial answer.
func TestInterestsWhileRebuilt(t *testing.T) {
	e := newEnv(t, nil)
	at := t0 + 25*day
	want := seedInterests(t, e, 20, at)
	path := "/v1/interests/shop/brand/acme?min=0.001&at=" + rfc3339(at)
	w, err := e.DB.NewIndexWriter() // what the builder's start does first
	if err != nil {
		t.Fatal(err)
	}
	if code, body := e.Get(t, path); code != http.StatusServiceUnavailable || !strings.Contains(body, "rebuilt from the stored profiles") {
		t.Fatalf("GET during the rebuild: %d %s; want 503 naming the rebuild", code, body)
	}
	w.Flush()
	if code, body := e.Get(t, path); code != http.StatusOK || body != "" {
		t.Fatalf("GET after an empty rebuild: %d %q; want 200 and no rows", code, body)
	}
	if len(want) == 0 {
		t.Fatal("BUG: no visitor seeded")
	}
}

func TestInterests(t *testing.T) {
	e := newEnv(t, func(o *query.Options) { o.MaxLimit = 1000 })
	at := t0 + 25*day
	want := seedInterests(t, e, 1000, at)
	const min = 0.9
	base := "/v1/interests/shop/brand/acme?min=0.9&at=" + rfc3339(at)

	all, cursor := e.interests(t, base)
	if cursor != "" {
		t.Fatalf("got a cursor without a limit")
	}
	checkInterests(t, all, want, min)
	if len(all) < 100 || len(all) > 900 {
		t.Fatalf("BUG: %d of 1000 visitors above %v: pick a min that splits them", len(all), min)
	}
	emails := 0
	for _, r := range all {
		if r.Email != "" {
			emails++
		}
	}
	if emails == 0 {
		t.Fatalf("no row carries an email")
	}

	// Pages of 37: the same rows, none missed or repeated. The later pages
	// are asked without at=: the cursor carries it.
	var paged []row
	path := base + "&limit=37"
	for pages := 0; ; pages++ {
		rows, cursor := e.interests(t, path)
		if len(rows) > 37 || pages > 100 {
			t.Fatalf("page %d: %d rows", pages, len(rows))
		}
		paged = append(paged, rows...)
		if cursor == "" {
			break
		}
		path = "/v1/interests/shop/brand/acme?min=0.9&limit=37&cursor=" + cursor
	}
	if !slices.Equal(paged, all) {
		t.Fatalf("paged rows differ from the whole list: %d vs %d rows", len(paged), len(all))
	}

	// Everyone, and no one.
	rows, _ := e.interests(t, "/v1/interests/shop/brand/acme?at="+rfc3339(at))
	checkInterests(t, rows, want, 0)
	if rows, _ := e.interests(t, "/v1/interests/shop/brand/acme?min=1e9"); len(rows) != 0 {
		t.Fatalf("min=1e9: got %d rows", len(rows))
	}
	if rows, _ := e.interests(t, "/v1/interests/shop/brand/nobody"); len(rows) != 0 {
		t.Fatalf("unknown value: got %d rows", len(rows))
	}

	f := func(path string, wantCode int, wantBody string) {
		t.Helper()
		code, body := e.Get(t, path)
		if code != wantCode || !strings.Contains(body, wantBody) {
			t.Fatalf("GET %s: got %d %q; want %d containing %q", path, code, body, wantCode, wantBody)
		}
	}
	f("/v1/interests/shop/colour/red", 400, `invalid dimension "colour"`)
	f("/v1/interests/shop/product/p1", 400, `invalid dimension product: not in the interest index (--index-dims brand,category,age,price)`)
	f("/v1/interests/shop/brand/acme?min=-1", 400, "invalid min")
	f("/v1/interests/shop/brand/acme?min=NaN", 400, "invalid min")
	f("/v1/interests/shop/brand/acme?limit=0", 400, "invalid limit")
	f("/v1/interests/shop/brand/acme?limit=1001", 400, "want 1..1000")
	f("/v1/interests/shop/brand/acme?cursor=xyz", 400, "invalid cursor")
	f("/v1/interests/shop/brand/acme?at=2026", 400, "invalid at")
	f("/v1/interests/shop/brand", 404, "want /v1/interests/{site}/{dimension}/{value}")
}

// TestInterestsBruteForce is the acceptance check: on 100k
// visitors, the list is exactly the visitors a brute-force scan of the
// directly computed scores puts above θ.
func TestInterestsBruteForce(t *testing.T) {
	if testing.Short() {
		t.Skip("100k visitors")
	}
	e := newEnv(t, nil)
	at := t0 + 22*day
	want := seedInterests(t, e, 100_000, at)
	for _, min := range []float64{0.5, 1.3} {
		rows, _ := e.interests(t, fmt.Sprintf("/v1/interests/shop/brand/acme?min=%g&at=%s", min, rfc3339(at)))
		checkInterests(t, rows, want, min)
		t.Logf("min=%g: %d of %d visitors", min, len(rows), len(want))
	}
}

func TestCatalog(t *testing.T) {
	e := newEnv(t, func(o *query.Options) { o.MaxCatalogBytes = 4096 })
	ndjson := `{"id":"p1","brand":"CatBrand","category":"baby/food","age":"0-3","price":12.5,"name":"Formula"}` + "\n" +
		`{"id":"p2","brand":"Other"}` + "\n"
	code, body := e.Do(t, http.MethodPut, "/v1/catalog/shop", "application/x-ndjson", []byte(ndjson), true)
	if code != http.StatusOK || body != "{\"products\":2}\n" {
		t.Fatalf("PUT: got %d %q; want 200 {\"products\":2}", code, body)
	}
	code, body = e.Get(t, "/v1/catalog/shop/p1")
	if want := `{"id":"p1","brand":"CatBrand","category":"baby/food","age":"0-3","price":12.5,"attrs":{"name":"Formula"}}` + "\n"; code != 200 || body != want {
		t.Fatalf("GET product: got %d %q; want %q", code, body, want)
	}

	// An event with only a product id is scored on the catalog's brand;
	// one with an inline brand on its own.
	v := profiletest.Visitor(1)
	e.Send(t, profiletest.Batch(site, v, profiletest.View(t0, event.Product{ID: "p1"}), profiletest.View(t0, event.Product{ID: "p2", Brand: "Inline"})))
	_, body = e.Get(t, "/v1/visitors/shop/"+v.String()+"?at="+rfc3339(t0))
	for _, want := range []string{`"value":"CatBrand","score":1`, `"value":"Inline","score":1`, `"value":"baby/food"`, `"value":"0-3"`} {
		if !strings.Contains(body, want) {
			t.Fatalf("profile %s lacks %s", body, want)
		}
	}
	if strings.Contains(body, `"Other"`) {
		t.Fatalf("profile %s: the catalog's brand beat the inline one", body)
	}

	// CSV upserts.
	code, body = e.Do(t, http.MethodPut, "/v1/catalog/shop", "text/csv", []byte("id,brand\np2,Renamed\np3,New\n"), true)
	if code != 200 || body != "{\"products\":2}\n" {
		t.Fatalf("PUT CSV: got %d %q", code, body)
	}
	if _, body := e.Get(t, "/v1/catalog/shop/p2"); !strings.Contains(body, "Renamed") {
		t.Fatalf("p2 after the CSV: %s", body)
	}

	// A bad row refuses the whole upload: p4 on line 1 is not stored.
	f := func(ct, data string, wantCode int, wantBody string) {
		t.Helper()
		code, body := e.Do(t, http.MethodPut, "/v1/catalog/shop", ct, []byte(data), true)
		if code != wantCode || !strings.Contains(body, wantBody) || strings.Count(body, "\n") != 1 {
			t.Fatalf("PUT %s %q: got %d %q; want %d with one line containing %q", ct, data, code, body, wantCode, wantBody)
		}
	}
	f("application/x-ndjson", "{\"id\":\"p4\"}\n{\"id\":\"p5\",\"price\":-1}\n", 400, "line 2: price must not be negative")
	f("text/csv", "id,price\np4,1\np5\n", 400, "line 3: wrong number of cells")
	f("application/xml", "<yml_catalog><shop><offers><offer id=\"p4\"><categoryId>9</categoryId></offer></offers></shop></yml_catalog>", 400, "categoryId \"9\" is not in")
	f("text/plain", "id\np4\n", 415, "unsupported Content-Type")
	f("text/csv", "id\n"+strings.Repeat("p4\n", 2000), 413, "--catalog-max-bytes")
	zf := func(data string, wantCode int, wantBody string) {
		t.Helper()
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		_, _ = zw.Write([]byte(data))
		_ = zw.Close()
		req, _ := http.NewRequest(http.MethodPut, e.URL+"/v1/catalog/shop", &zb)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "text/csv")
		req.Header.Set("Content-Encoding", "gzip")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != wantCode || !strings.Contains(string(b), wantBody) {
			t.Fatalf("gzip PUT: got %d %q; want %d containing %q", resp.StatusCode, b, wantCode, wantBody)
		}
	}
	zf("id,brand\np6,Zipped\n", 200, `{"products":1}`)
	zf("id\n"+strings.Repeat("p4\n", 2000), 413, "after gunzip") // 6 KB inflated, far less sent
	if _, body := e.Get(t, "/v1/catalog/shop/p6"); !strings.Contains(body, "Zipped") {
		t.Fatalf("p6 after the gzip upload: %s", body)
	}
	if code, body := e.Get(t, "/v1/catalog/shop/p4"); code != 404 || !strings.Contains(body, `no product "p4"`) {
		t.Fatalf("GET p4 after refused uploads: got %d %q; want 404", code, body)
	}
	if code, _ := e.Get(t, "/v1/catalog/shop"); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET /v1/catalog/shop: got %d; want 405", code)
	}
}

// TestDeleteNotOwned: a DELETE of a visitor whose partition this node's
// builder does not own (another node of its group does) answers 503 with
// the partition, not 500.
func TestDeleteNotOwned(t *testing.T) {
	e := &env{profiletest.Open(t, profiletest.Options{Serve: true, Builder: func(o *builder.Options) { o.Partitions = []int{0} }})}
	mine, theirs := e.VisitorOn(site, 0, 0), e.VisitorOn(site, 1, 0)
	e.Send(t, profiletest.Batch(site, mine, profiletest.View(t0, event.Product{ID: "p1"})))
	code, body := e.Do(t, http.MethodDelete, "/v1/visitors/shop/"+theirs.String(), "", nil, true)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "partition 1 is not owned by this node") {
		t.Fatalf("DELETE of a visitor of partition 1: got %d %q; want 503 naming partition 1", code, body)
	}
	if code, body := e.Do(t, http.MethodDelete, "/v1/visitors/shop/"+mine.String(), "", nil, true); code != http.StatusNoContent {
		t.Fatalf("DELETE of a visitor of owned partition 0: got %d %q; want 204", code, body)
	}
}

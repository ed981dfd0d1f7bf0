package query_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/tracker/event"
)

// TestPersonSegmentAPI: PUT ?per=person defines a per-person segment,
// echoed by GET and the list; a bad per is a 400 naming it; the members
// export has one row per person — the email, both devices, the merged
// facts — in NDJSON and CSV.
func TestPersonSegmentAPI(t *testing.T) {
	e := newEnv(t, nil)
	e.Clock.Set(t0 + day)
	if code, body := e.Do(t, http.MethodPut, "/v1/segments/shop/fans?per=people", "text/plain", []byte(`count(view) >= 3`), true); code != http.StatusBadRequest ||
		!strings.Contains(body, `invalid per "people": want visitor or person`) {
		t.Fatalf("PUT ?per=people: %d %s; want 400 naming the per", code, body)
	}
	if code, body := e.Do(t, http.MethodPut, "/v1/segments/shop/fans?per=person", "text/plain", []byte(`count(view) >= 3`), true); code != http.StatusCreated ||
		!strings.Contains(body, `"per":"person"`) {
		t.Fatalf("PUT ?per=person: %d %s; want 201 with per person", code, body)
	}
	if _, body := e.Get(t, "/v1/segments/shop"); !strings.Contains(body, `"name":"fans","per":"person"`) {
		t.Fatalf("list: %s; want fans per person", body)
	}
	vs := visitorsOnPartitions(e, site, 2)
	a, b := vs[0], vs[1]
	lego := event.Product{ID: "p1", Brand: "lego", Category: "toys"}
	duplo := event.Product{ID: "p2", Brand: "duplo", Category: "toys"}
	e.Send(t,
		profiletest.Batch(site, a, profiletest.View(t0, lego), profiletest.View(t0+1, lego), profiletest.Identify(t0+2, "ann@example.com")),
		profiletest.Batch(site, b, profiletest.View(t0+3, duplo), profiletest.View(t0+4, duplo), profiletest.Identify(t0+5, "ANN@example.com")),
	)
	_, body := e.Get(t, "/v1/segments/shop/fans/members")
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if len(lines) != 1 {
		t.Fatalf("members: %q; want one row", body)
	}
	var row struct {
		Email    string
		Visitors []string
		Person   string
		Facts    map[string]any
	}
	if err := json.Unmarshal([]byte(lines[0]), &row); err != nil {
		t.Fatalf("members row %s: %s", lines[0], err)
	}
	slices.Sort(row.Visitors)
	want := []string{a.String(), b.String()}
	slices.Sort(want)
	if row.Email != "ann@example.com" || !slices.Equal(row.Visitors, want) || row.Person != membership.PersonID(site, "e:ann@example.com").String() ||
		row.Facts["count(view)"] != 4.0 {
		t.Fatalf("members row %s; want ann@example.com, visitors %v, person id, count(view) 4 (merged)", lines[0], want)
	}
	_, csv := e.Get(t, "/v1/segments/shop/fans/members?format=csv")
	if rows := strings.Split(strings.TrimSpace(csv), "\r\n"); len(rows) != 2 || !strings.Contains(rows[1], a.String()) || !strings.Contains(rows[1], b.String()) ||
		!strings.HasSuffix(rows[1], ",ann@example.com,2026-02-01T00:00:00.000Z,4") {
		t.Fatalf("csv members: %q; want the header and one row with both visitors, the email and count(view) 4", csv)
	}
	// Back to per visitor: a change like a new rule; nobody alone has 3.
	if code, body := e.Do(t, http.MethodPut, "/v1/segments/shop/fans", "text/plain", []byte(`count(view) >= 3`), true); code != http.StatusOK ||
		!strings.Contains(body, `"per":"visitor"`) {
		t.Fatalf("PUT per visitor: %d %s", code, body)
	}
	if bf := e.Segments.BackfillOf(site, "fans"); bf != nil {
		bf.Wait()
	}
	if _, body := e.Get(t, "/v1/segments/shop/fans/members"); strings.TrimSpace(body) != "" {
		t.Fatalf("members per visitor: %q; want none", body)
	}
}

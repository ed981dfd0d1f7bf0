package query_test

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
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
	if rows := strings.Split(strings.TrimSpace(csv), "\r\n"); len(rows) != 2 || !strings.HasPrefix(rows[1], row.Person+",") || !strings.Contains(rows[1], a.String()) || !strings.Contains(rows[1], b.String()) ||
		!strings.HasSuffix(rows[1], ",ann@example.com,2026-02-01T00:00:00.000Z,4") {
		t.Fatalf("csv members: %q; want the header and one row: the person id, both visitors, the email and count(view) 4", csv)
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

// TestPersonSegmentCSVPages: a per-person segment's CSV export leads each
// row with the person id, and paging it with the last row's first 36
// characters as the cursor gives the whole export, in every variant: the
// NDJSON page of the same limit ends with that id as its cursor.
func TestPersonSegmentCSVPages(t *testing.T) {
	e := newEnv(t, nil)
	e.Clock.Set(t0 + day)
	if code, body := e.Do(t, http.MethodPut, "/v1/segments/shop/fans?per=person", "text/plain", []byte(`count(view) >= 1`), true); code != http.StatusCreated {
		t.Fatalf("PUT: %d %s", code, body)
	}
	lego := event.Product{ID: "p1", Brand: "lego", Category: "toys"}
	var bs []*event.Batch
	keys := map[string]string{} // visitor → its person's key
	for i := range 40 {
		v := profiletest.Visitor(300 + i)
		evs := []event.Event{profiletest.View(t0+int64(i), lego)}
		switch {
		case i%7 == 6: // anonymous: in no per-person segment
		case i%7 == 5: // a person of a customer id alone: no email
			evs = append(evs, profiletest.IdentifyCustomer(t0+100, fmt.Sprintf("c%d", i), ""))
			keys[v.String()] = fmt.Sprintf("c:c%d", i)
		default: // persons of two visitors, mostly
			evs = append(evs, profiletest.Identify(t0+100, fmt.Sprintf("p%d@example.com", i/2)))
			keys[v.String()] = fmt.Sprintf("e:p%d@example.com", i/2)
		}
		bs = append(bs, profiletest.Batch(site, v, evs...))
	}
	e.Send(t, bs...)
	const header = "person,visitor,email,entered,count(view)"
	for _, args := range []string{"", "&by=email", "&facts=false", "&holdout=30&salt=s", "&holdout=30&salt=s&group=control", "&by=email&holdout=30&salt=s"} {
		t.Run(args, func(t *testing.T) {
			_, whole := e.Get(t, "/v1/segments/shop/fans/members?format=csv"+args)
			rows := strings.Split(strings.TrimSuffix(whole, "\r\n"), "\r\n")
			if rows[0] != header {
				t.Fatalf("header %q; want %q", rows[0], header)
			}
			if len(rows) < 5 {
				t.Fatalf("%d rows; want several pages of 3\n%s", len(rows)-1, whole)
			}
			for _, row := range rows[1:] {
				f, err := csv.NewReader(strings.NewReader(row)).Read()
				if err != nil || len(f) < 4 {
					t.Fatalf("row %q: %v; want person,visitor,email,entered…", row, err)
				}
				key := keys[strings.Fields(f[1])[0]]
				if f[0] != membership.PersonID(site, key).String() {
					t.Errorf("row %q: person %s; want the id of %s, %s", row, f[0], key, membership.PersonID(site, key))
				}
			}
			var paged []string
			cursor, ndCursors := "", 0
			for pages := 0; ; pages++ {
				if pages > 40 {
					t.Fatal("more than 40 pages")
				}
				_, page := e.Get(t, "/v1/segments/shop/fans/members?format=csv&limit=3"+args+"&cursor="+cursor)
				lines := strings.Split(strings.TrimSuffix(page, "\r\n"), "\r\n")
				if lines[0] != rows[0] {
					t.Fatalf("page %d: header %q; want %q", pages, lines[0], rows[0])
				}
				if len(lines) == 1 {
					break
				}
				paged = append(paged, lines[1:]...)
				_, nd := e.Get(t, "/v1/segments/shop/fans/members?limit=3"+args+"&cursor="+cursor)
				cursor = lines[len(lines)-1][:36]
				if !strings.Contains(nd, `{"cursor":"`) {
					continue
				}
				ndCursors++
				if !strings.HasSuffix(nd, `{"cursor":"`+cursor+"\"}\n") {
					t.Fatalf("page %d: the NDJSON page ends\n%s\nwant the cursor %s of the CSV page's last row", pages, nd, cursor)
				}
			}
			if ndCursors == 0 {
				t.Error("no NDJSON page ended with a cursor")
			}
			if !slices.Equal(paged, rows[1:]) {
				t.Fatalf("pages of 3:\n%s\nwant the whole export's rows\n%s", strings.Join(paged, "\n"), strings.Join(rows[1:], "\n"))
			}
		})
	}
}

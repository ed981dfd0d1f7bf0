package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/tracker/event"
)

// enteredAt matches the instants a segment's members entered it (JSON and
// CSV): each node's clock when it evaluated them.
var enteredAt = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`)

// TestClusterAnyNodeAnswers runs one collector, two builders in a group
// and a reference builder pinned to every partition, on a 3-broker kfake,
// with the same segment defined on each. Every visitor and person lookup,
// the members export (NDJSON and CSV, by visitor and by email, paged with
// each page's cursor resumed on the other node) and the interest list asked of either member
// equal the reference's bytes. Then one member is SIGKILLed and the other
// asked at once and until it owns every partition and caught up: each
// answer is a 503 naming a partition, or the reference's whole answer.
func TestClusterAnyNodeAnswers(t *testing.T) {
	const parts, visitors, site = 4, 40, "e2e"
	col, ref, b1, b2, _ := startBuildGroup(t, parts, site, "events")
	nodes := []*proc{b1, b2}
	for _, p := range []*proc{ref, b1} {
		// The members share definitions (--defs-topic); the reference,
		// pinned by --own, gets its own.
		if code, body := apiDo(t, http.MethodPut, p.api+"/v1/segments/"+site+"/fans", "text/plain", []byte(`count(view) >= 1`)); code != http.StatusCreated {
			t.Fatalf("PUT segment: %d %s", code, body)
		}
	}
	waitUntil(t, "b2 holding the segment b1 defined", func() bool {
		code, _ := apiDo(t, http.MethodGet, b2.api+"/v1/segments/"+site+"/fans", "", nil)
		return code == http.StatusOK
	})

	// Visitors on every partition, views of three brands; persons of
	// several devices linked by email and, transitively, customer id.
	now := time.Now().UnixMilli()
	vs := make([]string, visitors)
	brands := []string{"Lego", "Duplo", "Nutrilon"}
	client := &http.Client{Timeout: 30 * time.Second}
	for i := range vs {
		vs[i] = uuidString()
		evs := []string{}
		for k := range 1 + i%3 {
			b := brands[(i+k)%3]
			evs = append(evs, fmt.Sprintf(`{"id":%q,"t":"view","ts":%d,"product":{"id":"p-%d","brand":%q,"price":%d}}`, uuidString(), now-int64(i*60000+k*1000), i, b, 5+i))
		}
		switch {
		case i%4 == 0:
			evs = append(evs, fmt.Sprintf(`{"id":%q,"t":"identify","ts":%d,"email":"p%d@example.com"}`, uuidString(), now-int64(i*1000), i%12))
		case i%4 == 1:
			evs = append(evs, fmt.Sprintf(`{"id":%q,"t":"identify","ts":%d,"email":"p%d@example.com","customer_id":"c-%d"}`, uuidString(), now-int64(i*1000), (i-1)%12, i%5))
		case i%4 == 2:
			evs = append(evs, fmt.Sprintf(`{"id":%q,"t":"identify","ts":%d,"customer_id":"c-%d"}`, uuidString(), now-int64(i*1000), (i-1)%5))
		}
		body := fmt.Sprintf(`{"site":%q,"v":%q,"events":[%s]}`, site, vs[i], strings.Join(evs, ","))
		if st := post(client, col.collector, []byte(body)); st != http.StatusAccepted {
			t.Fatalf("visitor %d: status %d", i, st)
		}
	}
	persons := []string{"nobody@example.com"}
	for i := range 12 {
		persons = append(persons, fmt.Sprintf("p%d@example.com", i))
	}
	for i := range 5 {
		persons = append(persons, fmt.Sprintf("c-%d", i))
	}
	at := url.QueryEscape(time.Now().Add(time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339))
	for _, p := range []*proc{ref, b1, b2} {
		profilesWhenIdle(t, p, site, at, nil)
	}

	// same asks both members path and wants the reference's answer.
	same := func(path string) string {
		t.Helper()
		return sameOnEvery(t, ref, nodes, path)
	}
	for _, v := range vs {
		same("/v1/visitors/" + site + "/" + v + "?at=" + at)
		same("/v1/visitors/" + site + "/" + v + "/segments")
	}
	multi := 0
	for _, id := range persons {
		if body := same("/v1/people/" + site + "/" + url.PathEscape(id) + "?at=" + at); strings.Count(body, `","`) > 0 && strings.Contains(body, `"visitors":["`) {
			multi++
		}
	}
	if multi == 0 {
		t.Fatalf("no person of several devices among %v", persons)
	}
	membersPath := "/v1/segments/" + site + "/fans/members?at=" + at
	if all := same(membersPath); strings.Count(all, "\n") != visitors {
		t.Fatalf("members: %d rows; want %d:\n%s", strings.Count(all, "\n"), visitors, all)
	}
	same(membersPath + "&format=csv")
	// Pages of 7, alternating the node asked: each resumes the other's
	// cursor, and the pages are the reference's.
	for _, format := range []string{"ndjson", "csv"} {
		if rows := pagesAlike(t, ref, nodes, membersPath+"&format="+format, format, 7); rows != visitors {
			t.Fatalf("%s pages: %d rows; want %d", format, rows, visitors)
		}
	}
	// By email: a row per email (three here) joins its members of every
	// partition, whichever node owns them; pages of one.
	byEmail := same(membersPath + "&by=email")
	same(membersPath + "&by=email&format=csv")
	emailRows := strings.Count(byEmail, "\n")
	if !regexp.MustCompile(`"visitors":\["[^"]+","`).MatchString(byEmail) || emailRows < 3 {
		t.Fatalf("by=email: %d rows, none of several visitors:\n%s", emailRows, byEmail)
	}
	for _, format := range []string{"ndjson", "csv"} {
		if rows := pagesAlike(t, ref, nodes, membersPath+"&by=email&format="+format, format, 1); rows != emailRows {
			t.Fatalf("by=email %s pages: %d rows; want %d", format, rows, emailRows)
		}
	}
	interestsPath := "/v1/interests/" + site + "/brand/Lego?min=0.001&at=" + at
	same(interestsPath)
	if rows := pagesAlike(t, ref, nodes, interestsPath, "ndjson", 5); rows <= 10 {
		t.Fatalf("interests: %d rows; want several pages of 5", rows)
	}

	// The changes feed: two pages of 7, each asked of the other node (the
	// rest is read across the SIGKILL below).
	feed := &e2eFeed{path: "/v1/segments/" + site + "/fans/changes?limit=7", seen: map[string]int{}}
	for page := range 2 {
		if n := feed.page(t, nodes[page%2], false); n != 7 {
			t.Fatalf("changes page %d on b%d: %d records; want 7", page, page%2+1, n)
		}
	}

	// A forced rebalance: b2 dies; b1 is asked at once, and until it owns
	// every partition and answers them: never a partial answer.
	wantMembers := same(membersPath)
	onB2, b2Owns := "", ","+ownedOf(t, b2)+","
	for _, v := range vs {
		u, _ := event.ParseUUID([]byte(v))
		if strings.Contains(b2Owns, fmt.Sprintf(",%d,", storage.PartitionFor(event.AppendLogKey(nil, site, u), parts))) {
			onB2 = v
			break
		}
	}
	if onB2 == "" {
		t.Fatalf("no visitor on b2's partitions %s", b2Owns)
	}
	wantVisitor := same("/v1/visitors/" + site + "/" + onB2 + "?at=" + at)
	wantPerson := same("/v1/people/" + site + "/p0@example.com?at=" + at)
	// b1's answers from now on are compared with what the group answered.
	if err := b2.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-b2.done
	counts := map[string]int{}
	deadline := time.Now().Add(60 * time.Second)
	for whole := 0; whole < 3; {
		if time.Now().After(deadline) {
			t.Fatalf("b1 never answered whole after the SIGKILL: %v", counts)
		}
		all := true
		for _, q := range []struct {
			path, want string
			entered    bool // the members' entry instants are b1's clock's when it rebuilt a moved partition
		}{
			{membersPath, wantMembers, true},
			{"/v1/visitors/" + site + "/" + onB2 + "?at=" + at, wantVisitor, false},
			{"/v1/people/" + site + "/p0@example.com?at=" + at, wantPerson, false},
		} {
			code, body := apiDo(t, http.MethodGet, b1.api+q.path, "", nil)
			got, want := body, q.want
			if q.entered {
				got, want = enteredAt.ReplaceAllString(got, "T"), enteredAt.ReplaceAllString(want, "T")
			}
			switch {
			case code == http.StatusOK && got == want:
				counts["whole"]++
			case code == http.StatusServiceUnavailable && strings.Contains(body, "partition"):
				counts["503"]++
				all = false
			default:
				t.Fatalf("GET %s on b1 during the rebalance: %d\n%s\nwant 503 naming a partition, or the reference's\n%s", q.path, code, body, q.want)
			}
		}
		if all && ownedOf(t, b1) == "0,1,2,3" {
			whole++
		}
		time.Sleep(100 * time.Millisecond)
	}
	if counts["503"] == 0 {
		t.Errorf("no 503 during the rebalance (%v): the test did not see the partitions move", counts)
	}
	t.Logf("answers during the rebalance: %v", counts)

	// The feed's cursor, resumed on the survivor, which rebuilt b2's
	// partitions: every change of the reference's feed, no id twice.
	for feed.page(t, b1, true) > 0 {
	}
	want := referenceFeed(t, ref, "/v1/segments/"+site+"/fans/changes")
	if len(want) != visitors {
		t.Fatalf("the reference's feed: %d changes; want one entry per visitor (%d)", len(want), visitors)
	}
	// The survivor re-applied b2's partitions, ending its catch-up commit
	// at their emission marks: its records up to there have b2's ids, so
	// the cursor skips exactly what b2 gave.
	feed.check(t, "changes feed across the SIGKILL", want)
	t.Logf("changes feed: %d records in %d pages across the SIGKILL", feed.records, feed.pages)
}

// referenceFeed returns how many times a single node's feed at path (a
// segment's …/changes) gives each change (e2eChange.key).
func referenceFeed(t *testing.T, p *proc, path string) map[string]int {
	t.Helper()
	want := map[string]int{}
	for after := ""; ; {
		code, body := apiDo(t, http.MethodGet, p.api+path+"?limit=1000&after="+after, "", nil)
		var pg struct {
			Changes []e2eChange
			Cursor  string
		}
		if err := json.Unmarshal([]byte(body), &pg); code != http.StatusOK || err != nil {
			t.Fatalf("the reference's feed %s: %d %s", path, code, body)
		}
		if len(pg.Changes) == 0 {
			return want
		}
		for _, c := range pg.Changes {
			want[c.key()]++
		}
		after = pg.Cursor
	}
}

// e2eChange is what the cluster feed test reads of a change record.
type e2eChange struct {
	ID      *string `json:"id"`
	Visitor string  `json:"visitor"`
	Change  string  `json:"change"`
	Why     string  `json:"why"`
}

func (c e2eChange) key() string { return c.Visitor + " " + c.Change + " " + c.Why }

// e2eFeed pages through a build group's changes feed with its cursor.
type e2eFeed struct {
	path, cursor   string
	seen           map[string]int // change (e2eChange.key) → times given
	ids            map[string]bool
	recs           []changeRecord // every record given, in order
	records, pages int
}

// check wants f to have given each change as often as want (a
// reference's feed, referenceFeed) says: none missing, none again under
// another id, none of its own.
func (f *e2eFeed) check(t *testing.T, what string, want map[string]int) {
	t.Helper()
	for k, n := range want {
		if f.seen[k] != n {
			t.Errorf("%s: change %s %d times; want the reference's %d", what, k, f.seen[k], n)
		}
	}
	for k, n := range f.seen {
		if want[k] == 0 {
			t.Errorf("%s: change %s %d times; the reference has none", what, k, n)
		}
	}
}

// page reads the next page from p and returns how many records it had;
// with retry, a 503 (a partition without an owner) is asked again.
func (f *e2eFeed) page(t *testing.T, p *proc, retry bool) int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, body := apiDo(t, http.MethodGet, p.api+f.path+"&after="+f.cursor, "", nil)
		if code == http.StatusServiceUnavailable && retry && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		var pg struct {
			Changes []e2eChange
			Cursor  string
		}
		var recs struct{ Changes []changeRecord }
		if err := errors.Join(json.Unmarshal([]byte(body), &pg), json.Unmarshal([]byte(body), &recs)); code != http.StatusOK || err != nil || pg.Cursor == "" {
			t.Fatalf("changes page %d on %s: %d %s", f.pages, p.api, code, body)
		}
		f.recs = append(f.recs, recs.Changes...)
		if f.ids == nil {
			f.ids = map[string]bool{}
		}
		for _, c := range pg.Changes {
			if c.ID == nil || f.ids[*c.ID] {
				t.Fatalf("changes page %d on %s: record id %v given twice, or none", f.pages, p.api, c.ID)
			}
			f.ids[*c.ID] = true
			f.seen[c.key()]++
		}
		f.records += len(pg.Changes)
		f.pages++
		f.cursor = pg.Cursor
		return len(pg.Changes)
	}
}

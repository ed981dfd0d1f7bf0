package query_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/tracker/event"
)

// emailEvents makes persons whose visitors sit on partitions of both
// nodes of the fixture (node 0 owns partitions 0 and 2, node 1 owns 1
// and 3), some of whose visitors are not members of "lego", an email
// that moved from one visitor to another, and anonymous visitors.
func emailEvents(f *clusterFixture) (ann []event.UUID, bs []*event.Batch) {
	lego := event.Product{ID: "l", Brand: "lego", Category: "toys", Price: 30, HasPrice: true}
	nutrilon := event.Product{ID: "n", Brand: "nutrilon", Category: "baby/food", Price: 12, HasPrice: true}
	on := func(part, from int) event.UUID { return f.ref.VisitorOn(clusterSite, part, from) }
	// ann: three visitors on three partitions, of both nodes.
	ann = []event.UUID{on(0, 3000), on(1, 3000), on(3, 3000)}
	for i, v := range ann {
		bs = append(bs, profiletest.Batch(clusterSite, v, profiletest.View(t0-int64(i)*day, lego), profiletest.Identify(t0-int64(i)*day, "ann@example.com")))
	}
	// bob: a visitor of lego on partition 2, one of nutrilon only on
	// partition 1 (a member of "all", not of "lego").
	bs = append(bs,
		profiletest.Batch(clusterSite, on(2, 3000), profiletest.View(t0, lego), profiletest.Identify(t0, "bob@example.com")),
		profiletest.Batch(clusterSite, on(1, 4000), profiletest.View(t0, nutrilon), profiletest.Identify(t0, "bob@example.com")),
	)
	// cat's first visitor became dan's: its link and member email moved.
	bs = append(bs,
		profiletest.Batch(clusterSite, on(0, 4000), profiletest.View(t0-day, lego), profiletest.Identify(t0-day, "cat@example.com")),
		profiletest.Batch(clusterSite, on(3, 4000), profiletest.View(t0-day, lego), profiletest.Identify(t0-day, "cat@example.com")),
		profiletest.Batch(clusterSite, on(0, 4000), profiletest.Identify(t0, "dan@example.com")),
		profiletest.Batch(clusterSite, on(2, 4000), profiletest.View(t0, lego), profiletest.Identify(t0, "dan@example.com")),
	)
	// Persons of two visitors wherever their ids fall, and anonymous ones.
	for i := range 30 {
		v := profiletest.Visitor(5000 + i)
		evs := []event.Event{profiletest.View(t0-int64(i)*3600000, []event.Product{lego, nutrilon}[i%2])}
		if i%5 != 4 {
			evs = append(evs, profiletest.Identify(t0, fmt.Sprintf("p%d@example.com", i/2)))
		}
		bs = append(bs, profiletest.Batch(clusterSite, v, evs...))
	}
	return ann, bs
}

// TestClusterExportsByEmail wants every by=email export of a node of the
// group — whole, in CSV, without facts, split by a holdout, and paged with
// each page asked of the other node — to be the reference node's, byte
// for byte.
func TestClusterExportsByEmail(t *testing.T) {
	f := newClusterFixture(t)
	for _, e := range f.all() {
		for name, rule := range map[string]string{"all": `count(view) >= 1`, "lego": `interest(brand, "lego") > 0.1`} {
			if code, body := e.Do(t, http.MethodPut, "/v1/segments/shop/"+name, "text/plain", []byte(rule), true); code != 201 {
				t.Fatalf("PUT segment %s: %d %s", name, code, body)
			}
		}
	}
	ann, bs := emailEvents(f)
	f.send(t, bs...)
	at := url.QueryEscape(time.UnixMilli(t0 + 3600000).UTC().Format(time.RFC3339))

	annRow := fmt.Sprintf(`"visitors":[%q,%q,%q]`, sorted3(ann)...)
	for _, seg := range []string{"all", "lego"} {
		base := "/v1/segments/shop/" + seg + "/members?by=email&at=" + at
		all := f.same(t, http.MethodGet, base)
		if !strings.Contains(all, annRow) {
			t.Fatalf("%s by=email: no row joining ann's visitors of both nodes:\n%s", seg, all)
		}
		rows := strings.Count(all, "\n")
		if byVisitor := f.same(t, http.MethodGet, "/v1/segments/shop/"+seg+"/members?at="+at); rows >= strings.Count(byVisitor, `"email":"`) || rows < 10 {
			t.Fatalf("%s: %d rows by email of %d identified members; want persons joined", seg, rows, strings.Count(byVisitor, `"email":"`))
		}
		for _, args := range []string{"&format=csv", "&facts=false", "&format=csv&facts=false", "&holdout=50&salt=s", "&holdout=50&salt=s&group=control&format=csv", "&cursor=" + ann[1].String()} {
			f.same(t, http.MethodGet, base+args)
		}
		for _, format := range []string{"ndjson", "csv"} {
			for _, limit := range []int{1, 2, 5} {
				pages, _ := f.pagesAlternately(t, base+fmt.Sprintf("&format=%s&limit=%d", format, limit), format == "csv")
				if want := (rows + limit - 1) / limit; pages < want {
					t.Fatalf("%s %s limit=%d: %d pages; want %d", seg, format, limit, pages, want)
				}
			}
		}
	}
}

// TestClusterEmailLookup asks an owner the by=email join's lookup
// directly: the members of its own partitions each email links, and a
// clear refusal of each bad request.
func TestClusterEmailLookup(t *testing.T) {
	f := newClusterFixture(t)
	for _, e := range f.all() {
		if code, body := e.Do(t, http.MethodPut, "/v1/segments/shop/all", "text/plain", []byte(`count(view) >= 1`), true); code != 201 {
			t.Fatalf("PUT segment: %d %s", code, body)
		}
	}
	ann, bs := emailEvents(f)
	f.send(t, bs...)
	lookup := append([]byte{1, 2, 15}, "ann@example.com"...)
	lookup = append(append(lookup, 13), "x@example.com"...)
	hop := func(parts string) http.Header {
		h := http.Header{api.HeaderHop: {"1"}}
		if parts != "" {
			h.Set(api.HeaderPartitions, parts)
		}
		return h
	}
	// Node 0 owns partitions 0 and 2: of ann's visitors (on 0, 1 and 3)
	// it answers for the first only; nobody is linked to x.
	code, body := f.nodes[0].DoHeader(t, http.MethodPost, "/v1/internal/members/shop/all", hop("0,2"), lookup, true)
	if want := string(append(append([]byte{1, 1}, ann[0][:]...), 0)); code != 200 || body != want {
		t.Fatalf("lookup: %d %x; want 200 %x", code, body, want)
	}
	f2 := func(name, method, path string, h http.Header, body []byte, wantCode int, want string) {
		t.Helper()
		if code, got := f.nodes[0].DoHeader(t, method, path, h, body, true); code != wantCode || !strings.Contains(got, want) {
			t.Errorf("%s: %d %q; want %d containing %q", name, code, got, wantCode, want)
		}
	}
	f2("without partitions", http.MethodPost, "/v1/internal/members/shop/all", hop(""), lookup, 400, "invalid members lookup request without X-Affinity-Partitions")
	f2("a partition of the other node", http.MethodPost, "/v1/internal/members/shop/all", hop("1"), lookup, 503, "partition 1 is not served by this node")
	f2("version 2", http.MethodPost, "/v1/internal/members/shop/all", hop("0"), []byte{2, 0}, 400, "invalid email lookup: cannot decode email lookup at byte 0: version 2")
	f2("truncated", http.MethodPost, "/v1/internal/members/shop/all", hop("0"), lookup[:10], 400, "invalid email lookup")
	f2("no segment", http.MethodPost, "/v1/internal/members/shop/nope", hop("0"), lookup, 404, "nope")
	f2("GET", http.MethodGet, "/v1/internal/members/shop/all", hop("0"), nil, 405, "")
	f2("not forwarded", http.MethodPost, "/v1/internal/members/shop/all", nil, lookup, 404, "")
}

// sorted3 returns three visitors in visitor order, as %q arguments.
func sorted3(vs []event.UUID) []any {
	s := []string{vs[0].String(), vs[1].String(), vs[2].String()}
	slices.Sort(s) // the canonical form sorts as the bytes do
	return []any{s[0], s[1], s[2]}
}

// pagesAlternately pages path on the nodes of the group in turn, each page
// resuming the cursor the other node gave, and wants each page to be the
// reference's; it returns the number of pages and their rows (no CSV
// header, no cursor line).
func (f *clusterFixture) pagesAlternately(t *testing.T, path string, csv bool) (int, []string) {
	t.Helper()
	cursor := ""
	var rows []string
	for pages := 0; pages < 100; pages++ {
		p := path + "&cursor=" + cursor
		wantCode, want := f.ref.Do(t, http.MethodGet, p, "", nil, true)
		n := f.nodes[pages%len(f.nodes)]
		if code, got := n.Do(t, http.MethodGet, p, "", nil, true); code != wantCode || got != want {
			t.Fatalf("GET %s, page %d on node %d: %d\n%s\nwant the reference's %d\n%s", p, pages, pages%len(f.nodes), code, got, wantCode, want)
		}
		lines := strings.Split(strings.TrimSuffix(want, "\n"), "\n")
		last := lines[len(lines)-1]
		switch {
		case csv && len(lines) > 1:
			rows = append(rows, lines[1:]...)
			cursor = last[:36]
		case !csv && strings.HasPrefix(last, `{"cursor":"`):
			rows = append(rows, lines[:len(lines)-1]...)
			cursor = strings.TrimSuffix(strings.TrimPrefix(last, `{"cursor":"`), `"}`)
		default:
			if !csv && want != "" {
				rows = append(rows, lines...)
			}
			return pages + 1, rows
		}
	}
	t.Fatalf("GET %s: more than 100 pages", path)
	return 0, nil
}

// TestClusterPerPersonAnswers: a per-person segment of a build group,
// each person evaluated by the owner of its evaluating partition, answers
// its exports (every format, by=email, holdout, pages — NDJSON and CSV —
// resumed on the other node), its size (alone and in the list) and its size history on
// either node with the reference's bytes.
func TestClusterPerPersonAnswers(t *testing.T) {
	f := newClusterFixture(t)
	for _, n := range f.nodes {
		n.Segments.SetPersons(n.Query.Persons(4, profiletest.Token))
	}
	for _, e := range f.all() {
		if code, body := e.Do(t, http.MethodPut, "/v1/segments/shop/people?per=person", "text/plain", []byte(`count(view) >= 1`), true); code != 201 {
			t.Fatalf("PUT segment: %d %s", code, body)
		}
	}
	_, bs := emailEvents(f)
	f.sendSettled(t, bs...)
	at := url.QueryEscape(time.UnixMilli(t0 + 3600000).UTC().Format(time.RFC3339))
	all := f.same(t, http.MethodGet, "/v1/segments/shop/people/members?at="+at)
	if n := strings.Count(all, `"person":"`); n < 10 {
		t.Fatalf("per-person export: %d persons; want ann, bob, dan and the p's\n%s", n, all)
	}
	for _, args := range []string{"by=email", "format=csv", "facts=false", "holdout=30&salt=s", "holdout=30&salt=s&group=control", "format=csv&by=email"} {
		f.same(t, http.MethodGet, "/v1/segments/shop/people/members?"+args+"&at="+at)
	}
	// The pages of 3 are the whole export's rows; a CSV page resumes after
	// its last row's person id (its first field).
	for _, args := range []string{"", "&format=csv", "&format=csv&by=email", "&format=csv&holdout=30&salt=s", "&format=csv&holdout=30&salt=s&group=control"} {
		csv := strings.Contains(args, "csv")
		pages, rows := f.pagesAlternately(t, "/v1/segments/shop/people/members?limit=3&at="+at+args, csv)
		whole := strings.Split(strings.TrimSuffix(f.same(t, http.MethodGet, "/v1/segments/shop/people/members?at="+at+args), "\n"), "\n")
		if csv {
			whole = whole[1:]
		}
		if pages < 3 || !slices.Equal(rows, whole) {
			t.Fatalf("%s: %d pages of 3:\n%s\nwant several, the whole export's rows\n%s", args, pages, strings.Join(rows, "\n"), strings.Join(whole, "\n"))
		}
	}
	for _, path := range []string{"/v1/segments/shop/people", "/v1/segments/shop"} {
		if body := f.same(t, http.MethodGet, path); !strings.Contains(body, `"per":"person"`) || strings.Contains(body, `"size":null`) {
			t.Errorf("GET %s: %s; want the per-person segment sized", path, body)
		}
	}
	from, to := f.sampleSizes(t, t0+2*profiletest.Hour, t0+2*profiletest.Hour+60000)
	if body := f.same(t, http.MethodGet, "/v1/segments/shop/people/history?from="+from+"&to="+to); strings.Count(body, `"size":`) != 2 || strings.Contains(body, `"size":0`) {
		t.Errorf("history: %s; want the two samples of the persons", body)
	}
	// The changes feed, paged with its cursor alternating between the
	// nodes (each page the same on both, each id once): the reference's
	// records but for the node's seq and the group's ids (by evaluating
	// partition).
	r := &feedReader{f: f, name: "people", seen: map[string]string{}}
	r.readAll(t, 7)
	var got, want []string
	for _, rec := range r.seen {
		got = append(got, idField.ReplaceAllString(rec, ""))
	}
	code, body := f.ref.Get(t, "/v1/segments/shop/people/changes?limit=1000")
	var page feedPage
	if err := json.Unmarshal([]byte(body), &page); code != 200 || err != nil {
		t.Fatalf("the reference's feed: %d %s (%v)", code, body, err)
	}
	for _, rec := range page.Changes {
		want = append(want, idField.ReplaceAllString(withoutSeq(rec), ""))
	}
	slices.Sort(got)
	slices.Sort(want)
	if len(want) < 10 || !slices.Equal(got, want) {
		t.Fatalf("the group's feed\n%s\nwant the reference's\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// idField is a record's "id" after its "seq" was taken out.
var idField = regexp.MustCompile(`^\{"id":("[0-9-]+"|null),`)

// TestClusterPersonsRestoring: while a node restores the persons of the
// evaluating partitions it took over from the changes topic, a
// per-person segment's export, size and size history answer 503 naming
// the partition, with Retry-After, on every node — never a short answer —
// and so does its changes feed;
// then they answer.
func TestClusterPersonsRestoring(t *testing.T) {
	const parts = 4
	f, n1, topic, release := blockedHistoryCluster(t)
	defer topic.Close()
	for _, n := range f.nodes {
		n.Segments.SetPersons(n.Query.Persons(parts, profiletest.Token))
	}
	for _, e := range f.all() {
		if code, body := e.Do(t, http.MethodPut, "/v1/segments/shop/people?per=person", "text/plain", []byte(`count(view) >= 1`), true); code != 201 {
			t.Fatalf("PUT segment: %d %s", code, body)
		}
	}
	n1.Segments.RestorePersons(context.Background(), map[int]int64{1: 0, 3: 0})
	for _, n := range f.nodes {
		for _, path := range []string{"/v1/segments/shop/people/members", "/v1/segments/shop/people", "/v1/segments/shop", "/v1/segments/shop/people/history", "/v1/segments/shop/people/changes"} {
			code, h, body := n.DoResponse(t, http.MethodGet, path, nil, nil, true)
			if code != 503 || !strings.Contains(body, "partition 1 are not ready") || h.Get("Retry-After") == "" {
				t.Errorf("GET %s on %s during the restore: %d %q; want 503 naming partition 1, with Retry-After", path, n.URL, code, body)
			}
		}
	}
	close(release)
	profiletest.WaitUntil(t, "the restore", func() bool { return n1.Segments.PersonsReady(1) && n1.Segments.PersonsReady(3) })
	for _, path := range []string{"/v1/segments/shop/people/members", "/v1/segments/shop/people", "/v1/segments/shop/people/history"} {
		f.same(t, http.MethodGet, path)
	}
}

// blockedHistoryCluster is a clusterFixture whose node 1 reads the
// changes topic (kfake) only once release is closed.
func blockedHistoryCluster(t *testing.T) (f *clusterFixture, n1 *profiletest.Env, topic *storage.KafkaLog, release chan struct{}) {
	t.Helper()
	brokers := profiletest.StartKafka(t, kfake.SeedTopics(1, "changes"))
	topic = profiletest.OpenTopic(t, brokers, "changes")
	release = make(chan struct{})
	const parts = 4
	own := func(ps ...int) func(*builder.Options) {
		return func(o *builder.Options) { o.Partitions = ps }
	}
	n0 := profiletest.Open(t, profiletest.Options{Partitions: parts, Serve: true, Builder: own(0, 2)})
	n1 = profiletest.Open(t, profiletest.Options{Partitions: parts, Serve: true, Builder: own(1, 3), Membership: func(o *membership.Options) {
		read := membership.LogHistory(topic)
		o.History = func(ctx context.Context, fn func([]byte) error) error {
			<-release
			return read(ctx, fn)
		}
	}})
	return routeCluster(t, parts, profiletest.Open(t, profiletest.Options{Partitions: parts, Serve: true}), n0, n1), n1, topic, release
}

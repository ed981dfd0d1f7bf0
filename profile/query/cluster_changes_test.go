package query_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/profile/defs"
	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// feedPage is a page of the changes feed as a client reads it.
type feedPage struct {
	Changes []json.RawMessage `json:"changes"`
	Cursor  string            `json:"cursor"`
	Error   string            `json:"error"`
}

// changeOf is the part of a change record the test checks the order with.
type changeOf struct {
	ID   *string `json:"id"`
	AtMs int64   `json:"at_ms"`
}

// seqField is a record's "seq": its node's number, the one field two
// nodes' copies of a record differ in.
var seqField = regexp.MustCompile(`^\{"seq":"[0-9]+",`)

// withoutSeq returns a record's JSON without its "seq".
func withoutSeq(rec []byte) string { return seqField.ReplaceAllString(string(rec), "{") }

// referenceFeed reads a segment's whole feed from a node by ?after=<seq>,
// the records by id without their seq.
func referenceFeed(t *testing.T, e *profiletest.Env, name string) map[string]string {
	t.Helper()
	recs := map[string]string{}
	after := ""
	for {
		code, body := e.Get(t, "/v1/segments/shop/"+name+"/changes?limit=7&after="+after)
		var p feedPage
		if err := json.Unmarshal([]byte(body), &p); code != 200 || err != nil {
			t.Fatalf("reference feed: %d %s (%v)", code, body, err)
		}
		for _, rec := range p.Changes {
			var c changeOf
			if err := json.Unmarshal(rec, &c); err != nil || c.ID == nil {
				t.Fatalf("reference record %s: %v; want an id", rec, err)
			}
			recs[*c.ID] = withoutSeq(rec)
		}
		if len(p.Changes) == 0 {
			return recs
		}
		after = p.Cursor
	}
}

// feedReader pages through a segment's feed on a build group, each page
// asked of the next node, and checks what it reads: every record once, in
// the documented order within a page, each node answering a cursor with
// the same bytes.
type feedReader struct {
	f      *clusterFixture
	name   string
	cursor string
	pages  int
	seen   map[string]string // id → record without seq
}

// readAll reads pages of limit records until one comes back empty.
func (r *feedReader) readAll(t *testing.T, limit int) {
	t.Helper()
	for {
		path := fmt.Sprintf("/v1/segments/shop/%s/changes?limit=%d&after=%s", r.name, limit, url.QueryEscape(r.cursor))
		asked := r.f.nodes[r.pages%len(r.f.nodes)]
		code, body := asked.Get(t, path)
		for _, other := range r.f.nodes {
			if c, b := other.Get(t, path); c != code || b != body {
				t.Fatalf("%s: nodes differ:\n%d %s\n%d %s", path, code, body, c, b)
			}
		}
		var p feedPage
		if err := json.Unmarshal([]byte(body), &p); code != 200 || err != nil || p.Error != "" {
			t.Fatalf("%s: %d %s (%v)", path, code, body, err)
		}
		if len(p.Changes) > limit {
			t.Fatalf("%s: %d records; want at most %d", path, len(p.Changes), limit)
		}
		r.pages++
		var last changeOf
		lastOf := map[string]string{}
		for i, rec := range p.Changes {
			var c changeOf
			if err := json.Unmarshal(rec, &c); err != nil || c.ID == nil {
				t.Fatalf("record %s: %v; want an id", rec, err)
			}
			if _, dup := r.seen[*c.ID]; dup {
				t.Fatalf("record %s given twice (page %d)", *c.ID, r.pages)
			}
			r.seen[*c.ID] = withoutSeq(rec)
			// By at, then partition; each partition's in source order.
			var part, off, ord int64
			if _, err := fmt.Sscanf(*c.ID, "%d-%d-%d", &part, &off, &ord); err != nil {
				t.Fatalf("id %q: %v", *c.ID, err)
			}
			if i > 0 && c.AtMs < last.AtMs {
				t.Fatalf("page %d: record %s at %d after one at %d", r.pages, *c.ID, c.AtMs, last.AtMs)
			}
			if prev, ok := lastOf[fmt.Sprint(part)]; ok {
				var pp, po, pord int64
				_, _ = fmt.Sscanf(prev, "%d-%d-%d", &pp, &po, &pord)
				if off < po || off == po && ord <= pord {
					t.Fatalf("page %d: partition %d's record %s after %s", r.pages, part, *c.ID, prev)
				}
			}
			lastOf[fmt.Sprint(part)] = *c.ID
			last = c
		}
		if p.Cursor == "" {
			t.Fatalf("%s: no cursor in %s", path, body)
		}
		if len(p.Changes) == 0 {
			if p.Cursor != r.cursor && r.cursor != "" {
				t.Fatalf("an empty page moved the cursor from %q to %q", r.cursor, p.Cursor)
			}
			return
		}
		r.cursor = p.Cursor
	}
}

// The changes feed of a build group: pages asked of alternating nodes
// give the reference node's records, each once, across a partition that
// moves between pages (the new owner re-applied it: its records up to
// the cursor are skipped) and time-driven exits after the move.
func TestClusterChanges(t *testing.T) {
	f := newClusterFixture(t)
	for _, e := range f.all() {
		// In one order everywhere, as the definitions topic gives them: a
		// commit's records of both segments number in it.
		for _, seg := range [][2]string{{"fans", `interest(brand, "lego") > 0.1`}, {"recent", `since(view) <= 2d`}} {
			if code, body := e.Do(t, http.MethodPut, "/v1/segments/shop/"+seg[0], "text/plain", []byte(seg[1]), true); code != 201 {
				t.Fatalf("PUT segment: %d %s", code, body)
			}
		}
	}
	_, _, bs := clusterEvents(f.ref)
	f.send(t, bs...)
	readers := map[string]*feedReader{}
	for _, name := range []string{"fans", "recent"} {
		readers[name] = &feedReader{f: f, name: name, seen: map[string]string{}}
		r := readers[name]
		// Two pages, then partition 3 moves from node 1 to node 0, which
		// never owned it: it rebuilds it from the log's start.
		code, body := f.nodes[0].Get(t, "/v1/segments/shop/"+name+"/changes?limit=4")
		var p feedPage
		if err := json.Unmarshal([]byte(body), &p); code != 200 || err != nil || len(p.Changes) != 4 {
			t.Fatalf("first page: %d %s", code, body)
		}
		r.cursor = p.Cursor
		for _, rec := range p.Changes {
			var c changeOf
			_ = json.Unmarshal(rec, &c)
			r.seen[*c.ID] = withoutSeq(rec)
		}
	}
	a, b := f.nodes[0].URL, f.nodes[1].URL
	if err := f.nodes[1].Builder.Own([]int{1}); err != nil {
		t.Fatal(err)
	}
	if err := f.nodes[0].Builder.Own([]int{0, 2, 3}); err != nil {
		t.Fatal(err)
	}
	f.setOwners(a, b, a, a)
	f.nodes[0].Wait(t)
	for _, r := range readers {
		r.readAll(t, 3)
	}
	// Time passes: the owners write the exits.
	for _, e := range f.all() {
		e.Advance(t, t0+5*day)
	}
	for name, r := range readers {
		r.readAll(t, 5)
		want := referenceFeed(t, f.ref, name)
		if len(r.seen) != len(want) || len(want) < 10 {
			t.Errorf("%s: %d records in %d pages; want the reference's %d", name, len(r.seen), r.pages, len(want))
		}
		for id, rec := range want {
			if got, ok := r.seen[id]; !ok {
				t.Errorf("%s: record %s missing: %s", name, id, rec)
			} else if got != rec {
				t.Errorf("%s: record %s:\n%s\nwant\n%s", name, id, got, rec)
			}
		}
		if name == "recent" && !strings.Contains(strings.Join(mapValues(r.seen), ""), `"change":"left"`) {
			t.Errorf("%s: no exits", name)
		}
	}
}

func mapValues(m map[string]string) []string {
	var vs []string
	for _, v := range m {
		vs = append(vs, v)
	}
	return vs
}

// What a node of a build group refuses in the changes feed, and what it
// answers when a partition has no owner.
func TestClusterChangesRefused(t *testing.T) {
	f := newClusterFixture(t)
	for _, e := range f.all() {
		if code, body := e.Do(t, http.MethodPut, "/v1/segments/shop/fans", "text/plain", []byte(`count(view) >= 1`), true); code != 201 {
			t.Fatalf("PUT segment: %d %s", code, body)
		}
		if code, body := e.Do(t, http.MethodPut, "/v1/segments/shop/people?per=person", "text/plain", []byte(`count(view) >= 1`), true); code != 201 {
			t.Fatalf("PUT segment: %d %s", code, body)
		}
	}
	for _, c := range []struct {
		path string
		code int
		want string
	}{
		{"/v1/segments/shop/fans/changes?after=12", 400, `invalid after="12": not base64url text of a feed cursor`}, // a node's seq
		{"/v1/segments/shop/fans/changes?after=AQE", 400, `invalid after="AQE": truncated feed cursor`},
		{"/v1/segments/shop/fans/changes?after=AQ%0A", 400, `invalid after="AQ\n": not base64url`},
		{"/v1/segments/shop/fans/changes?after=AgA", 400, "unknown feed cursor version"},
		{"/v1/segments/shop/fans/changes?after=AQIDAAAAAAA", 400, "not ascending"},
		{"/v1/segments/shop/fans/changes?limit=0", 400, `invalid limit="0"`},
		{"/v1/segments/shop/nope/changes", 404, `no segment "nope"`},
	} {
		if code, body := f.nodes[0].Get(t, c.path); code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %s; want %d with %q", c.path, code, body, c.code, c.want)
		}
	}
	// The reference, alone, answers ?after=<seq> as before.
	if code, body := f.ref.Get(t, "/v1/segments/shop/fans/changes?after=12"); code != 200 || !strings.Contains(body, `"cursor":"12"`) {
		t.Errorf("a single node's feed: %d %s", code, body)
	}
	f.setOwners(f.nodes[0].URL, f.nodes[1].URL, f.nodes[0].URL, "")
	code, h, body := f.nodes[0].DoResponse(t, http.MethodGet, "/v1/segments/shop/fans/changes", nil, nil, true)
	if code != 503 || !strings.Contains(body, "partition 3") || h.Get("Retry-After") == "" {
		t.Errorf("a partition without an owner: %d %q; want 503 naming partition 3", code, body)
	}
}

// Segment sizes (one segment, the list) and rule previews asked of either
// node of the group are the reference's bytes; the size history is
// refused; a partition without an owner makes each a 503.
func TestClusterSegmentsAnswer(t *testing.T) {
	f := newClusterFixture(t)
	for _, e := range f.all() {
		for _, seg := range [][2]string{{"fans", `interest(brand, "lego") > 0.1`}, {"many", `count(view) >= 2`}} {
			if code, body := e.Do(t, http.MethodPut, "/v1/segments/shop/"+seg[0], "text/plain", []byte(seg[1]), true); code != 201 {
				t.Fatalf("PUT segment: %d %s", code, body)
			}
		}
	}
	_, _, bs := clusterEvents(f.ref)
	f.send(t, bs...)
	sameBody := func(method, path, body string) (int, string) {
		t.Helper()
		wantCode, want := f.ref.Do(t, method, path, "text/plain", []byte(body), true)
		for i, n := range f.nodes {
			if code, got := n.Do(t, method, path, "text/plain", []byte(body), true); code != wantCode || got != want {
				t.Fatalf("%s %s on node %d: %d\n%s\nwant the reference's %d\n%s", method, path, i, code, got, wantCode, want)
			}
		}
		return wantCode, want
	}
	for _, path := range []string{"/v1/segments/shop/fans", "/v1/segments/shop/many", "/v1/segments/shop"} {
		if _, body := sameBody(http.MethodGet, path, ""); strings.Contains(body, `"size":0`) {
			t.Errorf("GET %s: %s; want members", path, body)
		}
	}
	for _, rule := range []string{`interest(brand, "lego") > 0.1`, `count(view) >= 2`, `count(view) >= 100`, `identified`} {
		for _, n := range []string{"0", "3", "100"} {
			sameBody(http.MethodPost, "/v1/segments/shop/_preview?sample="+n, rule)
		}
	}
	if code, body := sameBody(http.MethodPost, "/v1/segments/shop/_preview", `interest(brand, `); code != 400 {
		t.Errorf("a rule that does not compile: %d %s", code, body)
	}
	// The size history: samples at the same instants on every node, each
	// member counting its partitions.
	from, to := f.sampleSizes(t, t0+2*profiletest.Hour, t0+2*profiletest.Hour+60000, t0+3*profiletest.Hour)
	for _, q := range []string{"", "&step=1h"} {
		if _, body := sameBody(http.MethodGet, "/v1/segments/shop/fans/history?from="+from+"&to="+to+q, ""); strings.Count(body, `"size":`) < 2 || strings.Contains(body, `"size":0`) {
			t.Errorf("history%s: %s; want points of the members", q, body)
		}
	}
	// A minute one member has no sample of is no point of the group's.
	f.nodes[0].Clock.Set(t0 + 3*profiletest.Hour + 120000)
	if _, err := f.nodes[0].Segments.RecordSizes(); err != nil {
		t.Fatal(err)
	}
	if code, body := f.nodes[1].Get(t, "/v1/segments/shop/fans/history?from="+from+"&to="+to); code != 200 || strings.Count(body, `"size":`) != 3 {
		t.Errorf("history with a sample of one member alone: %d %s; want the 3 points both sampled", code, body)
	}
	f.setOwners(f.nodes[0].URL, f.nodes[1].URL, f.nodes[0].URL, "")
	// A PUT is written whatever the group can count: its size is null.
	if code, body := f.nodes[1].Do(t, http.MethodPut, "/v1/segments/shop/fans", "text/plain", []byte(`count(view) >= 1`), true); code != 200 || !strings.Contains(body, `"size":null`) {
		t.Errorf("PUT without an owner of partition 3: %d %s; want 200 with size null", code, body)
	}
	for _, req := range [][2]string{{http.MethodGet, "/v1/segments/shop/fans"}, {http.MethodGet, "/v1/segments/shop"}, {http.MethodPost, "/v1/segments/shop/_preview"}, {http.MethodGet, "/v1/segments/shop/fans/history"}} {
		code, h, body := f.nodes[1].DoResponse(t, req[0], req[1], nil, []byte(`count(view) >= 2`), true)
		if code != 503 || !strings.Contains(body, "partition 3") || h.Get("Retry-After") == "" {
			t.Errorf("%s %s without an owner of partition 3: %d %q; want 503 naming it", req[0], req[1], code, body)
		}
	}
}

// createdOf returns the created time of segment name of site shop on e,
// which its records carry.
func createdOf(t *testing.T, e *profiletest.Env, name string) int64 {
	t.Helper()
	d, ok, err := e.Segments.Definition("shop", name)
	if err != nil || !ok {
		t.Fatalf("segment %s on %s: %t, %v", name, e.URL, ok, err)
	}
	return d.Created
}

// TestClusterChangesTakeOver: while the new owner of a partition copies
// the records emitted before it took the partition over from the changes
// topic, the group's feed answers 503 naming the partition, on every
// node; then it answers the copied records, as produced, seq 0.
func TestClusterChangesTakeOver(t *testing.T) {
	f, n1, topic, release := blockedHistoryCluster(t)
	defer topic.Close()
	for _, e := range f.all() {
		if code, body := e.Do(t, http.MethodPut, "/v1/segments/shop/fans", "text/plain", []byte(`count(view) >= 1`), true); code != 201 {
			t.Fatalf("PUT segment: %d %s", code, body)
		}
	}
	old := membership.Change{Seq: 40, Site: "shop", Segment: "fans", Visitor: profiletest.Visitor(7), Entered: true, At: t0, Why: "event",
		Facts: `{"count(view)":1}`, Src: state.Source{Partition: 3, Offset: 2}, Created: createdOf(t, n1, "fans")}
	if err := topic.Append(context.Background(), []storage.Message{{Key: membership.AppendChangeKey(nil, "shop", "fans"), Value: old.AppendJSON(nil)}}); err != nil {
		t.Fatal(err)
	}
	n1.Segments.TakeOver(context.Background(), map[int]int64{1: 0, 3: 2})
	for _, n := range f.nodes {
		code, h, body := n.DoResponse(t, http.MethodGet, "/v1/segments/shop/fans/changes", nil, nil, true)
		if code != 503 || !strings.Contains(body, "the changes feed of partition 3 is not ready") || h.Get("Retry-After") == "" {
			t.Errorf("the feed during the copy on %s: %d %q; want 503 naming partition 3, with Retry-After", n.URL, code, body)
		}
	}
	close(release)
	profiletest.WaitUntil(t, "the copy of partition 3", func() bool { return n1.Segments.HistoryReady(3) })
	old.Seq = 0
	want := `{"changes":[` + string(old.AppendJSON(nil)) + `],"cursor":`
	for _, n := range f.nodes {
		if code, body := n.Get(t, "/v1/segments/shop/fans/changes"); code != 200 || !strings.HasPrefix(body, want) {
			t.Errorf("the feed after the copy on %s: %d %s; want %s…", n.URL, code, body, want)
		}
	}
}

// TestClusterErasureTakeOver: an erasure in a build group goes through
// the definitions topic, so every node keeps its mark: a partition's new
// owner, copying the changes topic after the erasure, leaves out the
// erased visitor's records the topic still holds.
func TestClusterErasureTakeOver(t *testing.T) {
	brokers := profiletest.StartKafka(t, kfake.SeedTopics(1, "changes", "defs"))
	topic := profiletest.OpenTopic(t, brokers, "changes")
	defer topic.Close()
	const parts = 4
	do := &defs.Options{Brokers: brokers, Topic: "defs"}
	own := func(ps ...int) func(*builder.Options) {
		return func(o *builder.Options) { o.Partitions = ps }
	}
	n0 := profiletest.Open(t, profiletest.Options{Partitions: parts, Serve: true, Definitions: do, Builder: own(0, 2)})
	n1 := profiletest.Open(t, profiletest.Options{Partitions: parts, Serve: true, Definitions: do, Builder: own(1, 3), Membership: func(o *membership.Options) {
		o.History = membership.LogHistory(topic)
	}})
	f := routeCluster(t, parts, profiletest.Open(t, profiletest.Options{Partitions: parts, Serve: true}), n0, n1)
	if code, body := n0.Do(t, http.MethodPut, "/v1/segments/shop/fans", "text/plain", []byte(`count(view) >= 1`), true); code != 201 {
		t.Fatalf("PUT segment: %d %s", code, body)
	}
	profiletest.WaitUntil(t, "the segment on node 1", func() bool {
		_, ok, _ := n1.Segments.Definition("shop", "fans")
		return ok
	})
	// The old owner of partition 3 emitted an entry of x and of y; x is
	// erased (asked of node 0, done by x's owner, node 1).
	x, y := n1.VisitorOn("shop", 3, 1), n1.VisitorOn("shop", 3, 100)
	rec := func(v event.UUID, off int64) membership.Change {
		return membership.Change{Seq: uint64(off), Site: "shop", Segment: "fans", Visitor: v, Entered: true, At: t0 + off, Why: "event",
			Facts: `{"count(view)":1}`, Src: state.Source{Partition: 3, Offset: off}, Created: createdOf(t, n1, "fans")}
	}
	produce := func(cs ...membership.Change) {
		for _, c := range cs {
			if err := topic.Append(context.Background(), []storage.Message{{Key: membership.AppendChangeKey(nil, "shop", "fans"), Value: c.AppendJSON(nil)}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	produce(rec(x, 2), rec(y, 3))
	if code, body := f.nodes[0].Do(t, http.MethodDelete, "/v1/visitors/shop/"+x.String(), "", nil, true); code != 404 {
		t.Fatalf("DELETE of x, never seen here: %d %s; want 404 (nothing deleted, nothing scrubbed)", code, body)
	}
	n1.Segments.TakeOver(context.Background(), map[int]int64{3: 3})
	profiletest.WaitUntil(t, "the copy of partition 3", func() bool { return n1.Segments.HistoryReady(3) })
	yIn := rec(y, 3)
	yIn.Seq = 0
	want := `{"changes":[` + string(yIn.AppendJSON(nil)) + `],"cursor":`
	for _, n := range f.nodes {
		if code, body := n.Get(t, "/v1/segments/shop/fans/changes"); code != 200 || !strings.HasPrefix(body, want) {
			t.Errorf("the feed after the copy on %s: %d %s; want %s… (x's record left out)", n.URL, code, body, want)
		}
	}
}

package query_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/profile/campaign"
	"github.com/affinityhq/affinity/profile/defs"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/tracker/event"
)

// campaignCluster is two nodes of a build group sharing one events topic
// and one definitions topic on kfake (real Badger each), and a reference
// single node with its own embedded log fed the same events.
type campaignCluster struct {
	*clusterFixture
	brokers []string
	events  []storage.Log // the nodes' clients of the events topic
	defs    *defs.Options
}

const campaignParts = 4

func newCampaignCluster(t *testing.T) *campaignCluster {
	t.Helper()
	cc := &campaignCluster{brokers: profiletest.StartKafka(t)}
	// Chunks of 512 bytes: the frozen campaign travels in several.
	cc.defs = &defs.Options{Brokers: cc.brokers, Topic: "defs", ChunkBytes: 512}
	ref := profiletest.Open(t, profiletest.Options{Partitions: campaignParts, Serve: true})
	a := cc.openNode(t, 0, 2)
	b := cc.openNode(t, 1, 3)
	cc.clusterFixture = routeCluster(t, campaignParts, ref, a, b)
	return cc
}

// openNode opens a node of the group owning parts, with its own client
// of the events topic.
func (cc *campaignCluster) openNode(t *testing.T, parts ...int) *profiletest.Env {
	t.Helper()
	ko := storage.DefaultKafkaOptions(cc.brokers...)
	ko.Topic, ko.Partitions = "events", campaignParts
	kl, err := storage.OpenKafkaLog(context.Background(), ko)
	if err != nil {
		t.Fatalf("cannot open the events topic: %s", err)
	}
	t.Cleanup(func() { _ = kl.Close() })
	cc.events = append(cc.events, kl)
	return profiletest.Open(t, profiletest.Options{Partitions: campaignParts, Serve: true, Events: kl, Definitions: cc.defs,
		Builder: func(o *builder.Options) { o.Partitions = parts }})
}

// send appends bs once to the group's topic and once to the reference's
// log, and waits until every node applied them and what they forwarded
// (conversions cross partitions, so nodes wait for one another).
func (cc *campaignCluster) send(t *testing.T, nodes []*profiletest.Env, group, ref []*event.Batch) {
	t.Helper()
	if len(group) > 0 {
		nodes[0].Append(t, group...)
	}
	if len(ref) > 0 {
		cc.ref.Append(t, ref...)
	}
	cc.ref.Wait(t)
	for prev := int64(-1); ; {
		for _, n := range nodes {
			n.Wait(t)
		}
		end := cc.topicEnd(t)
		if end == prev {
			return
		}
		prev = end
	}
}

// topicEnd is the number of records on the events topic.
func (cc *campaignCluster) topicEnd(t *testing.T) int64 {
	t.Helper()
	var n int64
	for p := range campaignParts {
		_, next, err := cc.events[0].Offsets(context.Background(), p)
		if err != nil {
			t.Fatalf("cannot read the offsets of partition %d: %s", p, err)
		}
		n += next
	}
	return n
}

// TestClusterCampaign creates a campaign on one node of a build group and
// checks that every node — and a node started afterwards — holds the same
// campaign and recipients, and that the report asked of either node
// equals a single node's over the same events: conversions of recipients
// on both nodes' partitions (some bought on another device, on another
// node's partition), opens, an order bought twice, counted once.
func TestClusterCampaign(t *testing.T) {
	cc := newCampaignCluster(t)
	a, b := cc.nodes[0], cc.nodes[1]
	// Definitions: written to one node of the group, applied by both.
	for _, w := range []*profiletest.Env{cc.ref, a} {
		if code, body := w.Do(t, http.MethodPut, "/v1/segments/shop/viewers", "text/plain", []byte(`count(view) >= 1`), true); code != 201 {
			t.Fatalf("PUT segment: %d %s", code, body)
		}
		list := "email\n"
		for i := 10; i < 30; i++ {
			list += fmt.Sprintf("m%d@x.io\n", i)
		}
		if code, body := w.Do(t, http.MethodPut, "/v1/lists/shop/crm", "text/csv", []byte(list), true); code != 201 {
			t.Fatalf("PUT list: %d %s", code, body)
		}
	}
	profiletest.WaitUntil(t, "node B applied the list", func() bool {
		code, _ := b.Do(t, http.MethodGet, "/v1/lists/shop/crm", "", nil, true)
		return code == 200
	})

	// Viewers on every partition, most of them identified.
	var bs []*event.Batch
	visitorOf := map[string]event.UUID{}
	for i := range 20 {
		v := cc.ref.VisitorOn(clusterSite, i%campaignParts, 5000+100*i)
		evs := []event.Event{profiletest.View(t0, event.Product{ID: "p", Brand: "lego"})}
		if i%5 != 4 {
			email := fmt.Sprintf("m%d@x.io", i)
			evs = append(evs, profiletest.Identify(t0, email))
			visitorOf[email] = v
		}
		bs = append(bs, profiletest.Batch(clusterSite, v, evs...))
	}
	cc.send(t, cc.nodes, bs, bs)

	const spec = `{"name":"spring","arms":[{"name":"viewers","segment":"viewers","variants":["a","b"]},{"name":"crm","list":"crm"}],"holdout":30,"window":"7d"}`
	wantCode, want := cc.ref.Do(t, http.MethodPost, "/v1/campaigns/shop", "application/json", []byte(spec), true)
	if code, got := a.Do(t, http.MethodPost, "/v1/campaigns/shop", "application/json", []byte(spec), true); code != wantCode || got != want {
		t.Fatalf("POST campaign on node A: %d %s\nwant the reference's %d %s", code, got, wantCode, want)
	}
	if wantCode != 201 || !strings.Contains(want, `"id":"1"`) {
		t.Fatalf("POST campaign: %d %s; want 201 of campaign 1", wantCode, want)
	}
	profiletest.WaitUntil(t, "node B applied the campaign", func() bool {
		code, _ := b.Do(t, http.MethodGet, "/v1/campaigns/shop/1", "", nil, true)
		return code == 200
	})
	cc.same(t, http.MethodGet, "/v1/campaigns/shop/1")
	cc.same(t, http.MethodGet, "/v1/campaigns/shop")

	// Recipients: the same rows on both nodes (tokens under the group's
	// secret), the reference's but for the tokens.
	recipients := func(e *profiletest.Env, group string) string {
		t.Helper()
		code, body := e.Do(t, http.MethodGet, "/v1/campaigns/shop/1/recipients?format=csv&group="+group, "", nil, true)
		if code != 200 {
			t.Fatalf("recipients: %d %s", code, body)
		}
		return body
	}
	tokens := map[*profiletest.Env]map[string]string{} // email → token
	for _, group := range []string{"treated", "control"} {
		ra, rb, rref := recipients(a, group), recipients(b, group), recipients(cc.ref, group)
		if ra != rb {
			t.Fatalf("%s recipients: node A's\n%s\nnode B's\n%s", group, ra, rb)
		}
		if got, want := stripTokens(ra), stripTokens(rref); got != want {
			t.Fatalf("%s recipients of the group (tokens left out):\n%s\nwant the reference's\n%s", group, got, want)
		}
		for e, body := range map[*profiletest.Env]string{a: ra, cc.ref: rref} {
			if tokens[e] == nil {
				tokens[e] = map[string]string{}
			}
			for _, line := range strings.Split(strings.TrimSpace(body), "\n")[1:] {
				f := strings.Split(line, ",")
				tokens[e][f[0]] = f[3]
			}
		}
	}
	if n := len(tokens[a]); n != 28 { // 16 identified viewers, 12 emails only on the list
		t.Fatalf("%d recipients; want 28", n)
	}

	// Engagement and purchases, the same on both sides but for the tokens.
	sent := t0 + 3600000 // the fixture's clock: the freeze's instant
	engage := func(e *profiletest.Env) (out []*event.Batch) {
		for i := range 30 {
			email := fmt.Sprintf("m%d@x.io", i)
			tok, ok := tokens[e][email]
			if !ok {
				continue
			}
			id, n, _, err := campaign.ParseToken([]byte(tok))
			if err != nil {
				t.Fatal(err)
			}
			if i%3 == 0 { // an open, twice
				open := event.Event{ID: profiletest.EventID(900000 + i), Type: event.TypeOpen, TS: sent + 60000, Token: tok}
				out = append(out, profiletest.Batch(clusterSite, campaign.EngagementVisitor(id, n), open),
					profiletest.Batch(clusterSite, campaign.EngagementVisitor(id, n), open))
			}
		}
		return out
	}
	var buys []*event.Batch
	for i := range 30 {
		email := fmt.Sprintf("m%d@x.io", i)
		if i%2 == 1 {
			continue
		}
		ts := sent + int64(i)*3600000
		p := purchase(ts, fmt.Sprint("o", i), float64(i)+0.25)
		v, ok := visitorOf[email]
		if !ok || i%4 == 0 {
			// Another device, on the next partition: identified, then buys.
			v = cc.ref.VisitorOn(clusterSite, (i+1)%campaignParts, 9000+100*i)
			buys = append(buys, profiletest.Batch(clusterSite, v, profiletest.Identify(ts-1, email), p))
			continue
		}
		buys = append(buys, profiletest.Batch(clusterSite, v, p))
	}
	// One order from two devices of m12: counted once.
	d := cc.ref.VisitorOn(clusterSite, 3, 20000)
	buys = append(buys, profiletest.Batch(clusterSite, d, profiletest.Identify(sent, "m12@x.io"), purchase(sent+5, "o12", 12.25)))
	cc.send(t, cc.nodes, append(engage(a), buys...), append(engage(cc.ref), buys...))

	report := cc.same(t, http.MethodGet, "/v1/campaigns/shop/1/report")
	cc.same(t, http.MethodGet, "/v1/campaigns/shop/1/report?format=csv")
	for _, s := range []string{`"opened":0,`, `"converted":0,`} {
		if strings.Count(report, s) == strings.Count(report, `"opened":`) {
			t.Fatalf("report has %s in every group: the test counts nothing\n%s", s, report)
		}
	}
	// Each node alone holds only its partitions' counters: the report is
	// the group's sum, not one node's.
	c, err := a.Campaigns.Get(clusterSite, 1)
	if err != nil {
		t.Fatal(err)
	}
	local, err := a.Campaigns.Report(c, sent)
	if err != nil {
		t.Fatal(err)
	}
	if own := string(local.AppendJSON(nil)); strings.Contains(report, own[strings.Index(own, `"arms"`):]) {
		t.Fatalf("node A's own counters give the group's report: the test does not need the fan-out\n%s", own)
	}

	// An owner's part of the report: refused clearly when asked wrong.
	for _, tc := range []struct {
		path, parts string
		code        int
		want        string
	}{
		{"/v1/internal/campaigns/shop/1/counters", "", 400, "invalid counters request without X-Affinity-Partitions"},
		{"/v1/internal/campaigns/shop/x/counters", "0", 400, `invalid campaign id "x"`},
		{"/v1/internal/campaigns/shop/1/counters", "0,x", 400, `invalid X-Affinity-Partitions "0,x"`},
		{"/v1/internal/campaigns/shop/9/counters", "0", 503, "no campaign 9 of site \"shop\" on this node"},
		{"/v1/internal/campaigns/shop/1/counters", "1", 503, "partition 1 is not served by this node"},
		{"/v1/internal/campaigns/shop/1/totals", "0", 404, "counters"},
	} {
		h := http.Header{api.HeaderHop: {"1"}}
		if tc.parts != "" {
			h.Set(api.HeaderPartitions, tc.parts)
		}
		if code, body := a.DoHeader(t, http.MethodGet, tc.path, h, nil, true); code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s (partitions %q): %d %s; want %d …%s…", tc.path, tc.parts, code, body, tc.code, tc.want)
		}
	}

	// A partition without an owner: 503 naming it, never a partial sum.
	cc.setOwners(a.URL, "", a.URL, b.URL)
	code, h, body := a.DoResponse(t, http.MethodGet, "/v1/campaigns/shop/1/report", nil, nil, true)
	if code != 503 || h.Get("Retry-After") == "" || !strings.Contains(body, "partition 1") {
		t.Fatalf("report with partition 1 unowned: %d %q %s; want 503, Retry-After and the partition", code, h.Get("Retry-After"), body)
	}
	cc.setOwners(a.URL, b.URL, a.URL, b.URL)

	// A node started now holds the campaign from the topic; rebuilding
	// partition 0 from offset 0 forwards its purchases again, which the
	// recipients' owners count nothing for.
	fresh := cc.openNode(t, 0)
	fresh.Clock.Set(sent)
	for _, path := range []string{"/v1/campaigns/shop/1", "/v1/campaigns/shop/1/recipients?format=csv", "/v1/campaigns/shop/1/recipients?format=csv&group=control"} {
		_, want := a.Do(t, http.MethodGet, path, "", nil, true)
		if code, got := fresh.Do(t, http.MethodGet, path, "", nil, true); code != 200 || got != want {
			t.Fatalf("GET %s on a fresh node: %d\n%s\nwant node A's\n%s", path, code, got, want)
		}
	}
	cc.send(t, append(cc.nodes, fresh), nil, nil)
	cc.same(t, http.MethodGet, "/v1/campaigns/shop/1/report")

	// A delete on one node reaches every node.
	if code, body := b.Do(t, http.MethodDelete, "/v1/campaigns/shop/1", "", nil, true); code != 204 {
		t.Fatalf("DELETE on node B: %d %s", code, body)
	}
	for _, e := range []*profiletest.Env{a, fresh} {
		profiletest.WaitUntil(t, "the delete applied", func() bool {
			code, _ := e.Do(t, http.MethodGet, "/v1/campaigns/shop/1", "", nil, true)
			return code == 404
		})
	}
	if code, body := a.Do(t, http.MethodDelete, "/v1/campaigns/shop/1", "", nil, true); code != 404 {
		t.Fatalf("DELETE again: %d %s; want 404", code, body)
	}
}

// stripTokens drops the token column of a recipients CSV.
func stripTokens(csv string) string {
	var out strings.Builder
	for _, line := range strings.SplitAfter(csv, "\n") {
		if i := strings.LastIndexByte(line, ','); i >= 0 {
			line = line[:i] + "\n"
		}
		out.WriteString(line)
	}
	return out.String()
}

// purchase returns a purchase at ts of order id with total.
func purchase(ts int64, order string, total float64) event.Event {
	e := profiletest.Event(event.TypePurchase, ts, nil)
	e.HasOrder, e.Order = true, event.Order{ID: order, Total: total, HasTotal: true}
	return e
}

// TestClusterCampaignPerPerson: a campaign frozen on a node of a build
// group from a per-person segment (whose members export leads each CSV
// row with the person id) sends to the persons' emails, the reference's
// recipients but for the tokens.
func TestClusterCampaignPerPerson(t *testing.T) {
	cc := newCampaignCluster(t)
	a, b := cc.nodes[0], cc.nodes[1]
	for _, n := range cc.nodes {
		n.Segments.SetPersons(n.Query.Persons(campaignParts, profiletest.Token))
	}
	for _, w := range []*profiletest.Env{cc.ref, a} {
		if code, body := w.Do(t, http.MethodPut, "/v1/segments/shop/people?per=person", "text/plain", []byte(`count(view) >= 1`), true); code != 201 {
			t.Fatalf("PUT segment: %d %s", code, body)
		}
	}
	profiletest.WaitUntil(t, "node B applied the segment", func() bool {
		code, _ := b.Do(t, http.MethodGet, "/v1/segments/shop/people", "", nil, true)
		return code == 200
	})
	// Persons of two devices on different partitions, and anonymous ones.
	var bs []*event.Batch
	for i := range 24 {
		v := cc.ref.VisitorOn(clusterSite, i%campaignParts, 5000+100*i)
		evs := []event.Event{profiletest.View(t0, event.Product{ID: "p", Brand: "lego"})}
		if i%6 != 5 {
			evs = append(evs, profiletest.Identify(t0, fmt.Sprintf("m%d@x.io", i/2)))
		}
		bs = append(bs, profiletest.Batch(clusterSite, v, evs...))
	}
	cc.send(t, cc.nodes, bs, bs)
	cc.same(t, http.MethodGet, "/v1/segments/shop/people/members?format=csv&facts=false")

	const spec = `{"name":"persons","arms":[{"name":"people","segment":"people"}],"holdout":30,"window":"7d"}`
	wantCode, want := cc.ref.Do(t, http.MethodPost, "/v1/campaigns/shop", "application/json", []byte(spec), true)
	if code, got := a.Do(t, http.MethodPost, "/v1/campaigns/shop", "application/json", []byte(spec), true); code != wantCode || got != want {
		t.Fatalf("POST campaign on node A: %d %s\nwant the reference's %d %s", code, got, wantCode, want)
	}
	for _, group := range []string{"treated", "control"} {
		path := "/v1/campaigns/shop/1/recipients?format=csv&group=" + group
		_, rref := cc.ref.Get(t, path)
		_, ra := a.Get(t, path)
		if got, want := stripTokens(ra), stripTokens(rref); got != want || !strings.Contains(want, "@x.io,people,") {
			t.Fatalf("%s recipients of the group (tokens left out):\n%s\nwant the reference's, of emails\n%s", group, got, want)
		}
	}
}

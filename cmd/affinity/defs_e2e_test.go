package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/affinityhq/affinity/profile/profiletest"
)

// nodeLocal matches what differs between nodes by design: a node's own
// backfill or re-evaluation progress, its members' count (it holds the
// members of its partitions) and its webhook delivery position.
var nodeLocal = regexp.MustCompile(`"size":\d+,|,"backfill":\{[^}]*\}|,"reevaluation":\{[^}]*\}|,"delivered":"\d+"`)

// definitionPaths are the GETs every node must answer alike once the
// definitions topic is applied.
var definitionPaths = []string{
	"/v1/segments/e2e",
	"/v1/segments/e2e/buyers/webhook",
	"/v1/lists/e2e",
	"/v1/lists/e2e/crm?format=csv",
	"/v1/catalog/e2e/sku-1",
}

// definitionsOf returns p's answers to definitionPaths (and extra), less
// nodeLocal.
func definitionsOf(t *testing.T, p *proc, extra ...string) []string {
	t.Helper()
	var out []string
	for _, path := range append(slices.Clone(definitionPaths), extra...) {
		code, body := apiDo(t, http.MethodGet, p.api+path, "", nil)
		out = append(out, path+" "+http.StatusText(code)+" "+nodeLocal.ReplaceAllString(body, ""))
	}
	return out
}

// waitSameDefinitions waits until every node answers the definitions as
// the first one does.
func waitSameDefinitions(t *testing.T, ps []*proc, extra ...string) []string {
	t.Helper()
	var want, got []string
	deadline := time.Now().Add(60 * time.Second)
	for {
		want = definitionsOf(t, ps[0], extra...)
		ok := true
		for _, p := range ps[1:] {
			if got = definitionsOf(t, p, extra...); !slices.Equal(got, want) {
				ok = false
				break
			}
		}
		if ok {
			return want
		}
		if time.Now().After(deadline) {
			t.Fatalf("the nodes answer different definitions:\n got %q\nwant %q", got, want)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// membersOf returns the visitors p exports as members of a segment; nil
// while an owner of a partition is not ready to answer.
func membersOf(t *testing.T, p *proc, name string) []string {
	t.Helper()
	code, body := apiDo(t, http.MethodGet, p.api+"/v1/segments/e2e/"+name+"/members?format=ndjson", "", nil)
	switch {
	case code == http.StatusServiceUnavailable: // an owner catching up: asked again
		return nil
	case code != http.StatusOK:
		t.Fatalf("members of %s: %d %s", name, code, body)
	}
	var vs []string
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		var row struct{ Visitor string }
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatalf("members row %q: %s", sc.Text(), err)
		}
		vs = append(vs, row.Visitor)
	}
	slices.Sort(vs)
	return vs
}

// TestClusterSharesDefinitions runs two builders in a group and a
// reference builder pinned to every partition, all on the definitions
// topic of a 3-broker kfake. Definitions written on either member — a
// segment, a webhook, a list larger than one chunk, a catalog, a delete —
// reach every node; a refused write reaches none; each member exports the
// members the reference holds (its owners' memberships, merged); a member
// SIGKILLed and restarted, and a brand-new member, end with the same
// definitions.
func TestClusterSharesDefinitions(t *testing.T) {
	const (
		parts = 4
		site  = "e2e"
		topic = "events"
	)
	brokers := profiletest.StartKafka(t, kfake.SeedTopics(parts, topic))
	kafka := strings.Join(brokers, ",")
	col := startAffinity(t, "collect", "--data", t.TempDir(), "--kafka", kafka, "--topic", topic, "--site", site)
	common := []string{"--kafka", kafka, "--topic", topic, "--changes-topic", "", "--defs-chunk-bytes", "64"}
	member := func(dir string) *proc {
		return startAffinity(t, append([]string{"build", "--data", dir, "--group-session-timeout", "6s", "--group-rebalance-timeout", "6s"}, common...)...)
	}
	// Pinned with --own, the reference reads the definitions only because
	// --defs-topic is given.
	ref := startAffinity(t, append([]string{"build", "--data", t.TempDir(), "--own", "0-3", "--defs-topic", "affinity-definitions"}, common...)...)
	bDir := t.TempDir()
	a, b := member(t.TempDir()), member(bDir)
	waitOwned(t, "two members share", []*proc{a, b}, []string{"*", "*"})

	put := func(p *proc, method, path, ct, body string, want int) string {
		t.Helper()
		code, got := apiDo(t, method, p.api+path, ct, []byte(body))
		if code != want {
			t.Fatalf("%s %s: %d %s; want %d", method, path, code, got, want)
		}
		return got
	}
	put(a, "PUT", "/v1/segments/e2e/buyers", "text/plain", `count(purchase, 90d) >= 1`, 201)
	put(a, "PUT", "/v1/segments/e2e/buyers/webhook", "application/json", `{"url":"http://127.0.0.1:1/hook","secret":"s3cret"}`, 200)
	list := "email,customer_id\nann@example.com,\n"
	for i := 0; len(list) < 300; i++ { // several chunks of 64 bytes
		list += "padding" + string(rune('a'+i%26)) + "@example.org,\n"
	}
	put(a, "PUT", "/v1/lists/e2e/crm", "text/csv", list, 201)
	put(a, "PUT", "/v1/segments/e2e/crm", "text/plain", `in_list("crm")`, 201)
	put(a, "PUT", "/v1/catalog/e2e", "application/x-ndjson", `{"id":"sku-1","name":"Formula","brand":"Nutrilon","category":"baby/food","price":12.5}`+"\n", 200)
	put(a, "PUT", "/v1/segments/e2e/tmp", "text/plain", `count(view, 1d) >= 100`, 201)
	// A's PUT answers once A applied it; B applies it from the topic.
	waitUntil(t, "b holding segment tmp", func() bool {
		code, _ := apiDo(t, http.MethodGet, b.api+"/v1/segments/e2e/tmp", "", nil)
		return code == http.StatusOK
	})
	put(b, "DELETE", "/v1/segments/e2e/tmp", "", "", 204)

	end := profiletest.TopicEnd(t, brokers, "affinity-definitions")
	got := put(b, "PUT", "/v1/segments/e2e/bad", "text/plain", `count(purchase, 90d >= 1`, 400)
	if !strings.Contains(got, "invalid") && !strings.Contains(got, "expect") {
		t.Errorf("bad rule: %s; want a reason", got)
	}
	put(b, "PUT", "/v1/lists/e2e/bad", "text/csv", "email\nnot-an-email\n", 400)
	if after := profiletest.TopicEnd(t, brokers, "affinity-definitions"); after != end {
		t.Errorf("refused writes on B: the definitions topic grew from %d to %d records", end, after)
	}
	if code, body := apiDo(t, http.MethodGet, a.api+"/v1/segments/e2e/bad", "", nil); code != http.StatusNotFound {
		t.Errorf("the refused segment on A: %d %s; want 404", code, body)
	}

	want := waitSameDefinitions(t, []*proc{a, b, ref})
	if !strings.Contains(want[3], "ann@example.com") || !strings.Contains(want[3], "paddingz@example.org") && !strings.Contains(want[3], "paddingm@example.org") {
		t.Errorf("list rows: %s; want every row of the chunked upload", want[3])
	}
	if strings.Contains(want[0], `"tmp"`) {
		t.Errorf("segments after the delete on B: %s; want no tmp", want[0])
	}

	// Traffic: the members' memberships together are the reference's.
	client := &http.Client{Timeout: 30 * time.Second}
	vs := make([]string, 24)
	for i := range vs {
		vs[i] = uuidString()
		if st := post(client, col.collector, randomBatch(site, vs[i], 1+i%6)); st != http.StatusAccepted {
			t.Fatalf("visitor %d: status %d", i, st)
		}
	}
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
	for _, p := range []*proc{ref, a, b} {
		profilesWhenIdle(t, p, site, at, nil)
	}
	for _, seg := range []string{"buyers", "crm"} {
		waitUntil(t, "the members of "+seg+" exported by a and b (each merging both owners') being the reference's", func() bool {
			want := membersOf(t, ref, seg)
			return len(want) > 0 && slices.Equal(membersOf(t, a, seg), want) && slices.Equal(membersOf(t, b, seg), want)
		})
	}

	// A campaign created on A: every node holds it, purchases of its
	// recipients count on whichever member owns them, and the report
	// of either member is the reference's (one node over every partition).
	put(a, "POST", "/v1/campaigns/e2e", "application/json", `{"name":"spring","arms":[{"name":"buyers","segment":"buyers"},{"name":"crm","list":"crm"}],"holdout":20,"window":"7d"}`, 201)
	campaignPaths := []string{"/v1/campaigns/e2e/1", "/v1/campaigns/e2e/1/recipients?format=csv", "/v1/campaigns/e2e/1/recipients?format=csv&group=control"}
	waitSameDefinitions(t, []*proc{a, b, ref}, campaignPaths...)
	buyers := []string{"ann@example.com", "paddinga@example.org", "paddingb@example.org", "paddingc@example.org", "paddingd@example.org"}
	for i, email := range buyers {
		now := time.Now().UnixMilli()
		batch := fmt.Sprintf(`{"site":%q,"v":%q,"events":[{"id":%q,"t":"identify","ts":%d,"email":%q},{"id":%q,"t":"purchase","ts":%d,"order":{"id":"c-%d","total":10}}]}`,
			site, uuidString(), uuidString(), now, email, uuidString(), now+1, i)
		if st := post(client, col.collector, []byte(batch)); st != http.StatusAccepted {
			t.Fatalf("purchase of %s: status %d", email, st)
		}
	}
	report := func(p *proc) string {
		code, body := apiDo(t, http.MethodGet, p.api+"/v1/campaigns/e2e/1/report", "", nil)
		if code != http.StatusOK {
			return fmt.Sprint(code, " ", body)
		}
		return body
	}
	waitUntil(t, "the members' campaign reports being the reference's, with every purchase", func() bool {
		want := report(ref)
		var r struct {
			Arms []struct{ Treated, Control struct{ Orders int } }
		}
		if json.Unmarshal([]byte(want), &r) != nil {
			return false
		}
		orders := 0
		for _, arm := range r.Arms {
			orders += arm.Treated.Orders + arm.Control.Orders
		}
		return orders == len(buyers) && report(a) == want && report(b) == want
	})

	// B dies and comes back on its data; C is new. A segment written
	// while B is down reaches both, and both hold the campaign.
	b.cmd.Process.Kill()
	<-b.done
	put(a, "PUT", "/v1/segments/e2e/late", "text/plain", `count(cart, 30d) >= 1`, 201)
	b = member(bDir)
	cNode := member(t.TempDir())
	final := waitSameDefinitions(t, []*proc{a, b, cNode, ref}, append([]string{"/v1/segments/e2e/late"}, campaignPaths...)...)
	if !strings.Contains(final[len(definitionPaths)], "OK") {
		t.Errorf("the segment written while B was down: %s", final[len(definitionPaths)])
	}
	if !strings.Contains(final[len(final)-3], `"name":"spring"`) {
		t.Errorf("the campaign on every node: %s", final[len(final)-3])
	}
}

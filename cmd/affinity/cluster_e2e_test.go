package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/tracker/event"
)

var clusterLine = regexp.MustCompile(`(?m)^cluster group=\S+ member=".*" generation=(-?\d+) api=\S+ partitions=(\S*)$`)

// ownedOf returns the partitions p's /healthz says it owns in its group.
func ownedOf(t *testing.T, p *proc) string {
	t.Helper()
	m := clusterLine.FindStringSubmatch(healthz(t, p))
	if m == nil || m[1] == "-1" {
		return ""
	}
	return m[2]
}

// waitOwned waits until each of ps owns the partitions want says, as
// /healthz shows them ("0,1"), and returns how long it took.
func waitOwned(t *testing.T, what string, ps []*proc, want []string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok := true
		var got []string
		for i, p := range ps {
			o := ownedOf(t, p)
			got = append(got, o)
			ok = ok && (o == want[i] || want[i] == "*" && o != "")
		}
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > 45*time.Second {
			t.Fatalf("%s: owned %q; want %q", what, got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startBuildGroup starts a 3-broker kfake with topic of parts partitions,
// a collector of site on it, a reference builder pinned to every
// partition and two builders sharing them in a group, and waits until
// both own some; member starts another (session and rebalance timeouts
// 6 s).
func startBuildGroup(t *testing.T, parts int, site, topic string) (col, ref, b1, b2 *proc, member func() *proc) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.SeedTopics(int32(parts), topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	kafka := strings.Join(c.ListenAddrs(), ",")
	col = startAffinity(t, "collect", "--data", t.TempDir(), "--kafka", kafka, "--topic", topic, "--site", site)
	member = func() *proc {
		return startAffinity(t, "build", "--data", t.TempDir(), "--kafka", kafka, "--topic", topic, "--changes-topic", "",
			"--group-session-timeout", "6s", "--group-rebalance-timeout", "6s")
	}
	ref = startAffinity(t, "build", "--data", t.TempDir(), "--kafka", kafka, "--topic", topic, "--changes-topic", "", "--own", fmt.Sprintf("0-%d", parts-1))
	b1, b2 = member(), member()
	waitOwned(t, "two members share", []*proc{b1, b2}, []string{"*", "*"})
	return col, ref, b1, b2, member
}

// TestClusterMovesPartitions runs one collector and two builders in a
// consumer group on a 3-broker kfake, beside a reference builder pinned
// to every partition. The two share the partitions; SIGKILL one and the
// survivor owns them all within the session timeout and every profile it
// serves equals the reference's; a third builder joining takes a share
// again, and each visitor's profile, read from its partition's owner as
// GET /v1/cluster names it, still equals the reference, with no event
// applied twice on the survivor.
func TestClusterMovesPartitions(t *testing.T) {
	const (
		parts    = 4
		visitors = 40
		site     = "e2e"
		topic    = "events"
	)
	col, ref, b1, b2, member := startBuildGroup(t, parts, site, topic)
	if o1, o2 := ownedOf(t, b1), ownedOf(t, b2); strings.Count(o1, ",")+strings.Count(o2, ",") != parts-2 {
		t.Fatalf("b1 owns %q, b2 %q; want 2 each", o1, o2)
	}

	vs := make([]string, visitors)
	for i := range vs {
		vs[i] = uuidString()
	}
	client := &http.Client{Timeout: 30 * time.Second}
	send := func(round int) {
		for i, v := range vs {
			if st := post(client, col.collector, randomBatch(site, v, 1+(i+round)%5)); st != http.StatusAccepted {
				t.Fatalf("round %d, visitor %d: status %d", round, i, st)
			}
		}
	}
	send(0)
	send(1)
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
	profilesWhenIdle(t, b1, site, at, nil)
	profilesWhenIdle(t, b2, site, at, nil)

	b2.cmd.Process.Kill()
	<-b2.done
	send(2) // while the group has not noticed yet
	moved := waitOwned(t, "the survivor owns every partition", []*proc{b1}, []string{"0,1,2,3"})
	t.Logf("partitions moved %s after the SIGKILL (session timeout 6 s)", moved.Round(100*time.Millisecond))
	send(3)
	want := profilesWhenIdle(t, ref, site, at, vs)
	got := profilesWhenIdle(t, b1, site, at, vs)
	for i, v := range vs {
		if got[v] != want[v] {
			t.Errorf("visitor %d %s on the survivor:\n got %s\nwant %s", i, v, got[v], want[v])
		}
	}
	refDedup := statusLine.FindStringSubmatch(healthz(t, ref))
	if m := statusLine.FindStringSubmatch(healthz(t, b1)); m == nil || refDedup == nil || m[2] != refDedup[2] {
		t.Errorf("dedup hits on the survivor %v; want the reference's %v: nothing applied twice", m, refDedup)
	}

	b3 := member()
	waitOwned(t, "the survivor and the newcomer share", []*proc{b1, b3}, []string{"*", "*"})
	send(4)
	want = profilesWhenIdle(t, ref, site, at, vs)
	byAPI := map[string]*proc{b1.api: b1, b3.api: b3}
	var view struct {
		Generation int
		Owners     []*string
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := apiDo(t, http.MethodGet, b1.api+"/v1/cluster", "", nil)
		if code != http.StatusOK {
			t.Fatalf("GET /v1/cluster: %d %s", code, body)
		}
		if err := json.Unmarshal([]byte(body), &view); err != nil {
			t.Fatalf("GET /v1/cluster: %v: %s", err, body)
		}
		complete := len(view.Owners) == parts
		for _, o := range view.Owners {
			complete = complete && o != nil && byAPI[*o] != nil
		}
		if complete {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /v1/cluster never named b1 (%s) and b3 (%s) as the owners: %s", b1.api, b3.api, body)
		}
		time.Sleep(300 * time.Millisecond)
	}
	for _, p := range []*proc{b1, b3} {
		profilesWhenIdle(t, p, site, at, nil)
	}
	for i, v := range vs {
		u, _ := event.ParseUUID([]byte(v))
		owner := byAPI[*view.Owners[storage.PartitionFor(event.AppendLogKey(nil, site, u), parts)]]
		code, body := apiDo(t, http.MethodGet, owner.api+"/v1/visitors/"+site+"/"+v+"?at="+at, "", nil)
		if code != http.StatusOK || body != want[v] {
			t.Errorf("visitor %d %s on its owner %s: %d\n got %s\nwant %s", i, v, owner.api, code, body, want[v])
		}
	}
	refDedup = statusLine.FindStringSubmatch(healthz(t, ref))
	if m := statusLine.FindStringSubmatch(healthz(t, b1)); m == nil || m[2] != refDedup[2] {
		t.Errorf("dedup hits on the survivor after the newcomer joined %v; want the reference's %v", m, refDedup)
	}
	b1.stop(t, syscall.SIGTERM)
	if out := b1.output(); !strings.Contains(out, "shutdown: left the consumer group") {
		t.Errorf("b1's shutdown did not leave the group first:\n%s", out)
	}
}

// waitSettled waits until members together own every partition of topic,
// each once, and each partition's owner and ref consumed it to the end
// the brokers give (not the nodes' own idea of it). It fails quoting each
// node's /healthz and log tail when that takes over 2 minutes.
func waitSettled(t *testing.T, brokers []string, topic string, ref *proc, members []*proc) time.Duration {
	t.Helper()
	start := time.Now()
	for why := ""; ; time.Sleep(300 * time.Millisecond) {
		if why = settled(t, brokers, topic, ref, members); why == "" {
			return time.Since(start)
		}
		if time.Since(start) > 2*time.Minute {
			var sb strings.Builder
			for _, p := range append([]*proc{ref}, members...) {
				fmt.Fprintf(&sb, "\n--- %s /healthz:\n%s--- log tail:\n%s\n", p.api, healthz(t, p), lastLines(p.output(), 15))
			}
			t.Fatalf("the cluster did not settle on topic %s within 2 minutes: %s%s", topic, why, sb.String())
		}
	}
}

// settled says why ref and members have not settled yet, or "".
func settled(t *testing.T, brokers []string, topic string, ref *proc, members []*proc) string {
	t.Helper()
	ends := profiletest.TopicEnds(t, brokers, topic)
	owner := make([]*proc, len(ends))
	for _, p := range members {
		consumed := consumedOf(t, p)
		for _, s := range strings.Split(ownedOf(t, p), ",") {
			part, err := strconv.Atoi(s)
			if err != nil || part >= len(ends) {
				return fmt.Sprintf("%s owns %q", p.api, s)
			}
			if owner[part] != nil {
				return fmt.Sprintf("partition %d owned by %s and %s", part, owner[part].api, p.api)
			}
			owner[part] = p
			if consumed[part] < ends[part] {
				return fmt.Sprintf("%s consumed partition %d to %d of %d", p.api, part, consumed[part], ends[part])
			}
		}
	}
	consumed := consumedOf(t, ref)
	for part, end := range ends {
		if owner[part] == nil {
			return fmt.Sprintf("partition %d has no owner", part)
		}
		if consumed[part] < end {
			return fmt.Sprintf("the reference consumed partition %d to %d of %d", part, consumed[part], end)
		}
	}
	return ""
}

// sameOnEvery asks ref and each of nodes path and wants each node's answer
// to be the reference's — the same status and bytes but for the instants
// members entered a segment (enteredAt), which are each evaluating node's
// clock — and the nodes' answers, merged from the same owners, to be the
// same bytes. A node's 503 (an owner not seen yet) is asked again for up to
// 30 s. It returns the first node's answer.
func sameOnEvery(t *testing.T, ref *proc, nodes []*proc, path string) string {
	t.Helper()
	wantCode, want := apiDo(t, http.MethodGet, ref.api+path, "", nil)
	var first string
	for i, p := range nodes {
		code, got := apiDo(t, http.MethodGet, p.api+path, "", nil)
		for deadline := time.Now().Add(30 * time.Second); code == http.StatusServiceUnavailable && wantCode != code && time.Now().Before(deadline); {
			time.Sleep(200 * time.Millisecond)
			code, got = apiDo(t, http.MethodGet, p.api+path, "", nil)
		}
		if code != wantCode || enteredAt.ReplaceAllString(got, "T") != enteredAt.ReplaceAllString(want, "T") {
			t.Fatalf("GET %s on node %d (%s): %d\n%s\nwant the reference's %d\n%s", path, i, p.api, code, got, wantCode, want)
		}
		if i == 0 {
			first = got
		} else if got != first {
			t.Fatalf("GET %s: node 0 (%s) and node %d (%s) differ:\n%s\n%s", path, nodes[0].api, i, p.api, first, got)
		}
	}
	return first
}

// pagesAlike reads path — a members export (format csv or ndjson) or an
// interest list (ndjson) — in pages of limit rows, each page asked of the
// next of nodes in turn with the cursor the page before ended with, and
// wants each page to be the reference's at that cursor (as sameOnEvery
// compares them). It returns the rows read.
func pagesAlike(t *testing.T, ref *proc, nodes []*proc, path, format string, limit int) int {
	t.Helper()
	cursor, rows := "", 0
	for page := 0; ; page++ {
		paged := fmt.Sprintf("%s&limit=%d&cursor=%s", path, limit, url.QueryEscape(cursor))
		got := sameOnEvery(t, ref, nodes[page%len(nodes):page%len(nodes)+1], paged)
		lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
		last := lines[len(lines)-1]
		if format == "csv" {
			rows += len(lines) - 1 // the header
			if len(lines)-1 < limit {
				return rows
			}
			cursor = last[:36]
			continue
		}
		if !strings.HasPrefix(last, `{"cursor":"`) {
			if got != "" {
				rows += len(lines)
			}
			return rows
		}
		rows += len(lines) - 1
		cursor = strings.TrimSuffix(strings.TrimPrefix(last, `{"cursor":"`), `"}`)
	}
}

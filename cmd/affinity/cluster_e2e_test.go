package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

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

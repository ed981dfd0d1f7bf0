package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/tracker/event"
)

// The end-to-end test of the profiles: events posted to the real binary's
// collector come back from its query API as decayed scores equal to the
// direct sum Σ w·2^(−(T−t)/H), computed here from the posted events.

// scoredEvent is an event posted, as the test scores it.
type scoredEvent struct {
	typ   string // view, cart, purchase
	ts    int64  // Unix ms
	brand string
}

// profileBatch returns a JSON batch of one visitor: the scored events (with
// the product given by id only when brand is "", for the catalog join), and
// an identify.
func profileBatch(site, visitor string, evs []scoredEvent, email string) []byte {
	var sb strings.Builder
	fmt.Fprintf(&sb, `{"site":%q,"v":%q,"events":[`, site, visitor)
	for i, e := range evs {
		if i > 0 {
			sb.WriteByte(',')
		}
		if e.brand == "" {
			fmt.Fprintf(&sb, `{"id":%q,"t":%q,"ts":%d,"product":{"id":"cat-1"}}`, uuidString(), e.typ, e.ts)
		} else {
			fmt.Fprintf(&sb, `{"id":%q,"t":%q,"ts":%d,"product":{"id":"sku-%d","brand":%q,"category":"baby/food","price":12.5}}`,
				uuidString(), e.typ, e.ts, i, e.brand)
		}
	}
	if email != "" {
		fmt.Fprintf(&sb, `,{"id":%q,"t":"identify","ts":%d,"email":%q}`, uuidString(), evs[0].ts, email)
	}
	sb.WriteString(`]}`)
	return []byte(sb.String())
}

// wantBrandScores returns the direct sums per brand at at, with the default
// weights and half-life; catalogBrand names the brand of product cat-1.
func wantBrandScores(evs []scoredEvent, at int64, catalogBrand string) map[string]float64 {
	cfg := profile.DefaultConfig()
	h := float64(cfg.HalfLife(profile.DimBrand).Milliseconds())
	want := map[string]float64{}
	for _, e := range evs {
		w := cfg.Weight(event.ParseType([]byte(e.typ)), profile.DimBrand)
		brand := e.brand
		if brand == "" {
			brand = catalogBrand
		}
		want[brand] += w * math.Exp2(-float64(at-e.ts)/h)
	}
	return want
}

// apiDo sends an authenticated request to the internal listener.
func apiDo(t testing.TB, method, url, contentType string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer test-token")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// brandScores reads the brand scores of a visitor at at; ok is false while
// the visitor is unknown.
func brandScores(t testing.TB, api, site, visitor string, at int64) (map[string]float64, string, bool) {
	t.Helper()
	url := fmt.Sprintf("%s/v1/visitors/%s/%s?at=%s", api, site, visitor, time.UnixMilli(at).UTC().Format(time.RFC3339Nano))
	code, body := apiDo(t, http.MethodGet, url, "", nil)
	switch code {
	case http.StatusNotFound:
		if strings.Contains(body, "no such path") {
			t.Fatalf("GET %s: the binary serves no query API: %s", url, body)
		}
		return nil, "", false
	case http.StatusServiceUnavailable:
		// A build group's member serves a partition once it applied the
		// log as far as it reached when the partition was assigned.
		return nil, "", false
	case http.StatusOK:
	default:
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	var p struct {
		Email     string `json:"email"`
		Interests map[string][]struct {
			Value string  `json:"value"`
			Score float64 `json:"score"`
		} `json:"interests"`
	}
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatalf("GET %s: %v in %s", url, err, body)
	}
	got := map[string]float64{}
	for _, it := range p.Interests["brand"] {
		got[it.Value] = it.Score
	}
	return got, p.Email, true
}

// waitScores polls the visitor until its brand scores at at equal want
// (1e-9 relative), the builder having applied every event.
func waitScores(t testing.TB, api, site, visitor string, at int64, want map[string]float64, wantEmail string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var got map[string]float64
	for {
		var email string
		var ok bool
		got, email, ok = brandScores(t, api, site, visitor, at)
		if ok && email == wantEmail && sameScores(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("visitor %s at %d: got brand scores %v, email %q; want %v, %q", visitor, at, got, email, want, wantEmail)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func sameScores(got, want map[string]float64) bool {
	if len(got) != len(want) {
		return false
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok || math.Abs(g-w) > 1e-9*math.Abs(w) {
			return false
		}
	}
	return true
}

// postBatch posts one batch to the collector and wants 202.
func postBatch(t testing.TB, collector string, body []byte) {
	t.Helper()
	if st := post(http.DefaultClient, collector, body); st != http.StatusAccepted {
		t.Fatalf("POST /v1/events: status %d for %s", st, body)
	}
}

// checkProfileScores posts events of two visitors and reads back their
// decayed scores, now and 10 days later; then uploads a catalog, posts an
// event naming only a product id and finds the catalog's brand scored.
// collector and api are the base URLs of the processes serving them.
func checkProfileScores(t *testing.T, collector, api, site string) {
	now := time.Now().UnixMilli()
	hour := int64(time.Hour / time.Millisecond)
	v1, v2 := uuidString(), uuidString()
	ev1 := []scoredEvent{
		{"view", now - 72*hour, "Nutrilon"},
		{"cart", now - 24*hour, "Nutrilon"},
		{"view", now - 2*hour, "Pampers"},
		{"purchase", now - hour, "Pampers"}, // scored on the order's items: none here, so on the product
	}
	ev2 := []scoredEvent{{"view", now - 5*hour, "Lego"}, {"view", now - 4*hour, "Lego"}}
	postBatch(t, collector, profileBatch(site, v1, ev1[:2], "Ann@Example.com"))
	postBatch(t, collector, profileBatch(site, v1, ev1[2:], ""))
	postBatch(t, collector, profileBatch(site, v2, ev2, ""))
	for _, at := range []int64{now, now + 10*24*hour} {
		waitScores(t, api, site, v1, at, wantBrandScores(ev1, at, ""), "ann@example.com")
		waitScores(t, api, site, v2, at, wantBrandScores(ev2, at, ""), "")
	}

	// The catalog join: an event naming only product cat-1.
	code, body := apiDo(t, http.MethodPut, api+"/v1/catalog/"+site, "text/csv", []byte("id,brand,category\ncat-1,FromCatalog,toys\n"))
	if code != http.StatusOK {
		t.Fatalf("PUT catalog: %d %s", code, body)
	}
	ev3 := []scoredEvent{{"view", now - hour, ""}}
	v3 := uuidString()
	postBatch(t, collector, profileBatch(site, v3, ev3, ""))
	waitScores(t, api, site, v3, now, wantBrandScores(ev3, now, "FromCatalog"), "")

	// Forget v2.
	url := api + "/v1/visitors/" + site + "/" + v2
	if code, body := apiDo(t, http.MethodDelete, url, "", nil); code != http.StatusNoContent {
		t.Fatalf("DELETE %s: %d %s", url, code, body)
	}
	if code, body := apiDo(t, http.MethodGet, url, "", nil); code != http.StatusNotFound {
		t.Fatalf("GET %s after DELETE: %d %s", url, code, body)
	}
}

// TestServeProfileScores runs `affinity serve` and checks the scores of
// posted events through the query API.
func TestServeProfileScores(t *testing.T) {
	p := startAffinity(t, "serve", "--data", t.TempDir(), "--site", "e2e")
	checkProfileScores(t, p.collector, p.api, "e2e")
}

// TestCollectBuildProfileScores runs `affinity collect` and `affinity build`
// as two processes with Kafka between them (kfake over TCP, the topic
// seeded with kfake.SeedTopics; or the cluster AFFINITY_KAFKA names) and
// checks the same scores through the builder's query API.
func TestCollectBuildProfileScores(t *testing.T) {
	topic := fmt.Sprintf("e2e-profiles-%d", time.Now().UnixNano())
	brokers := kafkaBrokers(t, 3, topic)
	kafka := strings.Join(brokers, ",")
	col := startAffinity(t, "collect", "--data", t.TempDir(), "--kafka", kafka, "--topic", topic, "--topic-partitions", "3", "--site", "e2e")
	api := startAffinity(t, "build", "--data", t.TempDir(), "--kafka", kafka, "--topic", topic).api
	checkProfileScores(t, col.collector, api, "e2e")
}

// TestServeInterestsAfterSIGKILL: the interest index lives in memory and
// is rebuilt from the stored profiles at start, so `affinity serve`
// killed with SIGKILL and restarted on its data answers /v1/interests
// exactly as before the kill.
func TestServeInterestsAfterSIGKILL(t *testing.T) {
	data := t.TempDir()
	p := startAffinity(t, "serve", "--data", data, "--site", "e2e")
	now := time.Now().UnixMilli()
	hour := int64(time.Hour / time.Millisecond)
	brands := []string{"Lego", "Nutrilon", "Pampers"}
	want := map[string]int{} // visitors per brand
	for i := range 30 {
		var evs []scoredEvent
		for j := range 1 + i%3 {
			b := brands[(i+j)%len(brands)]
			evs = append(evs, scoredEvent{"view", now - int64(i+j)*hour, b})
		}
		seen := map[string]bool{}
		for _, e := range evs {
			if !seen[e.brand] {
				seen[e.brand] = true
				want[e.brand]++
			}
		}
		postBatch(t, p.collector, profileBatch("e2e", uuidString(), evs, fmt.Sprintf("v%d@example.com", i)))
	}
	at := time.UnixMilli(now).UTC().Format(time.RFC3339)
	answers := func(api string) map[string]string {
		got := map[string]string{}
		deadline := time.Now().Add(30 * time.Second)
		for _, b := range brands {
			for {
				code, body := apiDo(t, http.MethodGet, api+"/v1/interests/e2e/brand/"+b+"?min=0.001&at="+at, "", nil)
				if code == http.StatusOK && strings.Count(body, "\n") == want[b] {
					got[b] = body
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("GET /v1/interests of %s: %d, %d rows; want 200 and %d rows:\n%s", b, code, strings.Count(body, "\n"), want[b], body)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		return got
	}
	before := answers(p.api)
	p.stop(t, syscall.SIGKILL)

	p2 := startAffinity(t, "serve", "--data", data, "--site", "e2e")
	after := answers(p2.api)
	for _, b := range brands {
		if after[b] != before[b] {
			t.Errorf("brand %s after the restart:\n%s\nbefore the SIGKILL:\n%s", b, after[b], before[b])
		}
	}
	p2.stop(t, syscall.SIGTERM)
}

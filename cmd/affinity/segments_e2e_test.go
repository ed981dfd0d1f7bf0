package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/affinityhq/affinity/storage"
)

// TestServeSegments runs `affinity serve`, defines segments over the API,
// posts events and finds: the member with its email in the NDJSON and CSV
// exports, the visitor's segments (also through the demo panel), and an
// abandoned cart that leaves with no new event, recorded in the changes
// feed at the exact instant the window ended.
func TestServeSegments(t *testing.T) {
	p := startAffinity(t, "serve", "--data", t.TempDir(), "--site", "demo", "--demo")
	const site = "demo"
	seg := p.api + "/v1/segments/" + site
	for name, rule := range map[string]string{
		"mums":      `top(age) == "0-3" and (interest(brand, "Nutrilon") >= 1 or interest(brand, "Merries") >= 1 or interest(brand, "Philips") >= 1)`,
		"abandoned": `since(cart) <= 3s and since(purchase) > since(cart)`,
	} {
		if code, body := apiDo(t, http.MethodPut, seg+"/"+name, "text/plain", []byte(rule)); code != http.StatusCreated {
			t.Fatalf("PUT %s: %d %s", name, code, body)
		}
	}
	if code, body := apiDo(t, http.MethodPut, seg+"/broken", "text/plain", []byte(`since(cart) <= 24`)); code != http.StatusBadRequest || !strings.Contains(body, "at 16: expected a duration") {
		t.Errorf("PUT of a bad rule: %d %s; want 400 at 16", code, body)
	}

	now := time.Now().UnixMilli()
	mum, carter := uuidString(), uuidString()
	postBatch(t, p.collector, []byte(fmt.Sprintf(`{"site":%q,"v":%q,"events":[`+
		`{"id":%q,"t":"view","ts":%d,"product":{"id":"n1","brand":"Nutrilon","category":"baby/food","age":"0-3","price":12.5}},`+
		`{"id":%q,"t":"view","ts":%d,"product":{"id":"n1","brand":"Nutrilon","category":"baby/food","age":"0-3","price":12.5}},`+
		`{"id":%q,"t":"identify","ts":%d,"email":"Ann@Example.com"}]}`,
		site, mum, uuidString(), now-1000, uuidString(), now-1000, uuidString(), now-1000)))
	cartTS := now
	postBatch(t, p.collector, []byte(fmt.Sprintf(`{"site":%q,"v":%q,"events":[`+
		`{"id":%q,"t":"cart","ts":%d,"product":{"id":"l1","brand":"Lego","category":"toys","age":"6-9","price":40}}]}`,
		site, carter, uuidString(), cartTS)))

	// The member with its email, in NDJSON and CSV.
	var row struct {
		Visitor string
		Email   string
		Facts   map[string]any
	}
	waitUntil(t, "the mum in the export", func() bool {
		code, body := apiDo(t, http.MethodGet, seg+"/mums/members?format=ndjson", "", nil)
		if code != http.StatusOK {
			t.Fatalf("members: %d %s", code, body)
		}
		sc := bufio.NewScanner(strings.NewReader(body))
		for sc.Scan() {
			if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
				t.Fatalf("members row %q: %s", sc.Text(), err)
			}
		}
		return row.Visitor == mum
	})
	if row.Email != "ann@example.com" || row.Facts["top(age)"] != "0-3" {
		t.Errorf("members row: %+v; want email ann@example.com and facts", row)
	}
	code, body := apiDo(t, http.MethodGet, seg+"/mums/members?format=csv", "", nil)
	recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if code != http.StatusOK || err != nil || len(recs) != 2 || recs[1][0] != mum || recs[1][1] != "ann@example.com" {
		t.Errorf("members csv: %d %v %q", code, err, recs)
	}
	code, body = apiDo(t, http.MethodGet, p.api+"/v1/visitors/"+site+"/"+mum+"/segments", "", nil)
	if code != http.StatusOK || !strings.Contains(body, `{"name":"mums"`) {
		t.Errorf("visitor segments: %d %s", code, body)
	}
	// The demo panel reads the same.
	req, _ := http.NewRequest(http.MethodGet, p.collector+"/demo/api/visitor?v="+mum, nil)
	req.Header.Set("Cookie", "_aff_v="+mum)
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Errorf("demo panel: %v", err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"segments":{"visitor":"`+mum+`","segments":[{"name":"mums"`) {
			t.Errorf("demo panel: %d %s", resp.StatusCode, b)
		}
	}

	// The abandoned cart enters, then leaves 3 s after the cart with no
	// new event: at cart + 3 s + 1 ms (since(cart) <= 3s stops holding).
	type change struct{ Visitor, Change, At, Why, Email string }
	var changes []change
	waitUntil(t, "the cart's exit", func() bool {
		code, body := apiDo(t, http.MethodGet, seg+"/abandoned/changes", "", nil)
		var page struct{ Changes []change }
		if err := json.Unmarshal([]byte(body), &page); err != nil || code != http.StatusOK {
			t.Fatalf("changes: %d %s", code, body)
		}
		changes = page.Changes
		return len(changes) >= 2
	})
	wantExit := time.UnixMilli(cartTS + 3001).UTC().Format("2006-01-02T15:04:05.000Z07:00")
	if len(changes) != 2 || changes[0].Visitor != carter || changes[0].Change != "entered" ||
		changes[1].Change != "left" || changes[1].At != wantExit || changes[1].Why != "time" {
		t.Errorf("changes: %+v; want entered, then left at %s by time", changes, wantExit)
	}
}

// waitUntil polls cond for up to 20 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCollectBuildSegmentChanges runs collect and build with Kafka between
// them (kfake over TCP) and finds a segment entry on the changes topic.
func TestCollectBuildSegmentChanges(t *testing.T) {
	topic := fmt.Sprintf("e2e-seg-%d", time.Now().UnixNano())
	changes := topic + "-changes"
	brokers := kafkaBrokers(t, 2, topic)
	kafka := strings.Join(brokers, ",")
	col := startAffinity(t, "collect", "--data", t.TempDir(), "--kafka", kafka, "--topic", topic, "--topic-partitions", "2", "--site", "e2e")
	api := startAffinity(t, "build", "--data", t.TempDir(), "--kafka", kafka, "--topic", topic, "--topic-partitions", "2", "--changes-topic", changes).api
	if code, body := apiDo(t, http.MethodPut, api+"/v1/segments/e2e/carts", "text/plain", []byte(`count(cart) >= 1`)); code != http.StatusCreated {
		t.Fatalf("PUT: %d %s", code, body)
	}
	v := uuidString()
	postBatch(t, col.collector, []byte(fmt.Sprintf(`{"site":"e2e","v":%q,"events":[{"id":%q,"t":"cart","ts":%d,"product":{"id":"l1","brand":"Lego"}}]}`,
		v, uuidString(), time.Now().UnixMilli())))

	ko := storage.DefaultKafkaOptions(brokers...)
	ko.Topic, ko.CreateTopic = changes, false
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		l   *storage.KafkaLog
		err error
	)
	waitUntil(t, "the changes topic", func() bool {
		l, err = storage.OpenKafkaLog(ctx, ko)
		return err == nil
	})
	defer l.Close()
	p := l.Partition([]byte("e2e|carts"))
	r, err := l.OpenReader(p, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	recs, err := r.Fetch(ctx, nil, 10)
	if err != nil || len(recs) == 0 {
		t.Fatalf("fetch from the changes topic: %v", err)
	}
	var ch struct{ Seq, Segment, Visitor, Change, Why string }
	if err := json.Unmarshal(recs[0].Value, &ch); err != nil {
		t.Fatalf("change record %q: %v", recs[0].Value, err)
	}
	if string(recs[0].Key) != "e2e|carts" || ch.Segment != "carts" || ch.Visitor != v || ch.Change != "entered" || ch.Why != "event" || ch.Seq != "1" {
		t.Errorf("change record: key %q %+v; want e2e|carts, %s entered by event, seq 1", recs[0].Key, ch, v)
	}
}

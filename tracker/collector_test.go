package tracker

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/diskwatch"
	"github.com/affinityhq/affinity/storage/logtest"
	"github.com/affinityhq/affinity/tracker/event"
)

// testNow is the pinned receive time: the fixtures of tracker/event were
// recorded in the week before it.
const testNow int64 = 1767225600000

const (
	testVisitor = "0d9c6a5f-5153-428f-83c4-4d6731e44778"
	browserUA   = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36"
)

// testCollector is a Collector served on a loopback port over a real
// EmbeddedLog in a temporary directory.
type testCollector struct {
	*Collector
	log  *storage.EmbeddedLog
	base string
}

func startCollector(t testing.TB, mutate func(*Options)) *testCollector {
	t.Helper()
	opts := DefaultOptions()
	opts.Sites = []Site{{Key: "shop-7f3a"}, {Key: "strict", Origins: []string{"https://shop.example"}}, {Key: "shop-éè"}}
	opts.Now = func() time.Time { return time.UnixMilli(testNow) }
	if mutate != nil {
		mutate(&opts)
	}
	if opts.Log == nil {
		opts.Log = openEmbeddedLog(t, func(o *storage.EmbeddedOptions) { o.Partitions = 4 })
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-done
	})
	lg, _ := opts.Log.(*storage.EmbeddedLog)
	return &testCollector{Collector: c, log: lg, base: "http://" + c.Addr()}
}

// openEmbeddedLog opens a real EmbeddedLog in a temporary directory, closed
// when the test ends.
func openEmbeddedLog(t testing.TB, mutate func(*storage.EmbeddedOptions)) *storage.EmbeddedLog {
	t.Helper()
	opts := storage.DefaultEmbeddedOptions(t.TempDir())
	if mutate != nil {
		mutate(&opts)
	}
	lg, err := storage.OpenEmbeddedLog(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lg.Close(); err != nil {
			t.Errorf("closing log: %v", err)
		}
	})
	return lg
}

type request struct {
	method  string
	path    string
	ctype   string
	body    string
	headers map[string]string
}

type reply struct {
	status int
	header http.Header
	body   string
}

func (tc *testCollector) do(t testing.TB, r request) reply {
	t.Helper()
	if r.method == "" {
		r.method = http.MethodPost
	}
	if r.path == "" {
		r.path = "/v1/events"
	}
	req, err := http.NewRequest(r.method, tc.base+r.path, strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	if r.ctype != "" {
		req.Header.Set("Content-Type", r.ctype)
	}
	req.Header.Set("User-Agent", browserUA)
	for k, v := range r.headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, string(b)}
}

func fixture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile("event/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// batchJSON is a valid one-event batch for site with the given event ts.
func batchJSON(site string, ts int64) string {
	return fmt.Sprintf(`{"site":%q,"v":%q,"events":[{"id":"7c58f4f4-bd2b-41ac-a20d-17e1c392dc82","t":"view","ts":%d,"product":{"id":"sku-1","brand":"Nutrilon"}}]}`,
		site, testVisitor, ts)
}

func TestCollectorRefusals(t *testing.T) {
	tc := startCollector(t, func(o *Options) { o.MaxBodyBytes = 4 << 10 })
	big := `{"site":"shop-7f3a","v":"` + testVisitor + `","events":[],"pad":"` + strings.Repeat("x", 5<<10) + `"}`
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(big))
	zw.Close()
	day := int64(24 * time.Hour / time.Millisecond)

	cases := []struct {
		name   string
		req    request
		status int
		reason string
	}{
		{"not json", request{body: "hello", ctype: "text/plain"}, 400, event.ReasonBadJSON},
		{"truncated json", request{body: batchJSON("shop-7f3a", testNow)[:40], ctype: "text/plain"}, 400, event.ReasonBadJSON},
		{"missing visitor", request{body: `{"site":"shop-7f3a","events":[]}`, ctype: "text/plain"}, 400, event.ReasonBadVisitor},
		{"bad visitor", request{body: `{"site":"shop-7f3a","v":"not-a-uuid","events":[{}]}`, ctype: "text/plain"}, 400, event.ReasonBadVisitor},
		{"bad event id", request{body: strings.Replace(batchJSON("shop-7f3a", testNow), "7c58f4f4-", "7c58f4f4", 1), ctype: "text/plain"}, 400, event.ReasonBadEventID},
		{"unknown type", request{body: strings.Replace(batchJSON("shop-7f3a", testNow), `"view"`, `"viewed"`, 1), ctype: "text/plain"}, 400, event.ReasonBadType},
		{"ts 6 min ahead", request{body: batchJSON("shop-7f3a", testNow+6*60*1000), ctype: "text/plain"}, 400, event.ReasonTSFuture},
		{"ts 8 days old", request{body: batchJSON("shop-7f3a", testNow-8*day), ctype: "text/plain"}, 400, event.ReasonTSTooOld},
		{"no events", request{body: `{"site":"shop-7f3a","v":"` + testVisitor + `","events":[]}`, ctype: "text/plain"}, 400, event.ReasonMissingEvents},
		{"unknown site", request{body: batchJSON("nope", testNow), ctype: "text/plain"}, 403, reasonUnknownSite},
		{"origin not listed", request{body: batchJSON("strict", testNow), ctype: "text/plain",
			headers: map[string]string{"Origin": "https://evil.example"}}, 403, reasonBadOrigin},
		{"body too large", request{body: big, ctype: "text/plain"}, 413, reasonTooLarge},
		{"gzip inflating past the limit", request{body: gz.String(), ctype: "text/plain",
			headers: map[string]string{"Content-Encoding": "gzip"}}, 413, reasonTooLarge},
		{"bad gzip", request{body: "not gzip", ctype: "text/plain",
			headers: map[string]string{"Content-Encoding": "gzip"}}, 400, reasonBadEncoding},
		{"wrong content type", request{body: batchJSON("shop-7f3a", testNow), ctype: "multipart/form-data; boundary=x"}, 415, reasonBadContentType},
		{"GET events", request{method: "GET"}, 405, reasonBadMethod},
		{"PUT events", request{method: "PUT", body: batchJSON("shop-7f3a", testNow)}, 405, reasonBadMethod},
		{"POST pixel", request{path: "/v1/p.gif", body: batchJSON("shop-7f3a", testNow)}, 405, reasonBadMethod},
		{"pixel without d", request{method: "GET", path: "/v1/p.gif"}, 400, reasonBadRequest},
		{"pixel bad base64", request{method: "GET", path: "/v1/p.gif?d=***"}, 400, event.ReasonBadBase64},
		{"pixel bad batch", request{method: "GET", path: "/v1/p.gif?d=" + base64.RawURLEncoding.EncodeToString([]byte(`{"site":1}`))}, 400, event.ReasonBadSite},
		{"unknown path", request{method: "GET", path: "/v2/events"}, 404, reasonNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := tc.do(t, c.req)
			if got.status != c.status {
				t.Fatalf("status %d, want %d; body %q", got.status, c.status, got.body)
			}
			if r := got.header.Get("X-Affinity-Reason"); r != c.reason {
				t.Errorf("reason %q, want %q; body %q", r, c.reason, got.body)
			}
			if strings.Count(got.body, "\n") != 1 || !strings.HasSuffix(got.body, "\n") || len(got.body) < 10 {
				t.Errorf("body %q is not one line of reason", got.body)
			}
		})
	}
	if recs := logtest.ReadAll(t, tc.log); len(recs) != 0 {
		t.Fatalf("refused batches stored %d records", len(recs))
	}
}

func TestCollectorStoresAcceptedBatchesWhole(t *testing.T) {
	tc := startCollector(t, nil)
	var want []*event.Batch
	dec := event.NewDecoder(event.DefaultOptions())
	for _, name := range []string{"batch10.json", "batch100.json", "purchase.json", "identify.json", "unicode.json", "all_types.json"} {
		body := fixture(t, name)
		got := tc.do(t, request{body: body, ctype: "text/plain;charset=UTF-8"})
		var b event.Batch
		if err := dec.DecodeBatch(&b, []byte(body), testNow); err != nil {
			t.Fatal(err)
		}
		if got.status != 202 || got.body != fmt.Sprintf(`{"accepted":%d}`, len(b.Events)) {
			t.Fatalf("%s: got %d %q, want 202 {\"accepted\":%d}", name, got.status, got.body, len(b.Events))
		}
		b.Recv = testNow
		want = append(want, b.Clone())
	}
	// The pixel carries the same contract, unpadded base64url in d.
	pix := batchJSON("shop-7f3a", testNow-1000)
	got := tc.do(t, request{method: "GET", path: "/v1/p.gif?d=" + base64.RawURLEncoding.EncodeToString([]byte(pix))})
	if got.status != 200 || got.header.Get("Content-Type") != "image/gif" || !strings.HasPrefix(got.body, "GIF89a") {
		t.Fatalf("pixel: %d %q %q", got.status, got.header.Get("Content-Type"), got.body)
	}
	var pb event.Batch
	if err := dec.DecodeBatch(&pb, []byte(pix), testNow); err != nil {
		t.Fatal(err)
	}
	pb.Recv = testNow
	want = append(want, pb.Clone())

	recs := logtest.ReadAll(t, tc.log)
	if len(recs) != len(want) {
		t.Fatalf("log holds %d records, want %d", len(recs), len(want))
	}
	matched := make([]bool, len(want))
	for _, r := range recs {
		var b event.Batch
		if err := event.DecodeRecord(&b, r.Value); err != nil {
			t.Fatalf("record at %d/%d: %v", r.Partition, r.Offset, err)
		}
		if key := event.AppendLogKey(nil, b.Site, b.Visitor); !bytes.Equal(key, r.Key) {
			t.Errorf("record key %q, want %q", r.Key, key)
		}
		if p := tc.log.Partition(r.Key); p != r.Partition {
			t.Errorf("record in partition %d, its key routes to %d", r.Partition, p)
		}
		found := false
		for i, w := range want {
			if !matched[i] && w.Equal(&b) {
				matched[i], found = true, true
				break
			}
		}
		if !found {
			t.Errorf("stored batch of site %q with %d events matches no accepted batch", b.Site, len(b.Events))
		}
	}
}

func TestCollectorDropsBots(t *testing.T) {
	tc := startCollector(t, nil)
	for _, ua := range []string{
		"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0 Safari/537.36",
		"Mozilla/5.0 (compatible; bingbot/2.0)",
		"facebookexternalhit/1.1",
	} {
		got := tc.do(t, request{body: batchJSON("shop-7f3a", testNow), ctype: "text/plain", headers: map[string]string{"User-Agent": ua}})
		if got.status != 202 || got.body != `{"accepted":0}` {
			t.Errorf("%q: got %d %q, want 202 {\"accepted\":0}", ua, got.status, got.body)
		}
	}
	if recs := logtest.ReadAll(t, tc.log); len(recs) != 0 {
		t.Fatalf("bot batches stored: %d records", len(recs))
	}
	if got := tc.opts.Metrics; got == nil {
		t.Fatal("no metrics set")
	}
	var buf bytes.Buffer
	tc.opts.Metrics.WritePrometheus(&buf)
	for _, line := range []string{"affinity_collector_bot_batches_dropped_total 4", "affinity_collector_bot_events_dropped_total 4"} {
		if !strings.Contains(buf.String(), line+"\n") {
			t.Errorf("metrics lack %q", line)
		}
	}
}

func TestCollectorCORS(t *testing.T) {
	tc := startCollector(t, nil)
	pre := tc.do(t, request{method: "OPTIONS", headers: map[string]string{
		"Origin": "https://shop.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}})
	if pre.status != 204 || pre.header.Get("Access-Control-Allow-Origin") != "https://shop.example" ||
		!strings.Contains(pre.header.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(strings.ToLower(pre.header.Get("Access-Control-Allow-Headers")), "content-type") {
		t.Fatalf("preflight: %d %v", pre.status, pre.header)
	}
	// Allowed origin: the answer echoes it, so fetch and sendBeacon can read it.
	got := tc.do(t, request{body: batchJSON("strict", testNow), ctype: "text/plain", headers: map[string]string{"Origin": "https://shop.example"}})
	if got.status != 202 || got.header.Get("Access-Control-Allow-Origin") != "https://shop.example" || got.header.Get("Vary") != "Origin" {
		t.Fatalf("allowed origin: %d %v", got.status, got.header)
	}
	// A site without listed origins takes any origin.
	got = tc.do(t, request{body: batchJSON("shop-7f3a", testNow), ctype: "text/plain", headers: map[string]string{"Origin": "http://localhost:3000"}})
	if got.status != 202 || got.header.Get("Access-Control-Allow-Origin") != "http://localhost:3000" {
		t.Fatalf("open site: %d %v", got.status, got.header)
	}
	// A refused origin gets no CORS grant.
	got = tc.do(t, request{body: batchJSON("strict", testNow), ctype: "text/plain", headers: map[string]string{"Origin": "https://evil.example"}})
	if got.status != 403 || got.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("refused origin: %d %v", got.status, got.header)
	}
}

func TestCollectorLogUnavailable(t *testing.T) {
	tc := startCollector(t, nil)
	if err := tc.log.Close(); err != nil {
		t.Fatal(err)
	}
	got := tc.do(t, request{body: batchJSON("shop-7f3a", testNow), ctype: "text/plain"})
	if got.status != 503 || got.header.Get("Retry-After") == "" || got.header.Get("X-Affinity-Reason") != reasonLogUnavailable {
		t.Fatalf("closed log: %d %v %q", got.status, got.header, got.body)
	}
	if h := tc.do(t, request{method: "GET", path: "/healthz"}); h.status != 503 {
		t.Fatalf("healthz with a closed log: %d %q", h.status, h.body)
	}
}

func TestCollectorHealthz(t *testing.T) {
	tc := startCollector(t, nil)
	if h := tc.do(t, request{method: "GET", path: "/healthz"}); h.status != 200 || h.body != "ok\n" {
		t.Fatalf("healthz: %d %q", h.status, h.body)
	}
	tc.draining.Store(true)
	if h := tc.do(t, request{method: "GET", path: "/healthz"}); h.status != 503 || !strings.Contains(h.body, "draining") {
		t.Fatalf("healthz while draining: %d %q", h.status, h.body)
	}
	tc.draining.Store(false)
}

func TestCollectorMetrics(t *testing.T) {
	tc := startCollector(t, nil)
	tc.do(t, request{body: fixture(t, "batch10.json"), ctype: "text/plain"})
	tc.do(t, request{body: "nope", ctype: "text/plain"})
	var buf bytes.Buffer
	tc.opts.Metrics.WritePrometheus(&buf)
	text := buf.String()
	for _, line := range []string{
		`affinity_collector_requests_total{status="202"} 1`,
		`affinity_collector_requests_total{status="400"} 1`,
		`affinity_collector_events_accepted_total 10`,
		`affinity_collector_batches_refused_total{reason="bad_json"} 1`,
		`affinity_collector_log_append_seconds_count 1`,
		`affinity_collector_inflight_batches 0`,
	} {
		if !strings.Contains(text, line+"\n") {
			t.Errorf("metrics lack %q", line)
		}
	}
}

// TestCollectorLogFullThenRecovers fills the embedded log's disk budget: the
// collector answers 503 with Retry-After, at once while the log stays
// full, and takes batches again by itself once the log is trimmed.
func TestCollectorLogFullThenRecovers(t *testing.T) {
	lg := openEmbeddedLog(t, func(o *storage.EmbeddedOptions) { o.MaxBytes = 4 << 10 })
	tc := startCollector(t, func(o *Options) {
		o.Log = lg
		o.RetryAfter = 300 * time.Millisecond
	})

	body := fixture(t, "batch10.json")
	var full reply
	for i := 0; i < 100; i++ {
		full = tc.do(t, request{body: body, ctype: "text/plain"})
		if full.status != 202 {
			break
		}
	}
	if full.status != 503 || full.header.Get("Retry-After") != "1" || full.header.Get("X-Affinity-Reason") != reasonLogUnavailable {
		t.Fatalf("full log: %d %v %q", full.status, full.header, full.body)
	}
	if got := tc.do(t, request{body: body, ctype: "text/plain"}); got.status != 503 {
		t.Fatalf("still full: %d %q", got.status, got.body)
	}
	ctx := context.Background()
	for p := 0; p < lg.Partitions(); p++ {
		_, next, err := lg.Offsets(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if err := lg.Trim(ctx, p, next); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := tc.do(t, request{body: body, ctype: "text/plain"})
		if got.status == 202 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("collector did not recover after the log was trimmed: %d %q", got.status, got.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCollectorKafkaDown stops the Kafka broker under a collector: the
// first batch fails after the log's write timeout, the next ones at once,
// all with 503 and Retry-After.
func TestCollectorKafkaDown(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	ko := storage.DefaultKafkaOptions(cluster.ListenAddrs()...)
	ko.Topic = "collector-down"
	ko.WriteTimeout = time.Second
	ko.DialTimeout = time.Second
	kl, err := storage.OpenKafkaLog(context.Background(), ko)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kl.Close() })
	// A long pause after a failure, so that all the refusals below fall in
	// it however slow the machine: without the pause each would wait out
	// the log's 1 s WriteTimeout.
	tc := startCollector(t, func(o *Options) { o.Log, o.RetryAfter = kl, 30*time.Second })
	body := batchJSON("shop-7f3a", testNow)
	if got := tc.do(t, request{body: body, ctype: "text/plain"}); got.status != 202 {
		t.Fatalf("broker up: %d %q", got.status, got.body)
	}
	cluster.Close()
	start := time.Now()
	got := tc.do(t, request{body: body, ctype: "text/plain"})
	if got.status != 503 || got.header.Get("Retry-After") == "" {
		t.Fatalf("broker down: %d %v %q", got.status, got.header, got.body)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("first refusal took %v; want about WriteTimeout=1s", d)
	}
	start = time.Now()
	for i := 0; i < 20; i++ {
		if got := tc.do(t, request{body: body, ctype: "text/plain"}); got.status != 503 {
			t.Fatalf("broker still down: %d %q", got.status, got.body)
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("20 refusals while the log is known down took %v; each waited on the log (1 s) instead of refusing at once", d)
	}
	if h := tc.do(t, request{method: "GET", path: "/healthz"}); h.status != 503 || !strings.Contains(h.body, "failed the last append") {
		t.Errorf("healthz while appends fail: %d %q; want 503 saying why", h.status, h.body)
	}
}

// TestCollectorNotWritable runs the collector with a real disk watcher:
// below the free-space floor, and while a storage error is held, batches
// get 503 with Retry-After and the watcher's reason, and /healthz is 503
// with it; once the fault has passed, batches are taken again.
func TestCollectorNotWritable(t *testing.T) {
	wo := diskwatch.DefaultOptions(t.TempDir())
	wo.MinFree = 1 << 62 // above any disk
	low, err := diskwatch.New(wo)
	if err != nil {
		t.Fatal(err)
	}
	defer low.Close()
	tc := startCollector(t, func(o *Options) { o.Writable = low.Err })
	body := batchJSON("shop-7f3a", testNow)
	got := tc.do(t, request{body: body, ctype: "text/plain"})
	if got.status != 503 || got.header.Get("Retry-After") != "1" || got.header.Get("X-Affinity-Reason") != reasonLowDisk ||
		!strings.Contains(got.body, "--min-free-disk") {
		t.Fatalf("below the floor: %d %v %q", got.status, got.header, got.body)
	}
	if h := tc.do(t, request{method: "GET", path: "/healthz"}); h.status != 503 || !strings.Contains(h.body, "below the floor") {
		t.Fatalf("healthz below the floor: %d %q", h.status, h.body)
	}

	wo = diskwatch.DefaultOptions(t.TempDir())
	wo.Interval, wo.FaultHold = 10*time.Millisecond, 300*time.Millisecond
	faulty, err := diskwatch.New(wo)
	if err != nil {
		t.Fatal(err)
	}
	defer faulty.Close()
	tc = startCollector(t, func(o *Options) { o.Writable = faulty.Err })
	if got := tc.do(t, request{body: body, ctype: "text/plain"}); got.status != 202 {
		t.Fatalf("healthy storage: %d %q", got.status, got.body)
	}
	faulty.Fault("badger: error flushing memtable to disk: input/output error, retrying")
	got = tc.do(t, request{body: body, ctype: "text/plain"})
	if got.status != 503 || got.header.Get("X-Affinity-Reason") != reasonStorageFailing || !strings.Contains(got.body, "flushing memtable") {
		t.Fatalf("storage failing: %d %v %q", got.status, got.header, got.body)
	}
	if h := tc.do(t, request{method: "GET", path: "/healthz"}); h.status != 503 {
		t.Fatalf("healthz while storage fails: %d %q", h.status, h.body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for tc.do(t, request{body: body, ctype: "text/plain"}).status != 202 {
		if time.Now().After(deadline) {
			t.Fatal("collector did not take batches again after the fault passed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

package tracker

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/affinityhq/affinity/storage/logtest"
	"github.com/affinityhq/affinity/tracker/event"
)

const testWriteKey = "sk_live_9f3a7c21b8e44d06"

func basic(user string) map[string]string {
	return map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"))}
}

func startSegmentCollector(t testing.TB, mutate func(*Options)) *testCollector {
	t.Helper()
	return startCollector(t, func(o *Options) {
		o.Sites[0].WriteKeys = []string{testWriteKey}
		if mutate != nil {
			mutate(o)
		}
	})
}

// TestSegmentStoresOneRecordPerVisitor posts the spec batch of
// tracker/event/testdata: its events land in the log as one record per
// visitor, keyed like the snippet's, answered as Segment answers.
func TestSegmentStoresOneRecordPerVisitor(t *testing.T) {
	tc := startSegmentCollector(t, nil)
	body := fixture(t, "segment_batch.json")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(body))
	zw.Close()
	headers := basic(testWriteKey)
	headers["Content-Encoding"] = "gzip"
	got := tc.do(t, request{path: "/v1/batch", ctype: "application/json", body: gz.String(), headers: headers})
	if got.status != 200 || got.body != `{"success":true}` || got.header.Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %q %q; want 200 {\"success\":true}", got.status, got.header.Get("Content-Type"), got.body)
	}

	dec := event.NewSegmentDecoder(event.DefaultOptions())
	var all event.Batch
	if err := dec.Decode(&all, event.SegmentBatch, "shop-7f3a", []byte(body), testNow); err != nil {
		t.Fatal(err)
	}
	anon, _ := event.ParseUUID([]byte("5f0c3c2e-8a4b-4e8e-9b1d-2c6f7a9e0d11"))
	user, _ := event.NameUUID(nil, event.NameCustomer, "shop-7f3a", "c-9001")
	want := map[event.UUID][]event.Event{anon: all.Events[:6], user: all.Events[6:]}

	recs := logtest.ReadAll(t, tc.log)
	if len(recs) != 2 {
		t.Fatalf("log holds %d records; want 2, one per visitor", len(recs))
	}
	for _, r := range recs {
		var b event.Batch
		if err := event.DecodeRecord(&b, r.Value); err != nil {
			t.Fatal(err)
		}
		if key := event.AppendLogKey(nil, b.Site, b.Visitor); !bytes.Equal(key, r.Key) {
			t.Errorf("record key %q; want %q", r.Key, key)
		}
		w := &event.Batch{Site: "shop-7f3a", Visitor: b.Visitor, Recv: testNow, Events: want[b.Visitor]}
		if len(w.Events) == 0 || !b.Equal(w) {
			t.Errorf("record of visitor %s: got %d events %+v; want %d", b.Visitor, len(b.Events), b.Events, len(w.Events))
		}
	}

	// The single-message calls, and a group call, which stores nothing.
	for _, c := range []struct{ path, body string }{
		{"/v1/track", `{"anonymousId":"a-1","event":"Newsletter Signup"}`},
		{"/v1/identify", `{"userId":"c-1","traits":{"email":"a@example.com"}}`},
		{"/v1/page", `{"anonymousId":"a-1","properties":{"url":"https://shop.example/"}}`},
		{"/v1/screen", `{"anonymousId":"a-1","name":"Home"}`},
		{"/v1/alias", `{"previousId":"a-1","userId":"c-1"}`},
		{"/v1/group", `{"userId":"c-1","groupId":"g-1"}`},
		{"/v1/import", `{"batch":[{"type":"track","anonymousId":"a-1","event":"X"}]}`},
	} {
		got := tc.do(t, request{path: c.path, ctype: "application/json", body: c.body, headers: basic(testWriteKey)})
		if got.status != 200 || got.body != `{"success":true}` {
			t.Fatalf("%s: got %d %q; want 200", c.path, got.status, got.body)
		}
	}
	if n := len(logtest.ReadAll(t, tc.log)); n != 2+6 {
		t.Fatalf("log holds %d records; want 8 (the group call stores none)", n)
	}
	var buf bytes.Buffer
	tc.opts.Metrics.WritePrometheus(&buf)
	for _, line := range []string{
		`affinity_collector_segment_requests_total{call="batch"} 2`,
		`affinity_collector_segment_requests_total{call="track"} 1`,
		`affinity_collector_segment_messages_ignored_total 2`,
		`affinity_collector_events_accepted_total 13`,
		`affinity_collector_requests_total{status="200"} 8`,
	} {
		if !strings.Contains(buf.String(), line+"\n") {
			t.Errorf("metrics lack %q", line)
		}
	}
}

func TestSegmentRefusals(t *testing.T) {
	tc := startSegmentCollector(t, nil)
	ok := `{"batch":[{"type":"track","anonymousId":"a-1","event":"X"}]}`
	// A valid first message must not be stored when a later one is refused.
	halfBad := `{"batch":[{"type":"track","anonymousId":"a-1","event":"X"},{"type":"track","anonymousId":"a-2","event":"Y","timestamp":"later"}]}`
	big := `{"anonymousId":"a-1","event":"X","properties":{"pad":"` + strings.Repeat("x", 32<<10) + `"}}`
	cases := []struct {
		name   string
		req    request
		status int
		reason string
		msg    string
	}{
		{"no auth", request{path: "/v1/batch", body: ok}, 401, reasonBadWriteKey, "missing write key: send HTTP Basic auth"},
		{"bearer", request{path: "/v1/batch", body: ok, headers: map[string]string{"Authorization": "Bearer x"}}, 401, reasonBadWriteKey, `unsupported authorization "Bearer "`},
		{"not base64", request{path: "/v1/batch", body: ok, headers: map[string]string{"Authorization": "Basic ***"}}, 401, reasonBadWriteKey, "not base64"},
		{"empty user", request{path: "/v1/batch", body: ok, headers: basic("")}, 401, reasonBadWriteKey, "the Basic auth username is empty"},
		{"wrong key", request{path: "/v1/batch", body: ok, headers: basic("sk_wrong_0000000000")}, 401, reasonBadWriteKey, `unknown write key "sk_w"…`},
		{"public site key", request{path: "/v1/batch", body: ok, headers: basic("shop-7f3a")}, 401, reasonBadWriteKey, `unknown write key "shop"…`},
		{"GET", request{method: "GET", path: "/v1/track", headers: basic(testWriteKey)}, 405, reasonBadMethod, "use POST"},
		{"half bad batch", request{path: "/v1/batch", body: halfBad, headers: basic(testWriteKey)}, 400, event.ReasonBadTS, `batch[1].timestamp: invalid ISO-8601 time "later"`},
		{"message too large", request{path: "/v1/track", body: big, headers: basic(testWriteKey)}, 413, reasonTooLarge, "exceeds the limit of 32768 bytes of /v1/track"},
		{"bad json", request{path: "/v1/identify", body: `{"userId":`, headers: basic(testWriteKey)}, 400, event.ReasonBadJSON, "invalid JSON"},
		{"wrong content type", request{path: "/v1/track", ctype: "multipart/form-data; boundary=x", body: ok, headers: basic(testWriteKey)}, 415, reasonBadContentType, "send application/json"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := tc.do(t, c.req)
			if got.status != c.status || got.header.Get("X-Affinity-Reason") != c.reason || !strings.Contains(got.body, c.msg) {
				t.Fatalf("got %d %s %q; want %d %s …%s…", got.status, got.header.Get("X-Affinity-Reason"), got.body, c.status, c.reason, c.msg)
			}
			if strings.Count(got.body, "\n") != 1 {
				t.Errorf("body %q is not one line", got.body)
			}
			if c.status == 401 && got.header.Get("WWW-Authenticate") != `Basic realm="affinity"` {
				t.Errorf("401 without WWW-Authenticate: %v", got.header)
			}
		})
	}
	if recs := logtest.ReadAll(t, tc.log); len(recs) != 0 {
		t.Fatalf("refused calls stored %d records", len(recs))
	}
}

// TestSegmentOff: without a write key, the routes say how to turn the API on.
func TestSegmentOff(t *testing.T) {
	tc := startCollector(t, nil)
	got := tc.do(t, request{path: "/v1/batch", body: `{"batch":[]}`, headers: basic(testWriteKey)})
	if got.status != 404 || got.header.Get("X-Affinity-Reason") != reasonSegmentOff ||
		!strings.Contains(got.body, "start affinity with --write-key SITE=SECRET") {
		t.Fatalf("got %d %q; want 404 saying how to enable", got.status, got.body)
	}
}

func TestParseWriteKeys(t *testing.T) {
	f := func(specs []string, want string) {
		t.Helper()
		sites := []Site{{Key: "shop"}, {Key: "other"}}
		err := ParseWriteKeys(specs, sites)
		got := fmt.Sprint(sites[0].WriteKeys, sites[1].WriteKeys)
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, want) {
			t.Fatalf("%q: got %s; want …%s…", specs, got, want)
		}
	}
	f([]string{"shop=sk_0123456789abcdef", "shop=sk_rotated_0123456,other=sk_other_012345678"},
		"[sk_0123456789abcdef sk_rotated_0123456] [sk_other_012345678]")
	f([]string{"sk_0123456789abcdef"}, `cannot parse --write-key "sk_0"…: want SITE=SECRET`)
	f([]string{"nope=sk_0123456789abcdef"}, `no such site: list it in --site first`)
	f([]string{"shop=short"}, `the secret "shor"… must be at least 16 bytes`)
	f([]string{"shop=sk_0123456789:abcdef"}, `without spaces or ':'`)
	f([]string{"shop=other"}, `must be at least 16 bytes`)
	f([]string{"shop=sk_0123456789abcdef", "other=sk_0123456789abcdef"}, `is already the write key of site "shop"`)
	sites := []Site{{Key: "shop"}, {Key: "sk_0123456789abcdef"}}
	if err := ParseWriteKeys([]string{"shop=sk_0123456789abcdef"}, sites); err == nil || !strings.Contains(err.Error(), "is the public key of site") {
		t.Fatalf("a site key as secret: got %v", err)
	}
}

func BenchmarkSegmentRecords(b *testing.B) {
	body := []byte(fixture(b, "segment_batch.json"))
	sc := &segmentCtx{dec: event.NewSegmentDecoder(event.DefaultOptions()), group: map[event.UUID]int{}}
	var batch event.Batch
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := sc.dec.Decode(&batch, event.SegmentBatch, "shop-7f3a", body, testNow); err != nil {
			b.Fatal(err)
		}
		if msgs := sc.records(&batch); len(msgs) != 2 {
			b.Fatalf("%d records", len(msgs))
		}
	}
}

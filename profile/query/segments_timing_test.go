package query_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/tracker/event"
)

// BenchmarkMembersExport streams a segment of 20 000 members over HTTP,
// NDJSON with the facts of the mums rule (each row reads and decodes the
// member's profile) and without holdout.
func BenchmarkMembersExport(b *testing.B) {
	e := newSegEnv(b)
	if code, body := e.putSegment(b, "mums", mumsRule); code != 201 {
		b.Fatalf("PUT: %d %s", code, body)
	}
	const n = 20000
	bs := make([]*event.Batch, 0, n)
	for i := range n {
		bs = append(bs, profiletest.Batch(site, profiletest.Visitor(i), profiletest.View(t0, nutrilon), profiletest.View(t0, nutrilon), profiletest.Identify(t0, "m@x.y")))
	}
	for i := 0; i < n; i += 2000 {
		e.Send(b, bs[i:i+2000]...)
	}
	for _, query := range []string{"format=ndjson", "format=csv", "format=ndjson&facts=false"} {
		b.Run(query, func(b *testing.B) {
			benchExport(b, e.URL+"/v1/segments/"+site+"/mums/members?"+query, n)
		})
	}
}

// BenchmarkPersonMembersExport streams a per-person segment of 10 000
// persons of two visitors each (rows merge the two profiles), NDJSON and
// CSV (which leads each row with the person id).
func BenchmarkPersonMembersExport(b *testing.B) {
	e := newSegEnv(b)
	if code, body := e.putSegment(b, "mums?per=person", mumsRule); code != 201 {
		b.Fatalf("PUT: %d %s", code, body)
	}
	const n = 10000
	bs := make([]*event.Batch, 0, 2*n)
	for i := range 2 * n {
		bs = append(bs, profiletest.Batch(site, profiletest.Visitor(i), profiletest.View(t0, nutrilon), profiletest.View(t0, nutrilon),
			profiletest.Identify(t0, fmt.Sprintf("m%d@x.y", i/2))))
	}
	for i := 0; i < len(bs); i += 2000 {
		e.Send(b, bs[i:i+2000]...)
	}
	for _, query := range []string{"format=ndjson", "format=csv", "format=csv&facts=false"} {
		b.Run(query, func(b *testing.B) {
			benchExport(b, e.URL+"/v1/segments/"+site+"/mums/members?"+query, n)
		})
	}
}

// benchExport gets url, an export of n rows, until b.Loop ends, and
// reports the rows exported a second.
func benchExport(b *testing.B, url string, n int) {
	rows := 0
	start := time.Now()
	for b.Loop() {
		if nb := benchGet(b, url); nb < int64(n)*40 {
			b.Fatalf("body of %d bytes for %d members", nb, n)
		}
		rows += n
	}
	b.ReportMetric(float64(rows)/time.Since(start).Seconds(), "rows/s")
}

// benchGet sends an authorized GET of url, wants 200 and returns the
// length of the body, read and dropped.
func benchGet(b *testing.B, url string) int64 {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		b.Fatal(err, resp.StatusCode)
	}
	defer resp.Body.Close()
	nb, _ := io.Copy(io.Discard, resp.Body)
	return nb
}

// BenchmarkPreview previews a rule over 30 000 profiles over HTTP with a
// sample of 10: the mums rule, whose candidates come off the interest
// index (10 000 members), and a rule on top(brand) that reads and
// evaluates every profile (20 000 members).
func BenchmarkPreview(b *testing.B) {
	e := newSegEnv(b)
	const n = 30000
	bs := make([]*event.Batch, 0, n)
	for i := range n {
		p := lego
		if i%3 == 0 {
			p = nutrilon
		}
		bs = append(bs, profiletest.Batch(site, profiletest.Visitor(i), profiletest.View(t0, p), profiletest.View(t0, p), profiletest.Identify(t0, "m@x.y")))
	}
	for i := 0; i < n; i += 2000 {
		e.Send(b, bs[i:i+2000]...)
	}
	for _, tc := range []struct {
		name, rule string
		index      bool
		want       int
	}{
		{"index", mumsRule, true, n / 3},
		{"scan", `top(brand) == "Lego"`, false, n - n/3},
	} {
		b.Run(tc.name, func(b *testing.B) {
			scanned := 0
			start := time.Now()
			for b.Loop() {
				code, body := e.Do(b, http.MethodPost, "/v1/segments/"+site+"/_preview", "text/plain", []byte(tc.rule), true)
				var a previewAnswer
				if code != http.StatusOK || json.Unmarshal([]byte(body), &a) != nil || a.Count != tc.want || !a.Exact || a.FromIndex != tc.index {
					b.Fatalf("preview %s: %d %.200s; want %d exact, from_index %v", tc.rule, code, body, tc.want, tc.index)
				}
				scanned += a.Scanned
			}
			b.ReportMetric(float64(scanned)/time.Since(start).Seconds(), "profiles/s")
		})
	}
}

package query_test

import (
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
			url := e.URL + "/v1/segments/" + site + "/mums/members?" + query
			rows := 0
			start := time.Now()
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := http.DefaultClient.Do(req)
				if err != nil || resp.StatusCode != 200 {
					b.Fatal(err, resp.StatusCode)
				}
				nb, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if nb < n*40 {
					b.Fatalf("body of %d bytes for %d members", nb, n)
				}
				rows += n
			}
			b.ReportMetric(float64(rows)/time.Since(start).Seconds(), "rows/s")
		})
	}
}

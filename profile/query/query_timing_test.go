package query_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/affinityhq/affinity/profile/profiletest"
)

// BenchmarkInterestsStream measures rows/s of GET /v1/interests over HTTP,
// each row with the email read from the visitor's profile.
func BenchmarkInterestsStream(b *testing.B) {
	e := newEnv(b, nil)
	at := t0 + 25*day
	want := seedInterests(b, e, 20_000, at)
	url := e.URL + "/v1/interests/shop/brand/acme?at=" + rfc3339(at)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	rows := 0
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if n == 0 {
			b.Fatal("empty body")
		}
		rows += len(want)
	}
	b.ReportMetric(float64(rows)/time.Since(start).Seconds(), "rows/s")
}

// BenchmarkVisitorGet measures GET /v1/visitors over HTTP (keep-alive).
func BenchmarkVisitorGet(b *testing.B) {
	e := newEnv(b, nil)
	seedInterests(b, e, 1000, t0)
	url := e.URL + "/v1/visitors/shop/" + profiletest.Visitor(500).String()
	b.ReportAllocs()
	for b.Loop() {
		benchGet(b, url)
	}
}

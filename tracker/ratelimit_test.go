package tracker

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRateBucket(t *testing.T) {
	type take struct {
		atMs int64 // time of the take
		n    int   // events of the batch
		want time.Duration
	}
	ms := time.Millisecond
	cases := []struct {
		name  string
		rate  float64
		burst int
		takes []take
	}{
		{"a full bucket takes its burst, then one event per interval", 10, 5, []take{
			{0, 5, 0}, {0, 1, 100 * ms}, {50, 1, 50 * ms}, {100, 1, 0}, {100, 1, 100 * ms},
		}},
		{"a refused batch takes nothing", 10, 5, []take{
			{0, 3, 0}, {0, 3, 100 * ms}, {0, 2, 0}, {0, 1, 100 * ms},
		}},
		{"idle time refills up to the burst, no further", 10, 5, []take{
			{0, 5, 0}, {10_000, 5, 0}, {10_000, 1, 100 * ms},
		}},
		{"a batch above the burst needs a full bucket and leaves it in debt", 10, 5, []take{
			{0, 1, 0}, {0, 8, 100 * ms}, {100, 8, 0}, {100, 1, 400 * ms}, {500, 1, 0},
		}},
		{"fractional rate", 0.5, 1, []take{
			{0, 1, 0}, {0, 1, 2000 * ms}, {1500, 1, 500 * ms}, {2000, 1, 0},
		}},
		{"burst 1 paces every event", 1000, 1, []take{
			{0, 1, 0}, {0, 1, 1 * ms}, {1, 1, 0}, {1, 3, 1 * ms}, {2, 3, 0}, {2, 1, 3 * ms},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newRateBucket(c.rate, c.burst)
			for i, tk := range c.takes {
				if got := b.take(tk.atMs*int64(ms), tk.n); got != tk.want {
					t.Fatalf("take %d (%d events at %d ms): got wait %v; want %v", i, tk.n, tk.atMs, got, tk.want)
				}
			}
		})
	}
}

func TestParseSiteRates(t *testing.T) {
	ok := func(specs []string, want map[string][2]float64) {
		t.Helper()
		sites := []Site{{Key: "a"}, {Key: "b"}, {Key: "c"}}
		if err := ParseSiteRates(specs, sites); err != nil {
			t.Fatalf("%q: %v", specs, err)
		}
		for _, s := range sites {
			if got := [2]float64{s.Rate, float64(s.Burst)}; got != want[s.Key] {
				t.Errorf("%q: site %s got rate, burst %v; want %v", specs, s.Key, got, want[s.Key])
			}
		}
	}
	ok(nil, nil)
	ok([]string{"a=100"}, map[string][2]float64{"a": {100, 0}})
	ok([]string{"a=100:500", "b=0.5:3"}, map[string][2]float64{"a": {100, 500}, "b": {0.5, 3}})
	ok([]string{"a=1, c=2:2"}, map[string][2]float64{"a": {1, 0}, "c": {2, 2}})

	bad := func(spec, want string) {
		t.Helper()
		err := ParseSiteRates([]string{spec}, []Site{{Key: "a"}, {Key: "b"}})
		if err == nil {
			t.Fatalf("%q was taken", spec)
		}
		if !strings.Contains(err.Error(), "--site-rate") || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %q; want it to name --site-rate and say %q", spec, err, want)
		}
	}
	bad("a", "no KEY=")
	bad("=10", "no KEY=")
	bad("a=", `rate "" is not a positive number`)
	bad("a=fast", `rate "fast" is not a positive number`)
	bad("a=0", `rate "0" is not a positive number`)
	bad("a=-5", `rate "-5" is not a positive number`)
	bad("a=NaN", `rate "NaN" is not a positive number`)
	bad("a=Inf", `rate "Inf" is not a positive number`)
	bad("a=10:", `burst "" is not a positive integer`)
	bad("a=10:0", `burst "0" is not a positive integer`)
	bad("a=10:2.5", `burst "2.5" is not a positive integer`)
	bad("a=1e12", "above 1073741824")
	bad("z=10", `no site "z": list it in --site first`)
	bad("a=10,a=20", `site "a" given twice`)
}

// TestCollectorSiteRate floods one site far past its --site-rate while
// another posts within its own: the flooding site gets 429s with
// Retry-After and a reason naming it and the flag, counted in /metrics;
// the other gets 202 for every batch.
func TestCollectorSiteRate(t *testing.T) {
	tc := startCollector(t, func(o *Options) {
		o.Sites = []Site{{Key: "flood", Rate: 1, Burst: 5}, {Key: "calm", Rate: 1000, Burst: 200}}
	})
	const batches = 60
	var (
		wg                 sync.WaitGroup
		mu                 sync.Mutex
		flood202, flood429 int
		calm               []int
		limited            reply
	)
	for i := 0; i < batches; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			got := tc.do(t, request{body: batchJSON("flood", testNow), ctype: "text/plain"})
			mu.Lock()
			defer mu.Unlock()
			switch got.status {
			case 202:
				flood202++
			case 429:
				flood429++
				limited = got
			default:
				t.Errorf("flooding site: %d %q", got.status, got.body)
			}
		}()
		go func() {
			defer wg.Done()
			got := tc.do(t, request{body: batchJSON("calm", testNow), ctype: "text/plain"})
			mu.Lock()
			calm = append(calm, got.status)
			mu.Unlock()
		}()
	}
	wg.Wait()
	http.DefaultClient.CloseIdleConnections() // else fasthttp's Shutdown waits for them
	for i, s := range calm {
		if s != 202 {
			t.Fatalf("calm site batch %d: %d; want 202 for every batch", i, s)
		}
	}
	// 5 events of burst, plus one per second the test took.
	if flood202 < 5 || flood202 > 10 || flood429 != batches-flood202 {
		t.Fatalf("flooding site: %d taken, %d refused; want 5 (its burst) plus about one a second taken, the rest refused", flood202, flood429)
	}
	if ra, err := strconv.Atoi(limited.header.Get("Retry-After")); err != nil || ra < 1 || ra > 2 {
		t.Errorf("Retry-After %q; want 1 or 2 (seconds until one event fits at 1/s)", limited.header.Get("Retry-After"))
	}
	if r := limited.header.Get("X-Affinity-Reason"); r != reasonRateLimited {
		t.Errorf("reason %q; want %q", r, reasonRateLimited)
	}
	if !strings.Contains(limited.body, `site "flood"`) || !strings.Contains(limited.body, "--site-rate") || strings.Count(limited.body, "\n") != 1 {
		t.Errorf("body %q; want one line naming the site and --site-rate", limited.body)
	}
	var buf bytes.Buffer
	tc.opts.Metrics.WritePrometheus(&buf)
	for _, line := range []string{
		fmt.Sprintf(`affinity_collector_rate_limited_total{site="flood"} %d`, flood429),
		fmt.Sprintf(`affinity_collector_rate_limited_events_total{site="flood"} %d`, flood429),
		`affinity_collector_rate_limited_total{site="calm"} 0`,
		fmt.Sprintf(`affinity_collector_requests_total{status="429"} %d`, flood429),
		fmt.Sprintf(`affinity_collector_events_accepted_total %d`, batches+flood202),
	} {
		if !strings.Contains(buf.String(), line+"\n") {
			t.Errorf("metrics lack %q", line)
		}
	}
}

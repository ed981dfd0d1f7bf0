package tracker

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// rateBucket is one site's token bucket, kept as the generic cell rate
// algorithm (GCRA) keeps it: one atomic timestamp, the theoretical arrival
// time (tat) at which the bucket is full again. Each event moves tat by
// interval; a batch fits when, after it, tat is at most burst intervals
// ahead of now. A take is one CAS on one word: lock-free and free of
// allocations, so a flooding site costs the others nothing but the CPU of
// its own refusals.
type rateBucket struct {
	tat      atomic.Int64 // nanoseconds on the collector's monotonic clock
	interval int64        // nanoseconds per event: 1e9 / rate
	burst    int64        // events the bucket holds

	limited       *metrics.Counter // batches refused
	limitedEvents *metrics.Counter // their events
}

func newRateBucket(rate float64, burst int) *rateBucket {
	return &rateBucket{interval: max(int64(math.Round(1e9/rate)), 1), burst: int64(max(burst, 1))}
}

// take takes n events from the bucket at time now (nanoseconds on the
// collector's monotonic clock) and returns 0, or takes nothing and returns
// how long until the bucket has room for all n. A batch larger than the
// burst is taken only from a full bucket, which it leaves in debt: the
// rate holds on average, and no batch the contract allows is refused
// forever.
func (b *rateBucket) take(now int64, n int) (wait time.Duration) {
	cost := int64(n) * b.interval
	need := min(int64(n), b.burst) * b.interval
	for {
		tat := b.tat.Load()
		t := max(tat, now)
		if over := t - now + need - b.burst*b.interval; over > 0 {
			return time.Duration(over)
		}
		if b.tat.CompareAndSwap(tat, t+cost) {
			return 0
		}
	}
}

// ParseSiteRates applies --site-rate specs to sites: KEY=N or KEY=N:BURST,
// several per string separated by commas; N is events per second (a
// decimal, > 0), BURST the events the site may post at once above it (an
// integer; without it Site.Burst stays 0, which New reads as N rounded
// up). A KEY that is not one of sites is refused.
func ParseSiteRates(specs []string, sites []Site) error {
	seen := map[string]bool{}
	for _, one := range specItems(specs) {
		key, rate, burst, err := parseSiteRate(one)
		if err != nil {
			return fmt.Errorf("cannot parse --site-rate %q: %w; want KEY=N[:BURST], N events/s, BURST events", one, err)
		}
		if seen[key] {
			return fmt.Errorf("cannot parse --site-rate %q: site %q given twice", one, key)
		}
		seen[key] = true
		i := 0
		for i < len(sites) && sites[i].Key != key {
			i++
		}
		if i == len(sites) {
			return fmt.Errorf("cannot parse --site-rate %q: no site %q: list it in --site first", one, key)
		}
		sites[i].Rate, sites[i].Burst = rate, burst
	}
	return nil
}

// maxSiteRate bounds a site's rate and burst, far above what one collector
// takes, so that a bucket's nanosecond arithmetic cannot overflow.
const maxSiteRate = 1 << 30

func parseSiteRate(s string) (key string, rate float64, burst int, err error) {
	key, val, ok := strings.Cut(s, "=")
	if !ok || key == "" {
		return "", 0, 0, fmt.Errorf("no KEY=")
	}
	rs, bs, hasBurst := strings.Cut(val, ":")
	rate, err = strconv.ParseFloat(rs, 64)
	if err != nil || !(rate > 0) || math.IsInf(rate, 0) {
		return "", 0, 0, fmt.Errorf("rate %q is not a positive number", rs)
	}
	if hasBurst {
		burst, err = strconv.Atoi(bs)
		if err != nil || burst < 1 {
			return "", 0, 0, fmt.Errorf("burst %q is not a positive integer", bs)
		}
	}
	if rate > maxSiteRate || burst > maxSiteRate {
		return "", 0, 0, fmt.Errorf("rate %q or burst %q above %d", rs, bs, maxSiteRate)
	}
	return key, rate, burst, nil
}

// escapeLabel escapes a Prometheus label value.
func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

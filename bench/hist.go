package bench

import (
	"math/bits"
	"time"
)

// Histogram counts durations in log-linear buckets (as HdrHistogram does):
// exact below 128 ns, then 64 buckets per power of two, so any quantile it
// reports is within 1.6% of the true value. The zero value is ready; it is
// not safe for concurrent use.
type Histogram struct {
	counts [histBuckets]uint64
	n      uint64
	max    int64
}

const (
	histSubBits = 7 // 2^7 = 128 exact values, then 64 buckets per octave
	histBuckets = 1<<histSubBits + (64-histSubBits)*(1<<(histSubBits-1))
)

func histIndex(v int64) int {
	if v < 1<<histSubBits {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - histSubBits // ≥ 1
	m := int(uint64(v) >> shift)                 // in [64, 128)
	return 1<<histSubBits + (shift-1)*(1<<(histSubBits-1)) + m - 1<<(histSubBits-1)
}

// histValue returns the midpoint of bucket i.
func histValue(i int) int64 {
	if i < 1<<histSubBits {
		return int64(i)
	}
	j := i - 1<<histSubBits
	shift := j/(1<<(histSubBits-1)) + 1
	m := int64(j%(1<<(histSubBits-1)) + 1<<(histSubBits-1))
	return m<<shift + (int64(1)<<shift)/2
}

// Record adds one duration.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	h.counts[histIndex(v)]++
	h.n++
	if v > h.max {
		h.max = v
	}
}

// Count returns the number of recorded durations.
func (h *Histogram) Count() uint64 { return h.n }

// Max returns the largest recorded duration.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// Reset empties h.
func (h *Histogram) Reset() { *h = Histogram{} }

// Quantile returns the duration below which a fraction q (0..1) of the
// recorded ones are, or 0 when h is empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(histValue(i), h.max))
		}
	}
	return time.Duration(h.max)
}

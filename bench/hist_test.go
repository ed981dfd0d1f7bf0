package bench

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	f := func(name string, values []int64) {
		t.Helper()
		var h Histogram
		for _, v := range values {
			h.Record(time.Duration(v))
		}
		sorted := slices.Clone(values)
		slices.Sort(sorted)
		for _, q := range []float64{0.5, 0.9, 0.99, 1} {
			want := sorted[max(int(q*float64(len(sorted))+0.5)-1, 0)]
			got := int64(h.Quantile(q))
			if diff := float64(got-want) / float64(max(want, 1)); diff > 0.016 || diff < -0.016 {
				t.Errorf("%s: q%.2f = %d; want %d (±1.6%%)", name, q, got, want)
			}
		}
		if h.Count() != uint64(len(values)) {
			t.Errorf("%s: count %d; want %d", name, h.Count(), len(values))
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	var small, wide, exp []int64
	for range 10000 {
		small = append(small, r.Int64N(128))
		wide = append(wide, r.Int64N(1e10))
		exp = append(exp, int64(r.ExpFloat64()*1e6)+1)
	}
	f("exact", small)
	f("wide", wide)
	f("exponential", exp)
	f("one", []int64{123456789})
}

func TestHistogramIndexBounds(t *testing.T) {
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 1 << 40, 1<<63 - 1} {
		i := histIndex(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("histIndex(%d) = %d; want in [0, %d)", v, i, histBuckets)
		}
		if mid := histValue(i); v >= 128 && (float64(mid-v)/float64(v) > 0.016 || float64(v-mid)/float64(v) > 0.016) {
			t.Errorf("histValue(histIndex(%d)) = %d: more than 1.6%% off", v, mid)
		}
	}
}

package campaign

import (
	"math"
	"math/rand/v2"
	"testing"
)

func near(a, b float64) bool {
	return math.IsNaN(a) && math.IsNaN(b) || math.Abs(a-b) <= 1e-6*math.Max(1, math.Abs(b))
}

// Known values, computed by hand from the formulas; the p-value of the
// first is 2(1 − Φ(2.828427)) from a normal table.
func TestTwoProportions(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		x1, n1, x0, n0 uint64
		want           Uplift
	}{
		// p1 .6, p0 .4: se √(.0048) = .0692820; pooled .5, z 2.828427.
		{60, 100, 40, 100, Uplift{Absolute: .2, Low: .2 - z95*0.06928203230275509, High: .2 + z95*0.06928203230275509,
			Relative: .5, RelLow: 1.5*math.Exp(-z95*math.Sqrt(.4/60+.6/40)) - 1, RelHigh: 1.5*math.Exp(z95*math.Sqrt(.4/60+.6/40)) - 1,
			P: 0.004677734981047177}},
		// Equal rates: no uplift, p = 1.
		{10, 1000, 10, 1000, Uplift{Absolute: 0, Low: -z95 * math.Sqrt(2*.01*.99/1000), High: z95 * math.Sqrt(2*.01*.99/1000),
			Relative: 0, RelLow: math.Exp(-z95*math.Sqrt(2*.99/10)) - 1, RelHigh: math.Exp(z95*math.Sqrt(2*.99/10)) - 1, P: 1}},
		// No conversion in control: relative undefined, the rest defined.
		{5, 100, 0, 100, Uplift{Absolute: .05, Low: .05 - z95*math.Sqrt(.05*.95/100), High: .05 + z95*math.Sqrt(.05*.95/100),
			Relative: nan, RelLow: nan, RelHigh: nan, P: math.Erfc(.05 / math.Sqrt(.025*.975*.02) / math.Sqrt2)}},
		// An empty control group: nothing to compare.
		{5, 100, 0, 0, Uplift{Absolute: nan, Low: nan, High: nan, Relative: nan, RelLow: nan, RelHigh: nan, P: nan}},
		// Nobody converted anywhere: no difference, no test.
		{0, 100, 0, 100, Uplift{Absolute: 0, Low: 0, High: 0, Relative: nan, RelLow: nan, RelHigh: nan, P: nan}},
	} {
		got := TwoProportions(tc.x1, tc.n1, tc.x0, tc.n0)
		g := []float64{got.Absolute, got.Low, got.High, got.Relative, got.RelLow, got.RelHigh, got.P}
		w := []float64{tc.want.Absolute, tc.want.Low, tc.want.High, tc.want.Relative, tc.want.RelLow, tc.want.RelHigh, tc.want.P}
		for i := range g {
			if !near(g[i], w[i]) {
				t.Errorf("TwoProportions(%d/%d, %d/%d) = %+v\nwant %+v", tc.x1, tc.n1, tc.x0, tc.n0, got, tc.want)
				break
			}
		}
	}
}

// coverage returns the share of runs, of seeded simulated campaigns with
// true conversion rates p1 (n1 treated) and p0 (n0 control), whose
// interval [low, high] from ci covers p1 − p0.
func coverage(runs int, n1, n0 int, p1, p0 float64, ci func(x1, n1, x0, n0 uint64) (float64, float64)) float64 {
	rng := rand.New(rand.NewPCG(1, 2))
	draw := func(n int, p float64) uint64 {
		var x uint64
		for i := 0; i < n; i++ {
			if rng.Float64() < p {
				x++
			}
		}
		return x
	}
	covered := 0
	for r := 0; r < runs; r++ {
		lo, hi := ci(draw(n1, p1), uint64(n1), draw(n0, p0), uint64(n0))
		if lo <= p1-p0 && p1-p0 <= hi {
			covered++
		}
	}
	return float64(covered) / float64(runs)
}

// The 95% interval covers the true uplift in about 95% of simulated
// campaigns; an interval of the wrong width (z = 1.645, a 90% one, or
// the pooled standard error's cousin with n swapped) misses that range.
func TestUpliftIntervalCoverage(t *testing.T) {
	const runs, n1, n0, p1, p0 = 2000, 9000, 1000, 0.05, 0.03
	ours := func(x1, n1, x0, n0 uint64) (float64, float64) {
		u := TwoProportions(x1, n1, x0, n0)
		return u.Low, u.High
	}
	// With 2000 runs the share's standard error is 0.5%: a correct 95%
	// interval lands in [0.935, 0.965] but for a 1-in-400 fluke.
	if c := coverage(runs, n1, n0, p1, p0, ours); c < 0.935 || c > 0.965 {
		t.Errorf("coverage of the 95%% interval: %.3f; want 0.935..0.965", c)
	}
	narrow := func(x1, n1, x0, n0 uint64) (float64, float64) {
		u := TwoProportions(x1, n1, x0, n0)
		return u.Absolute - (u.Absolute-u.Low)*1.645/z95, u.Absolute + (u.High-u.Absolute)*1.645/z95
	}
	if c := coverage(runs, n1, n0, p1, p0, narrow); c >= 0.935 && c <= 0.965 {
		t.Errorf("a 90%% interval covered %.3f: the range does not tell a broken interval", c)
	}
	swapped := func(x1, n1, x0, n0 uint64) (float64, float64) { // variances over the wrong n
		p1, p0 := float64(x1)/float64(n1), float64(x0)/float64(n0)
		se := math.Sqrt(p1*(1-p1)/float64(n0) + p0*(1-p0)/float64(n1))
		return p1 - p0 - z95*se, p1 - p0 + z95*se
	}
	if c := coverage(runs, n1, n0, p1, p0, swapped); c >= 0.935 && c <= 0.965 {
		t.Errorf("an interval with swapped sizes covered %.3f: the range does not tell a broken interval", c)
	}
}

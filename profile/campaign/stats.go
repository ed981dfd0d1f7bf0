package campaign

import "math"

// z95 is the two-sided 95% quantile of the standard normal distribution.
const z95 = 1.959963984540054

// Uplift compares a treated group's conversion with its control's.
type Uplift struct {
	// Absolute is p₁ − p₀, with its 95% interval [Low, High]: Wald,
	// unpooled, p̂ ± z·√(p₁(1−p₁)/n₁ + p₀(1−p₀)/n₀).
	Absolute, Low, High float64
	// Relative is p₁/p₀ − 1, with its 95% interval from the log of the
	// risk ratio (Katz): exp(ln RR ± z·√((1−p₁)/x₁ + (1−p₀)/x₀)) − 1.
	// NaN when either group has no conversion.
	Relative, RelLow, RelHigh float64
	// P is the two-sided p-value of the pooled two-proportion z-test of
	// p₁ = p₀; NaN when it is undefined (an empty group, or no
	// conversion or all converted in both).
	P float64
}

// TwoProportions returns the uplift of x₁ of n₁ over x₀ of n₀; NaN
// fields where a group is empty.
func TwoProportions(x1, n1, x0, n0 uint64) Uplift {
	nan := math.NaN()
	u := Uplift{Absolute: nan, Low: nan, High: nan, Relative: nan, RelLow: nan, RelHigh: nan, P: nan}
	if n1 == 0 || n0 == 0 {
		return u
	}
	fx1, fn1, fx0, fn0 := float64(x1), float64(n1), float64(x0), float64(n0)
	p1, p0 := fx1/fn1, fx0/fn0
	u.Absolute = p1 - p0
	se := math.Sqrt(p1*(1-p1)/fn1 + p0*(1-p0)/fn0)
	u.Low, u.High = u.Absolute-z95*se, u.Absolute+z95*se
	if x1 > 0 && x0 > 0 {
		rr := p1 / p0
		s := math.Sqrt((1-p1)/fx1 + (1-p0)/fx0)
		u.Relative = rr - 1
		u.RelLow, u.RelHigh = rr*math.Exp(-z95*s)-1, rr*math.Exp(z95*s)-1
	}
	pool := (fx1 + fx0) / (fn1 + fn0)
	if sp := math.Sqrt(pool * (1 - pool) * (1/fn1 + 1/fn0)); sp > 0 {
		z := u.Absolute / sp
		u.P = math.Erfc(math.Abs(z) / math.Sqrt2)
	}
	return u
}

// ratio returns a/b, NaN when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}

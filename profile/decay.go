package profile

import (
	"math"
)

// Landmark is the fixed epoch L of forward decay, 2026-01-01T00:00:00Z in
// Unix milliseconds. Every stored LogG is relative to it: changing it is a
// migration (DESIGN.md, "Scoring: forward decay").
const Landmark int64 = 1767225600000

// ExactHalfLives is how many half-lives past (or before) Landmark an event
// time may lie for stored LogG values to stay exact: below it a LogG has an
// ulp ≤ 2^-39, so 1000 updates of one value move its score by < 1e-9
// relative. See Config.ExactUntil.
const ExactHalfLives = 8192

// NegInf is the LogG of a value with no positive interest (absent, or a sum
// ≤ 0): log2 0.
var NegInf = math.Inf(-1)

// ExactUntil returns the last instant (Unix ms) at which events keep the
// stored form exact for every dimension of c: Landmark + ExactHalfLives
// times the shortest half-life. Past it scores lose precision slowly (one
// bit per doubling of the elapsed half-lives) and the store should be
// re-landmarked (DESIGN.md).
func (c *Config) ExactUntil() int64 {
	h := math.Inf(1)
	for d := range NumDims {
		if c.hMs[d] > 0 && c.hMs[d] < h {
			h = c.hMs[d]
		}
	}
	if math.IsInf(h, 1) {
		return math.MaxInt64
	}
	return Landmark + int64(ExactHalfLives*h)
}

// logAddExp returns log2(2^a + 2^b), exactly commutative.
func logAddExp(a, b float64) float64 {
	if a < b {
		a, b = b, a
	}
	if math.IsInf(b, -1) {
		return a
	}
	return a + math.Log1p(math.Exp2(b-a))/math.Ln2
}

// logSubExp returns log2(2^a − 2^b) for a > b.
func logSubExp(a, b float64) float64 {
	if math.IsInf(b, -1) {
		return a
	}
	return a + math.Log1p(-math.Exp2(b-a))/math.Ln2
}

// elapsed returns (t − L)/H for half-life hMs in ms.
func elapsed(t int64, hMs float64) float64 {
	return float64(t-Landmark) / hMs
}

// LogThreshold returns the LogG a value of d needs at time atMs to score at
// least theta: log2 θ + (T − L)/H. "Score ≥ θ at T" ⇔ "LogG ≥ LogThreshold".
// A theta ≤ 0 gives −Inf (every present value qualifies).
func (c *Config) LogThreshold(d Dim, theta float64, atMs int64) float64 {
	if int(d) >= NumDims || c.hMs[d] == 0 {
		return math.Inf(1)
	}
	if !(theta > 0) {
		return NegInf
	}
	return math.Log2(theta) + elapsed(atMs, c.hMs[d])
}

// DecayTime returns the first instant (Unix ms) at which a value of d with
// the given LogG scores below theta: every T < DecayTime has
// LogG ≥ LogThreshold(d, theta, T), and T = DecayTime has not. It is
// math.MinInt64 for a LogG of −Inf, and math.MaxInt64 when the score never
// falls below theta (theta ≤ 0) or the instant lies beyond int64.
func (c *Config) DecayTime(d Dim, logG, theta float64) int64 {
	if math.IsInf(logG, -1) || math.IsNaN(logG) || int(d) >= NumDims || c.hMs[d] == 0 {
		return math.MinInt64
	}
	if !(theta > 0) {
		return math.MaxInt64
	}
	at := func(t int64) bool { return logG >= c.LogThreshold(d, theta, t) }
	x := float64(Landmark) + c.hMs[d]*(logG-math.Log2(theta))
	if x >= 9e18 {
		return math.MaxInt64
	}
	if x <= -9e18 {
		return math.MinInt64
	}
	// x is the real crossing up to rounding; step to the exact integer
	// boundary of the test LogThreshold makes.
	t := int64(math.Floor(x))
	for i := 0; i < 64 && !at(t); i++ {
		t--
	}
	for i := 0; i < 64 && at(t+1); i++ {
		t++
	}
	return t + 1
}

// ScoreAt returns the score 2^(LogG − (T − L)/H) of a value of d with the
// given LogG at atMs.
func (c *Config) ScoreAt(d Dim, logG float64, atMs int64) float64 {
	if math.IsInf(logG, -1) || int(d) >= NumDims || c.hMs[d] == 0 {
		return 0
	}
	return math.Exp2(logG - elapsed(atMs, c.hMs[d]))
}

package state

import "math"

// ScoreKey returns the interest order key of logG, a log-space score: keys
// compare in DESCENDING order of logG, so an ascending ScanInterests yields
// the best first and "LogG ≥ x" is the range of keys ≤ ScoreKey(x). NaN is
// not a valid score; −Inf sorts last.
func ScoreKey(logG float64) uint64 {
	b := math.Float64bits(logG)
	if b>>63 != 0 {
		b = ^b // negative: larger magnitude sorts lower
	} else {
		b |= 1 << 63
	}
	return ^b
}

// KeyScore returns the logG of an order key made by ScoreKey.
func KeyScore(key uint64) float64 {
	b := ^key
	if b>>63 != 0 {
		b &^= 1 << 63
	} else {
		b = ^b
	}
	return math.Float64frombits(b)
}

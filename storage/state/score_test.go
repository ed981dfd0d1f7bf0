package state

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestScoreKeyOrder(t *testing.T) {
	vals := []float64{math.Inf(1), 1e300, 1000, 1.5, 1, math.SmallestNonzeroFloat64, 0, -math.SmallestNonzeroFloat64, -1, -1.5, -1e300, math.Inf(-1)}
	var keys []uint64
	for _, v := range vals {
		k := ScoreKey(v)
		keys = append(keys, k)
		if got := KeyScore(k); got != v {
			t.Fatalf("KeyScore(ScoreKey(%v)) = %v", v, got)
		}
	}
	if !slices.IsSorted(keys) {
		t.Fatalf("keys of descending LogG are not ascending: %x", keys)
	}
	r := rand.New(rand.NewPCG(2, 2))
	for range 1000 {
		a, b := (r.Float64()-0.5)*1e4, (r.Float64()-0.5)*1e4
		if (a > b) != (ScoreKey(a) < ScoreKey(b)) {
			t.Fatalf("%v vs %v: key order wrong", a, b)
		}
	}
}

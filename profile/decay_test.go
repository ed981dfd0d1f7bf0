package profile

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestLandmark(t *testing.T) {
	if got := time.UnixMilli(Landmark).UTC().Format(time.RFC3339); got != "2026-01-01T00:00:00Z" {
		t.Fatalf("Landmark is %s; want 2026-01-01T00:00:00Z", got)
	}
}

func TestLogAddExp(t *testing.T) {
	f := func(a, b, want float64) {
		t.Helper()
		if got := logAddExp(a, b); math.Abs(got-want) > 1e-15 || logAddExp(b, a) != got {
			t.Errorf("logAddExp(%v, %v) = %v, reversed %v; want %v", a, b, got, logAddExp(b, a), want)
		}
	}
	f(0, 0, 1)
	f(3, 3, 4)
	f(NegInf, 2, 2)
	f(NegInf, NegInf, NegInf)
	f(0, 1, math.Log2(3))
	f(1000, 0, 1000)
	f(-1000, -1001, -1000+math.Log2(1.5))
}

func TestThresholdAndDecayTime(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.SetHalfLife("price=1h"); err != nil {
		t.Fatal(err)
	}
	h := 14 * day
	// A value at score 1 at t0 falls below 0.5 one half-life later.
	g := cfg.LogThreshold(DimBrand, 1, t0)
	if got := cfg.ScoreAt(DimBrand, g, t0); math.Abs(got-1) > 1e-12 {
		t.Fatalf("score at the threshold of 1: %v", got)
	}
	if got := cfg.DecayTime(DimBrand, g, 0.5); got != t0+h+1 && got != t0+h {
		t.Errorf("DecayTime(θ=0.5) = t0%+d ms; want t0+H (+1)", got-t0)
	}
	r := rand.New(rand.NewPCG(1, 1))
	for range 2000 {
		d := Dim(r.IntN(NumDims))
		g := (r.Float64() - 0.3) * 500
		theta := math.Exp2((r.Float64() - 0.5) * 40)
		at := cfg.DecayTime(d, g, theta)
		if at == math.MinInt64 || at == math.MaxInt64 {
			continue
		}
		if !(g >= cfg.LogThreshold(d, theta, at-1)) || g >= cfg.LogThreshold(d, theta, at) {
			t.Fatalf("DecayTime(%s, %v, %v) = %d: not the first instant below θ", d, g, theta, at)
		}
		if s := cfg.ScoreAt(d, g, at-1); math.Abs(s-theta) > 1e-6*theta {
			t.Fatalf("score just before DecayTime %v; want ≈ θ %v", s, theta)
		}
	}
	if got := cfg.DecayTime(DimBrand, NegInf, 1); got != math.MinInt64 {
		t.Errorf("DecayTime(−Inf) = %d; want MinInt64", got)
	}
	if got := cfg.DecayTime(DimBrand, 1, 0); got != math.MaxInt64 {
		t.Errorf("DecayTime(θ=0) = %d; want MaxInt64", got)
	}
	if got := cfg.DecayTime(DimBrand, 1e12, 1); got != math.MaxInt64 {
		t.Errorf("DecayTime(huge) = %d; want MaxInt64", got)
	}
}

// TestExactRange checks the float range DESIGN.md states: ExactHalfLives
// half-lives past the landmark, 1000 updates of one value stay within 1e-9
// of the direct sum.
func TestExactRange(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.SetHalfLife("1h"); err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.ExactUntil(), Landmark+ExactHalfLives*3600_000; got != want {
		t.Fatalf("ExactUntil %d; want %d", got, want)
	}
	h := float64(time.Hour.Milliseconds())
	base := cfg.ExactUntil() - 2000*3600_000
	r := rand.New(rand.NewPCG(3, 3))
	e := Entry{LogP: NegInf, LogN: NegInf}
	var direct float64
	at := cfg.ExactUntil()
	for range 1000 {
		ts := base + r.Int64N(2000*3600_000)
		e.LogP = logAddExp(e.LogP, elapsed(ts, h))
		direct += math.Pow(2, -float64(at-ts)/h)
	}
	got := cfg.ScoreAt(DimBrand, e.LogG(), at)
	if math.Abs(got-direct) > 1e-9*direct {
		t.Fatalf("score %v; direct %v; relative error %v", got, direct, math.Abs(got-direct)/direct)
	}
}

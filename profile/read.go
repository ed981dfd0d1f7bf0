package profile

import (
	"math"
	"slices"
)

// Entry returns the kept entry of value v of d, or nil. The pointer is
// valid until the next Apply or Decode into p.
func (p *Profile) Entry(d Dim, v string) *Entry {
	if int(d) >= NumDims {
		return nil
	}
	es := p.Dims[d]
	if i, ok := slices.BinarySearchFunc(es, v, cmpEntryValue); ok {
		return &es[i]
	}
	return nil
}

// LogG returns the LogG of value v of d: −Inf when it is not kept or its
// sum is ≤ 0.
func (p *Profile) LogG(d Dim, v string) float64 {
	if e := p.Entry(d, v); e != nil {
		return e.LogG()
	}
	return NegInf
}

// Score returns the decayed interest of p in value v of d at atMs (Unix
// ms): Σ w·2^(−(atMs − t)/H) over the events that touched it, 0 when it is
// not kept or the sum is ≤ 0.
func (p *Profile) Score(cfg *Config, d Dim, v string, atMs int64) float64 {
	return cfg.ScoreAt(d, p.LogG(d, v), atMs)
}

// Top returns the value of d with the highest score (the smallest value
// among equals), and false when d has no value with a positive score. It
// does not depend on time: only events change it.
func (p *Profile) Top(cfg *Config, d Dim) (string, bool) {
	if int(d) >= NumDims {
		return "", false
	}
	best, g := -1, NegInf
	for i := range p.Dims[d] {
		if x := p.Dims[d][i].LogG(); x > g {
			best, g = i, x
		}
	}
	if best < 0 {
		return "", false
	}
	return p.Dims[d][best].Value, true
}

// Share returns the score of value v of d divided by the sum of the
// positive scores of d's kept values, in [0, 1]. It does not depend on
// time.
func (p *Profile) Share(cfg *Config, d Dim, v string) float64 {
	g := p.LogG(d, v)
	if math.IsInf(g, -1) {
		return 0
	}
	m, sum := p.norm(d)
	return math.Exp2(g-m) / sum
}

// norm returns the highest LogG m of d's values and Σ 2^(LogG−m) over its
// values with positive sums: shares are 2^(LogG−m)/sum.
func (p *Profile) norm(d Dim) (m, sum float64) {
	m = NegInf
	for i := range p.Dims[d] {
		m = max(m, p.Dims[d][i].LogG())
	}
	for i := range p.Dims[d] {
		if x := p.Dims[d][i].LogG(); x > NegInf {
			sum += math.Exp2(x - m)
		}
	}
	return m, sum
}

// Trait returns the latest value of trait key, or nil. The pointer is valid
// until the next Apply or Decode into p.
func (p *Profile) Trait(key string) *Trait {
	if i, ok := slices.BinarySearchFunc(p.Traits, key, cmpTraitKey); ok {
		return &p.Traits[i]
	}
	return nil
}

// CartSize returns how many lines are in the cart (added, not since removed
// or bought).
func (p *Profile) CartSize() int {
	n := 0
	for i := range p.Cart {
		if p.Cart[i].InCart() {
			n++
		}
	}
	return n
}

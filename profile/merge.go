package profile

import (
	"slices"
	"strings"
)

// Merge folds src, the profile of another visitor of the same person, into
// p, so that p becomes the profile of one visitor who had the events of
// both (DESIGN.md, "Identity"): per dimension value the positive and the
// negative log-space sums add (log-add-exp, as Apply adds an event), event
// counts and order counts and revenue add, recent-event windows merge,
// first and last times take the min and max, and the email, customer id,
// traits and cart lines take the latest by their event times with Apply's
// tie rules. src is not changed; p copies the strings it keeps.
//
// Without a bound reached the result equals, to float rounding, the
// profile of all the events applied to one visitor, in any order. Where a
// bound drops data, Merge keeps:
//   - per dimension, the Config.TopK values with the highest merged sums
//     (values with G ≤ 0 go first, the greatest value among equals);
//     a value one side had evicted counts with the other side's sum only,
//     as Apply would have restarted it;
//   - per event type, the MaxRecent newest times of both windows: what
//     Apply keeps for the union of the events, so windowed counts stay
//     exact up to MaxRecent;
//   - the MaxTraits keys set most recently (the greatest key dropped
//     first among equals) and the MaxCart lines Apply's cart bound keeps
//     (removed lines first, then the ones touched longest ago).
//
// It does not allocate when p already holds every value, trait and cart
// line of src.
func (p *Profile) Merge(src *Profile, cfg *Config) {
	if src.Empty() {
		return
	}
	widen(&p.FirstSeen, &p.LastSeen, p.Empty(), src.FirstSeen, src.LastSeen)
	p.LastRecv = max(p.LastRecv, src.LastRecv)
	for d := range Dim(NumDims) {
		p.mergeDim(cfg, d, src.Dims[d])
	}
	for t := range p.Events {
		p.Events[t].merge(&src.Events[t])
	}
	if src.Email != "" {
		setLatest(&p.Email, &p.EmailTS, src.Email, src.EmailTS)
	}
	if src.Customer != "" {
		setLatest(&p.Customer, &p.CustomerTS, src.Customer, src.CustomerTS)
	}
	for i := range src.Traits {
		p.mergeTrait(&src.Traits[i])
	}
	p.trimTraits()
	for i := range src.Cart {
		s := &src.Cart[i]
		if c := p.cartLine(s.ID); c != nil {
			c.add(s.Added, s.Qty)
			c.Removed = max(c.Removed, s.Removed)
		}
	}
	p.trimCart()
	p.Orders.merge(&src.Orders)
}

// mergeDim adds the sums of src's values to p's values of d, then evicts
// the lowest past the dimension's TopK.
func (p *Profile) mergeDim(cfg *Config, d Dim, src []Entry) {
	es := p.Dims[d]
	for i := range src {
		s := &src[i]
		j, found := slices.BinarySearchFunc(es, s.Value, cmpEntryValue)
		if !found {
			es = slices.Insert(es, j, Entry{Value: strings.Clone(s.Value), LogP: NegInf, LogN: NegInf})
		}
		en := &es[j]
		en.LogP = logAddExp(en.LogP, s.LogP)
		en.LogN = logAddExp(en.LogN, s.LogN)
	}
	for len(es) > cfg.topK[d] {
		j := lowest(es)
		es = slices.Delete(es, j, j+1)
	}
	p.Dims[d] = es
}

// merge adds the events counted in src to s: counts add, the windows of
// recent times merge newest first, bounded by MaxRecent as add bounds
// them.
func (s *EventStats) merge(src *EventStats) {
	if src.Count == 0 {
		return
	}
	widen(&s.First, &s.Last, s.Count == 0, src.First, src.Last)
	s.Count += src.Count
	var buf [MaxRecent]int64
	a, b := s.Recent, src.Recent
	n := 0
	for n < MaxRecent && (len(a) > 0 || len(b) > 0) {
		if len(b) == 0 || len(a) > 0 && a[0] >= b[0] {
			buf[n], a = a[0], a[1:]
		} else {
			buf[n], b = b[0], b[1:]
		}
		n++
	}
	s.Recent = append(s.Recent[:0], buf[:n]...)
}

// mergeTrait sets the trait of src's key to src's value when it is the
// latest; the bound is the caller's (trimTraits).
func (p *Profile) mergeTrait(src *Trait) {
	i, found := slices.BinarySearchFunc(p.Traits, src.Key, cmpTraitKey)
	if !found {
		p.Traits = slices.Insert(p.Traits, i, Trait{Key: strings.Clone(src.Key), Value: strings.Clone(src.Value), Kind: src.Kind, TS: src.TS})
		return
	}
	cur := &p.Traits[i]
	if !traitWins(src.TS, src.Kind, src.Value, cur) {
		return
	}
	if src.Value != cur.Value {
		cur.Value = strings.Clone(src.Value)
	}
	cur.Kind, cur.TS = src.Kind, src.TS
}

// merge adds the orders of src to o.
func (o *Orders) merge(src *Orders) {
	if src.Count == 0 {
		return
	}
	widen(&o.First, &o.Last, o.Count == 0, src.First, src.Last)
	o.Count += src.Count
	o.Revenue += src.Revenue
}

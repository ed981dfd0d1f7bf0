package profile

import (
	"math"
	"slices"
	"strings"

	"github.com/affinityhq/affinity/tracker/event"
)

// Bounds of a profile. They are part of the profile format: DecodeProfile
// refuses data exceeding them.
const (
	// MaxRecent is how many of the most recent timestamps a profile keeps
	// per event type: windowed counts ("purchases in 180 days") are exact up
	// to that many events in the window (EventStats.CountSince).
	MaxRecent = 16
	// MaxTraits is how many trait keys a profile keeps; past it the key
	// set least recently is dropped.
	MaxTraits = 64
	// MaxCart is how many cart lines (including removed ones kept to order
	// late events) a profile keeps; past it removed lines go first, then
	// the oldest.
	MaxCart = 32
	// MaxValueLen is the longest dimension value, trait, email, customer or
	// product id a profile stores; longer ones are ignored.
	MaxValueLen = 2048
)

// Entry is one value of a dimension with its forward-decayed interest.
//
// Weights may be negative (uncart), so the landmark sum G = P − N is kept
// as two log-space sums: LogP = log2 P over the positive contributions and
// LogN = log2 N over the magnitudes of the negative ones (−Inf when there
// are none). Each is a commutative log-add-exp accumulation, so any order
// of events gives the same pair (to rounding); LogG derives from both.
type Entry struct {
	Value string
	LogP  float64
	LogN  float64
}

// LogG returns log2 G of e: log2(P − N) when P > N, else −Inf (no
// interest: score 0, not in the interest index).
func (e *Entry) LogG() float64 {
	if e.LogP > e.LogN {
		return logSubExp(e.LogP, e.LogN)
	}
	return NegInf
}

// cmpG compares the signed sums P − N of a and b.
func cmpG(a, b *Entry) int {
	sa, ma := a.signed()
	sb, mb := b.signed()
	switch {
	case sa != sb:
		return sa - sb
	case ma == mb:
		return 0
	case (ma < mb) == (sa > 0):
		return -1
	default:
		return 1
	}
}

func (e *Entry) signed() (sign int, logMag float64) {
	switch {
	case e.LogP > e.LogN:
		return 1, logSubExp(e.LogP, e.LogN)
	case e.LogP < e.LogN:
		return -1, logSubExp(e.LogN, e.LogP)
	}
	return 0, NegInf
}

// EventStats are a profile's counts of one event type.
type EventStats struct {
	Count  uint64
	First  int64   // event time of the earliest, Unix ms; valid when Count > 0
	Last   int64   // event time of the latest
	Recent []int64 // the most recent event times, newest first, at most MaxRecent
}

// CountSince returns how many events happened at or after since, and
// whether the count is exact: it is, unless more than MaxRecent events
// fall in the window, in which case n = MaxRecent is a lower bound.
func (s *EventStats) CountSince(since int64) (n int, exact bool) {
	if s.Count == 0 || s.Last < since {
		return 0, true
	}
	if s.First >= since {
		return int(min(s.Count, math.MaxInt32)), true
	}
	for n < len(s.Recent) && s.Recent[n] >= since {
		n++
	}
	return n, n < len(s.Recent) || uint64(len(s.Recent)) == s.Count
}

func (s *EventStats) add(ts int64) {
	widen(&s.First, &s.Last, s.Count == 0, ts, ts)
	s.Count++
	if cap(s.Recent) < MaxRecent {
		s.Recent = slices.Grow(s.Recent, MaxRecent-len(s.Recent))
	}
	r := s.Recent
	i := 0
	for i < len(r) && r[i] >= ts {
		i++
	}
	if len(r) < MaxRecent {
		r = r[:len(r)+1]
	} else if i == len(r) {
		return
	}
	copy(r[i+1:], r[i:])
	r[i] = ts
	s.Recent = r
}

// widen extends the span [*first, *last] to [first2, last2]; empty: the
// span holds nothing yet and becomes [first2, last2].
func widen(first, last *int64, empty bool, first2, last2 int64) {
	if empty {
		*first, *last = first2, last2
		return
	}
	*first, *last = min(*first, first2), max(*last, last2)
}

// Trait is the latest value of one trait key.
type Trait struct {
	Key   string
	Value string
	Kind  event.TraitKind
	TS    int64 // event time it was set, Unix ms
}

// CartItem is one product line of the cart. It is in the cart when Added >
// Removed; lines taken out (or bought) stay as long as room allows, so that
// a late cart event older than its removal does not bring the line back.
type CartItem struct {
	ID      string
	Qty     uint32 // of the latest cart event
	Added   int64  // event time of the latest cart event, Unix ms; 0 if none
	Removed int64  // event time of the latest uncart or purchase; 0 if none
}

// InCart reports whether the line is in the cart (added, not since removed
// or bought).
func (c *CartItem) InCart() bool { return c.Added > c.Removed }

// Orders sums the visitor's purchases, for RFM.
type Orders struct {
	Count   uint64
	Revenue float64 // Σ order totals (or Σ item price·qty when no total)
	First   int64   // event time of the first purchase, Unix ms; valid when Count > 0
	Last    int64
}

// Profile is what affinity knows about one visitor. Apply folds events into
// it; AppendProfile / DecodeProfile store it.
//
// Every field depends only on the multiset of events applied, never on
// their order (up to float rounding), except where a bound drops data: the
// lowest value of a full dimension (Config.TopK), MaxRecent, MaxTraits,
// MaxCart.
//
// A Profile is not safe for concurrent use. Its strings are its own
// (copied from events): they stay valid for as long as it lives.
type Profile struct {
	FirstSeen int64 // event time of the earliest event, Unix ms
	LastSeen  int64 // event time of the latest event
	LastRecv  int64 // latest server receive time of an applied event

	// Dims holds per dimension the kept values, sorted by Value.
	Dims [NumDims][]Entry
	// Events holds the counts per event type, indexed by event.Type.
	Events [event.NumTypes]EventStats

	Email      string // normalised: trimmed, lower-cased; "" if never identified
	EmailTS    int64
	Customer   string // the shop's customer id, trimmed
	CustomerTS int64
	Traits     []Trait    // sorted by Key
	Cart       []CartItem // sorted by ID
	Orders     Orders
}

// ScoreChange is how one Apply changed one (dimension, value) of the
// interest index. A value is in the index (Before / After) when it is kept
// in the profile and its LogG is > −Inf; Old / New are its LogG (−Inf when
// absent). Evictions are changes with After false.
//
// Value is the profile's own string: it stays valid.
type ScoreChange struct {
	Dim           Dim
	Value         string
	Old, New      float64
	Before, After bool
}

// Reset empties p for reuse, keeping the capacity of its slices.
func (p *Profile) Reset() {
	dims := p.Dims
	evs := p.Events
	traits, cart := p.Traits[:0], p.Cart[:0]
	*p = Profile{}
	for d := range dims {
		clear(dims[d])
		p.Dims[d] = dims[d][:0]
	}
	for t := range evs {
		p.Events[t].Recent = evs[t].Recent[:0]
	}
	clear(traits[:cap(traits)])
	clear(cart[:cap(cart)])
	p.Traits, p.Cart = traits, cart
}

// Empty reports whether no event was ever applied to p.
func (p *Profile) Empty() bool {
	for t := range p.Events {
		if p.Events[t].Count > 0 {
			return false
		}
	}
	return true
}

// Apply folds event e, received at recv (Unix ms), into p and appends to
// dst the resulting changes of the interest index; at most one per
// (dimension, value) for this call. Successive calls' changes chain (a
// change's Old is the previous change's New): merge them with Coalesce.
//
// Scoring uses the event time e.TS, never the clock. The caller has joined
// catalog attributes into e.Product and the order items. A purchase scores
// each of its order's items (or e.Product when the order has none); other
// types score e.Product. Events of unknown types are ignored.
//
// Apply copies the strings it keeps; e may be reused afterwards. It does
// not allocate when the event touches only values p already holds.
func (p *Profile) Apply(e *event.Event, cfg *Config, recv int64, dst []ScoreChange) []ScoreChange {
	t := e.Type
	if t == event.TypeInvalid || int(t) >= event.NumTypes {
		return dst
	}
	ts := e.TS
	widen(&p.FirstSeen, &p.LastSeen, p.Empty(), ts, ts)
	p.LastRecv = max(p.LastRecv, recv)
	p.Events[t].add(ts)

	if e.Email != "" {
		if em := strings.ToLower(strings.TrimSpace(e.Email)); em != "" && len(em) <= MaxValueLen {
			setLatest(&p.Email, &p.EmailTS, em, ts)
		}
	}
	if e.Customer != "" {
		if c := strings.TrimSpace(e.Customer); c != "" && len(c) <= MaxValueLen {
			setLatest(&p.Customer, &p.CustomerTS, c, ts)
		}
	}
	for i := range e.Traits {
		p.setTrait(&e.Traits[i], ts)
	}

	items := e.Order.Items
	if !e.HasOrder {
		items = nil
	}
	switch t {
	case event.TypeCart:
		if e.HasProduct {
			p.cartAdd(e.Product.ID, e.Product.Qty, ts)
		}
	case event.TypeUncart:
		if e.HasProduct {
			p.cartRemove(e.Product.ID, ts)
		}
	case event.TypePurchase:
		p.addOrder(e, ts)
		for i := range items {
			p.cartRemove(items[i].ID, ts)
		}
		if len(items) == 0 && e.HasProduct {
			p.cartRemove(e.Product.ID, ts)
		}
	}

	start := len(dst)
	if t == event.TypePurchase && len(items) > 0 {
		for i := range items {
			dst = p.score(cfg, t, ts, &items[i], dst, start)
		}
	} else if e.HasProduct {
		dst = p.score(cfg, t, ts, &e.Product, dst, start)
	}
	return dst
}

// setLatest sets the identity *cur (email, customer id) to v given at ts
// when it is the latest: the later one wins, the greater value for one
// instant, so the result does not depend on the order of events.
func setLatest(cur *string, curTS *int64, v string, ts int64) {
	if *cur != "" && (ts < *curTS || ts == *curTS && v <= *cur) {
		return
	}
	if v != *cur {
		*cur = strings.Clone(v)
	}
	*curTS = ts
}

func (p *Profile) score(cfg *Config, t event.Type, ts int64, pr *event.Product, dst []ScoreChange, start int) []ScoreChange {
	for d := range Dim(NumDims) {
		w := cfg.weights[t][d]
		if w == 0 || cfg.topK[d] == 0 {
			continue
		}
		x := elapsed(ts, cfg.hMs[d]) + cfg.logW[t][d]
		neg := w < 0
		switch d {
		case DimBrand:
			dst = p.add(cfg, d, pr.Brand, neg, x, dst, start)
		case DimCategory:
			c := pr.Category
			for i := 1; i < len(c); i++ {
				if c[i] == '/' && c[i-1] != '/' {
					dst = p.add(cfg, d, c[:i], neg, x, dst, start)
				}
			}
			if c != "" && c[len(c)-1] != '/' {
				dst = p.add(cfg, d, c, neg, x, dst, start)
			}
		case DimAge:
			dst = p.add(cfg, d, pr.Age, neg, x, dst, start)
		case DimPrice:
			if pr.HasPrice {
				dst = p.add(cfg, d, cfg.PriceBand(pr.Price), neg, x, dst, start)
			}
		case DimProduct:
			dst = p.add(cfg, d, pr.ID, neg, x, dst, start)
		}
	}
	return dst
}

func cmpEntryValue(e Entry, v string) int { return strings.Compare(e.Value, v) }

// add adds a contribution 2^x (negative when neg) to value v of d, then
// evicts the lowest values past the dimension's TopK.
//
// Eviction drops a value's whole sum; the value restarts from zero when
// seen again. A dropped value was the lowest of K+1, so its G was at most
// 1/(K+1) of the dimension's total G at that moment: a score read later is
// short by at most that share of the total, decayed like any score, and
// the order of the values above it is unaffected.
func (p *Profile) add(cfg *Config, d Dim, v string, neg bool, x float64, dst []ScoreChange, start int) []ScoreChange {
	if v == "" || len(v) > MaxValueLen {
		return dst
	}
	es := p.Dims[d]
	i, found := slices.BinarySearchFunc(es, v, cmpEntryValue)
	old := NegInf
	if found {
		old = es[i].LogG()
	} else {
		es = slices.Insert(es, i, Entry{Value: strings.Clone(v), LogP: NegInf, LogN: NegInf})
	}
	en := &es[i]
	if neg {
		en.LogN = logAddExp(en.LogN, x)
	} else {
		en.LogP = logAddExp(en.LogP, x)
	}
	g := en.LogG()
	dst = mergeChange(dst, start, ScoreChange{Dim: d, Value: en.Value, Old: old, New: g, Before: old > NegInf, After: g > NegInf})
	for len(es) > cfg.topK[d] {
		j := lowest(es)
		ev := es[j]
		es = slices.Delete(es, j, j+1)
		g := ev.LogG()
		dst = mergeChange(dst, start, ScoreChange{Dim: d, Value: ev.Value, Old: g, New: NegInf, Before: g > NegInf})
	}
	p.Dims[d] = es
	return dst
}

// lowest returns the index of the entry with the lowest signed sum, the
// greatest Value among equals.
func lowest(es []Entry) int {
	j := 0
	for i := 1; i < len(es); i++ {
		if cmpG(&es[i], &es[j]) <= 0 {
			j = i
		}
	}
	return j
}

// mergeChange appends c to dst, or folds it into the change of the same
// (Dim, Value) in dst[start:].
func mergeChange(dst []ScoreChange, start int, c ScoreChange) []ScoreChange {
	for i := start; i < len(dst); i++ {
		o := &dst[i]
		if o.Dim != c.Dim || o.Value != c.Value {
			continue
		}
		o.New, o.After = c.New, c.After
		if !o.Before && !o.After {
			dst = slices.Delete(dst, i, i+1)
		}
		return dst
	}
	if !c.Before && !c.After {
		return dst
	}
	return append(dst, c)
}

// Coalesce merges chained changes of the same (Dim, Value), as made by
// successive Apply calls on one profile, into one each (first Old, last
// New), dropping those that leave the index as it was. It reorders and
// overwrites cs in place and returns the merged prefix.
func Coalesce(cs []ScoreChange) []ScoreChange {
	slices.SortStableFunc(cs, func(a, b ScoreChange) int {
		if a.Dim != b.Dim {
			return int(a.Dim) - int(b.Dim)
		}
		return strings.Compare(a.Value, b.Value)
	})
	out := cs[:0]
	for i := 0; i < len(cs); {
		c := cs[i]
		j := i + 1
		for j < len(cs) && cs[j].Dim == c.Dim && cs[j].Value == c.Value {
			c.New, c.After = cs[j].New, cs[j].After
			j++
		}
		if c.Before || c.After {
			out = append(out, c)
		}
		i = j
	}
	clear(cs[len(out):])
	return out
}

func cmpTraitKey(t Trait, k string) int { return strings.Compare(t.Key, k) }

func (p *Profile) setTrait(tr *event.Trait, ts int64) {
	if tr.Key == "" || len(tr.Key) > MaxValueLen || len(tr.Value) > MaxValueLen {
		return
	}
	i, found := slices.BinarySearchFunc(p.Traits, tr.Key, cmpTraitKey)
	if found {
		cur := &p.Traits[i]
		if !traitWins(ts, tr.Kind, tr.Value, cur) {
			return
		}
		if tr.Value != cur.Value {
			cur.Value = strings.Clone(tr.Value)
		}
		cur.Kind, cur.TS = tr.Kind, ts
		return
	}
	p.Traits = slices.Insert(p.Traits, i, Trait{Key: strings.Clone(tr.Key), Value: strings.Clone(tr.Value), Kind: tr.Kind, TS: ts})
	p.trimTraits()
}

// traitWins reports whether a trait value set at ts replaces cur: the
// later one wins, then (for one instant) the greater kind and value, so the
// result does not depend on the order of events.
func traitWins(ts int64, kind event.TraitKind, value string, cur *Trait) bool {
	return ts > cur.TS || ts == cur.TS && (kind > cur.Kind || kind == cur.Kind && value > cur.Value)
}

// trimTraits drops the keys set least recently past MaxTraits (the
// greatest key among equals).
func (p *Profile) trimTraits() {
	for len(p.Traits) > MaxTraits {
		j := 0
		for i := 1; i < len(p.Traits); i++ {
			if p.Traits[i].TS <= p.Traits[j].TS {
				j = i
			}
		}
		p.Traits = slices.Delete(p.Traits, j, j+1)
	}
}

func cmpCartID(c CartItem, id string) int { return strings.Compare(c.ID, id) }

// cartLine returns the line of product id, inserting an empty one; nil for
// an invalid id.
func (p *Profile) cartLine(id string) *CartItem {
	if id == "" || len(id) > MaxValueLen {
		return nil
	}
	i, found := slices.BinarySearchFunc(p.Cart, id, cmpCartID)
	if !found {
		p.Cart = slices.Insert(p.Cart, i, CartItem{ID: strings.Clone(id)})
	}
	return &p.Cart[i]
}

// trimCart drops lines past MaxCart.
func (p *Profile) trimCart() {
	for len(p.Cart) > MaxCart {
		j := p.cartVictim()
		p.Cart = slices.Delete(p.Cart, j, j+1)
	}
}

// cartVictim returns the cart line to drop: a removed one before any in
// the cart, the one touched longest ago, the greatest ID among equals.
func (p *Profile) cartVictim() int {
	key := func(c *CartItem) (bool, int64) { return c.InCart(), max(c.Added, c.Removed) }
	j := 0
	for i := 1; i < len(p.Cart); i++ {
		ini, ti := key(&p.Cart[i])
		inj, tj := key(&p.Cart[j])
		if !ini && inj || ini == inj && ti <= tj {
			j = i
		}
	}
	return j
}

// add records a cart event at ts with qty: the latest one's quantity
// counts, the greater for one instant.
func (c *CartItem) add(ts int64, qty uint32) {
	if ts > c.Added || ts == c.Added && qty > c.Qty {
		c.Added, c.Qty = ts, qty
	}
}

func (p *Profile) cartAdd(id string, qty uint32, ts int64) {
	if qty == 0 {
		qty = 1
	}
	c := p.cartLine(id)
	if c == nil {
		return
	}
	c.add(ts, qty)
	p.trimCart()
}

func (p *Profile) cartRemove(id string, ts int64) {
	if c := p.cartLine(id); c != nil {
		c.Removed = max(c.Removed, ts)
		p.trimCart()
	}
}

func (p *Profile) addOrder(e *event.Event, ts int64) {
	o := &p.Orders
	widen(&o.First, &o.Last, o.Count == 0, ts, ts)
	o.Count++
	o.Revenue += OrderTotal(e)
}

// OrderTotal is the revenue of purchase e: its order's total, else the
// sum of its items' prices × quantities, else its product's; 0 when
// none is given (or the sum overflows). A profile's Orders.Revenue and a
// campaign's revenue both add it.
func OrderTotal(e *event.Event) float64 {
	var total float64
	switch {
	case e.HasOrder && e.Order.HasTotal:
		total = e.Order.Total
	case e.HasOrder:
		for i := range e.Order.Items {
			it := &e.Order.Items[i]
			if it.HasPrice {
				total += it.Price * float64(max(it.Qty, 1))
			}
		}
	case e.HasProduct && e.Product.HasPrice:
		total = e.Product.Price * float64(max(e.Product.Qty, 1))
	}
	if total > 0 && !math.IsInf(total, 0) {
		return total
	}
	return 0
}

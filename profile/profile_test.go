package profile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/affinityhq/affinity/tracker/event"
)

const day = int64(24 * time.Hour / time.Millisecond)

var t0 = Landmark + 150*day // 2026-05-31

func view(ts int64, pr event.Product) event.Event {
	return event.Event{Type: event.TypeView, TS: ts, Product: pr, HasProduct: true}
}

// genEvents returns n random events over small value sets (fewer than the
// default TopK per dimension, so nothing is evicted).
func genEvents(r *rand.Rand, n int) []event.Event {
	brands := []string{"acme", "babyco", "zoo", "Ünïcode \"q\""}
	cats := []string{"baby/food/formula", "baby/food", "baby/toys", "home", "home//kitchen/", "/x"}
	ages := []string{"0-3", "3-6", "6-12"}
	emails := []string{" Ann@Example.com", "ann@example.com ", "BOB@x.org"}
	evs := make([]event.Event, 0, n)
	for i := range n {
		ts := t0 + r.Int64N(120*day) - 60*day
		pr := event.Product{
			ID:       fmt.Sprintf("p%d", r.IntN(10)),
			Brand:    brands[r.IntN(len(brands))],
			Category: cats[r.IntN(len(cats))],
			Age:      ages[r.IntN(len(ages))],
			Price:    float64(r.IntN(40000)) / 100,
			HasPrice: r.IntN(4) != 0,
			Qty:      uint32(r.IntN(3)),
		}
		e := event.Event{TS: ts}
		e.ID[0], e.ID[1] = byte(i), byte(i>>8)
		switch k := r.IntN(20); {
		case k < 8:
			e.Type, e.Product, e.HasProduct = event.TypeView, pr, true
		case k < 11:
			e.Type, e.Product, e.HasProduct = event.TypeCart, pr, true
		case k < 13:
			e.Type, e.Product, e.HasProduct = event.TypeUncart, pr, true
		case k < 15:
			e.Type, e.HasOrder = event.TypePurchase, true
			e.Order = event.Order{ID: fmt.Sprint(i), Items: []event.Product{pr}}
			if r.IntN(2) == 0 {
				pr2 := pr
				pr2.ID, pr2.Brand = fmt.Sprintf("p%d", r.IntN(10)), brands[r.IntN(len(brands))]
				e.Order.Items = append(e.Order.Items, pr2)
			}
			if r.IntN(2) == 0 {
				e.Order.Total, e.Order.HasTotal = float64(r.IntN(10000))/100, true
			}
		case k < 17:
			e.Type = event.TypeIdentify
			e.Email = emails[r.IntN(len(emails))]
			e.Customer = fmt.Sprintf("c%d", r.IntN(3))
			e.Traits = []event.Trait{
				{Key: "birthday", Value: fmt.Sprintf("19%02d-01-01", r.IntN(100))},
				{Key: fmt.Sprintf("k%d", r.IntN(5)), Value: fmt.Sprint(r.IntN(100)), Kind: event.TraitNumber},
			}
		default:
			e.Type = event.TypePageview
			e.URL = "https://shop.example/"
		}
		evs = append(evs, e)
	}
	return evs
}

// applyAll applies evs to p in the order given by perm, restarting (encode,
// decode) at each index of cuts.
func applyAll(t *testing.T, cfg *Config, evs []event.Event, perm []int, cuts map[int]bool) *Profile {
	t.Helper()
	p := &Profile{}
	var changes []ScoreChange
	for i, j := range perm {
		if cuts[i] {
			data := AppendProfile(nil, p)
			q := &Profile{}
			if err := DecodeProfile(q, data); err != nil {
				t.Fatalf("cannot decode after %d events: %s\n%x", i, err, data)
			}
			p = q
		}
		changes = p.Apply(&evs[j], cfg, evs[j].TS+1000, changes[:0])
	}
	return p
}

func closeLog(a, b float64) bool {
	if a == b {
		return true
	}
	// 2^a vs 2^b to 1e-9 relative
	return math.Abs(a-b)*math.Ln2 <= 1e-9
}

func closeRel(a, b float64) bool {
	return a == b || math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b))
}

// diffProfiles returns how a and b differ, "" when equal (floats to 1e-9
// relative).
func diffProfiles(a, b *Profile) string {
	var sb strings.Builder
	f := func(format string, args ...any) { fmt.Fprintf(&sb, format+"\n", args...) }
	if a.FirstSeen != b.FirstSeen || a.LastSeen != b.LastSeen || a.LastRecv != b.LastRecv {
		f("seen: %d %d %d; %d %d %d", a.FirstSeen, a.LastSeen, a.LastRecv, b.FirstSeen, b.LastSeen, b.LastRecv)
	}
	for d := range a.Dims {
		x, y := a.Dims[d], b.Dims[d]
		if len(x) != len(y) {
			f("%s: %d values; %d", Dim(d), len(x), len(y))
			continue
		}
		for i := range x {
			if x[i].Value != y[i].Value || !closeLog(x[i].LogP, y[i].LogP) || !closeLog(x[i].LogN, y[i].LogN) {
				f("%s[%d]: %+v; %+v", Dim(d), i, x[i], y[i])
			}
		}
	}
	for t := range a.Events {
		x, y := &a.Events[t], &b.Events[t]
		if x.Count != y.Count || x.First != y.First || x.Last != y.Last || fmt.Sprint(x.Recent) != fmt.Sprint(y.Recent) {
			f("events %s: %+v; %+v", event.Type(t), *x, *y)
		}
	}
	if a.Email != b.Email || a.EmailTS != b.EmailTS || a.Customer != b.Customer || a.CustomerTS != b.CustomerTS {
		f("identity: %q %d %q %d; %q %d %q %d", a.Email, a.EmailTS, a.Customer, a.CustomerTS, b.Email, b.EmailTS, b.Customer, b.CustomerTS)
	}
	if fmt.Sprint(a.Traits) != fmt.Sprint(b.Traits) {
		f("traits: %v; %v", a.Traits, b.Traits)
	}
	if fmt.Sprint(a.Cart) != fmt.Sprint(b.Cart) {
		f("cart: %v; %v", a.Cart, b.Cart)
	}
	if a.Orders.Count != b.Orders.Count || a.Orders.First != b.Orders.First || a.Orders.Last != b.Orders.Last ||
		!closeRel(a.Orders.Revenue, b.Orders.Revenue) {
		f("orders: %+v; %+v", a.Orders, b.Orders)
	}
	return sb.String()
}

func TestApplyOrderAndSplitIndependent(t *testing.T) {
	cfg := DefaultConfig()
	for seed := range uint64(40) {
		r := rand.New(rand.NewPCG(seed, 7))
		evs := genEvents(r, 1+r.IntN(300))
		ident := make([]int, len(evs))
		for i := range ident {
			ident[i] = i
		}
		want := applyAll(t, cfg, evs, ident, nil)
		for trial := range 3 {
			perm := r.Perm(len(evs))
			cuts := map[int]bool{}
			for range r.IntN(5) {
				cuts[r.IntN(len(evs))] = true
			}
			got := applyAll(t, cfg, evs, perm, cuts)
			if d := diffProfiles(got, want); d != "" {
				t.Fatalf("seed %d trial %d: %d events in another order, restarts at %v: got (left) differs from in order (right):\n%s",
					seed, trial, len(evs), cuts, d)
			}
		}
	}
}

// directScore computes Σ w·2^(−(T−t)/H) over evs for value v of d with
// nothing from the package but the Config's weights and half-lives.
func directScore(cfg *Config, evs []event.Event, d Dim, v string, at int64) (score, magnitude float64) {
	h := float64(cfg.HalfLife(d).Milliseconds())
	touches := func(pr *event.Product) bool {
		switch d {
		case DimBrand:
			return pr.Brand == v
		case DimAge:
			return pr.Age == v
		case DimProduct:
			return pr.ID == v
		case DimPrice:
			return pr.HasPrice && cfg.PriceBand(pr.Price) == v
		case DimCategory:
			parts := strings.Split(pr.Category, "/")
			for i := range parts {
				if parts[i] != "" && strings.Join(parts[:i+1], "/") == v {
					return true
				}
			}
		}
		return false
	}
	for i := range evs {
		e := &evs[i]
		w := cfg.Weight(e.Type, d)
		prs := []event.Product{e.Product}
		if e.Type == event.TypePurchase && e.HasOrder && len(e.Order.Items) > 0 {
			prs = e.Order.Items
		} else if !e.HasProduct {
			prs = nil
		}
		for j := range prs {
			if touches(&prs[j]) {
				x := w * math.Pow(2, -float64(at-e.TS)/h)
				score += x
				magnitude += math.Abs(x)
			}
		}
	}
	return score, magnitude
}

func TestScoreEqualsDirectSum(t *testing.T) {
	cfgs := map[string]*Config{"default": DefaultConfig()}
	c := DefaultConfig()
	for _, s := range []string{"brand=3d", "category=30d", "price=1h", "uncart=-1", "view.price=0.25", "age=2w"} {
		var err error
		if strings.Contains(s, "uncart") || strings.Contains(s, "view") {
			err = c.SetWeight(s)
		} else {
			err = c.SetHalfLife(s)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	cfgs["custom"] = c
	for name, cfg := range cfgs {
		for seed := range uint64(20) {
			r := rand.New(rand.NewPCG(seed, 11))
			evs := genEvents(r, 1+r.IntN(200))
			p := &Profile{}
			for i := range evs {
				p.Apply(&evs[i], cfg, 0, nil)
			}
			for _, at := range []int64{t0 - 61*day, t0, t0 + 61*day, t0 + 400*day, Landmark} {
				n := 0
				for d := range Dim(NumDims) {
					for _, e := range p.Dims[d] {
						want, mag := directScore(cfg, evs, d, e.Value, at)
						want = max(want, 0)
						got := p.Score(cfg, d, e.Value, at)
						if math.Abs(got-want) > 1e-9*mag {
							t.Fatalf("%s seed %d: Score(%s, %q, %d) = %v; direct sum %v (magnitude %v)", name, seed, d, e.Value, at, got, want, mag)
						}
						n++
					}
				}
				if n == 0 && len(evs) > 5 {
					t.Fatalf("%s seed %d: no values scored", name, seed)
				}
			}
		}
	}
}

func TestDecayCases(t *testing.T) {
	cfg := DefaultConfig()
	h := 14 * day
	pr := event.Product{ID: "p1", Brand: "acme"}
	f := func(name string, evs []event.Event, at int64, want float64) {
		t.Helper()
		p := &Profile{}
		for i := range evs {
			p.Apply(&evs[i], cfg, 0, nil)
		}
		if got := p.Score(cfg, DimBrand, "acme", at); math.Abs(got-want) > 1e-12*max(1, want) {
			t.Errorf("%s: score %v; want %v", name, got, want)
		}
	}
	f("zero elapsed", []event.Event{view(t0, pr)}, t0, 1)
	f("one half-life", []event.Event{view(t0, pr)}, t0+h, 0.5)
	f("ten half-lives", []event.Event{view(t0, pr)}, t0+10*h, 1.0/1024)
	f("read before the event", []event.Event{view(t0, pr)}, t0-h, 2)
	f("at the landmark", []event.Event{view(Landmark, pr)}, Landmark, 1)
	f("before the landmark", []event.Event{view(Landmark-3*h, pr)}, Landmark, 0.125)
	f("late event", []event.Event{view(t0, pr), view(t0-h, pr)}, t0, 1.5)
	f("cart", []event.Event{{Type: event.TypeCart, TS: t0, Product: pr, HasProduct: true}}, t0+2*h, 0.75)
	f("purchase of two items", []event.Event{{Type: event.TypePurchase, TS: t0, HasOrder: true,
		Order: event.Order{Items: []event.Product{pr, {ID: "p2", Brand: "acme"}}}}}, t0, 10)
	f("pageview scores nothing", []event.Event{{Type: event.TypePageview, TS: t0, Product: pr, HasProduct: true}}, t0, 0)
	f("year 2100", []event.Event{view(Landmark+74*365*day, pr)}, Landmark+74*365*day+h, 0.5)
}

func TestUncartDefault(t *testing.T) {
	cfg := DefaultConfig()
	pr := event.Product{ID: "p1", Brand: "acme"}
	p := &Profile{}
	var ch []ScoreChange
	ch = p.Apply(&event.Event{Type: event.TypeCart, TS: t0, Product: pr, HasProduct: true}, cfg, 0, ch[:0])
	if len(ch) != 2 || !ch[1].After || ch[1].Dim != DimProduct {
		t.Fatalf("cart: changes %+v; want brand and product entering", ch)
	}
	ch = p.Apply(&event.Event{Type: event.TypeUncart, TS: t0 + 1000, Product: pr, HasProduct: true}, cfg, 0, ch[:0])
	if len(ch) != 1 || ch[0].Dim != DimProduct || !ch[0].Before || ch[0].After || ch[0].New != NegInf {
		t.Fatalf("uncart: changes %+v; want product p1 leaving the index", ch)
	}
	if s := p.Score(cfg, DimProduct, "p1", t0+2000); s != 0 {
		t.Errorf("product score after uncart %v; want 0", s)
	}
	if s := p.Score(cfg, DimBrand, "acme", t0); s != 3 {
		t.Errorf("brand score after uncart %v; want 3 (uncart weighs on product only)", s)
	}
	if len(p.Cart) != 1 || p.Cart[0].InCart() {
		t.Errorf("cart %+v; want p1 removed", p.Cart)
	}
	// A view soon after: the residue of cart−uncart is tiny.
	ch = p.Apply(&event.Event{Type: event.TypeView, TS: t0 + 2000, Product: pr, HasProduct: true}, cfg, 0, ch[:0])
	if s := p.Score(cfg, DimProduct, "p1", t0+2000); math.Abs(s-1) > 1e-5 || len(ch) != 2 || !ch[1].After || ch[1].Before {
		t.Errorf("view after uncart: score %v, changes %+v; want ≈1 and p1 entering", s, ch)
	}
}

func TestTimeInvariance(t *testing.T) {
	cfg := DefaultConfig()
	for seed := range uint64(10) {
		r := rand.New(rand.NewPCG(seed, 3))
		evs := genEvents(r, 100)
		p := &Profile{}
		for i := range evs {
			p.Apply(&evs[i], cfg, 0, nil)
		}
		for d := range Dim(NumDims) {
			top, ok := p.Top(cfg, d)
			if !ok {
				continue
			}
			for _, at := range []int64{t0 - 100*day, t0, t0 + 1000*day} {
				best, bv := 0.0, ""
				var sum float64
				for _, e := range p.Dims[d] {
					s := p.Score(cfg, d, e.Value, at)
					sum += s
					if s > best*(1+1e-12) {
						best, bv = s, e.Value
					}
				}
				if bv != top {
					t.Fatalf("seed %d %s at %d: best by score %q; Top %q", seed, d, at, bv, top)
				}
				for _, e := range p.Dims[d] {
					want := p.Score(cfg, d, e.Value, at) / sum
					if got := p.Share(cfg, d, e.Value); math.Abs(got-want) > 1e-9 {
						t.Fatalf("seed %d %s %q at %d: Share %v; score/sum %v", seed, d, e.Value, at, got, want)
					}
				}
			}
		}
	}
}

func TestEviction(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.SetTopK("brand=3"); err != nil {
		t.Fatal(err)
	}
	p := &Profile{}
	apply := func(brand string, ts int64) []ScoreChange {
		return p.Apply(&event.Event{Type: event.TypeView, TS: ts, Product: event.Product{Brand: brand}, HasProduct: true}, cfg, 0, nil)
	}
	apply("a", t0)
	apply("a", t0)
	apply("b", t0)
	apply("c", t0+1)
	ch := apply("d", t0+2) // evicts b, the lowest
	if len(ch) != 2 || ch[0].Value != "d" || !ch[0].After || ch[1].Value != "b" || ch[1].After || !ch[1].Before {
		t.Fatalf("changes %+v; want d entering and b evicted", ch)
	}
	if got := fmt.Sprint(p.Dims[DimBrand]); !strings.Contains(got, "{a ") || strings.Contains(got, "{b ") {
		t.Fatalf("kept %s; want a, c, d", got)
	}
	ch = apply("e", t0-10*day) // lower than everything: enters and leaves at once
	if len(ch) != 0 || p.Entry(DimBrand, "e") != nil {
		t.Fatalf("changes %+v, entry %v; want e neither kept nor reported", ch, p.Entry(DimBrand, "e"))
	}
	ch = apply("b", t0+3) // back, from zero: evicts c (t0+1)
	if p.Score(cfg, DimBrand, "b", t0+3) != 1 || len(ch) != 2 || ch[1].Value != "c" {
		t.Fatalf("b score %v, changes %+v; want 1 and c evicted", p.Score(cfg, DimBrand, "b", t0+3), ch)
	}
	// Lowering TopK below what a profile holds evicts on its next touch.
	if err := cfg.SetTopK("brand=1"); err != nil {
		t.Fatal(err)
	}
	ch = apply("a", t0)
	if len(p.Dims[DimBrand]) != 1 || len(ch) != 3 {
		t.Fatalf("kept %v, changes %+v; want one value and 2 evictions", p.Dims[DimBrand], ch)
	}
}

func TestCategoryLevels(t *testing.T) {
	cfg := DefaultConfig()
	f := func(cat string, want ...string) {
		t.Helper()
		p := &Profile{}
		p.Apply(&event.Event{Type: event.TypeView, TS: t0, Product: event.Product{Category: cat}, HasProduct: true}, cfg, 0, nil)
		var got []string
		for _, e := range p.Dims[DimCategory] {
			got = append(got, e.Value)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("category %q: values %q; want %q", cat, got, want)
		}
	}
	f("baby/food/formula", "baby", "baby/food", "baby/food/formula")
	f("home", "home")
	f("home/", "home")
	f("a//b", "a", "a//b")
	f("")
}

func TestChangesChainAndCoalesce(t *testing.T) {
	cfg := DefaultConfig()
	r := rand.New(rand.NewPCG(1, 2))
	evs := genEvents(r, 500)
	if err := cfg.SetTopK("4"); err != nil { // force evictions
		t.Fatal(err)
	}
	p := &Profile{}
	index := map[string]float64{} // what a builder keeps, from the changes alone
	var all []ScoreChange
	for i := range evs {
		n := len(all)
		all = p.Apply(&evs[i], cfg, 0, all)
		for _, c := range all[n:] {
			k := c.Dim.String() + "|" + c.Value
			if g, ok := index[k]; ok != c.Before || ok && g != c.Old {
				t.Fatalf("event %d: change %+v; index had %v %v", i, c, g, ok)
			}
			delete(index, k)
			if c.After {
				index[k] = c.New
			}
		}
	}
	check := func(idx map[string]float64) {
		t.Helper()
		n := 0
		for d := range p.Dims {
			for _, e := range p.Dims[d] {
				if g := e.LogG(); g > NegInf {
					n++
					if idx[Dim(d).String()+"|"+e.Value] != g {
						t.Fatalf("%s %q: index %v; profile %v", Dim(d), e.Value, idx[Dim(d).String()+"|"+e.Value], g)
					}
				}
			}
		}
		if n != len(idx) {
			t.Fatalf("index has %d values; profile %d", len(idx), n)
		}
	}
	check(index)
	co := map[string]float64{}
	for _, c := range Coalesce(all) {
		k := c.Dim.String() + "|" + c.Value
		if _, ok := co[k]; ok || c.Before {
			t.Fatalf("coalesced change %+v: duplicate or present before an empty profile", c)
		}
		if c.After {
			co[k] = c.New
		}
	}
	check(co)
}

func TestCountSince(t *testing.T) {
	s := &EventStats{}
	for i := range int64(40) {
		s.add(t0 + i*day)
	}
	if len(s.Recent) != MaxRecent || s.Recent[0] != t0+39*day || s.Recent[MaxRecent-1] != t0+(40-MaxRecent)*day {
		t.Fatalf("recent %v", s.Recent)
	}
	f := func(since int64, wantN int, wantExact bool) {
		t.Helper()
		if n, ex := s.CountSince(since); n != wantN || ex != wantExact {
			t.Errorf("CountSince(t0%+dd) = %d, %v; want %d, %v", (since-t0)/day, n, ex, wantN, wantExact)
		}
	}
	f(t0+40*day, 0, true)
	f(t0+35*day, 5, true)
	f(t0+25*day, 15, true)
	f(t0+24*day, 16, false) // the dropped times may equal t0+24d
	f(t0+23*day, 16, false)
	f(t0, 40, true)
}

func TestAppendJSON(t *testing.T) {
	cfg := DefaultConfig()
	r := rand.New(rand.NewPCG(5, 5))
	evs := genEvents(r, 200)
	p := &Profile{}
	for i := range evs {
		p.Apply(&evs[i], cfg, evs[i].TS, nil)
	}
	p.setTrait(&event.Trait{Key: "bad\x01key\u2028", Value: "1e", Kind: event.TraitNumber}, t0)
	p.setTrait(&event.Trait{Key: "vip", Value: "true", Kind: event.TraitBool}, t0)
	p.setTrait(&event.Trait{Key: "utf", Value: "a\xffb", Kind: event.TraitString}, t0)
	at := t0 + 7*day
	out := p.AppendJSON(nil, cfg, at)
	var v struct {
		At        string
		Email     string
		Interests map[string][]struct {
			Value        string
			Score, Share float64
		}
		Events map[string]struct{ Count int }
		Traits map[string]any
		Cart   []struct{ Product string }
		Orders struct{ Count int }
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("invalid JSON: %s\n%s", err, out)
	}
	if v.At != "2026-06-07T00:00:00.000Z" || v.Email != p.Email || v.Traits["vip"] != true || v.Traits["bad\x01key\u2028"] != "1e" ||
		v.Traits["utf"] != "a\ufffdb" || v.Orders.Count != int(p.Orders.Count) {
		t.Fatalf("got %+v from\n%s", v, out)
	}
	for name, vals := range v.Interests {
		d, _ := ParseDim(name)
		for i, x := range vals {
			if i > 0 && x.Score > vals[i-1].Score {
				t.Fatalf("%s not best first: %+v", name, vals)
			}
			if want := p.Score(cfg, d, x.Value, at); x.Score != want || x.Share != p.Share(cfg, d, x.Value) {
				t.Fatalf("%s %q: score %v share %v; want %v %v", name, x.Value, x.Score, x.Share, want, p.Share(cfg, d, x.Value))
			}
		}
	}
	if !bytes.Contains(out, []byte(`"Ünïcode \"q\""`)) && p.Entry(DimBrand, "Ünïcode \"q\"") != nil {
		t.Fatalf("brand not escaped as expected:\n%s", out)
	}
}

func TestCartAndOrders(t *testing.T) {
	cfg := DefaultConfig()
	p := &Profile{}
	pr := func(id string, qty uint32) event.Product {
		return event.Product{ID: id, Qty: qty, Price: 10, HasPrice: true}
	}
	apply := func(tp event.Type, ts int64, prs ...event.Product) {
		e := event.Event{Type: tp, TS: ts}
		if tp == event.TypePurchase {
			e.HasOrder, e.Order.Items = true, prs
		} else {
			e.HasProduct, e.Product = true, prs[0]
		}
		p.Apply(&e, cfg, ts, nil)
	}
	apply(event.TypeUncart, t0+5, pr("late", 0)) // arrives before the cart it undoes
	apply(event.TypeCart, t0+1, pr("late", 1))
	apply(event.TypeCart, t0+2, pr("a", 2))
	apply(event.TypeCart, t0+3, pr("b", 0))
	apply(event.TypeCart, t0+4, pr("c", 1))
	apply(event.TypePurchase, t0+10, pr("b", 3), pr("x", 1))
	apply(event.TypeCart, t0+11, pr("a", 5))
	var in []string
	for _, c := range p.Cart {
		if c.InCart() {
			in = append(in, fmt.Sprintf("%s×%d@%d", c.ID, c.Qty, c.Added-t0))
		}
	}
	if got := strings.Join(in, " "); got != "a×5@11 c×1@4" || p.CartSize() != 2 {
		t.Errorf("cart %q (size %d); want a×5@11 c×1@4", got, p.CartSize())
	}
	if o := p.Orders; o.Count != 1 || o.Revenue != 40 || o.First != t0+10 || o.Last != t0+10 {
		t.Errorf("orders %+v; want 1 order of 40 at t0+10", o)
	}
	if n, _ := p.Events[event.TypeCart].CountSince(t0 + 2); n != 4 {
		t.Errorf("carts since t0+2: %d; want 4", n)
	}
	for i := range 2 * MaxCart {
		apply(event.TypeCart, t0+100+int64(i), pr(fmt.Sprintf("n%03d", i), 1))
	}
	if len(p.Cart) != MaxCart || p.Cart[0].ID != fmt.Sprintf("n%03d", MaxCart) {
		t.Errorf("after %d more lines: %d kept, first %q; want the newest %d", 2*MaxCart, len(p.Cart), p.Cart[0].ID, MaxCart)
	}
}

func TestIdentify(t *testing.T) {
	cfg := DefaultConfig()
	p := &Profile{}
	id := func(ts int64, email, cust string, traits ...event.Trait) {
		p.Apply(&event.Event{Type: event.TypeIdentify, TS: ts, Email: email, Customer: cust, Traits: traits}, cfg, ts, nil)
	}
	id(t0+2, "  Anna.K@Example.COM ", " c-1 ", event.Trait{Key: "birthday", Value: "1990-05-12"})
	id(t0+1, "old@example.com", "c-0", event.Trait{Key: "birthday", Value: "1980-01-01"}, event.Trait{Key: "kids", Value: "2", Kind: event.TraitNumber})
	id(t0+3, "   ", "")
	if p.Email != "anna.k@example.com" || p.Customer != "c-1" || p.EmailTS != t0+2 {
		t.Errorf("identity %q %q %d; want the latest, normalised", p.Email, p.Customer, p.EmailTS-t0)
	}
	if b := p.Trait("birthday"); b == nil || b.Value != "1990-05-12" {
		t.Errorf("birthday %+v; want the latest 1990-05-12", b)
	}
	if k := p.Trait("kids"); k == nil || k.Value != "2" || k.Kind != event.TraitNumber || p.Trait("none") != nil {
		t.Errorf("kids %+v", k)
	}
	for i := range MaxTraits + 5 {
		id(t0+10+int64(i), "", "", event.Trait{Key: fmt.Sprintf("k%03d", i), Value: "v"})
	}
	if len(p.Traits) != MaxTraits || p.Trait("birthday") != nil || p.Trait(fmt.Sprintf("k%03d", MaxTraits+4)) == nil {
		t.Errorf("%d traits kept; want the %d newest", len(p.Traits), MaxTraits)
	}
	if p.Empty() || p.Events[event.TypeIdentify].Count != uint64(MaxTraits+8) || p.FirstSeen != t0+1 {
		t.Errorf("stats %+v first %d", p.Events[event.TypeIdentify], p.FirstSeen-t0)
	}
}

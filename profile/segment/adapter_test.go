package segment

import (
	"testing"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/tracker/event"
)

// appliedProfile folds real events into a profile: views and a cart of a
// Nutrilon formula, two orders, an identify with a birthday.
func appliedProfile(t testing.TB) *ProfileSubject {
	t.Helper()
	cfg := profile.DefaultConfig()
	formula := event.Product{ID: "nut-1", Brand: "Nutrilon", Category: "baby/food", Age: "0-3", Price: 20, HasPrice: true}
	diapers := event.Product{ID: "mer-4", Brand: "Merries", Category: "baby/care", Age: "0-3", Price: 15, HasPrice: true}
	evs := []event.Event{
		{Type: event.TypeView, TS: t0 - 3*day, Product: formula, HasProduct: true},
		{Type: event.TypeView, TS: t0 - 2*day, Product: formula, HasProduct: true},
		{Type: event.TypeView, TS: t0 - 2*day, Product: diapers, HasProduct: true},
		{Type: event.TypeCart, TS: t0 - hour, Product: formula, HasProduct: true},
		{Type: event.TypePurchase, TS: t0 - 100*day, HasOrder: true, Order: event.Order{ID: "o1", Total: 20, HasTotal: true, Items: []event.Product{diapers}}},
		{Type: event.TypePurchase, TS: t0 - 40*day, HasOrder: true, Order: event.Order{ID: "o2", Total: 300, HasTotal: true, Items: []event.Product{formula}}},
		{Type: event.TypeIdentify, TS: t0 - 5*day, Email: "Anna@Example.com", Traits: []event.Trait{{Key: "birthday", Value: "1990-06-20"}}},
	}
	p := &profile.Profile{}
	for i := range evs {
		p.Apply(&evs[i], cfg, evs[i].TS, nil)
	}
	return &ProfileSubject{P: p, Cfg: cfg}
}

func TestProfileSubject(t *testing.T) {
	ps := appliedProfile(t)
	f := func(src string, member bool, next int64) {
		t.Helper()
		r := mustCompile(t, src)
		m, n := r.Eval(ps, t0)
		if m != member || n != next {
			t.Fatalf("%s = %v, next %s; want %v, next %s", src, m, fmtMs(n), member, fmtMs(next))
		}
		checkFlips(t, r, ps, t0)
	}
	f(`top(age) == "0-3" and top(brand) == "Nutrilon" and top(category) == "baby"`, true, Never)
	f(`share(brand, "Merries") >= 0.5`, false, Never)
	f(`since(cart) <= 24h and since(purchase) > since(cart)`, true, t0-hour+day+1)
	f(`first(purchase) <= 30d`, false, Never)
	f(`count(purchase, 180d) >= 2`, true, t0+80*day)
	f(`lifecycle == "active"`, true, t0+80*day)
	f(`rfm.r >= 4 and rfm.m >= 4`, true, t0-40*day+90*day+1)
	f(`rfm.f == 2`, true, Never)
	f(`identified`, true, Never)
	f(`until_birthday <= 7d`, true, ms("2026-06-21T00:00:00Z"))
	f(`trait("birthday") == "1990-06-20"`, true, Never)
	f(`count(view) == 3 and count(uncart) == 0`, true, Never)

	// interest crossings are the instants profile.Config.DecayTime gives
	for _, theta := range []float64{0.5, 1, 2, 3.5, 6} {
		r := mustCompile(t, `interest(brand, "Nutrilon") >= `+formatFloat(theta))
		m, n := r.Eval(ps, t0)
		d, _ := profile.ParseDim("brand")
		want := ps.Cfg.DecayTime(d, ps.P.LogG(d, "Nutrilon"), theta)
		if want <= t0 {
			if m || n != Never {
				t.Fatalf("%s: %v, next %s; want false, never (decayed below at %s)", r, m, fmtMs(n), fmtMs(want))
			}
			continue
		}
		if !m || n != want {
			t.Fatalf("%s: %v, next %s; want true, next %s (DecayTime)", r, m, fmtMs(n), fmtMs(want))
		}
		checkFlips(t, r, ps, t0)
	}
}

// TestDimNames: the rule language names exactly the profile's dimensions.
func TestDimNames(t *testing.T) {
	if len(dimNames) != profile.NumDims {
		t.Fatalf("%d dimension names; the profile has %d", len(dimNames), profile.NumDims)
	}
	for _, n := range dimNames {
		if d, ok := profile.ParseDim(n); !ok || d.String() != n {
			t.Fatalf("dimension %q is not the profile's", n)
		}
	}
}

// TestRuleParts checks the parts a rule reads, and that its facts from a
// profile decoded with only those parts are the facts from the whole one.
func TestRuleParts(t *testing.T) {
	ps := appliedProfile(t)
	data := profile.AppendProfile(nil, ps.P)
	f := func(src string, want profile.Parts) {
		t.Helper()
		r, err := Compile(src, DefaultConfig())
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if got := r.Parts(); got != want {
			t.Fatalf("%s: got parts %#x; want %#x", src, got, want)
		}
		var pd profile.PartialDecoder
		p, err := pd.Decode(data, r.Parts())
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		got := string(r.AppendFacts(nil, &ProfileSubject{P: p, Cfg: ps.Cfg}, t0))
		if want := string(r.AppendFacts(nil, ps, t0)); got != want {
			t.Fatalf("%s: got facts %s from the parts; want %s", src, got, want)
		}
	}
	f(`interest(brand, "Nutrilon") >= 1`, profile.PartDim(profile.DimBrand))
	f(`share(category, "baby/food") > 0.5 or top(age) == "0-3"`, profile.PartDim(profile.DimCategory)|profile.PartDim(profile.DimAge))
	f(`since(cart) <= 24h and count(view, 7d) >= 2 and lifecycle == "active"`, profile.PartEvents)
	f(`rfm.r >= 3 and rfm.m >= 2`, profile.PartOrders)
	f(`identified and until_birthday <= 30d`, profile.PartIdentity|profile.PartTraits)
}

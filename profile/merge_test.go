package profile

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/affinityhq/affinity/tracker/event"
)

// TestMergeEqualsOneVisitor is the property behind person profiles: random
// events split over random devices, applied per device and merged in any
// order, give the profile of all of them applied to one visitor.
func TestMergeEqualsOneVisitor(t *testing.T) {
	cfg := DefaultConfig()
	for _, tc := range []struct{ events, devices int }{
		{1, 1}, {2, 2}, {10, 3}, {100, 2}, {100, 7}, {400, 4}, {1000, 12},
	} {
		for seed := range uint64(8) {
			r := rand.New(rand.NewPCG(seed, uint64(tc.events)))
			evs := genEvents(r, tc.events)
			ident := make([]int, len(evs))
			for i := range ident {
				ident[i] = i
			}
			want := applyAll(t, cfg, evs, ident, nil)

			perDevice := make([][]int, tc.devices)
			for i := range evs {
				d := r.IntN(tc.devices)
				perDevice[d] = append(perDevice[d], i)
			}
			got := &Profile{}
			for _, d := range r.Perm(tc.devices) {
				dev := applyAll(t, cfg, evs, perDevice[d], nil)
				// Merged as the people API does: decoded from state.
				q := &Profile{}
				if err := DecodeProfile(q, AppendProfile(nil, dev)); err != nil {
					t.Fatal(err)
				}
				got.Merge(q, cfg)
			}
			if d := diffProfiles(got, want); d != "" {
				t.Fatalf("%d events over %d devices, seed %d: merged (left) differs from one visitor (right):\n%s",
					tc.events, tc.devices, seed, d)
			}
			// Scores, the derived view, agree to 1e-9 too.
			for d := range Dim(NumDims) {
				for _, en := range want.Dims[d] {
					if g, w := got.Score(cfg, d, en.Value, t0), want.Score(cfg, d, en.Value, t0); !closeRel(g, w) && !(g < 1e-12 && w < 1e-12) {
						t.Fatalf("%d events, seed %d: score %s=%s merged %v; one visitor %v", tc.events, seed, d, en.Value, g, w)
					}
				}
			}
		}
	}
}

func TestMergeEmpty(t *testing.T) {
	cfg := DefaultConfig()
	p, _ := warmProfile()
	want := AppendProfile(nil, p)
	p.Merge(&Profile{}, cfg)
	if got := AppendProfile(nil, p); string(got) != string(want) {
		t.Fatalf("merging an empty profile changed it")
	}
	q := &Profile{}
	q.Merge(p, cfg)
	if d := diffProfiles(q, p); d != "" {
		t.Fatalf("an empty profile merged with p differs from p:\n%s", d)
	}
}

// TestMergeBounded checks what a merge keeps where a bound drops data.
func TestMergeBounded(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.SetTopK("brand=2"); err != nil {
		t.Fatal(err)
	}
	a, b := &Profile{}, &Profile{}
	brandView := func(p *Profile, brand string, ts int64) {
		e := view(ts, event.Product{ID: "x", Brand: brand})
		p.Apply(&e, cfg, ts, nil)
	}
	// a: brands b1 (two views), b2; b: b3 (three views, the oldest), b2.
	brandView(a, "b1", t0)
	brandView(a, "b1", t0)
	brandView(a, "b2", t0)
	brandView(b, "b3", t0-30*day)
	brandView(b, "b3", t0-30*day)
	brandView(b, "b3", t0-30*day)
	brandView(b, "b2", t0)
	m := &Profile{}
	m.Merge(a, cfg)
	m.Merge(b, cfg)
	// Sums: b1 = 2, b2 = 1 + 1 = 2 (each side had it), b3 = 3·2^(−30/14) ≈ 0.68.
	var kept []string
	for _, en := range m.Dims[DimBrand] {
		kept = append(kept, en.Value)
	}
	if !slices.Equal(kept, []string{"b1", "b2"}) {
		t.Fatalf("brands kept = %v; want the top 2 merged sums [b1 b2]", kept)
	}
	if s := m.Score(cfg, DimBrand, "b2", t0); !closeRel(s, 2) {
		t.Fatalf("merged b2 = %v; want 2 (the sums of both sides)", s)
	}

	// MaxRecent: the newest of both windows.
	a, b = &Profile{}, &Profile{}
	var all []int64
	for i := range 12 {
		ta, tb := t0+int64(2*i)*day, t0+int64(2*i+1)*day
		brandView(a, "b1", ta)
		brandView(b, "b1", tb)
		all = append(all, ta, tb)
	}
	m = &Profile{}
	m.Merge(a, cfg)
	m.Merge(b, cfg)
	slices.Sort(all)
	slices.Reverse(all)
	st := &m.Events[event.TypeView]
	if st.Count != 24 || !slices.Equal(st.Recent, all[:MaxRecent]) {
		t.Fatalf("views: count %d, recent %v; want 24, the newest %d of both %v", st.Count, st.Recent, MaxRecent, all[:MaxRecent])
	}
	if n, exact := st.CountSince(all[MaxRecent-2]); n != MaxRecent-1 || !exact {
		t.Fatalf("CountSince the %dth newest = %d, %v; want %d, exact", MaxRecent-1, n, exact, MaxRecent-1)
	}

	// MaxTraits: the keys set most recently; MaxCart: removed lines go first.
	a, b = &Profile{}, &Profile{}
	for i := range 40 {
		for _, side := range []struct {
			p   *Profile
			key string
			ts  int64
		}{{a, fmt.Sprintf("a%02d", i), t0 + int64(i)}, {b, fmt.Sprintf("b%02d", i), t0 + 100 + int64(i)}} {
			e := event.Event{Type: event.TypeIdentify, TS: side.ts, Traits: []event.Trait{{Key: side.key, Value: "v"}}}
			side.p.Apply(&e, cfg, side.ts, nil)
		}
	}
	for i := range 20 {
		ca := event.Event{Type: event.TypeCart, TS: t0 + int64(i), Product: event.Product{ID: fmt.Sprintf("a%02d", i)}, HasProduct: true}
		a.Apply(&ca, cfg, ca.TS, nil)
		cb := event.Event{Type: event.TypeCart, TS: t0 + int64(i), Product: event.Product{ID: fmt.Sprintf("b%02d", i)}, HasProduct: true}
		b.Apply(&cb, cfg, cb.TS, nil)
		if i < 10 {
			ub := cb
			ub.Type, ub.TS = event.TypeUncart, t0+1000
			b.Apply(&ub, cfg, ub.TS, nil)
		}
	}
	m = &Profile{}
	m.Merge(a, cfg)
	m.Merge(b, cfg)
	if len(m.Traits) != MaxTraits || m.Traits[0].Key != "a16" || m.Traits[MaxTraits-1].Key != "b39" {
		t.Fatalf("traits kept: %d from %q to %q; want %d, a16 … b39 (the newest)", len(m.Traits), m.Traits[0].Key, m.Traits[len(m.Traits)-1].Key, MaxTraits)
	}
	inCart := 0
	for _, c := range m.Cart {
		if c.InCart() {
			inCart++
		}
	}
	if len(m.Cart) != MaxCart || inCart != 30 {
		t.Fatalf("cart: %d lines, %d in the cart; want %d lines with all 30 in the cart (removed lines go first)", len(m.Cart), inCart, MaxCart)
	}
}

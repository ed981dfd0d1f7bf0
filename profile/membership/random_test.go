package membership_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/profile/segment"
	"github.com/affinityhq/affinity/tracker/event"
)

// randomRules are the examples on a shorter time scale, so that a
// few clock advances cross their edges, and a few more.
var randomRules = map[string]string{
	"mums":      `top(age) == "0-3" and (interest(brand, "Nutrilon") >= 1.5 or interest(brand, "Merries") >= 1.5)`,
	"abandoned": `since(cart) <= 24h and since(purchase) > since(cart)`,
	"new":       `first(purchase) <= 2d`,
	"active":    `count(purchase, 3d) >= 2`,
	"lapsing":   `count(purchase) >= 2 and since(purchase) > 1d and since(purchase) <= 4d`,
	"lost":      `count(purchase) >= 1 and since(purchase) > 4d`,
	"lifecycle": `lifecycle == "new"`,
	"rfm":       `rfm.r >= 4 and rfm.m >= 2`,
	"known":     `identified and interest(category, "baby") > 2.5`,
	"share":     `share(brand, "Merries") >= 0.5 and not identified`,
	"window":    `count(view, 6h) >= 2 or since(view) > 2d`,
	// verbatim from the issue
	"mums-issue": `top(age) == "0-3" and (interest(brand, "Nutrilon") >= 1 or interest(brand, "Merries") >= 1 or interest(brand, "Philips") >= 1)`,
	"sleeping":   `count(purchase) >= 3 and since(purchase) > 180d`,
	"birthday":   `until_birthday <= 7d`,
	"babyfood":   `interest(category, "baby/food") > 2.5`,
	"best":       `rfm.r >= 4 and rfm.m >= 4`,
}

// Live membership, after any sequence of events and clock advances, equals
// a brute-force evaluation of every stored profile at the clock's now; the
// change feed, replayed, ends in the same memberships.
func TestRandomLiveEqualsBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	clk := &profiletest.Clock{}
	now := t0
	clk.Set(now)
	e := openEnv(t, t.TempDir(), clk, nil)
	for name, rule := range randomRules {
		e.put(t, "shop", name, rule)
	}
	brands := []string{"Nutrilon", "Merries", "Lego"}
	ages := []string{"0-3", "0-3", "6-9"}
	cats := []string{"baby/food", "baby/care", "toys"}
	types := []event.Type{event.TypeView, event.TypeView, event.TypeCart, event.TypeUncart, event.TypePurchase}
	const visitors = 40
	for step := range 60 {
		var bs []*event.Batch
		for range rng.IntN(8) {
			v := profiletest.Visitor(rng.IntN(visitors))
			var evs []event.Event
			for range 1 + rng.IntN(3) {
				i := rng.IntN(len(brands))
				p := &event.Product{ID: brands[i], Brand: brands[i], Category: cats[i], Age: ages[i], Price: float64(5 + rng.IntN(200)), HasPrice: true}
				ts := now - int64(rng.IntN(int(2*day)))
				if rng.IntN(10) == 0 {
					id := profiletest.Identify(ts, "x@y.z")
					bd := time.UnixMilli(now + int64(rng.IntN(int(20*day)))).UTC()
					id.Traits = []event.Trait{{Key: "birthday", Value: "1990" + bd.Format("-01-02")}}
					evs = append(evs, id)
					continue
				}
				evs = append(evs, profiletest.Event(types[rng.IntN(len(types))], ts, p))
			}
			bs = append(bs, profiletest.Batch("shop", v, evs...))
		}
		if len(bs) > 0 {
			e.Send(t, bs...)
		}
		check(t, e, step, now, visitors)
		now += int64(rng.IntN(int(3 * day / 2)))
		e.Advance(t, now)
		check(t, e, step, now, visitors)
	}
	// The run must have exercised the rules: entries and exits of most.
	active, changed := 0, 0
	for name := range randomRules {
		cs := e.changes(t, "shop", name)
		exits := 0
		for _, c := range cs {
			if !c.Entered && c.Why == "time" {
				exits++
			}
		}
		t.Logf("%s: %d changes, %d exits by time", name, len(cs), exits)
		if exits > 0 {
			active++
		}
		if len(cs) > 0 {
			changed++
		}
	}
	if active < 8 || changed < len(randomRules)-2 {
		t.Errorf("%d rules changed, %d saw an exit by time; want nearly all of %d, and 6", changed, active, len(randomRules))
	}
}

func check(t *testing.T, e *env, step int, now int64, visitors int) {
	t.Helper()
	cfg := profile.DefaultConfig()
	subj := &segment.ProfileSubject{Cfg: cfg}
	for name := range randomRules {
		rule, _ := e.Segments.Rule("shop", name)
		live := e.members(t, "shop", name)
		replay := map[event.UUID]bool{}
		for _, c := range e.changes(t, "shop", name) {
			if replay[c.Visitor] == c.Entered {
				t.Fatalf("step %d, %s: visitor %s %v twice in a row in the feed", step, name, c.Visitor, c.Entered)
			}
			replay[c.Visitor] = c.Entered
		}
		for i := range visitors {
			v := profiletest.Visitor(i)
			want := false
			data, ok, err := e.DB.Profile("shop", v, nil)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				p := &profile.Profile{}
				if err := profile.DecodeProfile(p, data); err != nil {
					t.Fatal(err)
				}
				subj.P = p
				want, _ = rule.Eval(subj, now)
			}
			if _, got := live[v]; got != want {
				t.Fatalf("step %d at %d, %s, visitor %s: live member %v; brute force %v", step, now, name, v, got, want)
			}
			if replay[v] != want {
				t.Fatalf("step %d, %s, visitor %s: feed replays to %v; want %v", step, name, v, replay[v], want)
			}
		}
	}
}

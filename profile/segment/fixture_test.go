package segment

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/affinityhq/affinity/internal/duration"
	"github.com/affinityhq/affinity/tracker/event"
)

type fixture struct {
	At       time.Time                 `json:"at"`
	HalfLife string                    `json:"halfLife"`
	Visitors map[string]fixtureVisitor `json:"visitors"`
	Rules    []struct {
		Rule    string   `json:"rule"`
		Members []string `json:"members"`
	} `json:"rules"`
}

type fixtureVisitor struct {
	Email  bool                          `json:"email"`
	Traits map[string]string             `json:"traits"`
	Scores map[string]map[string]float64 `json:"scores"`
	Events map[string][]string           `json:"events"`
	Orders struct {
		Count   int     `json:"count"`
		Revenue float64 `json:"revenue"`
		Last    string  `json:"last"`
	} `json:"orders"`
}

// relTime resolves "-40d" against at.
func relTime(t *testing.T, at int64, s string) int64 {
	t.Helper()
	d, err := duration.ParseMs(strings.TrimPrefix(s, "-"))
	if err != nil || !strings.HasPrefix(s, "-") {
		t.Fatalf("bad relative time %q: want e.g. -40d (%v)", s, err)
	}
	return at - d
}

func loadFixture(t *testing.T) (fx fixture, at int64, visitors map[string]*facts) {
	t.Helper()
	data, err := os.ReadFile("testdata/segments_fixture.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &fx); err != nil {
		t.Fatalf("cannot parse fixture: %v", err)
	}
	at = fx.At.UnixMilli()
	h, err := duration.ParseMs(fx.HalfLife)
	if err != nil {
		t.Fatal(err)
	}
	visitors = map[string]*facts{}
	for id, v := range fx.Visitors {
		f := newFacts()
		f.halfLife = float64(h)
		f.email = v.Email
		for k, x := range v.Traits {
			f.traits[k] = x
		}
		for dim, vals := range v.Scores {
			for val, sc := range vals {
				f.setScore(dim, val, sc, at)
			}
		}
		for name, times := range v.Events {
			typ := event.ParseType([]byte(name))
			if typ == event.TypeInvalid {
				t.Fatalf("visitor %s: unknown event type %q", id, name)
			}
			for _, s := range times {
				f.add(typ, relTime(t, at, s))
			}
		}
		f.orders, f.revenue = v.Orders.Count, v.Orders.Revenue
		if v.Orders.Count > 0 {
			f.lastBuy = relTime(t, at, v.Orders.Last)
		}
		visitors[id] = f
	}
	return fx, at, visitors
}

func TestFixture(t *testing.T) {
	fx, at, visitors := loadFixture(t)
	ids := make([]string, 0, len(visitors))
	for id := range visitors {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	seen := map[string]bool{}
	for _, rc := range fx.Rules {
		seen[rc.Rule] = true
		r := mustCompile(t, rc.Rule)
		var got []string
		for _, id := range ids {
			member, _ := r.Eval(visitors[id], at)
			if member {
				got = append(got, id)
			}
			facts := r.AppendFacts(nil, visitors[id], at)
			if !json.Valid(facts) {
				t.Fatalf("%s: AppendFacts for %s is not JSON: %s", rc.Rule, id, facts)
			}
			checkFlips(t, r, visitors[id], at)
		}
		if !slices.Equal(got, rc.Members) {
			t.Errorf("members of %s = %q; want %q", rc.Rule, got, rc.Members)
		}
	}
	for _, src := range issueRules {
		if !seen[src] {
			t.Errorf("the fixture lacks the issue rule %s", src)
		}
	}
}

func TestAppendFacts(t *testing.T) {
	_, at, visitors := loadFixture(t)
	f := func(src, id, want string) {
		t.Helper()
		got := string(mustCompile(t, src).AppendFacts(nil, visitors[id], at))
		if got != want {
			t.Fatalf("AppendFacts(%s, %s) =\n %s; want\n %s", src, id, got, want)
		}
	}
	f(`since(cart) <= 24h and since(purchase) > since(cart)`, "anna", `{"since(cart)":7200000,"since(purchase)":3456000000}`)
	f(`since(cart) <= 24h and since(purchase) > since(cart)`, "emil", `{"since(cart)":null,"since(purchase)":17280000000}`)
	f(`rfm.r >= 4 and rfm.m >= 4 and lifecycle == "active" and identified`, "fay", `{"rfm.r":5,"rfm.m":5,"lifecycle":"active","identified":true}`)
	f(`interest(category, "baby/food") > 2.5 and top(category) == "baby"`, "fay", `{"interest(category, \"baby/food\")":3,"top(category)":"baby"}`)
	f(`count(purchase, 180d) >= 2 and until_birthday <= 7d and trait("birthday") != ""`, "anna", `{"count(purchase, 180d)":2,"until_birthday":388800000,"trait(\"birthday\")":"1990-06-20"}`)
}

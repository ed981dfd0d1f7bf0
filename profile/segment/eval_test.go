package segment

import (
	"strings"
	"testing"
	"time"

	"github.com/affinityhq/affinity/tracker/event"
)

// ms returns the Unix ms of an RFC 3339 time.
func ms(s string) int64 {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UnixMilli()
}

var t0 = ms("2026-06-15T12:00:00Z")

func mustCompile(t testing.TB, src string) *Rule {
	t.Helper()
	r, err := Compile(src, DefaultConfig())
	if err != nil {
		t.Fatalf("Compile(%q): %v", src, err)
	}
	return r
}

// inexact counts the evaluations checkFlips saw give up before the exact
// flip (Rule.evalNext); TestEvalRandom bounds it.
var inexact int

// checkFlips follows the rule's flips from at, up to 4 of them within 3
// years: membership must hold at every sampled instant of [at, next) and at
// next−1, and differ at next unless Eval gave up looking for the exact
// flip.
func checkFlips(t *testing.T, r *Rule, s Subject, at int64) {
	t.Helper()
	const horizon = 3 * 366 * day
	for range 4 {
		v, next, exact := r.evalNext(s, at)
		if !exact {
			inexact++
		}
		if next <= at {
			t.Fatalf("%s at %d: next %d is not after at", r, at, next)
		}
		end := min(next, at+horizon)
		for k := int64(0); k < 64; k++ {
			x := at + (end-at)/64*k
			if got, _ := r.Eval(s, x); got != v {
				t.Fatalf("%s: member %v at %s, but %v at %s before next %s", r, v, fmtMs(at), got, fmtMs(x), fmtMs(next))
			}
		}
		if next == Never {
			return
		}
		if got, _ := r.Eval(s, next-1); got != v {
			t.Fatalf("%s: member %v at %s but %v at next−1ms %s", r, v, fmtMs(at), got, fmtMs(next-1))
		}
		got, _ := r.Eval(s, next)
		if got == v && exact {
			t.Fatalf("%s: member %v at %s and still at next %s", r, v, fmtMs(at), fmtMs(next))
		}
		if next-at > horizon {
			return
		}
		at = next
	}
}

func fmtMs(t int64) string {
	if t == Never {
		return "never"
	}
	return time.UnixMilli(t).UTC().Format("2006-01-02T15:04:05.000Z")
}

type evalCase struct {
	rule   string
	s      *facts
	at     int64
	member bool
	next   int64 // Never, or the exact instant
	slack  int64 // allowed |next − want| (decay crossings: float rounding)
}

func runEvalCases(t *testing.T, cases []evalCase) {
	t.Helper()
	for _, c := range cases {
		r := mustCompile(t, c.rule)
		member, next := r.Eval(c.s, c.at)
		d := next - c.next
		if member != c.member || d > c.slack || d < -c.slack {
			t.Errorf("%s at %s = %v, next %s; want %v, next %s", c.rule, fmtMs(c.at), member, fmtMs(next), c.member, fmtMs(c.next))
			continue
		}
		checkFlips(t, r, c.s, c.at)
	}
}

func TestEvalSinceFirst(t *testing.T) {
	cart := newFacts().add(event.TypeCart, t0)
	buys := newFacts().add(event.TypePurchase, t0, t0+10*day)
	abandoned := newFacts().add(event.TypeCart, t0).add(event.TypePurchase, t0-2*day)
	bought := newFacts().add(event.TypeCart, t0).add(event.TypePurchase, t0+time.Hour.Milliseconds())
	h1, d1 := t0+hour, t0+day
	runEvalCases(t, []evalCase{
		{rule: `since(cart) <= 24h`, s: cart, at: h1, member: true, next: d1 + 1},
		{rule: `since(cart) < 24h`, s: cart, at: h1, member: true, next: d1},
		{rule: `since(cart) >= 24h`, s: cart, at: t0, member: false, next: d1},
		{rule: `since(cart) > 24h`, s: cart, at: t0, member: false, next: d1 + 1},
		{rule: `since(cart) == 24h`, s: cart, at: t0, member: false, next: d1},
		{rule: `since(cart) == 24h`, s: cart, at: d1, member: true, next: d1 + 1},
		{rule: `since(cart) != 24h`, s: cart, at: t0, member: true, next: d1},
		{rule: `since(cart) > 24h`, s: cart, at: t0 + 2*day, member: true, next: Never},
		{rule: `since(cart) <= 24h`, s: newFacts(), at: t0, member: false, next: Never},
		{rule: `since(cart) > 24h`, s: newFacts(), at: t0, member: true, next: Never},
		{rule: `24h >= since(cart)`, s: cart, at: h1, member: true, next: d1 + 1},
		{rule: `first(purchase) <= 30d`, s: buys, at: t0 + 20*day, member: true, next: t0 + 30*day + 1},
		{rule: `first(purchase) > 30d`, s: buys, at: t0 + 20*day, member: false, next: t0 + 30*day + 1},
		{rule: `since(purchase) > since(cart)`, s: abandoned, at: h1, member: true, next: Never},
		{rule: `since(purchase) > since(cart)`, s: bought, at: t0 + 2*hour, member: false, next: Never},
		{rule: `since(purchase) > since(cart)`, s: cart, at: h1, member: true, next: Never}, // never bought: infinite
		{rule: `since(purchase) == since(cart)`, s: newFacts(), at: h1, member: true, next: Never},
		{rule: `since(cart) <= 24h and since(purchase) > since(cart)`, s: abandoned, at: h1, member: true, next: d1 + 1},
		{rule: `since(cart) <= 24h and since(purchase) > since(cart)`, s: bought, at: t0 + 2*hour, member: false, next: Never},
	})
}

func TestEvalCount(t *testing.T) {
	buys := newFacts().add(event.TypePurchase, t0-170*day, t0-100*day, t0-10*day)
	runEvalCases(t, []evalCase{
		{rule: `count(purchase, 180d) >= 2`, s: buys, at: t0, member: true, next: t0 + 80*day},
		{rule: `count(purchase, 180d) < 2`, s: buys, at: t0, member: false, next: t0 + 80*day},
		{rule: `count(purchase, 180d) == 3`, s: buys, at: t0, member: true, next: t0 + 10*day},
		{rule: `count(purchase, 180d) != 3`, s: buys, at: t0, member: false, next: t0 + 10*day},
		{rule: `count(purchase, 180d) > 0`, s: buys, at: t0, member: true, next: t0 + 170*day},
		{rule: `count(purchase, 180d) <= 0`, s: buys, at: t0, member: false, next: t0 + 170*day},
		// a later event enters the window at its own time
		{rule: `count(purchase, 180d) >= 3`, s: buys, at: t0 - 50*day, member: false, next: t0 - 10*day},
		{rule: `count(purchase) >= 3`, s: buys, at: t0, member: true, next: Never},
		{rule: `count(purchase) >= 2 and since(purchase) > 60d and since(purchase) <= 365d`, s: buys, at: t0, member: false, next: t0 + 50*day + 1},
		{rule: `count(purchase) >= 1 and since(purchase) > 365d`, s: buys, at: t0, member: false, next: t0 + 355*day + 1},
		{rule: `count(purchase) >= 3 and since(purchase) > 180d`, s: buys, at: t0, member: false, next: t0 + 170*day + 1},
		{rule: `count(purchase, 180d) > count(cart, 180d)`, s: buys, at: t0, member: true, next: t0 + 170*day},
	})
	// Recent holds only the newest two: the window count sees those.
	few := newFacts().add(event.TypePurchase, t0-170*day, t0-100*day, t0-10*day)
	few.recent = 2
	runEvalCases(t, []evalCase{
		{rule: `count(purchase, 180d) >= 2`, s: few, at: t0, member: true, next: t0 + 80*day},
	})
}

func TestEvalInterest(t *testing.T) {
	// score 4 at t0, half-life 14d: 2 at t0+14d, 1 at t0+28d.
	s := newFacts().setScore("brand", "Nutrilon", 4, t0).setScore("brand", "Merries", 2, t0)
	cross := t0 + 28*day
	runEvalCases(t, []evalCase{
		{rule: `interest(brand, "Nutrilon") >= 1`, s: s, at: t0, member: true, next: cross, slack: 1},
		{rule: `interest(brand, "Nutrilon") > 1`, s: s, at: t0, member: true, next: cross, slack: 1},
		{rule: `interest(brand, "Nutrilon") <= 1`, s: s, at: t0, member: false, next: cross, slack: 1},
		{rule: `interest(brand, "Nutrilon") < 1`, s: s, at: t0, member: false, next: cross, slack: 1},
		{rule: `interest(brand, "Nutrilon") < 1`, s: s, at: cross + 1, member: true, next: Never},
		{rule: `interest(brand, "Nutrilon") >= 8`, s: s, at: t0, member: false, next: Never},
		{rule: `1 <= interest(brand, "Nutrilon")`, s: s, at: t0, member: true, next: cross, slack: 1},
		{rule: `interest(brand, "Nutrilon") >= 3.999`, s: s, at: t0, member: true, next: t0 + 5*60*1000, slack: 5 * 60 * 1000},
		{rule: `interest(brand, "Nutrilon") >= 0`, s: s, at: t0, member: true, next: Never},
		{rule: `interest(brand, "Nutrilon") > -1.5`, s: s, at: t0, member: true, next: Never},
		{rule: `interest(brand, "Nutrilon") == 0`, s: s, at: t0, member: false, next: Never},
		{rule: `interest(brand, "Philips") == 0`, s: s, at: t0, member: true, next: Never},
		{rule: `interest(brand, "Philips") >= 0`, s: s, at: t0, member: true, next: Never},
		{rule: `interest(brand, "Philips") > 0`, s: s, at: t0, member: false, next: Never},
		{rule: `interest(brand, "Nutrilon") > interest(brand, "Merries")`, s: s, at: t0, member: true, next: Never},
		{rule: `interest(brand, "Nutrilon") > interest(brand, "Philips")`, s: s, at: t0, member: true, next: Never},
		{rule: `interest(category, "baby/food") > 2.5`, s: s, at: t0, member: false, next: Never},
	})
	// == and != hold on [T_A, T_B): at most one ms, often none; whatever the
	// rounding, the flips Eval reports are real.
	for _, src := range []string{`interest(brand, "Nutrilon") == 1`, `interest(brand, "Nutrilon") != 1`, `interest(brand, "Nutrilon") == 3`} {
		checkFlips(t, mustCompile(t, src), s, t0)
	}
	for _, c := range []float64{0.001, 0.5, 1, 2.5, 3.99999} {
		for _, o := range []string{"==", "!=", "<", "<=", ">", ">="} {
			src := `interest(brand, "Nutrilon") ` + o + ` ` + formatFloat(c)
			checkFlips(t, mustCompile(t, src), s, t0)
		}
	}
}

func formatFloat(f float64) string {
	return string(appendNumber(nil, f))
}

func TestEvalConst(t *testing.T) {
	s := newFacts().setScore("brand", "Merries", 3, t0).setScore("brand", "Pampers", 1, t0).setScore("age", "0-3", 2, t0)
	s.email = true
	s.traits["city"] = "Oslo"
	runEvalCases(t, []evalCase{
		{rule: `share(brand, "Merries") >= 0.5`, s: s, at: t0, member: true, next: Never},
		{rule: `share(brand, "Pampers") >= 0.5`, s: s, at: t0, member: false, next: Never},
		{rule: `top(age) == "0-3"`, s: s, at: t0, member: true, next: Never},
		{rule: `top(brand) != "Merries"`, s: s, at: t0, member: false, next: Never},
		{rule: `top(category) == ""`, s: s, at: t0, member: true, next: Never},
		{rule: `identified`, s: s, at: t0, member: true, next: Never},
		{rule: `not identified`, s: s, at: t0, member: false, next: Never},
		{rule: `not identified`, s: newFacts(), at: t0, member: true, next: Never},
		{rule: `trait("city") == "Oslo"`, s: s, at: t0, member: true, next: Never},
		{rule: `trait("zip") == ""`, s: s, at: t0, member: true, next: Never},
	})
}

// TestEvalInList: in_list reads the Subject's lists and never changes with
// time alone.
func TestEvalInList(t *testing.T) {
	s := newFacts()
	s.events[event.TypeView] = []int64{t0 - day}
	s.lists = map[string]bool{"crm": true}
	runEvalCases(t, []evalCase{
		{rule: `in_list("crm")`, s: s, at: t0, member: true, next: Never},
		{rule: `in_list("crm-2")`, s: s, at: t0, member: false, next: Never},
		{rule: `not in_list("crm")`, s: s, at: t0, member: false, next: Never},
		{rule: `in_list("crm") and count(view) >= 1`, s: s, at: t0, member: true, next: Never},
		{rule: `in_list("crm") and since(view) <= 2d`, s: s, at: t0, member: true, next: t0 + day + 1},
		{rule: `in_list("nope") or since(view) <= 2d`, s: s, at: t0, member: true, next: t0 + day + 1},
		{rule: `in_list("nope") and since(view) <= 2d`, s: s, at: t0, member: false, next: Never},
	})
}

// TestEvalCampaign: received and converted read the Subject's campaigns
// and never change with time alone.
func TestEvalCampaign(t *testing.T) {
	s := newFacts()
	s.campaign = map[string]bool{"7": true, "8": false}
	runEvalCases(t, []evalCase{
		{rule: `received("7")`, s: s, at: t0, member: true, next: Never},
		{rule: `converted("7")`, s: s, at: t0, member: true, next: Never},
		{rule: `received("8") and not converted("8")`, s: s, at: t0, member: true, next: Never},
		{rule: `converted("8")`, s: s, at: t0, member: false, next: Never},
		{rule: `received("9")`, s: s, at: t0, member: false, next: Never},
	})
}

func TestEvalRFM(t *testing.T) {
	s := newFacts()
	s.orders, s.revenue, s.lastBuy = 3, 300, t0
	at := t0 + 10*day
	runEvalCases(t, []evalCase{
		{rule: `rfm.r >= 4`, s: s, at: at, member: true, next: t0 + 90*day + 1},
		{rule: `rfm.r == 5`, s: s, at: at, member: true, next: t0 + 30*day + 1},
		{rule: `rfm.r < 2`, s: s, at: at, member: false, next: t0 + 365*day + 1},
		{rule: `rfm.r > 0`, s: s, at: at, member: true, next: Never},
		{rule: `rfm.m >= 4`, s: s, at: at, member: true, next: Never},
		{rule: `rfm.f == 3`, s: s, at: at, member: true, next: Never},
		{rule: `rfm.r >= 4 and rfm.m >= 4`, s: s, at: at, member: true, next: t0 + 90*day + 1},
		{rule: `rfm.r <= 2 or rfm.f >= 4`, s: s, at: at, member: false, next: t0 + 180*day + 1},
		{rule: `rfm.r == 0`, s: newFacts(), at: at, member: true, next: Never},
		{rule: `rfm.r > rfm.f`, s: s, at: at, member: true, next: t0 + 90*day + 1},
	})
}

func TestEvalLifecycle(t *testing.T) {
	active := newFacts().add(event.TypePurchase, t0-100*day, t0-40*day)
	fresh := newFacts().add(event.TypePurchase, t0)
	runEvalCases(t, []evalCase{
		{rule: `lifecycle == "active"`, s: active, at: t0, member: true, next: t0 + 80*day},
		{rule: `lifecycle == "lapsing"`, s: active, at: t0, member: false, next: t0 + 80*day},
		{rule: `lifecycle == "lost"`, s: active, at: t0, member: false, next: t0 + 325*day + 1},
		{rule: `lifecycle != "lost"`, s: active, at: t0, member: true, next: t0 + 325*day + 1},
		{rule: `lifecycle == "new"`, s: fresh, at: t0 + day, member: true, next: t0 + 30*day + 1},
		// one purchase 31d ago: active until 60d, lapsing until 365d, then lost
		{rule: `lifecycle == "active"`, s: fresh, at: t0 + 31*day, member: true, next: t0 + 60*day + 1},
		{rule: `lifecycle == "lapsing"`, s: fresh, at: t0 + 31*day, member: false, next: t0 + 60*day + 1},
		{rule: `lifecycle == "prospect"`, s: newFacts(), at: t0, member: true, next: Never},
		{rule: `lifecycle == top(age)`, s: newFacts(), at: t0, member: false, next: Never},
	})
	for _, stage := range lifecycleStages {
		checkFlips(t, mustCompile(t, `lifecycle == "`+stage+`"`), fresh, t0-day)
		checkFlips(t, mustCompile(t, `lifecycle == "`+stage+`"`), active, t0-200*day)
	}
}

func TestEvalBirthday(t *testing.T) {
	bd := func(v string) *facts {
		f := newFacts()
		f.traits["birthday"] = v
		return f
	}
	june := bd("1990-06-20")
	runEvalCases(t, []evalCase{
		{rule: `until_birthday <= 7d`, s: june, at: t0, member: true, next: ms("2026-06-21T00:00:00Z")},
		{rule: `until_birthday <= 7d`, s: june, at: ms("2026-06-01T00:00:00Z"), member: false, next: ms("2026-06-13T00:00:00Z")},
		{rule: `until_birthday < 7d`, s: june, at: ms("2026-06-01T00:00:00Z"), member: false, next: ms("2026-06-13T00:00:00Z") + 1},
		{rule: `until_birthday > 7d`, s: june, at: t0, member: false, next: ms("2026-06-21T00:00:00Z")},
		{rule: `until_birthday == 0s`, s: june, at: ms("2026-06-19T12:00:00Z"), member: false, next: ms("2026-06-20T00:00:00Z")},
		{rule: `until_birthday == 0s`, s: june, at: ms("2026-06-20T12:00:00Z"), member: true, next: ms("2026-06-21T00:00:00Z")},
		{rule: `until_birthday <= 7d`, s: bd("06-20"), at: t0, member: true, next: ms("2026-06-21T00:00:00Z")},
		// across the year end
		{rule: `until_birthday <= 7d`, s: bd("1980-12-31"), at: ms("2026-12-30T00:00:00Z"), member: true, next: ms("2027-01-01T00:00:00Z")},
		{rule: `until_birthday <= 7d`, s: bd("1980-01-02"), at: ms("2026-12-28T00:00:00Z"), member: true, next: ms("2027-01-03T00:00:00Z")},
		{rule: `until_birthday <= 7d`, s: bd("1980-01-02"), at: ms("2026-12-20T00:00:00Z"), member: false, next: ms("2026-12-26T00:00:00Z")},
		// 29 February: the 28th in common years, the 29th in leap years
		{rule: `until_birthday <= 7d`, s: bd("2000-02-29"), at: ms("2027-02-20T00:00:00Z"), member: false, next: ms("2027-02-21T00:00:00Z")},
		{rule: `until_birthday <= 7d`, s: bd("2000-02-29"), at: ms("2027-02-27T00:00:00Z"), member: true, next: ms("2027-03-01T00:00:00Z")},
		{rule: `until_birthday <= 7d`, s: bd("2000-02-29"), at: ms("2028-02-25T00:00:00Z"), member: true, next: ms("2028-03-01T00:00:00Z")},
		{rule: `until_birthday <= 7d`, s: bd("2000-02-29"), at: ms("2028-02-21T00:00:00Z"), member: false, next: ms("2028-02-22T00:00:00Z")},
		// no or bad birthday: infinitely far
		{rule: `until_birthday <= 7d`, s: newFacts(), at: t0, member: false, next: Never},
		{rule: `until_birthday > 7d`, s: bd("1990-13-01"), at: t0, member: true, next: Never},
		{rule: `until_birthday <= 400d`, s: june, at: t0, member: true, next: Never},
	})
	for _, o := range []string{"==", "!=", "<", "<=", ">", ">="} {
		for _, c := range []string{"0s", "1s", "7d", "30d", "365d"} {
			checkFlips(t, mustCompile(t, `until_birthday `+o+` `+c), june, t0)
			checkFlips(t, mustCompile(t, `until_birthday `+o+` `+c), bd("2004-02-29"), ms("2027-12-31T23:59:59Z"))
		}
	}
}

func TestEvalCombinators(t *testing.T) {
	s := newFacts().add(event.TypeCart, t0).add(event.TypeView, t0)
	runEvalCases(t, []evalCase{
		// both false, flipping at different times: true once both have
		{rule: `since(cart) >= 1d and since(view) >= 2d`, s: s, at: t0, member: false, next: t0 + 2*day},
		{rule: `since(cart) < 1d or since(view) < 2d`, s: s, at: t0, member: true, next: t0 + 2*day},
		{rule: `not (since(cart) < 1d or since(view) < 2d)`, s: s, at: t0, member: false, next: t0 + 2*day},
		{rule: `since(cart) < 1d and since(view) < 2d`, s: s, at: t0, member: true, next: t0 + day},
		{rule: `since(cart) >= 1d or since(view) >= 2d`, s: s, at: t0, member: false, next: t0 + day},
		// the false child flips when the true one has: never true again
		{rule: `since(cart) >= 1d and since(view) < 12h`, s: s, at: t0, member: false, next: Never},
		{rule: `since(cart) < 1d or since(view) >= 2d`, s: s, at: t0, member: true, next: t0 + day},
		{rule: `(since(cart) < 1d or since(view) >= 2d) and not identified`, s: s, at: t0, member: true, next: t0 + day},
	})
	for _, src := range []string{
		`since(cart) >= 1d and since(view) < 12h`,
		`since(cart) < 1d or since(view) >= 2d`,
		`(since(cart) >= 1h and since(cart) < 2h) or (since(view) >= 3h and since(view) < 4h)`,
		`not (since(cart) >= 1h and since(view) < 2h) and since(cart) <= 1d`,
	} {
		checkFlips(t, mustCompile(t, src), s, t0)
	}
}

// TestEvalIssueRulesFlips follows the flips of every issue rule over a
// visitor that touches them all.
func TestEvalIssueRulesFlips(t *testing.T) {
	s := newFacts().setScore("brand", "Nutrilon", 3, t0).setScore("age", "0-3", 2, t0).
		setScore("brand", "Merries", 2, t0).setScore("category", "baby/food", 5, t0).
		add(event.TypeCart, t0-hour).add(event.TypePurchase, t0-100*day, t0-40*day, t0-2*day)
	s.orders, s.revenue, s.lastBuy = 3, 400, t0-2*day
	s.email = true
	s.traits["birthday"] = "1990-06-25"
	for _, src := range issueRules {
		checkFlips(t, mustCompile(t, src), s, t0)
	}
	if !strings.Contains(issueRules[0], "Nutrilon") {
		t.Fatal("issueRules changed")
	}
}

// TestEvalEveryOperator follows the flips of every comparison operator on
// every term that changes with time, against constants around its edges.
func TestEvalEveryOperator(t *testing.T) {
	s := newFacts().setScore("brand", "A", 3, t0).
		add(event.TypeCart, t0-5*hour, t0-2*day).
		add(event.TypePurchase, t0-100*day, t0-40*day, t0-2*day, t0+3*day)
	s.orders, s.revenue, s.lastBuy = 4, 300, t0-2*day
	s.traits["birthday"] = "1990-06-20"
	terms := map[string][]string{
		`since(cart)`:           {"0s", "5h", "1d", "2d"},
		`first(purchase)`:       {"30d", "100d", "200d"},
		`count(purchase, 7d)`:   {"0", "1", "2"},
		`count(purchase, 180d)`: {"1", "2", "3", "4"},
		`rfm.r`:                 {"1", "3", "5"},
		`interest(brand, "A")`:  {"0.25", "1", "2.999"},
		`until_birthday`:        {"0s", "12h", "7d"},
	}
	for term, consts := range terms {
		for _, c := range consts {
			for _, o := range []string{"==", "!=", "<", "<=", ">", ">="} {
				checkFlips(t, mustCompile(t, term+" "+o+" "+c), s, t0-3*day)
				checkFlips(t, mustCompile(t, c+" "+o+" "+term), s, t0-3*day)
			}
		}
	}
	for _, stage := range lifecycleStages {
		for _, o := range []string{"==", "!="} {
			checkFlips(t, mustCompile(t, `lifecycle `+o+` "`+stage+`"`), s, t0-200*day)
		}
	}
}

func TestCivil(t *testing.T) {
	for _, y := range []int64{1600, 1900, 1969, 1970, 1999, 2000, 2024, 2026, 2100, 2400} {
		for _, md := range [][2]int{{1, 1}, {2, 28}, {3, 1}, {12, 31}} {
			want := time.Date(int(y), time.Month(md[0]), md[1], 0, 0, 0, 0, time.UTC).UnixMilli()
			if got := daysFromCivil(y, md[0], md[1]) * day; got != want {
				t.Fatalf("daysFromCivil(%d, %d, %d) = %d days; want %d", y, md[0], md[1], got/day, want/day)
			}
			for _, off := range []int64{-1, 0, 1, day - 1} {
				if got, want := yearOf(want+off), int64(time.UnixMilli(want+off).UTC().Year()); got != want {
					t.Fatalf("yearOf(%s) = %d; want %d", fmtMs(want+off), got, want)
				}
			}
		}
	}
}

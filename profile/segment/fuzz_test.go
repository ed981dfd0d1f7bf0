package segment

import (
	"errors"
	"testing"

	"github.com/affinityhq/affinity/tracker/event"
)

// FuzzParse compiles arbitrary text: it must never panic; an error is an
// *Error inside the text; a rule prints in a canonical form that compiles
// to itself, and evaluates with a next flip after the instant asked.
// Seeds: issueRules below and testdata/fuzz/FuzzParse (the issue rules,
// truncated and split ones, the error cases of TestParseErrors).
func FuzzParse(f *testing.F) {
	for _, src := range issueRules {
		f.Add(src)
	}
	s := newFacts().setScore("brand", "Nutrilon", 3, t0).setScore("age", "0-3", 2, t0).
		add(event.TypeCart, t0-hour).add(event.TypePurchase, t0-100*day, t0-2*day)
	s.orders, s.revenue, s.lastBuy = 2, 300, t0-2*day
	s.traits["birthday"] = "2000-02-29"
	f.Fuzz(func(t *testing.T, src string) {
		r, err := Compile(src, DefaultConfig())
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("Compile(%q) = %v; want an *Error", src, err)
			}
			if pe.Pos < 1 || pe.Pos > len(src)+1 {
				t.Fatalf("Compile(%q): position %d outside the text", src, pe.Pos)
			}
			return
		}
		canon := r.String()
		r2, err := Compile(canon, DefaultConfig())
		if err != nil {
			t.Fatalf("canonical form %q of %q does not compile: %v", canon, src, err)
		}
		if r2.String() != canon {
			t.Fatalf("canonical form %q of %q prints as %q", canon, src, r2.String())
		}
		for _, at := range []int64{t0, t0 + 400*day} {
			m, next := r.Eval(s, at)
			if next <= at {
				t.Fatalf("%q at %d: next %d not after it", src, at, next)
			}
			if m2, _ := r2.Eval(s, at); m2 != m {
				t.Fatalf("%q and its canonical form %q disagree at %d", src, canon, at)
			}
		}
		_ = r.AppendFacts(nil, s, t0)
	})
}

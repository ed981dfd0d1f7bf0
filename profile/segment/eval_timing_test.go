package segment

import (
	"testing"
)

// BenchmarkEval evaluates each issue rule, with its next flip, over a
// profile built from real events (through ProfileSubject); "all" evaluates
// the 14 of them per op, as the builder does for a changed profile.
func BenchmarkEval(b *testing.B) {
	ps := appliedProfile(b)
	rules := make([]*Rule, len(issueRules))
	for i, src := range issueRules {
		rules[i] = mustCompile(b, src)
	}
	names := []string{"mums", "abandoned_cart", "new", "active", "lapsing", "lost", "lifecycle", "sleeping",
		"rfm", "birthday", "identified", "not_identified", "share", "interest"}
	for i, r := range rules {
		b.Run(names[i], func(b *testing.B) {
			b.ReportAllocs()
			at := t0
			for b.Loop() {
				r.Eval(ps, at)
				at++
			}
		})
	}
	b.Run("all", func(b *testing.B) {
		b.ReportAllocs()
		at := t0
		for b.Loop() {
			for _, r := range rules {
				r.Eval(ps, at)
			}
			at++
		}
	})
}

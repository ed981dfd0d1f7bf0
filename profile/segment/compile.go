package segment

import (
	"math"
)

// boolFn evaluates a condition at instant at. It returns the value and an
// instant next > at such that the value holds on all of [at, next), and
// whether it changes at next (exact) or next is only a lower bound of the
// change (Rule.Eval refines it then). Never is always exact.
type boolFn func(s Subject, at int64) (v bool, next int64, exact bool)

type (
	numFn func(s Subject, at int64) float64
	durFn func(s Subject, at int64) int64 // inf when infinite
	strFn func(s Subject, at int64) string
	// nextFn returns the first instant > at at which a step value may
	// change, Never if none.
	nextFn func(s Subject, at int64) int64
)

// maxSteps bounds the steps a comparison of step values walks looking for
// the instant its value changes; past it the comparison reports the last
// step as its next instant (a lower bound).
const maxSteps = 64

func compileBool(e *expr, cfg *Config) boolFn {
	switch e.op {
	case opAnd:
		fs := compileArgs(e.args, cfg)
		return func(s Subject, at int64) (bool, int64, bool) {
			// true: it holds until the first child changes. false: it stays
			// false at least until every false child has changed; exactly
			// then if that is one child, changing before any true one does.
			all, minTrue, minExact := true, Never, true
			falses, maxFalse, falseExact := 0, int64(math.MinInt64), false
			for _, f := range fs {
				v, n, x := f(s, at)
				if v {
					if n < minTrue {
						minTrue, minExact = n, x
					} else if n == minTrue {
						minExact = minExact || x
					}
					continue
				}
				if n == Never {
					return false, Never, true
				}
				all, falses, maxFalse, falseExact = false, falses+1, max(maxFalse, n), x
			}
			if all {
				return true, minTrue, minExact
			}
			return false, maxFalse, falses == 1 && falseExact && maxFalse < minTrue
		}
	case opOr:
		fs := compileArgs(e.args, cfg)
		return func(s Subject, at int64) (bool, int64, bool) {
			// the dual of and
			none, minFalse, minExact := true, Never, true
			trues, maxTrue, trueExact := 0, int64(math.MinInt64), false
			for _, f := range fs {
				v, n, x := f(s, at)
				if !v {
					if n < minFalse {
						minFalse, minExact = n, x
					} else if n == minFalse {
						minExact = minExact || x
					}
					continue
				}
				if n == Never {
					return true, Never, true
				}
				none, trues, maxTrue, trueExact = false, trues+1, max(maxTrue, n), x
			}
			if none {
				return false, minFalse, minExact
			}
			return true, maxTrue, trues == 1 && trueExact && maxTrue < minFalse
		}
	case opNot:
		f := compileBool(e.args[0], cfg)
		return func(s Subject, at int64) (bool, int64, bool) {
			v, n, x := f(s, at)
			return !v, n, x
		}
	case opIdentified:
		return func(s Subject, _ int64) (bool, int64, bool) { return s.Identified(), Never, true }
	case opInList:
		// A list changes by its uploads, which re-evaluate the visitors
		// they concern (profile/membership), never with time.
		name := e.value
		return func(s Subject, _ int64) (bool, int64, bool) { return s.InList(name), Never, true }
	case opReceived, opConverted:
		// A recipient is frozen; a conversion is counted after the
		// purchase's own evaluation: the visitor's next evaluation sees it.
		id, conv := e.value, e.op == opConverted
		return func(s Subject, _ int64) (bool, int64, bool) { return s.Campaign(id, conv), Never, true }
	case opCmp:
		return compileCmp(e, cfg)
	}
	panic("BUG: compileBool of a non-condition")
}

func compileArgs(args []*expr, cfg *Config) []boolFn {
	fs := make([]boolFn, len(args))
	for i, a := range args {
		fs[i] = compileBool(a, cfg)
	}
	return fs
}

// mirror returns the operator o' with a o b ⇔ b o' a.
func mirror(o tokKind) tokKind {
	switch o {
	case tokLt:
		return tokGt
	case tokLe:
		return tokGe
	case tokGt:
		return tokLt
	case tokGe:
		return tokLe
	}
	return o
}

func cmpF(o tokKind, a, b float64) bool {
	switch o {
	case tokEq:
		return a == b
	case tokNe:
		return a != b
	case tokLt:
		return a < b
	case tokLe:
		return a <= b
	case tokGt:
		return a > b
	}
	return a >= b
}

func cmpI(o tokKind, a, b int64) bool {
	switch o {
	case tokEq:
		return a == b
	case tokNe:
		return a != b
	case tokLt:
		return a < b
	case tokLe:
		return a <= b
	case tokGt:
		return a > b
	}
	return a >= b
}

func compileCmp(e *expr, cfg *Config) boolFn {
	l, r, o := e.args[0], e.args[1], e.cmp
	if l.change == cConst && r.change != cConst {
		l, r, o = r, l, mirror(o)
	}
	switch l.change {
	case cConst:
		return compileConstCmp(l, r, o, cfg)
	case cLinear:
		if r.change == cLinear {
			lf, rf := compileDur(l, cfg), compileDur(r, cfg)
			return func(s Subject, at int64) (bool, int64, bool) {
				// both grow 1 ms per ms (or stay infinite): their order is fixed
				return cmpI(o, lf(s, at), rf(s, at)), Never, true
			}
		}
		return compileLinearCmp(l, compileDur(r, cfg), o)
	case cBirthday:
		return compileBirthdayCmp(compileDur(r, cfg), o)
	case cStep:
		return compileStepCmp(l, r, o, cfg)
	case cDecay:
		if r.change == cDecay {
			// same dimension, same half-life: the ratio of the scores is fixed
			ld, lv, rd, rv := l.dim, l.value, r.dim, r.value
			return func(s Subject, _ int64) (bool, int64, bool) {
				return cmpF(o, s.LogG(ld, lv), s.LogG(rd, rv)), Never, true
			}
		}
		return compileDecayCmp(l, compileNum(r, cfg), o)
	}
	panic("BUG: compileCmp of an unknown change")
}

func compileConstCmp(l, r *expr, o tokKind, cfg *Config) boolFn {
	switch l.typ {
	case tNumber:
		lf, rf := compileNum(l, cfg), compileNum(r, cfg)
		return func(s Subject, at int64) (bool, int64, bool) { return cmpF(o, lf(s, at), rf(s, at)), Never, true }
	case tDuration:
		lf, rf := compileDur(l, cfg), compileDur(r, cfg)
		return func(s Subject, at int64) (bool, int64, bool) { return cmpI(o, lf(s, at), rf(s, at)), Never, true }
	case tString:
		lf, rf := compileStr(l, cfg), compileStr(r, cfg)
		eq := o == tokEq
		return func(s Subject, at int64) (bool, int64, bool) { return (lf(s, at) == rf(s, at)) == eq, Never, true }
	}
	panic("BUG: compileConstCmp of a condition")
}

// interval returns whether at lies in [lo, hi), inverted if invert, and the
// next instant that changes the answer (exact).
func interval(at, lo, hi int64, invert bool) (bool, int64, bool) {
	switch {
	case lo >= hi:
		return invert, Never, true
	case at < lo:
		return invert, lo, true
	case at < hi:
		return !invert, hi, true
	}
	return invert, Never, true
}

func satAdd(a, b int64) int64 {
	c := a + b
	if (c > a) != (b > 0) {
		if b > 0 {
			return math.MaxInt64
		}
		return math.MinInt64
	}
	return c
}

// compileLinearCmp compiles q OP c for q(T) = T − t0 (since, first).
func compileLinearCmp(l *expr, c durFn, o tokKind) boolFn {
	ev, useFirst := l.ev, l.op == opFirst
	return func(s Subject, at int64) (bool, int64, bool) {
		n, first, last := s.Events(ev)
		cv := c(s, at)
		if n == 0 || cv == inf {
			q := inf
			if n != 0 {
				q = at - last
			}
			return cmpI(o, q, cv), Never, true
		}
		t0 := last
		if useFirst {
			t0 = first
		}
		// q(T) OP c ⇔ T OP t0 + c
		base := satAdd(t0, cv)
		b1 := satAdd(base, 1)
		const lo, hi = math.MinInt64, math.MaxInt64
		switch o {
		case tokLe:
			return interval(at, lo, b1, false)
		case tokLt:
			return interval(at, lo, base, false)
		case tokGe:
			return interval(at, base, hi, false)
		case tokGt:
			return interval(at, b1, hi, false)
		case tokEq:
			return interval(at, base, b1, false)
		}
		return interval(at, base, b1, true)
	}
}

// compileDecayCmp compiles interest(d, v) OP c for a c fixed between
// events. With T_A the first instant at which LogThreshold(c, T) ≥ LogG and
// T_B the first at which it is > LogG (T_A ≤ T_B):
//
//	score >= c ⇔ T < T_B    score > c ⇔ T < T_A    score == c ⇔ T_A ≤ T < T_B
//	score <= c ⇔ T ≥ T_A    score < c ⇔ T ≥ T_B
func compileDecayCmp(l *expr, c numFn, o tokKind) boolFn {
	dim, value := l.dim, l.value
	return func(s Subject, at int64) (bool, int64, bool) {
		g := s.LogG(dim, value)
		cv := c(s, at)
		if math.IsInf(g, -1) || math.IsNaN(g) {
			return cmpF(o, 0, cv), Never, true
		}
		if !(cv > 0) {
			// a kept value scores > 0 forever
			return cmpF(o, 1, 0), Never, true
		}
		thr := s.LogThreshold(dim, cv, at)
		pA, pB := thr >= g, thr > g
		nextA, nextB := Never, Never
		cross := func(strict bool) int64 {
			return crossing(s, dim, cv, g, thr, at, strict)
		}
		switch o {
		case tokGe:
			if !pB {
				nextB = cross(true)
			}
			return !pB, nextB, true
		case tokGt:
			if !pA {
				nextA = cross(false)
			}
			return !pA, nextA, true
		case tokLe:
			if !pA {
				nextA = cross(false)
			}
			return pA, nextA, true
		case tokLt:
			if !pB {
				nextB = cross(true)
			}
			return pB, nextB, true
		}
		// == and !=: true on [T_A, T_B)
		if !pA {
			nextA = cross(false)
		}
		if !pB {
			nextB = cross(true)
		}
		// T_A = T_B when no instant scores exactly c: no flip there
		eq, exact := pA && !pB, nextA != nextB || nextA == Never
		if o == tokNe {
			return !eq, min(nextA, nextB), exact
		}
		return eq, min(nextA, nextB), exact
	}
}

// crossing returns the first instant T > at with LogThreshold(dim, c, T) ≥ g
// (> g if strict), given that at is not one (thrAt = LogThreshold at at);
// Never if it lies beyond int64. LogThreshold decides the instant exactly;
// the half-life only guesses where to look.
func crossing(s Subject, dim string, c, g, thrAt float64, at int64, strict bool) int64 {
	p := func(t int64) bool {
		thr := s.LogThreshold(dim, c, t)
		if strict {
			return thr > g
		}
		return thr >= g
	}
	guess := float64(at) + (g-thrAt)*s.HalfLife(dim)
	var t int64
	switch {
	case !(guess < 9e18):
		t = math.MaxInt64 - 1
	case guess <= float64(at)+1:
		t = at + 1
	default:
		t = int64(guess)
	}
	// gallop from the guess to bracket the instant between lo (false) and
	// hi (true), then bisect.
	lo, hi := at, t
	if p(t) {
		for step := int64(1); ; step *= 2 {
			c := t - step
			if c <= at {
				break
			}
			if !p(c) {
				lo = c
				break
			}
			hi = c
		}
	} else {
		lo = t
		hi = Never
		for step := int64(1); ; step *= 2 {
			c := satAdd(t, step)
			if c >= Never {
				if !p(Never - 1) {
					return Never
				}
				break
			}
			if p(c) {
				hi = c
				break
			}
			lo = c
		}
		if hi == Never {
			hi = Never - 1
		}
	}
	for hi-lo > 1 {
		m := lo + (hi-lo)/2
		if p(m) {
			hi = m
		} else {
			lo = m
		}
	}
	return hi
}

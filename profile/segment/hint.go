package segment

// Threshold is a minimum interest: score(Dim, Value) ≥ Min.
type Threshold struct {
	Dim, Value string
	Min        float64 // > 0
}

// Necessary returns thresholds of which every member meets at least one, at
// any instant, when the rule implies such a disjunction (ok true): the
// backfill of a new segment can then read its candidates off the interest
// index — one range "LogG ≥ LogThreshold(Min, now)" per threshold — and Eval
// only those instead of every profile. The mums rule gives three brands;
// a rule without a positive interest bound on every path gives ok false.
func (r *Rule) Necessary() (ts []Threshold, ok bool) {
	if ts, ok = necessary(r.root, nil); !ok {
		return nil, false
	}
	return ts, true
}

func necessary(e *expr, dst []Threshold) ([]Threshold, bool) {
	switch e.op {
	case opAnd:
		// any one child's condition is necessary: take the narrowest
		var best []Threshold
		found := false
		for _, a := range e.args {
			if ts, ok := necessary(a, nil); ok && (!found || len(ts) < len(best)) {
				best, found = ts, true
			}
		}
		if !found {
			return dst, false
		}
		return append(dst, best...), true
	case opOr:
		for _, a := range e.args {
			var ok bool
			if dst, ok = necessary(a, dst); !ok {
				return dst, false
			}
		}
		return dst, true
	case opCmp:
		l, r, o := e.args[0], e.args[1], e.cmp
		if r.op == opInterest && l.op == opNum {
			l, r, o = r, l, mirror(o)
		}
		if l.op == opInterest && r.op == opNum && r.num > 0 && (o == tokGe || o == tokGt || o == tokEq) {
			return append(dst, Threshold{Dim: l.dim, Value: l.value, Min: r.num}), true
		}
	}
	return dst, false
}

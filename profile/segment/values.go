package segment

import (
	"math"

	"github.com/affinityhq/affinity/tracker/event"
)

// compileNum returns the value of a number term at an instant.
func compileNum(e *expr, cfg *Config) numFn {
	switch e.op {
	case opNum:
		v := e.num
		return func(Subject, int64) float64 { return v }
	case opInterest:
		dim, value := e.dim, e.value
		return func(s Subject, at int64) float64 { return score(s, dim, value, at) }
	case opShare:
		dim, value := e.dim, e.value
		return func(s Subject, _ int64) float64 { return s.Share(dim, value) }
	case opCount:
		ev := e.ev
		return func(s Subject, _ int64) float64 {
			n, _, _ := s.Events(ev)
			return float64(n)
		}
	case opCountWindow:
		ev, w := e.ev, e.window
		return func(s Subject, at int64) float64 { return float64(countWindow(s.Recent(ev), w, at)) }
	case opRFMR:
		rec := cfg.RFM.Recency
		return func(s Subject, at int64) float64 { return rfmR(s, &rec, at) }
	case opRFMF:
		edges := cfg.RFM.Frequency
		return func(s Subject, _ int64) float64 {
			n, _, _ := s.Orders()
			return rfmScore(n, float64(n), &edges)
		}
	case opRFMM:
		edges := cfg.RFM.Monetary
		return func(s Subject, _ int64) float64 {
			n, rev, _ := s.Orders()
			return rfmScore(n, rev, &edges)
		}
	case opLifecycle:
		lc := cfg.Lifecycle
		return func(s Subject, at int64) float64 { return float64(lifecycle(s, &lc, at)) }
	case opStr:
		// a string compared with lifecycle: its stage index, −1 if none
		idx := float64(indexOf(lifecycleStages, e.value))
		return func(Subject, int64) float64 { return idx }
	case opTop, opTrait:
		f := compileStr(e, cfg)
		return func(s Subject, at int64) float64 { return float64(indexOf(lifecycleStages, f(s, at))) }
	}
	panic("BUG: compileNum of " + describe(e))
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

// compileDur returns the value of a duration term at an instant (inf when
// infinite).
func compileDur(e *expr, _ *Config) durFn {
	switch e.op {
	case opDur:
		v := e.dur
		return func(Subject, int64) int64 { return v }
	case opSince, opFirst:
		ev, useFirst := e.ev, e.op == opFirst
		return func(s Subject, at int64) int64 {
			n, first, last := s.Events(ev)
			switch {
			case n == 0:
				return inf
			case useFirst:
				return at - first
			}
			return at - last
		}
	case opBirthday:
		return func(s Subject, at int64) int64 {
			m, d, ok := birthday(s)
			if !ok {
				return inf
			}
			return untilBirthday(m, d, at)
		}
	}
	panic("BUG: compileDur of " + describe(e))
}

// compileStr returns the value of a string term.
func compileStr(e *expr, cfg *Config) strFn {
	switch e.op {
	case opStr:
		v := e.value
		return func(Subject, int64) string { return v }
	case opTop:
		dim := e.dim
		return func(s Subject, _ int64) string { return s.Top(dim) }
	case opTrait:
		key := e.value
		return func(s Subject, _ int64) string {
			v, _ := s.Trait(key)
			return v
		}
	case opLifecycle:
		lc := cfg.Lifecycle
		return func(s Subject, at int64) string { return lifecycleStages[lifecycle(s, &lc, at)] }
	}
	panic("BUG: compileStr of " + describe(e))
}

// score returns the decayed interest at at, as Subject's transform defines it.
func score(s Subject, dim, value string, at int64) float64 {
	g := s.LogG(dim, value)
	if math.IsInf(g, -1) || math.IsNaN(g) {
		return 0
	}
	return math.Exp2(g - s.LogThreshold(dim, 1, at))
}

// compileNext returns when a step term may next change after an instant.
func compileNext(e *expr, cfg *Config) nextFn {
	switch e.op {
	case opCountWindow:
		ev, w := e.ev, e.window
		return func(s Subject, at int64) int64 { return windowNext(s.Recent(ev), w, at) }
	case opRFMR:
		rec := cfg.RFM.Recency
		return func(s Subject, at int64) int64 {
			n, _, last := s.Orders()
			if n == 0 {
				return Never
			}
			next := Never
			for _, r := range rec {
				if t := satAdd(last, r+1); t > at {
					next = min(next, t)
				}
			}
			return next
		}
	case opLifecycle:
		lc := cfg.Lifecycle
		return func(s Subject, at int64) int64 {
			n, first, last := s.Events(event.TypePurchase)
			if n == 0 {
				return Never
			}
			next := windowNext(s.Recent(event.TypePurchase), lc.ActiveWindow, at)
			for _, t := range [...]int64{satAdd(first, lc.New+1), satAdd(last, lc.Lapsing+1), satAdd(last, lc.Lost+1)} {
				if t > at {
					next = min(next, t)
				}
			}
			return next
		}
	}
	// constants never step
	return func(Subject, int64) int64 { return Never }
}

// compileStepCmp compiles a comparison of a step term with a constant or
// another step term: walk the steps until the value changes.
func compileStepCmp(l, r *expr, o tokKind, cfg *Config) boolFn {
	lv, rv := compileNum(l, cfg), compileNum(r, cfg)
	ln, rn := compileNext(l, cfg), compileNext(r, cfg)
	return func(s Subject, at int64) (bool, int64, bool) {
		v := cmpF(o, lv(s, at), rv(s, at))
		t := at
		for range maxSteps {
			n := min(ln(s, t), rn(s, t))
			if n == Never || cmpF(o, lv(s, n), rv(s, n)) != v {
				return v, n, true
			}
			t = n
		}
		return v, t, false
	}
}

// countWindow returns how many of ts lie in (at − w, at].
func countWindow(ts []int64, w, at int64) int {
	n := 0
	from := at - w
	for _, t := range ts {
		if t > from && t <= at {
			n++
		}
	}
	return n
}

// windowNext returns the first instant after at at which the count of ts in
// the window changes: an event leaving it or a future one entering it.
func windowNext(ts []int64, w, at int64) int64 {
	next := Never
	from := at - w
	for _, t := range ts {
		switch {
		case t > at:
			next = min(next, t)
		case t > from:
			next = min(next, t+w)
		}
	}
	return next
}

// rfmR returns the recency score at at: 5 within Recency[0] of the last
// order … 1 past Recency[3]; 0 without orders.
func rfmR(s Subject, rec *[4]int64, at int64) float64 {
	n, _, last := s.Orders()
	if n == 0 {
		return 0
	}
	since := at - last
	for i, r := range rec {
		if since <= r {
			return float64(5 - i)
		}
	}
	return 1
}

// rfmScore returns 1 + how many edges v reaches; 0 without orders.
func rfmScore(n int, v float64, edges *[4]float64) float64 {
	if n == 0 {
		return 0
	}
	score := 1.0
	for _, e := range edges {
		if v >= e {
			score++
		}
	}
	return score
}

// lifecycle returns the index in lifecycleStages of the visitor's stage.
func lifecycle(s Subject, lc *Lifecycle, at int64) int {
	const prospect, new_, active, lost, lapsing = 0, 1, 2, 3, 4
	n, first, last := s.Events(event.TypePurchase)
	switch {
	case n == 0:
		return prospect
	case at-first <= lc.New:
		return new_
	case at-last <= lc.Lapsing || countWindow(s.Recent(event.TypePurchase), lc.ActiveWindow, at) >= lc.ActiveMin:
		return active
	case at-last > lc.Lost:
		return lost
	}
	return lapsing
}

// birthday returns the month and day of the "birthday" trait, written
// YYYY-MM-DD or MM-DD.
func birthday(s Subject) (month, day int, ok bool) {
	v, ok := s.Trait("birthday")
	if !ok {
		return 0, 0, false
	}
	if len(v) == 10 && v[4] == '-' {
		if _, ok := digits(v[:4]); !ok {
			return 0, 0, false
		}
		v = v[5:]
	}
	if len(v) != 5 || v[2] != '-' {
		return 0, 0, false
	}
	m, ok1 := digits(v[:2])
	d, ok2 := digits(v[3:])
	if !ok1 || !ok2 || m < 1 || m > 12 || d < 1 || d > daysIn[m] {
		return 0, 0, false
	}
	return m, d, true
}

var daysIn = [13]int{0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}

func digits(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}

// birthdayStart returns the Unix ms of 00:00 UTC of the birthday in year
// y. A 29 February birthday falls on 28 February in common years.
func birthdayStart(month, d int, y int64) int64 {
	if month == 2 && d == 29 && !leap(y) {
		d = 28
	}
	return daysFromCivil(y, month, d) * day
}

// occurrence returns the UTC day [start, end) of the first birthday that has
// not ended at at.
func occurrence(month, d int, at int64) (start, end int64) {
	y := yearOf(at)
	for {
		start = birthdayStart(month, d, y)
		if end = start + day; end > at {
			return start, end
		}
		y++
	}
}

func leap(y int64) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

// daysFromCivil returns the days from 1970-01-01 to y-m-d (proleptic
// Gregorian), after H. Hinnant's days_from_civil.
func daysFromCivil(y int64, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := int64(m+9) % 12
	doy := (153*mp+2)/5 + int64(d) - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// yearOf returns the UTC year of Unix ms t.
func yearOf(t int64) int64 {
	days := t / day
	if t%day < 0 {
		days--
	}
	// H. Hinnant's civil_from_days, year only
	z := days + 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	if mp := (5*doy + 2) / 153; mp >= 10 {
		y++ // January, February
	}
	return y
}

// untilBirthday returns the time from at to the start of the next birthday,
// 0 during the birthday (UTC).
func untilBirthday(month, d int, at int64) int64 {
	start, _ := occurrence(month, d, at)
	return max(start-at, 0)
}

// compileBirthdayCmp compiles until_birthday OP c. The value can change
// only where start−T crosses c (start−c, start−c+1), at start and at end of
// a birthday; three birthdays cover every change a c can cause.
func compileBirthdayCmp(c durFn, o tokKind) boolFn {
	return func(s Subject, at int64) (bool, int64, bool) {
		cv := c(s, at)
		m, d, ok := birthday(s)
		if !ok {
			return cmpI(o, inf, cv), Never, true
		}
		// the birthdays from at on: u(T) for T before the end of the last
		var occ [4][2]int64
		occ[0][0], occ[0][1] = occurrence(m, d, at)
		y := yearOf(occ[0][0])
		for k := 1; k < len(occ); k++ {
			occ[k][0] = birthdayStart(m, d, y+int64(k))
			occ[k][1] = occ[k][0] + day
		}
		u := func(t int64) int64 {
			for _, o := range occ {
				if t < o[1] {
					return max(o[0]-t, 0)
				}
			}
			return untilBirthday(m, d, t)
		}
		v := cmpI(o, u(at), cv)
		var cand [12]int64
		for k := range 3 {
			start, end := occ[k][0], occ[k][1]
			cand[4*k], cand[4*k+1], cand[4*k+2], cand[4*k+3] = satAdd(start, -cv), satAdd(start, 1-cv), start, end
		}
		for {
			// the smallest candidate left after at
			best := Never
			for _, x := range cand {
				if x > at && x < best {
					best = x
				}
			}
			if best == Never {
				return v, Never, true
			}
			if cmpI(o, u(best), cv) != v {
				return v, best, true
			}
			for i, x := range cand {
				if x == best {
					cand[i] = math.MinInt64
				}
			}
		}
	}
}

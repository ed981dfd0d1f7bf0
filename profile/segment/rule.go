package segment

import (
	"math"
	"strconv"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/tracker/event"
)

// Rule is a compiled segment rule. It is immutable and safe for concurrent
// use by any number of goroutines.
type Rule struct {
	src   string
	root  *expr
	eval  boolFn
	refs  []Ref
	parts profile.Parts
}

// maxReeval bounds how many times Eval re-evaluates a rule at the instant
// its and/or parts give as a lower bound, looking for the exact flip.
const maxReeval = 32

// Compile parses, type-checks and compiles rule text. A syntax or type
// error is an *invalid.Error, "invalid rule: " and an *Error with the
// position and what was expected there (errors.As finds both).
// cfg gives the thresholds of lifecycle and rfm.*; it is copied.
func Compile(src string, cfg Config) (*Rule, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	root, err := parse(src)
	if err != nil {
		return nil, invalid.Errorf("invalid rule: %w", err)
	}
	r := &Rule{src: src, root: root, eval: compileBool(root, &cfg)}
	r.refs = collectRefs(root, &cfg, nil)
	for i := range r.refs {
		r.parts |= r.refs[i].Parts
	}
	return r, nil
}

// Source returns the rule text as given to Compile.
func (r *Rule) Source() string { return r.src }

// String returns the rule in canonical form: single spaces, and/or written
// out, parentheses only where needed.
func (r *Rule) String() string { return string(appendTerm(nil, r.root)) }

// Eval returns whether s is a member at instant at (Unix ms), and next: the
// earliest instant > at at which membership can change with no new event,
// Never if it cannot. Membership is constant on [at, next) and, unless the
// rule needs more than a few dozen re-evaluations to find it (and/or of
// window edges that cancel out), differs at next; either way next is the
// instant to evaluate again. Eval does not allocate.
func (r *Rule) Eval(s Subject, at int64) (member bool, next int64) {
	member, next, _ = r.evalNext(s, at)
	return member, next
}

// evalNext is Eval, also saying whether next is exact: a flip, or Never.
func (r *Rule) evalNext(s Subject, at int64) (member bool, next int64, exact bool) {
	v, n, x := r.eval(s, at)
	for range maxReeval {
		if x || n == Never {
			return v, n, true
		}
		v2, n2, x2 := r.eval(s, n)
		if v2 != v {
			return v, n, true
		}
		if n2 <= n {
			break // BUG: a part reported no progress; n is still due
		}
		n, x = n2, x2
	}
	return v, n, x || n == Never
}

// Ref is one term a rule reads — a score, a count, a recency — so that an
// export can show the values a member was chosen by.
type Ref struct {
	// Name is the canonical spelling, e.g. `interest(brand, "Nutrilon")`,
	// `count(purchase, 180d)`, `since(cart)`, `rfm.r`; unique in a rule.
	Name string
	// Term is the function or built-in: interest, share, top, count, since,
	// first, until_birthday, lifecycle, rfm.r, rfm.f, rfm.m, identified,
	// trait, in_list.
	Term string
	// Dim and Value name the interest or share (Dim alone for top); Value
	// is the key of a trait, the name of a list.
	Dim, Value string
	// Event and Window are the arguments of count, since and first
	// (Window 0: no window).
	Event  event.Type
	Window int64
	// Parts are the parts of a profile the term reads
	// (profile.PartialDecoder).
	Parts profile.Parts

	val func(dst []byte, s Subject, at int64) []byte
}

// Refs returns the terms the rule reads, in order of first appearance. The
// slice is shared: do not modify it.
func (r *Rule) Refs() []Ref { return r.refs }

// Lists returns the names of the static lists the rule reads with
// in_list, in order of first appearance.
func (r *Rule) Lists() []string {
	var names []string
	for i := range r.refs {
		if r.refs[i].Term == "in_list" {
			names = append(names, r.refs[i].Value)
		}
	}
	return names
}

// Parts returns the parts of a profile the rule reads, the union of its
// terms' Ref.Parts: a reader that evaluates the rule or its terms on a
// ProfileSubject decodes only those.
func (r *Rule) Parts() profile.Parts { return r.parts }

// AppendValue appends to dst the JSON value of the term for s at instant at:
// a number for scores, shares, counts and RFM scores; milliseconds for
// durations (null when infinite: no such event, no birthday); a string for
// top, trait and lifecycle; true/false for identified.
func (f *Ref) AppendValue(dst []byte, s Subject, at int64) []byte {
	return f.val(dst, s, at)
}

// AppendFacts appends to dst a JSON object of the rule's terms and their
// values for s at instant at, e.g. {"since(cart)":3600000,"rfm.r":4}.
func (r *Rule) AppendFacts(dst []byte, s Subject, at int64) []byte {
	dst = append(dst, '{')
	for i := range r.refs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = event.AppendJSONString(dst, r.refs[i].Name)
		dst = append(dst, ':')
		dst = r.refs[i].val(dst, s, at)
	}
	return append(dst, '}')
}

var termNames = map[op]string{
	opIdentified: "identified", opInterest: "interest", opShare: "share", opTop: "top",
	opCount: "count", opCountWindow: "count", opSince: "since", opFirst: "first",
	opBirthday: "until_birthday", opLifecycle: "lifecycle", opRFMR: "rfm.r", opRFMF: "rfm.f",
	opRFMM: "rfm.m", opTrait: "trait", opInList: "in_list", opReceived: "received", opConverted: "converted",
}

func collectRefs(e *expr, cfg *Config, dst []Ref) []Ref {
	for _, a := range e.args {
		dst = collectRefs(a, cfg, dst)
	}
	term, ok := termNames[e.op]
	if !ok {
		return dst
	}
	name := describe(e)
	for i := range dst {
		if dst[i].Name == name {
			return dst
		}
	}
	f := Ref{Name: name, Term: term, Dim: e.dim, Value: e.value, Event: e.ev, Window: e.window, Parts: termParts(e)}
	switch e.typ {
	case tBool:
		if e.op == opInList {
			name := e.value
			f.val = func(dst []byte, s Subject, _ int64) []byte { return strconv.AppendBool(dst, s.InList(name)) }
			break
		}
		if e.op == opReceived || e.op == opConverted {
			id, conv := e.value, e.op == opConverted
			f.val = func(dst []byte, s Subject, _ int64) []byte { return strconv.AppendBool(dst, s.Campaign(id, conv)) }
			break
		}
		f.val = func(dst []byte, s Subject, _ int64) []byte { return strconv.AppendBool(dst, s.Identified()) }
	case tNumber:
		nf := compileNum(e, cfg)
		f.val = func(dst []byte, s Subject, at int64) []byte { return appendNumber(dst, nf(s, at)) }
	case tDuration:
		df := compileDur(e, cfg)
		f.val = func(dst []byte, s Subject, at int64) []byte {
			if d := df(s, at); d != inf {
				return strconv.AppendInt(dst, d, 10)
			}
			return append(dst, "null"...)
		}
	case tString:
		sf := compileStr(e, cfg)
		f.val = func(dst []byte, s Subject, at int64) []byte { return event.AppendJSONString(dst, sf(s, at)) }
	}
	return append(dst, f)
}

// termParts returns the parts of a profile term e reads through the
// ProfileSubject methods behind it; every part for one it does not know.
func termParts(e *expr) profile.Parts {
	switch e.op {
	case opInterest, opShare, opTop:
		if d, ok := profile.ParseDim(e.dim); ok {
			return profile.PartDim(d)
		}
	case opCount, opCountWindow, opSince, opFirst, opLifecycle:
		return profile.PartEvents
	case opRFMR, opRFMF, opRFMM:
		return profile.PartOrders
	case opIdentified, opInList, opReceived, opConverted:
		return profile.PartIdentity
	case opTrait, opBirthday:
		return profile.PartTraits
	}
	return profile.PartAll
}

// appendNumber appends v as a JSON number (null for NaN and infinities).
func appendNumber(dst []byte, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(dst, "null"...)
	}
	return strconv.AppendFloat(dst, v, 'g', -1, 64)
}

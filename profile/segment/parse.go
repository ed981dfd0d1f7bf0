package segment

import (
	"strconv"
	"strings"

	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile/lists"
	"github.com/affinityhq/affinity/tracker/event"
)

// Error is a parse or type error in a rule: the 1-based byte column where it
// was found, what the grammar expected there and what the rule holds instead.
// The API returns Error() as the body of a 400.
type Error struct {
	Pos      int
	Expected string
	Found    string
}

// Error returns e.g. `at 16: expected a duration like 24h or 7d, found "24"`.
func (e *Error) Error() string {
	return "at " + strconv.Itoa(e.Pos) + ": expected " + e.Expected + ", found " + e.Found
}

func errAt(pos int, expected, found string) *Error {
	return &Error{Pos: pos, Expected: expected, Found: found}
}

// maxRuleLen and maxDepth bound the work a rule text can cause.
const (
	maxRuleLen = 4096
	maxDepth   = 64
)

// typ is the type of an expression.
type typ uint8

const (
	tBool typ = iota + 1
	tNumber
	tDuration
	tString
)

func (t typ) String() string {
	switch t {
	case tBool:
		return "a condition"
	case tNumber:
		return "a number"
	case tDuration:
		return "a duration"
	case tString:
		return "a string"
	}
	return "?"
}

// change says how the value of an expression moves when only time passes.
type change uint8

const (
	cConst    change = iota // changes only with events: literals, count(E), share, top, rfm.f, rfm.m
	cLinear                 // grows 1 ms per ms: since(E), first(E)
	cBirthday               // until_birthday: falls 1 ms per ms to 0, holds 0 for the day, jumps a year
	cStep                   // piecewise constant with computable steps: count(E, W), rfm.r, lifecycle
	cDecay                  // interest(d, v): 2^(LogG − (T−L)/H) times the sign of G
)

// op is the operator of an expression node.
type op uint8

const (
	opOr op = iota + 1
	opAnd
	opNot
	opCmp
	opIdentified
	opInterest
	opShare
	opTop
	opCount
	opCountWindow
	opSince
	opFirst
	opBirthday
	opLifecycle
	opRFMR
	opRFMF
	opRFMM
	opTrait
	opInList
	opReceived
	opConverted
	opNum
	opDur
	opStr
)

// expr is a node of the checked syntax tree. Compile turns it into closures
// once; evaluation never walks it.
type expr struct {
	op     op
	pos    int
	typ    typ
	change change
	cmp    tokKind // opCmp: tokEq … tokGe
	args   []*expr // opOr, opAnd: ≥ 2; opNot: 1; opCmp: 2
	dim    string  // opInterest, opShare, opTop
	value  string  // opInterest, opShare: the value; opTrait: the key; opInList: the list; opStr: the string
	ev     event.Type
	window int64   // opCountWindow, in ms
	num    float64 // opNum
	dur    int64   // opDur, in ms
	text   string  // opNum, opDur, opCountWindow: the literal as written
}

// dimNames are the profile's dimension names a rule may name.
var dimNames = []string{"brand", "category", "age", "price", "product"}

// lifecycleStages are the values of the built-in lifecycle, in the order
// they are decided (see Lifecycle).
var lifecycleStages = []string{"prospect", "new", "active", "lost", "lapsing"}

const (
	dimsExpected   = "a dimension: brand, category, age, price or product"
	eventsExpected = "an event type: pageview, view, cart, uncart, purchase, identify or custom"
	termExpected   = "a condition or a term like interest(brand, \"X\"), since(cart), count(purchase, 30d), identified, in_list(\"crm\")"
)

type parser struct {
	lex   lexer
	tok   token
	depth int
}

// parse parses and type-checks src.
func parse(src string) (*expr, error) {
	if len(src) > maxRuleLen {
		return nil, errAt(maxRuleLen+1, "a rule of at most 4096 bytes", strconv.Itoa(len(src))+" bytes")
	}
	p := &parser{lex: lexer{src: src}}
	if err := p.advance(); err != nil {
		return nil, err
	}
	if p.tok.kind == tokEOF {
		return nil, errAt(p.tok.pos, termExpected, "an empty rule")
	}
	e, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tokEOF {
		if p.tok.kind == tokRParen {
			return nil, errAt(p.tok.pos, "and, or or the end of the rule (this ) closes nothing)", p.found())
		}
		return nil, errAt(p.tok.pos, "and, or or the end of the rule", p.found())
	}
	return e, nil
}

func (p *parser) advance() error {
	t, err := p.lex.next()
	p.tok = t
	if err != nil {
		return err
	}
	return nil
}

// found describes the current token for an error message.
func (p *parser) found() string {
	if p.tok.kind == tokEOF {
		return "end of rule"
	}
	return quote.Value(p.tok.text)
}

func (p *parser) expect(k tokKind, what string) (token, error) {
	t := p.tok
	if t.kind != k {
		return t, errAt(t.pos, what, p.found())
	}
	return t, p.advance()
}

func (p *parser) or() (*expr, error) {
	return p.binary(tokOr, opOr, p.and)
}

func (p *parser) and() (*expr, error) {
	return p.binary(tokAnd, opAnd, p.unary)
}

// binary parses sub {k sub} into one n-ary node.
func (p *parser) binary(k tokKind, o op, sub func() (*expr, error)) (*expr, error) {
	pos := p.tok.pos
	first, err := sub()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != k {
		return first, nil
	}
	n := &expr{op: o, pos: pos, typ: tBool, args: []*expr{first}}
	for p.tok.kind == k {
		if err := p.advance(); err != nil {
			return nil, err
		}
		e, err := sub()
		if err != nil {
			return nil, err
		}
		n.args = append(n.args, e)
	}
	return n, nil
}

func (p *parser) unary() (*expr, error) {
	if p.depth++; p.depth > maxDepth {
		return nil, errAt(p.tok.pos, "at most 64 nested not and parentheses", p.found())
	}
	defer func() { p.depth-- }()
	switch p.tok.kind {
	case tokNot:
		pos := p.tok.pos
		if err := p.advance(); err != nil {
			return nil, err
		}
		e, err := p.unary()
		if err != nil {
			return nil, err
		}
		return &expr{op: opNot, pos: pos, typ: tBool, args: []*expr{e}}, nil
	case tokLParen:
		open := p.tok.pos
		if err := p.advance(); err != nil {
			return nil, err
		}
		e, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.tok.kind != tokRParen {
			return nil, errAt(p.tok.pos, "and, or or ) to close the ( at "+strconv.Itoa(open), p.found())
		}
		return e, p.advance()
	}
	return p.comparison()
}

var cmpNames = map[tokKind]string{tokEq: "==", tokNe: "!=", tokLt: "<", tokLe: "<=", tokGt: ">", tokGe: ">="}

func isCmp(k tokKind) bool { return k >= tokEq && k <= tokGe }

func (p *parser) comparison() (*expr, error) {
	left, err := p.term()
	if err != nil {
		return nil, err
	}
	if !isCmp(p.tok.kind) {
		if left.typ == tBool {
			return left, nil
		}
		return nil, errAt(p.tok.pos, "a comparison (== != < <= > >=) after "+describe(left), p.found())
	}
	if left.typ == tBool {
		return nil, errAt(p.tok.pos, "and, or or the end of the rule ("+describe(left)+" is a condition, not a value to compare)", p.found())
	}
	c := &expr{op: opCmp, pos: p.tok.pos, typ: tBool, cmp: p.tok.kind}
	opTok := p.tok
	if err := p.advance(); err != nil {
		return nil, err
	}
	rightTok := p.tok
	right, err := p.term()
	if err != nil {
		return nil, err
	}
	c.args = []*expr{left, right}
	if err := checkCmp(c, left, right, opTok, rightTok); err != nil {
		return nil, err
	}
	return c, nil
}

// checkCmp type-checks left OP right.
func checkCmp(c, left, right *expr, opTok, rightTok token) error {
	if right.typ != left.typ {
		return errAt(rightTok.pos, expectedLike(left), foundTerm(right, rightTok))
	}
	if left.typ == tString {
		if c.cmp != tokEq && c.cmp != tokNe {
			return errAt(opTok.pos, "== or != to compare strings", quote.Value(opTok.text))
		}
		for _, pair := range [][2]*expr{{left, right}, {right, left}} {
			if pair[0].op == opLifecycle && pair[1].op == opStr && !contains(lifecycleStages, pair[1].value) {
				return errAt(pair[1].pos, "a lifecycle stage: \"prospect\", \"new\", \"active\", \"lapsing\" or \"lost\"", quote.Value(pair[1].value))
			}
		}
	}
	l, r := left.change, right.change
	switch {
	case l == cConst || r == cConst:
		return nil
	case l == cLinear && r == cLinear, l == cStep && r == cStep:
		return nil
	case l == cDecay && r == cDecay && left.dim == right.dim:
		return nil
	}
	return errAt(rightTok.pos, "a constant to compare "+describe(left)+" with (both sides change with time at different rates)", quote.Value(describe(right)))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// expectedLike says what a comparison with left needs on its right side.
func expectedLike(left *expr) string {
	switch left.typ {
	case tDuration:
		return "a duration like 24h or 7d"
	case tString:
		return "a string like \"0-3\""
	case tNumber:
		return "a number like 2.5"
	}
	return "a value"
}

func foundTerm(e *expr, t token) string {
	if e.op == opNum || e.op == opDur || e.op == opStr {
		return quote.Value(t.text)
	}
	return quote.Value(describe(e))
}

// term parses one value: a literal, a built-in name or a function call.
func (p *parser) term() (*expr, error) {
	t := p.tok
	e := &expr{pos: t.pos}
	switch t.kind {
	case tokNumber:
		e.op, e.typ, e.num, e.text = opNum, tNumber, t.num, t.text
		return e, p.advance()
	case tokDuration:
		e.op, e.typ, e.dur, e.text = opDur, tDuration, t.dur, t.text
		return e, p.advance()
	case tokString:
		e.op, e.typ, e.value = opStr, tString, t.str
		return e, p.advance()
	case tokIdent:
	default:
		return nil, errAt(t.pos, termExpected, p.found())
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	switch t.text {
	case "identified":
		e.op, e.typ = opIdentified, tBool
		return e, nil
	case "until_birthday":
		e.op, e.typ, e.change = opBirthday, tDuration, cBirthday
		return e, nil
	case "lifecycle":
		e.op, e.typ, e.change = opLifecycle, tString, cStep
		return e, nil
	case "rfm":
		if _, err := p.expect(tokDot, ". after rfm (rfm.r, rfm.f or rfm.m)"); err != nil {
			return nil, err
		}
		f := p.tok
		if f.kind != tokIdent || (f.text != "r" && f.text != "f" && f.text != "m") {
			return nil, errAt(f.pos, "r, f or m after rfm.", p.found())
		}
		e.typ = tNumber
		switch f.text {
		case "r":
			e.op, e.change = opRFMR, cStep
		case "f":
			e.op = opRFMF
		case "m":
			e.op = opRFMM
		}
		return e, p.advance()
	case "interest", "share", "top", "count", "since", "first", "trait", "in_list", "received", "converted":
	default:
		return nil, errAt(t.pos, termExpected, quote.Value(t.text))
	}
	if _, err := p.expect(tokLParen, "( after "+t.text); err != nil {
		return nil, err
	}
	switch t.text {
	case "interest", "share", "top":
		d, err := p.dimArg()
		if err != nil {
			return nil, err
		}
		e.dim = d
		e.typ = tNumber
		switch t.text {
		case "top":
			e.op, e.typ = opTop, tString
		case "interest":
			e.op, e.change = opInterest, cDecay
		case "share":
			e.op = opShare
		}
		if t.text != "top" {
			if _, err := p.expect(tokComma, ", then a quoted "+d); err != nil {
				return nil, err
			}
			s, err := p.expect(tokString, "a quoted "+d+" like \"Merries\"")
			if err != nil {
				return nil, err
			}
			e.value = s.str
		}
	case "count", "since", "first":
		ev, err := p.eventArg()
		if err != nil {
			return nil, err
		}
		e.ev = ev
		switch t.text {
		case "since":
			e.op, e.typ, e.change = opSince, tDuration, cLinear
		case "first":
			e.op, e.typ, e.change = opFirst, tDuration, cLinear
		case "count":
			e.op, e.typ = opCount, tNumber
			if p.tok.kind == tokComma {
				if err := p.advance(); err != nil {
					return nil, err
				}
				w := p.tok
				if w.kind != tokDuration || w.dur <= 0 {
					return nil, errAt(w.pos, "a window like 180d", p.found())
				}
				e.op, e.change, e.window, e.text = opCountWindow, cStep, w.dur, w.text
				if err := p.advance(); err != nil {
					return nil, err
				}
			}
		}
	case "trait":
		s, err := p.expect(tokString, "a quoted trait name like \"city\"")
		if err != nil {
			return nil, err
		}
		e.op, e.typ, e.value = opTrait, tString, s.str
	case "in_list":
		const want = "a quoted list name like \"crm-under-3\" (1..128 letters, digits, _, - and .)"
		s := p.tok
		if s.kind != tokString || lists.CheckName(s.str) != nil {
			return nil, errAt(s.pos, want, p.found())
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
		e.op, e.typ, e.value = opInList, tBool, s.str
	case "received", "converted":
		const want = "a quoted campaign id like \"7\""
		s := p.tok
		if s.kind != tokString || !campaignID(s.str) {
			return nil, errAt(s.pos, want, p.found())
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
		e.op, e.typ, e.value = opReceived, tBool, s.str
		if t.text == "converted" {
			e.op = opConverted
		}
	}
	if _, err := p.expect(tokRParen, closeExpected(e)); err != nil {
		return nil, err
	}
	return e, nil
}

// campaignID reports whether s spells a campaign id as the API does: a
// positive decimal number without a leading zero.
func campaignID(s string) bool {
	if s == "" || len(s) > 20 || s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func closeExpected(e *expr) string {
	if e.op == opCount {
		return ") or , and a window like 180d"
	}
	return ") to close " + strings.SplitN(describe(e), "(", 2)[0] + "("
}

func (p *parser) dimArg() (string, error) {
	t := p.tok
	if t.kind != tokIdent || !contains(dimNames, t.text) {
		return "", errAt(t.pos, dimsExpected, p.found())
	}
	return t.text, p.advance()
}

func (p *parser) eventArg() (event.Type, error) {
	t := p.tok
	var ev event.Type
	if t.kind == tokIdent {
		ev = event.ParseType([]byte(t.text))
	}
	if ev == event.TypeInvalid {
		return 0, errAt(t.pos, eventsExpected, p.found())
	}
	return ev, p.advance()
}

// describe returns the canonical spelling of a term, e.g.
// `interest(brand, "Nutrilon")`.
func describe(e *expr) string {
	return string(appendTerm(nil, e))
}

func appendTerm(dst []byte, e *expr) []byte {
	switch e.op {
	case opIdentified:
		return append(dst, "identified"...)
	case opInterest, opShare:
		name := "interest("
		if e.op == opShare {
			name = "share("
		}
		dst = append(dst, name...)
		dst = append(dst, e.dim...)
		dst = append(dst, ", "...)
		dst = appendQuoted(dst, e.value)
		return append(dst, ')')
	case opTop:
		return append(append(append(dst, "top("...), e.dim...), ')')
	case opCount:
		return append(append(append(dst, "count("...), e.ev.String()...), ')')
	case opCountWindow:
		dst = append(append(append(dst, "count("...), e.ev.String()...), ", "...)
		return append(append(dst, e.text...), ')')
	case opSince:
		return append(append(append(dst, "since("...), e.ev.String()...), ')')
	case opFirst:
		return append(append(append(dst, "first("...), e.ev.String()...), ')')
	case opBirthday:
		return append(dst, "until_birthday"...)
	case opLifecycle:
		return append(dst, "lifecycle"...)
	case opRFMR:
		return append(dst, "rfm.r"...)
	case opRFMF:
		return append(dst, "rfm.f"...)
	case opRFMM:
		return append(dst, "rfm.m"...)
	case opTrait:
		return append(appendQuoted(append(dst, "trait("...), e.value), ')')
	case opInList:
		return append(appendQuoted(append(dst, "in_list("...), e.value), ')')
	case opReceived:
		return append(appendQuoted(append(dst, "received("...), e.value), ')')
	case opConverted:
		return append(appendQuoted(append(dst, "converted("...), e.value), ')')
	case opNum:
		return append(dst, e.text...)
	case opDur:
		return append(dst, e.text...)
	case opStr:
		return appendQuoted(dst, e.value)
	case opNot:
		dst = append(dst, "not "...)
		return appendGroup(dst, e.args[0])
	case opAnd, opOr:
		sep := " and "
		if e.op == opOr {
			sep = " or "
		}
		for i, a := range e.args {
			if i > 0 {
				dst = append(dst, sep...)
			}
			if e.op == opOr && a.op == opAnd {
				dst = appendTerm(dst, a) // and binds tighter
			} else {
				dst = appendGroup(dst, a)
			}
		}
		return dst
	case opCmp:
		dst = appendTerm(dst, e.args[0])
		dst = append(append(append(dst, ' '), cmpNames[e.cmp]...), ' ')
		return appendTerm(dst, e.args[1])
	}
	return dst
}

// appendQuoted appends s as a string literal of the rule language: in
// double quotes, with " and \ escaped by a backslash and nothing else.
func appendQuoted(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			dst = append(dst, '\\')
		}
		dst = append(dst, s[i])
	}
	return append(dst, '"')
}

// appendGroup appends e, in parentheses when it is an and/or.
func appendGroup(dst []byte, e *expr) []byte {
	if e.op == opAnd || e.op == opOr {
		return append(appendTerm(append(dst, '('), e), ')')
	}
	return appendTerm(dst, e)
}

// appendDuration appends d in the largest units that divide it: 7d, 36h, 90s.
func appendDuration(dst []byte, d int64) []byte {
	units := []struct {
		n    int64
		name byte
	}{{day, 'd'}, {hour, 'h'}, {minute, 'm'}, {second, 's'}}
	for _, u := range units {
		if d%u.n == 0 && d != 0 {
			return append(strconv.AppendInt(dst, d/u.n, 10), u.name)
		}
	}
	if d == 0 {
		return append(dst, "0s"...)
	}
	return append(strconv.AppendInt(dst, d, 10), "ms"...)
}

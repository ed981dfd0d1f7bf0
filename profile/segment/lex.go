package segment

import (
	"strconv"
	"unicode/utf8"

	"github.com/affinityhq/affinity/internal/quote"
)

// tokKind is the lexical class of a token.
type tokKind uint8

const (
	tokEOF tokKind = iota
	tokIdent
	tokNumber   // 2.5, 1, -1.5
	tokDuration // 24h, 7d, 1d12h
	tokString   // "0-3"
	tokLParen
	tokRParen
	tokComma
	tokDot
	tokEq  // ==
	tokNe  // !=
	tokLt  // <
	tokLe  // <=
	tokGt  // >
	tokGe  // >=
	tokAnd // and, &&
	tokOr  // or, ||
	tokNot // not, !
	tokBad // a byte no token starts with; lexErr says why
)

// token is one lexeme of a rule. pos is its 1-based byte column.
type token struct {
	kind tokKind
	pos  int
	text string  // the source bytes of the token
	str  string  // tokString: the unquoted value
	num  float64 // tokNumber
	dur  int64   // tokDuration, in ms
}

// maxDuration bounds duration literals so that adding one to a Unix ms time
// cannot overflow: 10000 years.
const maxDuration = 10000 * 366 * day

const (
	second = int64(1000)
	minute = 60 * second
	hour   = 60 * minute
	day    = 24 * hour
	week   = 7 * day
)

// lexer splits rule text into tokens on demand.
type lexer struct {
	src string
	off int
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }

// next returns the next token. A malformed token comes back as tokBad with an
// *Error describing it.
func (l *lexer) next() (token, *Error) {
	for l.off < len(l.src) && (l.src[l.off] == ' ' || l.src[l.off] == '\t' || l.src[l.off] == '\n' || l.src[l.off] == '\r') {
		l.off++
	}
	start := l.off
	tok := token{pos: start + 1}
	if start >= len(l.src) {
		tok.kind = tokEOF
		return tok, nil
	}
	c := l.src[start]
	two := ""
	if start+1 < len(l.src) {
		two = l.src[start : start+2]
	}
	single := func(k tokKind, n int) (token, *Error) {
		l.off += n
		tok.kind, tok.text = k, l.src[start:l.off]
		return tok, nil
	}
	switch {
	case two == "==":
		return single(tokEq, 2)
	case two == "!=":
		return single(tokNe, 2)
	case two == "<=":
		return single(tokLe, 2)
	case two == ">=":
		return single(tokGe, 2)
	case two == "&&":
		return single(tokAnd, 2)
	case two == "||":
		return single(tokOr, 2)
	case c == '<':
		return single(tokLt, 1)
	case c == '>':
		return single(tokGt, 1)
	case c == '!':
		return single(tokNot, 1)
	case c == '(':
		return single(tokLParen, 1)
	case c == ')':
		return single(tokRParen, 1)
	case c == ',':
		return single(tokComma, 1)
	case c == '.':
		return single(tokDot, 1)
	case c == '=':
		l.off++
		tok.kind, tok.text = tokBad, "="
		return tok, errAt(tok.pos, "== (a single = is not an operator)", quote.Value(tok.text))
	case c == '"':
		return l.string(tok)
	case isDigit(c) || c == '-':
		return l.number(tok)
	case isLetter(c):
		for l.off < len(l.src) && (isLetter(l.src[l.off]) || isDigit(l.src[l.off])) {
			l.off++
		}
		tok.kind, tok.text = tokIdent, l.src[start:l.off]
		switch tok.text {
		case "and":
			tok.kind = tokAnd
		case "or":
			tok.kind = tokOr
		case "not":
			tok.kind = tokNot
		}
		return tok, nil
	}
	_, n := utf8.DecodeRuneInString(l.src[start:])
	l.off += n
	tok.kind, tok.text = tokBad, l.src[start:l.off]
	return tok, errAt(tok.pos, "a term, an operator or a parenthesis", quote.Value(tok.text))
}

// string lexes a double-quoted string; \" and \\ are the only escapes.
func (l *lexer) string(tok token) (token, *Error) {
	start := l.off
	l.off++
	var buf []byte
	plain := true
	for l.off < len(l.src) {
		c := l.src[l.off]
		switch c {
		case '"':
			l.off++
			tok.kind, tok.text = tokString, l.src[start:l.off]
			if plain {
				tok.str = l.src[start+1 : l.off-1]
			} else {
				tok.str = string(buf)
			}
			return tok, nil
		case '\\':
			if l.off+1 >= len(l.src) || (l.src[l.off+1] != '"' && l.src[l.off+1] != '\\') {
				tok.kind, tok.text = tokBad, l.src[start:min(l.off+2, len(l.src))]
				return tok, errAt(l.off+1, `\" or \\ (the only escapes in a string)`, quote.Value(l.src[l.off:min(l.off+2, len(l.src))]))
			}
			if plain {
				buf = append(buf, l.src[start+1:l.off]...)
				plain = false
			}
			buf = append(buf, l.src[l.off+1])
			l.off += 2
		default:
			if !plain {
				buf = append(buf, c)
			}
			l.off++
		}
	}
	tok.kind, tok.text = tokBad, l.src[start:]
	return tok, errAt(len(l.src)+1, `a closing " for the string at `+strconv.Itoa(tok.pos), "end of rule")
}

// number lexes a number (-?digits[.digits]) or a duration (digits unit
// {digits unit}, units s m h d w).
func (l *lexer) number(tok token) (token, *Error) {
	start := l.off
	neg := l.src[l.off] == '-'
	if neg {
		l.off++
	}
	digits := func() int {
		s := l.off
		for l.off < len(l.src) && isDigit(l.src[l.off]) {
			l.off++
		}
		return l.off - s
	}
	if digits() == 0 {
		tok.kind, tok.text = tokBad, l.src[start:l.off]
		return tok, errAt(tok.pos+1, "a digit after -", foundAt(l.src, l.off))
	}
	if l.off < len(l.src) && l.src[l.off] == '.' {
		l.off++
		if digits() == 0 {
			tok.kind, tok.text = tokBad, l.src[start:l.off]
			return tok, errAt(l.off+1, "a digit after the decimal point", foundAt(l.src, l.off))
		}
		if l.off < len(l.src) && isLetter(l.src[l.off]) {
			l.wordEnd()
			tok.kind, tok.text = tokBad, l.src[start:l.off]
			return tok, errAt(tok.pos, "a number like 2.5 or a whole-number duration like 36h", quote.Value(tok.text))
		}
	} else if l.off < len(l.src) && isLetter(l.src[l.off]) {
		if neg {
			l.wordEnd()
			tok.kind, tok.text = tokBad, l.src[start:l.off]
			return tok, errAt(tok.pos, "a duration without a sign", quote.Value(tok.text))
		}
		return l.duration(tok, start)
	}
	tok.text = l.src[start:l.off]
	f, err := strconv.ParseFloat(tok.text, 64)
	if err != nil {
		tok.kind = tokBad
		return tok, errAt(tok.pos, "a number of sensible size", quote.Value(tok.text))
	}
	tok.kind, tok.num = tokNumber, f
	return tok, nil
}

func (l *lexer) wordEnd() {
	for l.off < len(l.src) && (isLetter(l.src[l.off]) || isDigit(l.src[l.off])) {
		l.off++
	}
}

func (l *lexer) duration(tok token, start int) (token, *Error) {
	l.off = start
	var total int64
	for {
		ds := l.off
		for l.off < len(l.src) && isDigit(l.src[l.off]) {
			l.off++
		}
		if l.off == ds {
			// a trailing letter run after a complete duration: 1d2x
			break
		}
		us := l.off
		for l.off < len(l.src) && isLetter(l.src[l.off]) {
			l.off++
		}
		var unit int64
		switch l.src[us:l.off] {
		case "s":
			unit = second
		case "m":
			unit = minute
		case "h":
			unit = hour
		case "d":
			unit = day
		case "w":
			unit = week
		default:
			bad := l.src[us:l.off]
			l.wordEnd()
			tok.kind, tok.text = tokBad, l.src[start:l.off]
			if bad == "" {
				return tok, errAt(us+1, "a duration unit s, m, h, d or w", foundAt(l.src, us))
			}
			return tok, errAt(us+1, "a duration unit s, m, h, d or w", quote.Value(bad))
		}
		n, err := strconv.ParseInt(l.src[ds:us], 10, 64)
		if err != nil || n > maxDuration/unit || total+n*unit > maxDuration {
			l.wordEnd()
			tok.kind, tok.text = tokBad, l.src[start:l.off]
			return tok, errAt(tok.pos, "a duration of at most 10000 years", quote.Value(tok.text))
		}
		total += n * unit
		if l.off >= len(l.src) || !isDigit(l.src[l.off]) {
			break
		}
	}
	tok.kind, tok.text, tok.dur = tokDuration, l.src[start:l.off], total
	return tok, nil
}

// foundAt describes what the source holds at byte offset off, for errors.
func foundAt(src string, off int) string {
	if off >= len(src) {
		return "end of rule"
	}
	_, n := utf8.DecodeRuneInString(src[off:])
	return quote.Value(src[off : off+n])
}

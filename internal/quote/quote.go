package quote

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Max bounds how many bytes of an offending value an error message repeats.
const Max = 64

// Value returns s Go-quoted for an error message, cut to Max bytes on a
// rune boundary and followed by "…" when cut.
func Value[T ~string | ~[]byte](s T) string {
	s, cut := Cut(s)
	q := strconv.Quote(string(s))
	if cut {
		q += "…"
	}
	return q
}

// Cut returns s cut to at most Max bytes, on a rune boundary when one lies
// within the last utf8.UTFMax bytes, and whether it cut. The result aliases
// s.
func Cut[T ~string | ~[]byte](s T) (T, bool) {
	if len(s) <= Max {
		return s, false
	}
	n := Max
	for n > Max-utf8.UTFMax && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n], true
}

// OneLine returns s with its line breaks and tabs turned into spaces, so
// that a message quoting user input stays one line (a response's reason,
// a log line).
func OneLine(s string) string {
	if !strings.ContainsAny(s, "\n\r\t") {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		return r
	}, s)
}

package duration

import (
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"time"

	"github.com/affinityhq/affinity/internal/quote"
)

// units are the unit names and their lengths in nanoseconds.
var units = map[string]int64{
	"ns": int64(time.Nanosecond),
	"us": int64(time.Microsecond),
	"µs": int64(time.Microsecond), // U+00B5 micro sign
	"μs": int64(time.Microsecond), // U+03BC Greek mu
	"ms": int64(time.Millisecond),
	"s":  int64(time.Second),
	"m":  int64(time.Minute),
	"h":  int64(time.Hour),
	"d":  int64(24 * time.Hour),
	"w":  int64(7 * 24 * time.Hour),
}

// Parse parses a duration: "0", or a sequence of terms, each a decimal
// number (digits, an optional fraction) and a unit ns, us (µs), ms, s, m,
// h, d (24h) or w (7d), e.g. "90s", "1h30m", "1.5h", "14d", "2w", "1d12h".
// A leading "+" is allowed; a negative duration is refused. The result
// must fit a time.Duration (about 292 years). The error quotes s.
func Parse(s string) (time.Duration, error) {
	d, err := parse(s, 1)
	return time.Duration(d), err
}

// ParseMs is Parse in milliseconds, truncating finer parts: it takes
// durations up to 292 million years.
func ParseMs(s string) (int64, error) {
	return parse(s, int64(time.Millisecond))
}

// parse returns the duration s in multiples of base nanoseconds, a unit
// length of the table or 1.
func parse(s string, base int64) (int64, error) {
	orig := s
	if s == "0" || s == "+0" || s == "-0" {
		return 0, nil
	}
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "" {
		return 0, fmt.Errorf("invalid duration %q: want e.g. 90s, 15m, 12h, 7d, 2w", orig)
	}
	var total int64
	for s != "" {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		intPart := s[:i]
		fracPart := ""
		if i < len(s) && s[i] == '.' {
			j := i + 1
			for j < len(s) && s[j] >= '0' && s[j] <= '9' {
				j++
			}
			fracPart, i = s[i+1:j], j
		}
		if intPart == "" && fracPart == "" {
			return 0, fmt.Errorf("invalid duration %q: want e.g. 90s, 15m, 12h, 7d, 2w", orig)
		}
		j := i
		for j < len(s) && s[j] != '.' && (s[j] < '0' || s[j] > '9') {
			j++
		}
		unit, ok := units[s[i:j]]
		if !ok && i < j {
			return 0, fmt.Errorf("invalid duration %q: want a unit s, m, h, d or w, found %s", orig, quote.Value(s[i:j]))
		}
		if !ok {
			return 0, fmt.Errorf("invalid duration %q: want e.g. 90s, 15m, 12h, 7d, 2w", orig)
		}
		v, ok := term(intPart, fracPart, unit, base)
		if !ok || v > math.MaxInt64-total {
			return 0, fmt.Errorf("invalid duration %q: out of range", orig)
		}
		total += v
		s = s[j:]
	}
	if neg && total != 0 {
		return 0, fmt.Errorf("invalid duration %q: negative", orig)
	}
	return total, nil
}

// term returns intPart.fracPart × unit in multiples of base, truncated, and
// false when it overflows int64.
func term(intPart, fracPart string, unit, base int64) (int64, bool) {
	var n int64
	for _, c := range []byte(intPart) {
		if n > (math.MaxInt64-9)/10 {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	// The fraction to 18 digits, as f / scale.
	var f, scale int64 = 0, 1
	for _, c := range []byte(fracPart) {
		if scale > math.MaxInt64/100 {
			break
		}
		f, scale = f*10+int64(c-'0'), scale*10
	}
	if unit < base { // finer than the result: only whole bases count
		per := base / unit
		return n / per, true // the fraction of a unit finer than base is < 1 base
	}
	per := unit / base
	if n > math.MaxInt64/per {
		return 0, false
	}
	v := n * per
	// f/scale × per, truncated: f < scale, so the quotient is < per.
	hi, lo := bits.Mul64(uint64(f), uint64(per))
	q, _ := bits.Div64(hi, lo, uint64(scale))
	fv := int64(q)
	if fv > math.MaxInt64-v {
		return 0, false
	}
	return v + fv, true
}

// Format prints whole days as "7d" and anything else as Go does: Parse
// reads it back.
func Format(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}

package duration

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	const day = 24 * time.Hour
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"0", 0},
		{"+0", 0},
		{"-0s", 0},
		{"0s", 0},
		{"90s", 90 * time.Second},
		{"15m", 15 * time.Minute},
		{"12h", 12 * time.Hour},
		{"1h30m", 90 * time.Minute},
		{"1.5h", 90 * time.Minute},
		{".5m", 30 * time.Second},
		{"1.s", time.Second},
		{"+1h", time.Hour},
		{"250ms", 250 * time.Millisecond},
		{"3us", 3 * time.Microsecond},
		{"3µs", 3 * time.Microsecond},
		{"3μs", 3 * time.Microsecond},
		{"7ns", 7},
		{"0.3s", 300 * time.Millisecond},
		{"14d", 14 * day},
		{"2w", 14 * day},
		{"1d12h", 36 * time.Hour},
		{"12h1d", 36 * time.Hour},
		{"1w1d1h1m1s", 8*day + time.Hour + time.Minute + time.Second},
		{"1h1h", 2 * time.Hour},
		{"2562047h", 2562047 * time.Hour},
		{"36600d", 36600 * day},
	} {
		got, err := Parse(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"", "want e.g. 90s"},
		{"+", "want e.g. 90s"},
		{"d", "want e.g. 90s"},
		{"14", "want e.g. 90s"},
		{"1y", `want a unit s, m, h, d or w, found "y"`},
		{"1 h", `found " h"`},
		{"1h ", `found "h "`},
		{".h", "want e.g. 90s"},
		{"1..5h", "want e.g. 90s"},
		{"-1h", "negative"},
		{"99999999999d", "out of range"},
		{"2562048h", "out of range"},
		{"99999999999999999999s", "out of range"},
	} {
		_, err := Parse(tc.in)
		if err == nil || !strings.Contains(err.Error(), `"`+tc.in+`"`) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q): error %v; want one quoting the input and saying %q", tc.in, err, tc.want)
		}
	}
}

func TestParseMs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"24h", 86400000},
		{"7d", 7 * 86400000},
		{"1d12h", 36 * 3600000},
		{"1.5s", 1500},
		{"1500us", 1},
		{"999us", 0},
		{"10000w", 10000 * 7 * 86400000}, // past time.Duration's 292 years
	} {
		got, err := ParseMs(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseMs(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if _, err := ParseMs("99999999999999w"); err == nil {
		t.Errorf("ParseMs of 99999999999999w: no error")
	}
}

// FuzzParse: no input panics; what Go's time.ParseDuration accepts as a
// non-negative duration, Parse accepts with the same value; Parse and
// ParseMs agree.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"0", "90s", "1h30m", "1.5h", "14d", "2w", "1d12h", "250ms", "3µs", "-1h", "", "1y", "99999999999d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := Parse(s)
		if err == nil && d < 0 {
			t.Fatalf("Parse(%q) = %v: negative", s, d)
		}
		if gd, gerr := time.ParseDuration(s); gerr == nil && gd >= 0 {
			if err != nil || d-gd > 1 || gd-d > 1 {
				t.Fatalf("Parse(%q) = %v, %v; time.ParseDuration gives %v", s, d, err, gd)
			}
		}
		ms, merr := ParseMs(s)
		if err == nil && (merr != nil || ms < d.Milliseconds()-int64(len(s)) || ms > d.Milliseconds()) {
			t.Fatalf("ParseMs(%q) = %v, %v; Parse gives %v", s, ms, merr, d)
		}
	})
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		in   time.Duration
		want string
	}{{0, "0s"}, {14 * 24 * time.Hour, "14d"}, {36 * time.Hour, "36h0m0s"}, {90 * time.Second, "1m30s"}} {
		got := Format(tc.in)
		if got != tc.want {
			t.Errorf("Format(%v) = %q; want %q", tc.in, got, tc.want)
		}
		if back, err := Parse(got); err != nil || back != tc.in {
			t.Errorf("Parse(Format(%v)) = %v, %v", tc.in, back, err)
		}
	}
}

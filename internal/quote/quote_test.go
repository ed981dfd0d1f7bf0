package quote

import (
	"strings"
	"testing"
)

func TestValue(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := Value(in); got != want {
			t.Fatalf("Value(%q) = %s; want %s", in, got, want)
		}
		if got := Value([]byte(in)); got != want {
			t.Fatalf("Value([]byte(%q)) = %s; want %s", in, got, want)
		}
	}
	f("", `""`)
	f("a\"b", `"a\"b"`)
	f("tab\there\n", `"tab\there\n"`)
	f("\xff", `"\xff"`)
	f(strings.Repeat("a", Max), `"`+strings.Repeat("a", Max)+`"`)
	f(strings.Repeat("a", Max+1), `"`+strings.Repeat("a", Max)+`"…`)
	// a cut never splits a rune: 32 × "é" is 64 bytes, one more "x" cuts
	f(strings.Repeat("é", 32)+"x", `"`+strings.Repeat("é", 32)+`"…`)
	f("x"+strings.Repeat("é", 32), `"x`+strings.Repeat("é", 31)+`"…`)
	// bytes that are not UTF-8 are cut at most utf8.UTFMax bytes early
	f(strings.Repeat("\x80", Max+1), `"`+strings.Repeat(`\x80`, Max-4)+`"…`)
}

func TestCut(t *testing.T) {
	for _, tc := range []struct {
		in      string
		wantLen int
		wantCut bool
	}{
		{"", 0, false},
		{strings.Repeat("a", Max), Max, false},
		{strings.Repeat("a", Max+10), Max, true},
		{"x" + strings.Repeat("€", 30), Max, true},      // a rune starts at byte 64
		{"xx" + strings.Repeat("€", 30), Max - 2, true}, // the rune at byte 64 starts at 62
	} {
		got, cut := Cut(tc.in)
		if len(got) != tc.wantLen || cut != tc.wantCut || !strings.HasPrefix(tc.in, got) {
			t.Errorf("Cut(%q) = %q, %v; want %d bytes, %v", tc.in, got, cut, tc.wantLen, tc.wantCut)
		}
	}
}

func TestOneLine(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"plain", "plain"},
		{"a\nb", "a b"},
		{"a\r\nb\tc", "a  b c"},
		{"ünïcode\n✓", "ünïcode ✓"},
	} {
		if got := OneLine(tc.in); got != tc.want {
			t.Errorf("OneLine(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

package event

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{
		"", "plain", `quote " and \ backslash`, "ctl \x00\x01\x1f\t\n\r", "utf-8 éè 😀",
		"bad \xff utf-8", "js line sep \u2028 and \u2029", "<script>&", strings.Repeat("x", 300),
	} {
		out := AppendJSONString([]byte("prefix:"), s)
		if !strings.HasPrefix(string(out), "prefix:") {
			t.Fatalf("%q: dst prefix lost", s)
		}
		var back string
		if err := json.Unmarshal(out[len("prefix:"):], &back); err != nil {
			t.Fatalf("%q: output %s is not JSON: %v", s, out, err)
		}
		want := strings.ToValidUTF8(s, "\ufffd")
		if back != want {
			t.Errorf("%q: decodes to %q, want %q", s, back, want)
		}
		if strings.ContainsRune(string(out), '\u2028') || strings.ContainsRune(string(out), '\u2029') {
			t.Errorf("%q: raw U+2028/U+2029 in %s: not valid JavaScript", s, out)
		}
		if !utf8.Valid(out) {
			t.Errorf("%q: output is not valid UTF-8", s)
		}
	}
}

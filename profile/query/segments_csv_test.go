package query

import (
	"strconv"
	"testing"

	"github.com/affinityhq/affinity/tracker/event"
)

// jsonToCSVRef is how the export turned a fact into a CSV field before
// jsonToCSV: jsonToCSV must give the same bytes.
func jsonToCSVRef(out []byte, n int) []byte {
	if string(out[n:]) == "null" {
		return out[:n]
	} else if out[n] == '"' {
		if s, err := strconv.Unquote(string(out[n:])); err == nil {
			return appendCSV(out[:n], s)
		}
	}
	return out
}

// FuzzJSONToCSV compares jsonToCSV with the reference on JSON strings of
// any text (as facts are made) and on raw values.
func FuzzJSONToCSV(f *testing.F) {
	for _, s := range []string{"", "0-3", "Nutrilon", `Ac,"me"`, "=cmd", "O'Brien, \"Jr\"\x01 Zoë", "a\nb", "\xff\xfe", "back\\slash", "-1", " lead"} {
		f.Add(s, true)
	}
	f.Add("null", false)
	f.Add("1.5e+06", false)
	f.Add(`"unterminated`, false)
	f.Add(`"`, false)
	var sc segScratch
	f.Fuzz(func(t *testing.T, s string, asJSON bool) {
		v := []byte(s)
		if asJSON {
			v = event.AppendJSONString(nil, s)
		}
		if len(v) == 0 {
			return // AppendValue always appends a value
		}
		prefix := []byte("a,b,")
		in := append(append([]byte(nil), prefix...), v...)
		want := jsonToCSVRef(append([]byte(nil), in...), len(prefix))
		got := sc.jsonToCSV(in, len(prefix))
		if string(got) != string(want) {
			t.Fatalf("value %q: got %q; want %q", v, got, want)
		}
	})
}

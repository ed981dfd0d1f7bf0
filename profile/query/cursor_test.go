package query

import (
	"testing"

	"github.com/affinityhq/affinity/storage/state"
)

func TestCursorRoundTrip(t *testing.T) {
	f := func(pos state.InterestPos, at int64) {
		t.Helper()
		c := appendCursor(nil, pos, at)
		gotPos, gotAt, err := decodeCursor(c)
		if err != nil || gotPos != pos || gotAt != at {
			t.Fatalf("cursor %s: got %+v %d %v; want %+v %d", c, gotPos, gotAt, err, pos, at)
		}
	}
	f(state.InterestPos{}, 0)
	f(state.InterestPos{Key: 1<<64 - 1, Visitor: [16]byte{1, 2, 3, 255}}, -1)
	f(state.InterestPos{Key: 12345, Visitor: [16]byte{15: 9}}, 1795500015495)
}

// FuzzDecodeCursor feeds decodeCursor what clients may send: it must not
// panic, and what it accepts re-encodes to the same cursor.
func FuzzDecodeCursor(f *testing.F) {
	f.Add(string(appendCursor(nil, state.InterestPos{Key: 42, Visitor: [16]byte{7}}, 1795500015495)))
	f.Add("AQAAAAAAAAAqBwAAAAAAAAAAAAAAAAAAAAAAAAGiRhTnhw")
	f.Add("")
	f.Add("====")
	f.Fuzz(func(t *testing.T, s string) {
		pos, at, err := decodeCursor([]byte(s))
		if err != nil {
			return
		}
		if again := string(appendCursor(nil, pos, at)); again != s {
			t.Fatalf("cursor %q decodes to %+v %d, which encodes to %q", s, pos, at, again)
		}
	})
}

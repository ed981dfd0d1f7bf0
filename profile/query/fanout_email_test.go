package query

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/tracker/event"
)

func TestEmailCandidateRoundTrip(t *testing.T) {
	v := event.UUID{1, 2, 3, 4, 5, 6, 0x47, 8, 0x89, 10, 11, 12, 13, 14, 15, 16}
	for _, email := range []string{"ann@example.com", "a b\n\"c\"@x", "é@ü.de"} {
		rest := `,"visitor":"x","entered":"…"}` + "\n"
		row := append(appendEmailCandidate(nil, v, []byte(email)), rest...)
		if bytes.ContainsAny(row[:len(row)-len(rest)], "\n\"") {
			t.Errorf("%q: prefix %q holds a line break or a quote", email, row)
		}
		gotV, gotEmail, gotRest, err := parseEmailCandidate([]byte("keep:"), row)
		if err != nil || gotV != v || string(gotEmail) != "keep:"+email || string(gotRest) != rest {
			t.Errorf("%q: %s %q %q %v; want %s, keep:+the email, the rest", email, gotV, gotEmail, gotRest, err, v)
		}
	}
	for _, bad := range []string{"", "not-a-uuid", "01020304-0506-4708-890a-0b0c0d0e0f10", "01020304-0506-4708-890a-0b0c0d0e0f10 zz {}", "01020304-0506-4708-890a-0b0c0d0e0f10  {}"} {
		if _, _, _, err := parseEmailCandidate(nil, []byte(bad)); err == nil || !bytes.Contains([]byte(err.Error()), []byte("invalid candidate row")) {
			t.Errorf("%q: err %v; want one naming the row", bad, err)
		}
	}
}

func TestEmailLookupRoundTrip(t *testing.T) {
	emails := [][]byte{[]byte("a@x"), []byte(""), []byte("é@ü.de")}
	var got []string
	if err := decodeEmailLookup(appendEmailLookup(nil, emails), func(e string) error { got = append(got, e); return nil }); err != nil || fmt.Sprintf("%q", got) != `["a@x" "" "é@ü.de"]` {
		t.Fatalf("decoded %q, %v", got, err)
	}
	f := func(name string, body []byte, want string) {
		t.Helper()
		err := decodeEmailLookup(body, func(string) error { return nil })
		var ie *invalid.Error
		if err == nil || !errors.As(err, &ie) || !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("%s: %v; want an invalid.Error containing %q", name, err, want)
		}
	}
	f("empty", nil, "truncated")
	f("version 2", []byte{2, 0}, "version 2")
	f("count past the body", []byte{1, 5, 0}, "count 5 cannot fit")
	f("trailing", append(appendEmailLookup(nil, emails), 0), "trailing")
	f("too many", append([]byte{1}, 0xa0, 0x1f), "invalid email lookup") // 4000 with no room for them

	answer := []byte{emailLookupVersion, 2}
	answer = append(answer, make([]byte, 32)...)
	answer = append(answer, 0)
	var n int
	if err := decodeEmailMembers(answer, 2, func(i int, _ event.UUID) { n += i + 1 }); err != nil || n != 2 {
		t.Fatalf("answer: %d visitors of email 0, %v; want 2", n, err)
	}
	if err := decodeEmailMembers(answer, 1, func(int, event.UUID) {}); err == nil {
		t.Error("an answer of 2 emails read as 1: no error")
	}
}

// FuzzDecodeEmailJoin feeds the by=email join's decoders what an owner
// could send: a lookup body, an answer, a candidate row.
func FuzzDecodeEmailJoin(f *testing.F) {
	f.Add(appendEmailLookup(nil, [][]byte{[]byte("ann@example.com"), []byte("b@x")}), 2)
	f.Add(append([]byte{emailLookupVersion, 1}, make([]byte, 17)...), 2)
	f.Add(appendEmailCandidate(nil, event.UUID{1}, []byte("ann@example.com")), 1)
	f.Add([]byte{}, 0)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		var emails [][]byte
		if err := decodeEmailLookup(b, func(e string) error { emails = append(emails, []byte(e)); return nil }); err == nil {
			if again := appendEmailLookup(nil, emails); !bytes.Equal(again, b) {
				t.Fatalf("lookup %x decodes to %q, which encodes to %x", b, emails, again)
			}
		}
		_ = decodeEmailMembers(b, min(max(n, 0), 1<<10), func(int, event.UUID) {})
		if v, email, rest, err := parseEmailCandidate(nil, b); err == nil {
			if again := append(appendEmailCandidate(nil, v, email), rest...); !bytes.EqualFold(again, b) {
				t.Fatalf("row %q parses to %s %q %q, which writes %q", b, v, email, rest, again)
			}
		}
	})
}

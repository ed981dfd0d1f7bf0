package query

import (
	"bytes"
	"errors"
	"testing"

	"github.com/affinityhq/affinity/internal/codec"
	"github.com/affinityhq/affinity/profile/invalid"
)

func TestDecodeHandedMarks(t *testing.T) {
	marks := [][]byte{[]byte("P-one"), {}, []byte("P-three")}
	got, err := decodeHandedMarks(appendHandedMarks(nil, marks))
	if err != nil || len(got) != 3 || !bytes.Equal(got[0], marks[0]) || len(got[1]) != 0 || !bytes.Equal(got[2], marks[2]) {
		t.Fatalf("round trip: %q %v; want %q", got, err, marks)
	}
	for _, c := range []struct {
		name string
		body []byte
	}{
		{"empty", nil},
		{"no marks", []byte{handedMarksVersion, 0}},
		{"truncated", appendHandedMarks(nil, marks)[:9]},
		{"trailing byte", append(appendHandedMarks(nil, marks), 0)},
		{"too many", codec.AppendUvarint([]byte{handedMarksVersion}, maxHandedMarks+1)},
		{"version 2", append([]byte{2}, appendHandedMarks(nil, marks)[1:]...)},
	} {
		_, err := decodeHandedMarks(c.body)
		if ie := (*invalid.Error)(nil); !errors.As(err, &ie) {
			t.Errorf("%s: %v; want an *invalid.Error", c.name, err)
		}
	}
}

// FuzzDecodeHandedMarks: the body of POST /v1/internal/persons never
// panics the decoder, and what decodes re-encodes to a body that decodes
// the same.
func FuzzDecodeHandedMarks(f *testing.F) {
	f.Add(appendHandedMarks(nil, [][]byte{[]byte("P\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x04shoph\x05event\x06linked\x0de:a@b.example")}))
	f.Add([]byte{handedMarksVersion, 2, 1, 'a', 0})
	f.Fuzz(func(t *testing.T, body []byte) {
		marks, err := decodeHandedMarks(body)
		if err != nil {
			return
		}
		again, err := decodeHandedMarks(appendHandedMarks(nil, marks))
		if err != nil || len(again) != len(marks) {
			t.Fatalf("%x decodes to %q, which re-encoded decodes to %q, %v", body, marks, again, err)
		}
		for i := range marks {
			if !bytes.Equal(again[i], marks[i]) {
				t.Fatalf("%x: mark %d %q re-decodes as %q", body, i, marks[i], again[i])
			}
		}
	})
}

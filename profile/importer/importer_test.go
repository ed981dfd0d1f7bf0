package importer

import (
	"slices"
	"testing"
)

func TestIDRoundTrip(t *testing.T) {
	f := func(marks []mark, want string) {
		t.Helper()
		id := encodeID(marks)
		if want != "" && id != want {
			t.Fatalf("encodeID(%v) = %q; want %q", marks, id, want)
		}
		got, err := decodeID(id, 8)
		if err != nil || !slices.Equal(got, marks) && len(marks) > 0 {
			t.Fatalf("decodeID(%q) = %v, %v; want %v", id, got, err, marks)
		}
	}
	f(nil, "AQA")
	f([]mark{{0, 120}}, "AQEAeA")
	f([]mark{{1, 1 << 40}, {7, 0}}, "")
}

func TestDecodeIDRefuses(t *testing.T) {
	f := func(id, want string) {
		t.Helper()
		if _, err := decodeID(id, 4); err == nil || err.Error() != want {
			t.Fatalf("decodeID(%q) = %v; want %q", id, err, want)
		}
	}
	f("", `invalid import id "": not an id POST /v1/import answered`)
	f("!!", `invalid import id "!!": not an id POST /v1/import answered`)
	f("AgA", `invalid import id "AgA": version 2, this build reads 1`)
	f("AQEEeA", `invalid import id "AQEEeA": partition or offset out of range`)
	f("AQIBAQEB", `invalid import id "AQIBAQEB": partitions out of order`)
	f("AQEA", `invalid import id "AQEA": truncated`)
	f("AQEAeAA", `invalid import id "AQEAeAA": trailing bytes`)
}

func FuzzDecodeID(f *testing.F) {
	f.Add("AQEAeA")
	f.Add(encodeID([]mark{{1, 1 << 40}, {3, 9}}))
	f.Add("AQ")
	f.Fuzz(func(t *testing.T, id string) {
		marks, err := decodeID(id, 4)
		if err != nil {
			return
		}
		if again, err := decodeID(encodeID(marks), 4); err != nil || !slices.Equal(again, marks) {
			t.Fatalf("re-encoding %v: %v, %v", marks, again, err)
		}
	})
}

func TestVisitor(t *testing.T) {
	a := Visitor("s1", "C-1", "ann@example.com")
	if a != Visitor("s1", "C-1", "other@example.com") {
		t.Errorf("the customer id names the person: the email must not change the visitor")
	}
	if a == Visitor("s2", "C-1", "") || a == Visitor("s1", "C-2", "") || a == Visitor("s1", "", "C-1") {
		t.Errorf("visitors of another site, customer or of an email equal to the customer id must differ")
	}
	if a[6]>>4 != 5 || a[8]>>6 != 2 {
		t.Errorf("Visitor %s is not a version 5 UUID", a)
	}
	if got, want := EventID("s1", "A-1").String(), EventID("s1", "A-1").String(); got != want {
		t.Errorf("EventID is not deterministic: %s, %s", got, want)
	}
}

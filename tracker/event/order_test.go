package event

import "testing"

func TestOrderSet(t *testing.T) {
	var s OrderSet
	for _, id := range []string{"A-2", "A-1", "A-2", "B-9"} {
		s = s.Add(OrderKey(id))
	}
	if len(s) != 3 {
		t.Fatalf("%d keys; want 3", len(s))
	}
	for i := 1; i < len(s); i++ {
		if s[i-1] >= s[i] {
			t.Fatalf("keys %x not ascending", s)
		}
	}
	for _, id := range []string{"A-1", "A-2", "B-9"} {
		if !s.Has(OrderKey(id)) {
			t.Errorf("order %q not found", id)
		}
	}
	if s.Has(OrderKey("A-3")) {
		t.Errorf("order A-3 found; never added")
	}
	// Stored in state: the hash must never change.
	if got := OrderKey("a"); got != 0xaf63dc4c8601ec8c {
		t.Errorf("OrderKey(\"a\") = %#x; want 0xaf63dc4c8601ec8c", got)
	}
	if OrderKey([]byte("a")) != OrderKey("a") {
		t.Errorf("OrderKey of bytes and string differ")
	}
}

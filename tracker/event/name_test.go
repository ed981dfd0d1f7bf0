package event

import "testing"

// TestNameUUID pins NameUUID to RFC 9562 version 5 (the values are
// Python's uuid.uuid5 of the namespace and "kind\x00site\x00id"): stored
// visitors and event ids depend on it never changing.
func TestNameUUID(t *testing.T) {
	f := func(kind byte, site, id, want string) {
		t.Helper()
		if got, _ := NameUUID(nil, kind, site, id); got.String() != want {
			t.Errorf("NameUUID(%c, %q, %q) = %s; want %s", kind, site, id, got, want)
		}
	}
	f(NameCustomer, "shop", "c-1", "c8f4d95b-bab4-5680-aa9c-eb6db3e30b9e")
	f(NameOrder, "shop", "ord-42", "8185eb80-9bba-554a-b019-7c8b8b25b035")
	scratch := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { _, scratch = NameUUID(scratch, NameMessage, "shop", "node-next-1767225500000-a1") }); n != 0 {
		t.Errorf("NameUUID with a scratch buffer: %v allocs; want 0", n)
	}
}

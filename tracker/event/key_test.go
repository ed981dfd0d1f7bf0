package event

import "testing"

func TestAppendLogKey(t *testing.T) {
	f := func(site string, visitor UUID, want string) {
		t.Helper()
		if got := AppendLogKey([]byte("x"), site, visitor); string(got) != "x"+want {
			t.Fatalf("AppendLogKey(%q, %s) = %q; want %q", site, visitor, got[1:], want)
		}
	}
	v, _ := ParseUUID([]byte("0B9E6C1A-3C1F-4C47-9D0E-5B6A2F1E7D3C"))
	f("demo", v, "demo|0b9e6c1a-3c1f-4c47-9d0e-5b6a2f1e7d3c")
	f("", UUID{}, "|00000000-0000-0000-0000-000000000000")
	f("a|b", UUID{15: 0xff}, "a|b|00000000-0000-0000-0000-0000000000ff")
}

package membership

import "testing"

func TestAppendChangeKey(t *testing.T) {
	f := func(site, segment, want string) {
		t.Helper()
		if got := AppendChangeKey([]byte("x"), site, segment); string(got) != "x"+want {
			t.Fatalf("AppendChangeKey(%q, %q) = %q; want %q", site, segment, got[1:], want)
		}
	}
	f("shop", "mums", "shop|mums")
	f("", "", "|")
}

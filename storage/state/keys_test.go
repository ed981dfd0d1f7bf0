package state

import (
	"encoding/hex"
	"slices"
	"testing"
)

func TestKeyLayout(t *testing.T) {
	v := [16]byte{0: 0xaa, 15: 0xbb}
	f := func(name string, got []byte, wantHex string) {
		t.Helper()
		want, err := hex.DecodeString(wantHex)
		if err != nil {
			t.Fatalf("BUG: %s: %s", name, err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s key:\n%s\nwant:\n%s", name, hex.Dump(got), hex.Dump(want))
		}
	}
	const vh = "aa0000000000000000000000000000bb"
	f("visitor", appendVisitorKey(nil, "s1", v), "76"+"027331"+vh)
	f("offset", appendOffsetKey(nil, 258), "6f"+"00000102")
	f("interest set", appendInterestPrefix(nil, "s1", "brand", "acme"), "69"+"027331"+"056272616e64"+"0461636d65")
	f("email", append(appendLinkPrefix(nil, prefixEmail, "s1", "a@b"), v[:]...), "65"+"027331"+"03614062"+vh)
	f("customer", append(appendLinkPrefix(nil, prefixCustomer, "s1", "c7"), v[:]...), "75"+"027331"+"026337"+vh)
	f("idle", appendIdleKey(nil, 0x01020304, "s1", v), "72"+"01020304"+"027331"+vh)
	if day, site, got, err := parseIdleKey(appendIdleKey(nil, 7, "s1", v)); day != 7 || site != "s1" || got != v || err != nil {
		t.Fatalf("parseIdleKey = %d %q %x %v; want 7 s1 %x", day, site, got, err, v)
	}
	f("catalog", appendCatalogKey(nil, "s1", "p/1"), "63"+"027331"+"702f31")
	f("visitor value", appendVisitorValue(nil, []byte("P"), []byte("SS")), "01"+"02"+"5353"+"50")
}

func TestSplitVisitorValue(t *testing.T) {
	f := func(prof, seen string) {
		t.Helper()
		p, s, err := splitVisitorValue(appendVisitorValue(nil, []byte(prof), []byte(seen)))
		if err != nil || string(p) != prof || string(s) != seen {
			t.Fatalf("split(%q, %q) = %q, %q, %v", prof, seen, p, s, err)
		}
	}
	f("", "")
	f("profile", "")
	f("profile", "seen")
	for name, in := range map[string]string{
		"empty":       "",
		"no length":   "01",
		"version":     "0200",
		"seen beyond": "0105" + "0102",
		"bad uvarint": "01ff",
	} {
		data, _ := hex.DecodeString(in)
		if _, _, err := splitVisitorValue(data); err == nil {
			t.Errorf("%s: splitVisitorValue(%s) accepted", name, in)
		}
	}
}

func FuzzSplitVisitorValue(f *testing.F) {
	f.Add(appendVisitorValue(nil, []byte("profile"), []byte("seen")))
	f.Add(appendVisitorValue(nil, nil, nil))
	f.Add([]byte{1, 0x80, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		prof, seen, err := splitVisitorValue(data)
		if err != nil {
			return
		}
		// Only the length's varint may be non-minimal; a minimal one
		// round-trips exactly.
		again := appendVisitorValue(nil, prof, seen)
		if len(again) == len(data) && !slices.Equal(again, data) {
			t.Fatalf("re-encoding:\n%s\nwant:\n%s", hex.Dump(again), hex.Dump(data))
		}
	})
}

package state_test

import (
	"fmt"
	"strings"
	"testing"
)

// TestScanExtVisitors joins keys ending in a visitor with the visitors'
// profiles: dense runs (the profile cursor steps), gaps wider than its
// steps (it seeks), visitors without a profile, another site's profiles,
// deleted ones, cursors and early stops.
func TestScanExtVisitors(t *testing.T) {
	db := openDB(t, t.TempDir())
	vis := func(i int) [16]byte { return [16]byte{0: byte(i >> 8), 1: byte(i), 15: 7} }
	b := db.NewBatch()
	for i := range 300 {
		if i%7 != 3 { // else no profile
			if err := b.PutVisitor("s", vis(i), fmt.Appendf(nil, "p%d", i), []byte{1, 0}); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.PutVisitor("s2", vis(i), []byte("other site"), nil); err != nil {
			t.Fatal(err)
		}
	}
	// Members: every third visitor, a run of consecutive ones, and a gap
	// of profiles of non-members wider than the cursor steps.
	member := func(i int) bool {
		return i%3 == 0 && (i < 100 || i >= 200) || i == 150 || i >= 250 && i < 270
	}
	for i := range 300 {
		if member(i) {
			v := vis(i)
			if err := b.ExtSet(append([]byte("Ks"), v[:]...), []byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := b.ExtSet([]byte("Kt-not-scanned-0123456789"), nil); err != nil {
		t.Fatal(err)
	}
	commit(t, b)
	b = db.NewBatch()
	if err := b.DeleteVisitor("s", vis(261)); err != nil {
		t.Fatal(err)
	}
	commit(t, b)

	want := func(i int) string {
		if i%7 == 3 || i == 261 {
			return "-"
		}
		return fmt.Sprintf("p%d", i)
	}
	scan := func(after []byte, stop int) (got []string) {
		t.Helper()
		err := db.ScanExtVisitors([]byte("Ks"), after, "s", func(key, val, prof []byte) bool {
			v := [16]byte(key[2:])
			i := int(v[0])<<8 | int(v[1])
			if int(val[0]) != i&255 {
				t.Errorf("key of visitor %d: value %d", i, val[0])
			}
			p := "-"
			if prof != nil {
				p = string(prof)
			}
			got = append(got, fmt.Sprintf("%d:%s", i, p))
			return len(got) < stop
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	all := scan(nil, 1000)
	var exp []string
	for i := range 300 {
		if member(i) {
			exp = append(exp, fmt.Sprintf("%d:%s", i, want(i)))
		}
	}
	if g, w := strings.Join(all, " "), strings.Join(exp, " "); g != w {
		t.Fatalf("join:\ngot  %s\nwant %s", g, w)
	}
	// Resume after each key, in pages of 7: the same rows.
	var paged []string
	var after []byte
	for {
		page := scan(after, 7)
		if len(page) == 0 {
			break
		}
		paged = append(paged, page...)
		var i int
		if _, err := fmt.Sscanf(page[len(page)-1], "%d:", &i); err != nil {
			t.Fatal(err)
		}
		v := vis(i)
		after = append([]byte("Ks"), v[:]...)
	}
	if g, w := strings.Join(paged, " "), strings.Join(exp, " "); g != w {
		t.Fatalf("paged join:\ngot  %s\nwant %s", g, w)
	}

	b = db.NewBatch()
	if err := b.ExtSet([]byte("Kshort"), nil); err != nil {
		t.Fatal(err)
	}
	commit(t, b)
	if err := db.ScanExtVisitors([]byte("Ks"), nil, "s", func(_, _, _ []byte) bool { return true }); err == nil {
		t.Error("a key shorter than a visitor id joined")
	}
	for _, bad := range []string{"", "v", "ks"} {
		if err := db.ScanExtVisitors([]byte(bad), nil, "s", func(_, _, _ []byte) bool { return true }); err == nil {
			t.Errorf("ScanExtVisitors(%q) accepted a non-extension prefix", bad)
		}
	}
	if err := db.ScanExtVisitors([]byte("Ks"), nil, strings.Repeat("x", 256), func(_, _, _ []byte) bool { return true }); err == nil {
		t.Error("ScanExtVisitors accepted a site longer than MaxSiteLen")
	}
}

package state_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/affinityhq/affinity/storage/state"
)

func openDB(t testing.TB, dir string) *state.DB {
	t.Helper()
	db, err := state.Open(state.DefaultOptions(dir))
	if err != nil {
		t.Fatalf("cannot open state: %s", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func vis(n byte) [16]byte { return [16]byte{0: 0xaa, 15: n} }

func commit(t *testing.T, b *state.Batch) {
	t.Helper()
	if err := b.Commit(); err != nil {
		t.Fatalf("cannot commit: %s", err)
	}
}

func TestVisitorRoundTrip(t *testing.T) {
	db := openDB(t, t.TempDir())
	b := db.NewBatch()
	if err := b.PutVisitor("s1", vis(1), []byte("profile-1"), []byte("seen-1")); err != nil {
		t.Fatal(err)
	}
	if err := b.PutVisitor("s1", vis(2), []byte("profile-2"), nil); err != nil {
		t.Fatal(err)
	}
	// Same visitor bytes, another site: a separate key.
	if err := b.PutVisitor("s", vis(1), []byte("other-site"), nil); err != nil {
		t.Fatal(err)
	}
	commit(t, b)

	f := func(site string, v [16]byte, wantProf, wantSeen string, wantOK bool) {
		t.Helper()
		got, ok, err := db.Visitor(site, v, nil)
		if err != nil {
			t.Fatalf("Visitor(%q, %x): %s", site, v, err)
		}
		if ok != wantOK || string(got.Profile) != wantProf || string(got.Seen) != wantSeen {
			t.Fatalf("Visitor(%q, %x) = %q, %q, %v; want %q, %q, %v", site, v, got.Profile, got.Seen, ok, wantProf, wantSeen, wantOK)
		}
		prof, ok, err := db.Profile(site, v, make([]byte, 3))
		if err != nil || ok != wantOK || string(prof) != wantProf {
			t.Fatalf("Profile(%q, %x) = %q, %v, %v; want %q, %v", site, v, prof, ok, err, wantProf, wantOK)
		}
	}
	f("s1", vis(1), "profile-1", "seen-1", true)
	f("s1", vis(2), "profile-2", "", true)
	f("s", vis(1), "other-site", "", true)
	f("s1", vis(3), "", "", false)

	var scanned []string
	err := db.ScanVisitors("s1", func(v [16]byte, prof, seen []byte) bool {
		scanned = append(scanned, fmt.Sprintf("%d:%s:%s", v[15], prof, seen))
		return true
	})
	if want := []string{"1:profile-1:seen-1", "2:profile-2:"}; err != nil || !slices.Equal(scanned, want) {
		t.Fatalf("ScanVisitors(s1) = %v, %v; want %v", scanned, err, want)
	}

	if err := b.DeleteVisitor("s1", vis(1)); err != nil {
		t.Fatal(err)
	}
	commit(t, b)
	f("s1", vis(1), "", "", false)
	f("s", vis(1), "other-site", "", true)
}

func TestBatchIsAtomicWithOffset(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	for p := range 3 {
		if got, err := db.Offset(p); err != nil || got != 0 {
			t.Fatalf("Offset(%d) of a new DB = %d, %v; want 0", p, got, err)
		}
	}
	b := db.NewBatch()
	_ = b.PutVisitor("s1", vis(1), []byte("p"), nil)
	b.SetOffset(1, 42)
	b.SetOffset(2, 1<<40)
	commit(t, b)

	// Reset drops collected writes: nothing of them is stored.
	_ = b.PutVisitor("s1", vis(2), []byte("p"), nil)
	b.SetOffset(1, 99)
	b.Reset()
	commit(t, b)

	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, dir)
	for p, want := range []int64{0, 42, 1 << 40} {
		if got, err := db.Offset(p); err != nil || got != want {
			t.Fatalf("Offset(%d) after reopen = %d, %v; want %d", p, got, err, want)
		}
	}
	if _, ok, _ := db.Visitor("s1", vis(2), nil); ok {
		t.Fatalf("a reset write was stored")
	}
	if _, ok, _ := db.Visitor("s1", vis(1), nil); !ok {
		t.Fatalf("a committed write was lost")
	}
}

// loadInterests marks db's (empty) interest index rebuilt, as the
// builder's start does.
func loadInterests(t testing.TB, db *state.DB) {
	t.Helper()
	w, err := db.NewIndexWriter()
	if err != nil {
		t.Fatal(err)
	}
	w.Flush()
}

func TestScanInterests(t *testing.T) {
	db := openDB(t, t.TempDir())
	loadInterests(t, db)
	b := db.NewBatch()
	// Keys 10..19 for visitors 0..9 of brand=acme, with two ties on key 15.
	for i := range 10 {
		_ = b.PutInterest("s1", "brand", "acme", uint64(10+i), vis(byte(i)))
	}
	_ = b.PutInterest("s1", "brand", "acme", 15, vis(100))
	// Neighbours that must not show up: another value, a value that has
	// "acme" as a prefix, another site, another dimension.
	_ = b.PutInterest("s1", "brand", "acmex", 1, vis(50))
	_ = b.PutInterest("s1", "brand", "acm", 1, vis(51))
	_ = b.PutInterest("s2", "brand", "acme", 1, vis(52))
	_ = b.PutInterest("s1", "category", "acme", 1, vis(53))
	commit(t, b)

	type entry struct {
		key uint64
		v   byte
	}
	scan := func(maxKey uint64, after *state.InterestPos, limit int) []entry {
		t.Helper()
		var got []entry
		err := db.ScanInterests("s1", "brand", "acme", maxKey, after, func(pos state.InterestPos) bool {
			got = append(got, entry{pos.Key, pos.Visitor[15]})
			return len(got) < limit
		})
		if err != nil {
			t.Fatalf("ScanInterests: %s", err)
		}
		return got
	}
	got := scan(13, nil, 100)
	want := []entry{{10, 0}, {11, 1}, {12, 2}, {13, 3}}
	if !slices.Equal(got, want) {
		t.Fatalf("scan ≤ 13 = %v; want %v", got, want)
	}

	// Page through everything two at a time with the cursor.
	var all []entry
	var after *state.InterestPos
	for {
		page := scan(^uint64(0), after, 2)
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		last := page[len(page)-1]
		after = &state.InterestPos{Key: last.key, Visitor: vis(last.v)}
	}
	want = []entry{{10, 0}, {11, 1}, {12, 2}, {13, 3}, {14, 4}, {15, 5}, {15, 100}, {16, 6}, {17, 7}, {18, 8}, {19, 9}}
	if !slices.Equal(all, want) {
		t.Fatalf("paged scan = %v; want %v", all, want)
	}

	// Move visitor 0 from key 10 to key 30, delete visitor 1.
	_ = b.DeleteInterest("s1", "brand", "acme", 10, vis(0))
	_ = b.PutInterest("s1", "brand", "acme", 30, vis(0))
	_ = b.DeleteInterest("s1", "brand", "acme", 11, vis(1))
	commit(t, b)
	got = scan(12, nil, 100)
	want = []entry{{12, 2}}
	if !slices.Equal(got, want) {
		t.Fatalf("scan ≤ 12 after moves = %v; want %v", got, want)
	}
}

// TestIdentityLinks: the email and the customer-id links of a visitor are
// two indexes of the same layout that do not see each other's keys.
func TestIdentityLinks(t *testing.T) {
	type kind struct {
		name     string
		put, del func(b *state.Batch, site, id string, v [16]byte) error
		scan     func(db *state.DB) func(site, id string, fn func([16]byte) bool) error
		emptyErr string
	}
	for _, k := range []kind{
		{"email", (*state.Batch).PutEmail, (*state.Batch).DeleteEmail,
			func(db *state.DB) func(string, string, func([16]byte) bool) error { return db.VisitorsByEmail }, "invalid email: empty"},
		{"customer", (*state.Batch).PutCustomer, (*state.Batch).DeleteCustomer,
			func(db *state.DB) func(string, string, func([16]byte) bool) error { return db.VisitorsByCustomer }, "invalid customer id: empty"},
	} {
		t.Run(k.name, func(t *testing.T) {
			db := openDB(t, t.TempDir())
			b := db.NewBatch()
			_ = k.put(b, "s1", "ann@example.com", vis(1))
			_ = k.put(b, "s1", "ann@example.com", vis(2))
			_ = k.put(b, "s1", "ann@example.co", vis(3))
			_ = k.put(b, "s2", "ann@example.com", vis(4))
			// The other kind's link of the same id is not this kind's.
			if k.name == "email" {
				_ = b.PutCustomer("s1", "ann@example.com", vis(5))
			} else {
				_ = b.PutEmail("s1", "ann@example.com", vis(5))
			}
			commit(t, b)
			f := func(site, id string, want ...byte) {
				t.Helper()
				var got []byte
				if err := k.scan(db)(site, id, func(v [16]byte) bool { got = append(got, v[15]); return true }); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("visitors of %s %q on %s = %v; want %v", k.name, id, site, got, want)
				}
			}
			f("s1", "ann@example.com", 1, 2)
			f("s1", "ann@example.co", 3)
			f("s2", "ann@example.com", 4)
			f("s1", "bob@example.com")
			_ = k.del(b, "s1", "ann@example.com", vis(1))
			commit(t, b)
			f("s1", "ann@example.com", 2)
			if k.name == "email" {
				// Many at once: in their order, each id's visitors in
				// visitor order, none of another site or kind.
				var got []string
				err := db.VisitorsByEmails("s1", []string{"bob@example.com", "ann@example.com", "ann@example.co", "ann@example.com"}, func(i int, v [16]byte) bool {
					got = append(got, fmt.Sprintf("%d:%d", i, v[15]))
					return true
				})
				if want := "1:2 2:3 3:2"; err != nil || strings.Join(got, " ") != want {
					t.Fatalf("VisitorsByEmails = %v, %v; want %s", got, err, want)
				}
			}
			if err := k.put(b, "s1", "", vis(1)); err == nil || err.Error() != k.emptyErr {
				t.Fatalf("put of an empty %s = %v; want %q", k.name, err, k.emptyErr)
			}
		})
	}
}

func TestScanIdle(t *testing.T) {
	db := openDB(t, t.TempDir())
	b := db.NewBatch()
	_ = b.PutIdle(20000, "s1", vis(1))
	_ = b.PutIdle(19999, "s2", vis(2))
	_ = b.PutIdle(20001, "s1", vis(3))
	_ = b.PutIdle(20000, "s10", vis(4))
	commit(t, b)
	scan := func(maxDay uint32) string {
		t.Helper()
		var got []string
		err := db.ScanIdle(maxDay, func(day uint32, site string, v [16]byte) bool {
			got = append(got, fmt.Sprintf("%d/%s/%d", day, site, v[15]))
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(got, " ")
	}
	if got, want := scan(20000), "19999/s2/2 20000/s1/1 20000/s10/4"; got != want {
		t.Fatalf("ScanIdle(20000) = %s; want %s", got, want)
	}
	_ = b.DeleteIdle(20000, "s1", vis(1))
	commit(t, b)
	if got, want := scan(30000), "19999/s2/2 20000/s10/4 20001/s1/3"; got != want {
		t.Fatalf("ScanIdle(30000) after a delete = %s; want %s", got, want)
	}
	if got := scan(0); got != "" {
		t.Fatalf("ScanIdle(0) = %s; want nothing", got)
	}
}

func TestNormalizeEmail(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := state.NormalizeEmail(in); got != want {
			t.Fatalf("NormalizeEmail(%q) = %q; want %q", in, got, want)
		}
	}
	f("ann@example.com", "ann@example.com")
	f("  Ann@Example.COM\n", "ann@example.com")
	f("ÄNN@example.com", "änn@example.com")
	f("", "")
}

func TestProducts(t *testing.T) {
	db := openDB(t, t.TempDir())
	gen := db.CatalogGen()
	w, err := db.NewProductWriter("s1")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2000 {
		if err := w.Put(fmt.Sprintf("p%04d", i), []byte(fmt.Sprintf("v%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if db.CatalogGen() == gen {
		t.Fatalf("CatalogGen did not change after a flush")
	}
	v, ok, err := db.Product("s1", "p0042", nil)
	if err != nil || !ok || string(v) != "v42" {
		t.Fatalf("Product(p0042) = %q, %v, %v; want v42", v, ok, err)
	}
	if _, ok, _ := db.Product("s2", "p0042", nil); ok {
		t.Fatalf("a product of s1 was found in s2")
	}
	n := 0
	_ = db.ScanProducts("s1", func(id string, val []byte) bool {
		if want := fmt.Sprintf("p%04d", n); id != want {
			t.Fatalf("product %d: id %q; want %q", n, id, want)
		}
		n++
		return true
	})
	if n != 2000 {
		t.Fatalf("ScanProducts saw %d products; want 2000", n)
	}
	w, _ = db.NewProductWriter("s1")
	if err := w.Put("", []byte("x")); err == nil {
		t.Fatalf("Put with an empty id: no error")
	}
	w.Cancel()
}

func TestExtKeys(t *testing.T) {
	db := openDB(t, t.TempDir())
	b := db.NewBatch()
	if err := b.ExtSet([]byte("v-not-mine"), nil); err == nil {
		t.Fatalf("ExtSet with a state prefix: no error")
	}
	_ = b.ExtSet([]byte("Sa1"), []byte("x"))
	_ = b.ExtSet([]byte("Sa2"), []byte("y"))
	_ = b.ExtSet([]byte("Sb1"), []byte("z"))
	commit(t, b)
	var got []string
	_ = db.ScanExt([]byte("Sa"), func(k, v []byte) bool { got = append(got, string(k)+"="+string(v)); return true })
	if want := []string{"Sa1=x", "Sa2=y"}; !slices.Equal(got, want) {
		t.Fatalf("ScanExt(Sa) = %v; want %v", got, want)
	}
	_ = b.ExtDelete([]byte("Sa1"))
	commit(t, b)
	if _, ok, _ := db.Ext([]byte("Sa1"), nil); ok {
		t.Fatalf("deleted ext key still there")
	}
}

func TestInvalidInput(t *testing.T) {
	db := openDB(t, t.TempDir())
	b := db.NewBatch()
	long := string(bytes.Repeat([]byte("x"), state.MaxStringLen+1))
	for name, err := range map[string]error{
		"empty site":     b.PutVisitor("", vis(1), nil, nil),
		"long site":      b.PutVisitor(long[:state.MaxSiteLen+1], vis(1), nil, nil),
		"long value":     b.PutInterest("s", "brand", long, 1, vis(1)),
		"long dimension": b.PutInterest("s", long, "v", 1, vis(1)),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if b.Len() != 0 {
		t.Fatalf("refused writes were collected: Len = %d", b.Len())
	}
}

func TestFullBatchCommits(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "state"))
	b := db.NewBatch()
	n := 0
	for !b.Full() {
		_ = b.PutEmail("s1", fmt.Sprintf("e%d@example.com", n), vis(byte(n)))
		n++
	}
	commit(t, b)
	got := 0
	_ = db.VisitorsByEmail("s1", fmt.Sprintf("e%d@example.com", n-1), func([16]byte) bool { got++; return true })
	if got != 1 {
		t.Fatalf("the last write of a full batch (%d writes) is missing", n)
	}
}

func TestClosed(t *testing.T) {
	db := openDB(t, t.TempDir())
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %s", err)
	}
	if _, _, err := db.Visitor("s", vis(1), nil); err != state.ErrClosed {
		t.Fatalf("Visitor after Close: %v; want ErrClosed", err)
	}
}

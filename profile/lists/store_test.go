package lists

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/storage/state"
)

func openStore(t testing.TB) *Store {
	t.Helper()
	db, err := state.Open(state.DefaultOptions(filepath.Join(t.TempDir(), "state")))
	if err != nil {
		t.Fatalf("cannot open state: %s", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ms := int64(1_800_000_000_000)
	return New(db, func() time.Time { ms += 1000; return time.UnixMilli(ms) })
}

func put(t *testing.T, s *Store, name, csv string) Meta {
	t.Helper()
	unlock := s.Lock("shop", name)
	defer unlock()
	m, err := s.Put("shop", name, strings.NewReader(csv), FormatCSV)
	if err != nil {
		t.Fatalf("Put %s: %s", name, err)
	}
	if err := s.Settle(m); err != nil {
		t.Fatalf("Settle %s: %s", name, err)
	}
	m.Unsettled = false
	return m
}

func scan(t *testing.T, s *Store, name string) string {
	t.Helper()
	var out []string
	found, err := s.Scan("shop", name, func(email, customer []byte) bool {
		out = append(out, string(appendRow(nil, email, customer)))
		return true
	})
	if err != nil {
		t.Fatalf("Scan %s: %s", name, err)
	}
	if !found {
		return "absent"
	}
	return strings.Join(out, " ")
}

func contains(t *testing.T, s *Store, name, email, customer string) bool {
	t.Helper()
	ok, err := s.Contains("shop", name, email, customer)
	if err != nil {
		t.Fatalf("Contains: %s", err)
	}
	return ok
}

func diff(t *testing.T, s *Store, name string, a, b uint64) string {
	t.Helper()
	var out []string
	if err := s.Diff("shop", name, a, b, func(email, customer []byte) bool {
		out = append(out, string(appendRow(nil, email, customer)))
		return true
	}); err != nil {
		t.Fatalf("Diff: %s", err)
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

func TestStoreGenerations(t *testing.T) {
	s := openStore(t)
	if contains(t, s, "crm", "a@x.io", "") {
		t.Fatalf("a list that does not exist holds a@x.io")
	}
	m1 := put(t, s, "crm", "email,customer_id\nA@x.io,1\nb@x.io,\nb@x.io,\n")
	if m1.Gen != 1 || m1.Pending != 0 || m1.Emails != 2 || m1.Customers != 1 || m1.Rows != 3 {
		t.Fatalf("first put: got %+v; want gen 1, 2 emails, 1 customer, 3 rows", m1)
	}
	if got, want := scan(t, s, "crm"), "ea@x.io eb@x.io i1"; got != want {
		t.Fatalf("rows: got %q; want %q", got, want)
	}
	if !contains(t, s, "crm", "a@x.io", "") || !contains(t, s, "crm", "", "1") || !contains(t, s, "crm", "zz@x.io", "1") || contains(t, s, "crm", "c@x.io", "2") {
		t.Fatalf("Contains does not match the rows")
	}

	// Replace: the new generation is what readers see; the old one is
	// kept as pending until Settle.
	unlock := s.Lock("shop", "crm")
	m2, err := s.Put("shop", "crm", strings.NewReader(`{"email":"b@x.io"}`+"\n"+`{"email":"c@x.io"}`), FormatNDJSON)
	if err != nil {
		t.Fatal(err)
	}
	if m2.Gen != 2 || m2.Pending != 1 || !m2.Unsettled || m2.Created != m1.Created || m2.Updated <= m1.Updated {
		t.Fatalf("replace: got %+v; want gen 2, pending 1, created kept", m2)
	}
	if contains(t, s, "crm", "a@x.io", "1") || !contains(t, s, "crm", "c@x.io", "") {
		t.Fatalf("Contains reads the old generation after the flip")
	}
	if got, want := diff(t, s, "crm", 1, 2), "ea@x.io ec@x.io i1"; got != want {
		t.Fatalf("diff: got %q; want %q", got, want)
	}
	pend, err := s.Unsettled()
	if err != nil || len(pend) != 1 || pend[0].Name != "crm" || pend[0].Site != "shop" {
		t.Fatalf("Unsettled: got %+v, %v; want crm", pend, err)
	}
	if err := s.Settle(m2); err != nil {
		t.Fatal(err)
	}
	unlock()
	if n, _ := s.db.CountExt(appendGenKey(nil, "shop", "crm", 1)); n != 0 {
		t.Fatalf("generation 1 keeps %d rows after Settle", n)
	}
	if m, _, _ := s.Meta("shop", "crm"); m.Pending != 0 || m.Gen != 2 || m.Unsettled {
		t.Fatalf("after Settle: got %+v", m)
	}

	// A bad row on line 3 leaves the list as it was.
	unlock = s.Lock("shop", "crm")
	_, err = s.Put("shop", "crm", strings.NewReader("email\nd@x.io\nbad\n"), FormatCSV)
	unlock()
	if ie := (*invalid.Error)(nil); !errors.As(err, &ie) || !strings.HasPrefix(err.Error(), "line 3: invalid email") {
		t.Fatalf("bad row: got %v; want an *invalid.Error for line 3", err)
	}
	if got, want := scan(t, s, "crm"), "eb@x.io ec@x.io"; got != want {
		t.Fatalf("rows after a refused upload: got %q; want %q", got, want)
	}
	if n, _ := s.db.CountExt(appendGenKey(nil, "shop", "crm", 3)); n != 0 {
		t.Fatalf("the refused upload left %d rows", n)
	}

	// Lists of the site, then delete.
	put(t, s, "vip", "customer_id\n9\n")
	ms, err := s.Metas("shop")
	if err != nil || len(ms) != 2 || ms[0].Name != "crm" || ms[1].Name != "vip" || ms[1].Customers != 1 {
		t.Fatalf("Metas: got %+v, %v", ms, err)
	}
	unlock = s.Lock("shop", "crm")
	dm, found, err := s.Delete("shop", "crm")
	if err != nil || !found || dm.Gen != 0 || dm.Pending != 2 {
		t.Fatalf("Delete: got %+v, %v, %v", dm, found, err)
	}
	if contains(t, s, "crm", "b@x.io", "") || scan(t, s, "crm") != "absent" {
		t.Fatalf("a deleted list is still read")
	}
	if got, want := diff(t, s, "crm", 2, 0), "eb@x.io ec@x.io"; got != want {
		t.Fatalf("diff of the delete: got %q; want %q", got, want)
	}
	if err := s.Settle(dm); err != nil {
		t.Fatal(err)
	}
	unlock()
	if _, found, _ := s.Head("shop", "crm"); found {
		t.Fatalf("the head of a deleted list survives Settle")
	}
	if _, found, _ := s.Delete("shop", "crm"); found {
		t.Fatalf("Delete of a deleted list found it")
	}
	if m := put(t, s, "crm", "email\ne@x.io\n"); m.Gen != 1 || m.Pending != 0 {
		t.Fatalf("put after delete: got %+v; want a new list", m)
	}
}

func TestStoreRefusesNames(t *testing.T) {
	s := openStore(t)
	for _, c := range []struct{ site, name, want string }{
		{"shop", "", `invalid list name "": want 1..128 characters`},
		{"shop", "a b", `invalid list name "a b": want letters, digits, _, - and . only`},
		{"", "crm", `invalid site "": want 1..255 bytes`},
	} {
		_, err := s.Put(c.site, c.name, strings.NewReader("email\na@b.c\n"), FormatCSV)
		if ie := (*invalid.Error)(nil); !errors.As(err, &ie) || err.Error() != c.want {
			t.Fatalf("Put(%q, %q): got %v; want %q", c.site, c.name, err, c.want)
		}
	}
}

func TestDecodeHeadRoundTrip(t *testing.T) {
	m := Meta{Gen: 7, Pending: 6, Emails: 1 << 40, Customers: 3, Rows: 9, Created: -5, Updated: 1_800_000_000_000, Unsettled: true}
	var got Meta
	if err := decodeHead(&got, appendHead(nil, &m)); err != nil || got != m {
		t.Fatalf("round trip: got %+v, %v; want %+v", got, err, m)
	}
	v := appendHead(nil, &m)
	v[0] = 2
	if err := decodeHead(&got, v); err == nil {
		t.Fatalf("version 2 decoded")
	}
	if err := decodeHead(&got, append(appendHead(nil, &m), 0)); err == nil {
		t.Fatalf("a trailing byte decoded")
	}
}

package membership_test

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/tracker/event"
)

// TestScanMembers checks the export scan against Members and the state's
// profiles: the same members in the same order, each with its own stored
// profile, from the start and from a cursor.
func TestScanMembers(t *testing.T) {
	e := cartsEnv(t, func(i int) string {
		if i%2 == 0 {
			return fmt.Sprintf("v%d@example.com", i)
		}
		return ""
	})

	var want []membership.Member
	if err := e.Segments.Members("shop", "carts", nil, func(m *membership.Member) bool {
		want = append(want, *m)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if len(want) != 26 {
		t.Fatalf("Members: got %d; want 26", len(want))
	}
	for _, after := range []int{-1, 0, 12} {
		var from *event.UUID
		rest := want
		if after >= 0 {
			from = &want[after].Visitor
			rest = want[after+1:]
		}
		for _, profiles := range []bool{false, true} {
			i := 0
			err := e.Segments.ScanMembers("shop", "carts", from, profiles, func(m *membership.MemberView) bool {
				if i >= len(rest) {
					t.Fatalf("after %d, profiles %v: member %s past the %d of Members", after, profiles, m.Visitor, len(rest))
				}
				w := rest[i]
				i++
				if m.Visitor != w.Visitor || m.Entered != w.Entered || string(m.Email) != w.Email {
					t.Errorf("after %d, profiles %v: got %s %d %q; want %s %d %q", after, profiles, m.Visitor, m.Entered, m.Email, w.Visitor, w.Entered, w.Email)
				}
				prof, ok, err := e.DB.Profile("shop", m.Visitor, nil)
				switch {
				case err != nil || !ok:
					t.Fatalf("Profile of %s: %v %v", m.Visitor, ok, err)
				case !profiles && m.Profile != nil:
					t.Errorf("member %s: a profile without asking", m.Visitor)
				case profiles && !bytes.Equal(m.Profile, prof):
					t.Errorf("member %s: got profile %x; want %x", m.Visitor, m.Profile, prof)
				}
				return true
			})
			if err != nil || i != len(rest) {
				t.Fatalf("after %d, profiles %v: %d members, %v; want %d", after, profiles, i, err, len(rest))
			}
		}
	}
}

// TestExport checks Export's rows against Members: one per member, or per
// email with ByEmail (at its first member visitor, listing the person's
// members in order), and a holdout split whose two groups partition them.
func TestExport(t *testing.T) {
	e := cartsEnv(t, func(i int) string {
		if i%4 != 3 { // persons of (up to) two visitors; every fourth has no email
			return fmt.Sprintf("p%d@example.com", i/8)
		}
		return ""
	})

	// want: the rows, each its visitors, from Members.
	var visitorRows, emailRows [][]event.UUID
	var emailOf []string
	person := map[string]int{}
	if err := e.Segments.Members("shop", "carts", nil, func(m *membership.Member) bool {
		visitorRows = append(visitorRows, []event.UUID{m.Visitor})
		if m.Email == "" {
			return true
		}
		if i, ok := person[m.Email]; ok {
			emailRows[i] = append(emailRows[i], m.Visitor)
			return true
		}
		person[m.Email] = len(emailRows)
		emailRows = append(emailRows, []event.UUID{m.Visitor})
		emailOf = append(emailOf, m.Email)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	export := func(opts membership.ExportOptions) (rows [][]event.UUID) {
		t.Helper()
		err := e.Segments.Export("shop", "carts", &opts, func(m *membership.MemberView, vis []event.UUID) bool {
			if vis[0] != m.Visitor {
				t.Fatalf("%+v: row of %s lists %v first", opts, m.Visitor, vis[0])
			}
			rows = append(rows, append([]event.UUID(nil), vis...))
			return true
		})
		if err != nil {
			t.Fatalf("%+v: %v", opts, err)
		}
		return rows
	}
	same := func(what string, got, want [][]event.UUID) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: got rows\n%v\nwant\n%v", what, got, want)
		}
	}
	same("by visitor", export(membership.ExportOptions{}), visitorRows)
	same("by email", export(membership.ExportOptions{ByEmail: true}), emailRows)
	same("by email after the first row", export(membership.ExportOptions{ByEmail: true, After: &emailRows[0][0]}), emailRows[1:])
	var unjoined [][]event.UUID
	for _, r := range emailRows {
		for _, v := range r {
			unjoined = append(unjoined, []event.UUID{v})
		}
	}
	slices.SortFunc(unjoined, func(a, b []event.UUID) int { return bytes.Compare(a[0][:], b[0][:]) })
	same("by email, unjoined", export(membership.ExportOptions{ByEmail: true, Unjoined: true}), unjoined)
	if len(emailRows) == len(visitorRows) {
		t.Fatalf("no person with two member visitors in %v", emailRows)
	}

	for _, byEmail := range []bool{false, true} {
		all, key := visitorRows, func(i int) string { return visitorRows[i][0].String() }
		if byEmail {
			all, key = emailRows, func(i int) string { return emailOf[i] }
		}
		var treatment, control [][]event.UUID
		for i := range all {
			if membership.InHoldout("s", key(i), 30) {
				control = append(control, all[i])
			} else {
				treatment = append(treatment, all[i])
			}
		}
		if len(control) == 0 || len(treatment) == 0 {
			t.Fatalf("by email %v: a 30%% holdout of %d rows left %d in control", byEmail, len(all), len(control))
		}
		opts := membership.ExportOptions{ByEmail: byEmail, Holdout: 30, Salt: "s"}
		same(fmt.Sprintf("by email %v, treatment", byEmail), export(opts), treatment)
		opts.Control = true
		same(fmt.Sprintf("by email %v, control", byEmail), export(opts), control)
	}
}

// cartsEnv is an env with the segment carts (since(cart) <= 24h) of site
// shop and 40 visitors, every third of them not a member, visitor i
// identified by email(i) unless that is "".
func cartsEnv(t *testing.T, email func(i int) string) *env {
	t.Helper()
	clk := &profiletest.Clock{}
	clk.Set(t0 + hour)
	e := openEnv(t, t.TempDir(), clk, nil)
	e.put(t, "shop", "carts", `since(cart) <= 24h`)
	var bs []*event.Batch
	for i := range 40 {
		evs := []event.Event{profiletest.Event(event.TypeView, t0, nutrilon)}
		if i%3 != 0 {
			evs = append(evs, profiletest.Event(event.TypeCart, t0, nutrilon))
		}
		if m := email(i); m != "" {
			evs = append(evs, profiletest.Identify(t0, m))
		}
		bs = append(bs, profiletest.Batch("shop", profiletest.Visitor(i), evs...))
	}
	e.Send(t, bs...)
	return e
}

func TestJoinEmail(t *testing.T) {
	v := func(n int) event.UUID { return profiletest.Visitor(n) }
	sorted := func(ns ...int) []event.UUID {
		var vs []event.UUID
		for _, n := range ns {
			vs = append(vs, v(n))
		}
		slices.SortFunc(vs, func(a, b event.UUID) int { return bytes.Compare(a[:], b[:]) })
		return vs
	}
	f := func(name string, m event.UUID, linked []event.UUID, wantFirst bool, want []event.UUID) {
		t.Helper()
		got, first := membership.JoinEmail(m, linked, make([]event.UUID, 3))
		if first != wantFirst || (first && fmt.Sprint(got) != fmt.Sprint(want)) {
			t.Errorf("%s: %v, first %v; want %v, first %v", name, got, first, want, wantFirst)
		}
	}
	three := sorted(1, 2, 3)
	f("alone", v(1), nil, true, []event.UUID{v(1)})
	f("the lowest of its email", three[0], three, true, three)
	f("not the lowest", three[1], three, false, nil)
	f("the highest", three[2], three, false, nil)
	// A member whose link moved to another email is not among linked: its
	// row lists it first, then the email's linked members after it.
	four := sorted(0, 1, 2, 3)
	f("not linked, lowest", four[0], four[1:], true, four)
	f("not linked, not lowest", four[2], []event.UUID{four[0], four[1], four[3]}, false, nil)
}

package membership_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/tracker/event"
)

// TestScanMembers checks the export scan against Members and the state's
// profiles: the same members in the same order, each with its own stored
// profile, from the start and from a cursor.
func TestScanMembers(t *testing.T) {
	clk := &profiletest.Clock{}
	clk.Set(t0 + hour)
	e := openEnv(t, t.TempDir(), clk, nil)
	e.put(t, "shop", "carts", `since(cart) <= 24h`)
	var bs []*event.Batch
	for i := range 40 {
		evs := []event.Event{profiletest.Event(event.TypeView, t0, nutrilon)}
		if i%3 != 0 { // every third visitor is not a member
			evs = append(evs, profiletest.Event(event.TypeCart, t0, nutrilon))
		}
		if i%2 == 0 {
			evs = append(evs, profiletest.Identify(t0, fmt.Sprintf("v%d@example.com", i)))
		}
		bs = append(bs, profiletest.Batch("shop", profiletest.Visitor(i), evs...))
	}
	e.Send(t, bs...)

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

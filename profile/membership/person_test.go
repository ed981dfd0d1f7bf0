package membership_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/people"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/tracker/event"
)

func (e *env) putPerson(t testing.TB, site, name, rule string) {
	t.Helper()
	if _, _, err := e.Segments.PutPer(site, name, rule, membership.PerPerson); err != nil {
		t.Fatalf("PutPer %s: %s", name, err)
	}
	if bf := e.Segments.BackfillOf(site, name); bf != nil {
		bf.Wait()
	}
	e.Wait(t)
}

func views(ts ...int64) []event.Event {
	var evs []event.Event
	for _, t := range ts {
		evs = append(evs, profiletest.Event(event.TypeView, t, lego))
	}
	return evs
}

// sortedUUIDs returns vs sorted, for comparing visitor sets.
func sortedUUIDs(vs ...event.UUID) []event.UUID {
	vs = slices.Clone(vs)
	slices.SortFunc(vs, func(a, b event.UUID) int { return slices.Compare(a[:], b[:]) })
	return vs
}

// TestPersonSegment: two visitors on different partitions, each below the
// threshold alone; the identify that links the second makes the person
// enter (the link alone), with one member row carrying the email and both
// visitors; the person leaves at the exact instant the merged window
// drops below; erasure of the person removes its membership and records.
func TestPersonSegment(t *testing.T) {
	clk := &profiletest.Clock{}
	clk.Set(t0 + hour)
	e := openEnv(t, "", clk, nil)
	e.putPerson(t, "shop", "fans", `count(view, 7d) >= 3`)
	e.put(t, "shop", "viewers3", `count(view, 7d) >= 3`) // per visitor: nobody
	a, b := e.VisitorOn("shop", 0, 1), e.VisitorOn("shop", 1, 1)
	pid := membership.PersonID("shop", "e:ann@example.com")

	e.Send(t,
		profiletest.Batch("shop", a, append(views(t0, t0+10), profiletest.Identify(t0+20, "Ann@Example.com"))...),
		profiletest.Batch("shop", b, views(t0+30)...),
	)
	if got := e.members(t, "shop", "fans"); len(got) != 0 {
		t.Fatalf("members before the link = %v; want none (ann has 2 views, b is anonymous)", got)
	}
	// The link alone: b identifies, no view.
	e.Send(t, profiletest.Batch("shop", b, profiletest.Identify(t0+40, "ann@example.com")))
	got := e.members(t, "shop", "fans")
	m, ok := got[pid]
	if len(got) != 1 || !ok {
		t.Fatalf("members after the link = %v; want the one person %s", got, pid)
	}
	if m.Email != "ann@example.com" || m.Person != "e:ann@example.com" || !slices.Equal(sortedUUIDs(m.Visitors...), sortedUUIDs(a, b)) || m.Entered != t0+hour {
		t.Fatalf("member = %+v; want ann@example.com, key e:ann@example.com, visitors %s %s, entered %d", m, a, b, t0+hour)
	}
	if got := e.members(t, "shop", "viewers3"); len(got) != 0 {
		t.Fatalf("per-visitor members = %v; want none: no visitor alone has 3 views", got)
	}
	rows := 0
	err := e.Segments.Export("shop", "fans", &membership.ExportOptions{Profiles: true}, func(mv *membership.MemberView, vis []event.UUID) bool {
		rows++
		if string(mv.Email) != "ann@example.com" || len(vis) != 2 || mv.Profile == nil {
			t.Errorf("export row = %s %v profile %d bytes; want ann@example.com, 2 visitors, the merged profile", mv.Email, vis, len(mv.Profile))
		}
		return true
	})
	if err != nil || rows != 1 {
		t.Fatalf("export: %d rows, %v; want 1", rows, err)
	}

	// The window: views at t0, t0+10ms, t0+30ms; at t0+7d the first leaves.
	e.Advance(t, t0+8*day)
	if got := e.members(t, "shop", "fans"); len(got) != 0 {
		t.Fatalf("members at t0+8d = %v; want none", got)
	}
	cs := e.changes(t, "shop", "fans")
	if len(cs) != 2 || !cs[0].Entered || cs[0].Why != "event" || cs[1].Entered || cs[1].Why != "time" || cs[1].At != t0+7*day ||
		cs[1].Visitor != pid || cs[1].Email != "ann@example.com" {
		t.Fatalf("changes = %+v; want entered (event), left (time) at exactly t0+7d = %d, of %s with the email", cs, t0+7*day, pid)
	}

	// Back in by one more view on a (now t0+8d: a window of its own).
	e.Send(t, profiletest.Batch("shop", a, views(t0+8*day-2, t0+8*day-1)...), profiletest.Batch("shop", b, views(t0+8*day-3)...))
	if got := e.members(t, "shop", "fans"); len(got) != 1 {
		t.Fatalf("members after 3 new views = %v; want the person", got)
	}
	// Erasure of the person: no membership, no record naming it.
	p := &people.Person{}
	found, err := people.Find(e.DB, e.Config, "shop", people.ID{Email: true, Value: "ann@example.com"}, 0, p)
	if err != nil || !found {
		t.Fatalf("Find ann = %v, %v", found, err)
	}
	if _, _, err := people.Erase(e.Builder, e.Segments, "shop", p.Visitors, p.Emails, p.Customers); err != nil {
		t.Fatalf("Erase: %s", err)
	}
	e.Wait(t)
	if got := e.members(t, "shop", "fans"); len(got) != 0 {
		t.Fatalf("members after erasure = %v; want none", got)
	}
	for _, c := range e.changes(t, "shop", "fans") {
		t.Fatalf("record after erasure: %+v; want none naming the person", c)
	}
}

// TestPersonJoin: two identified persons each in the segment join by a
// customer id; the person keyed by the higher email leaves ("linked"),
// the one keyed by the lower stays with both visitors.
func TestPersonJoin(t *testing.T) {
	clk := &profiletest.Clock{}
	clk.Set(t0 + hour)
	e := openEnv(t, "", clk, nil)
	e.putPerson(t, "shop", "known", `identified`)
	a, b := e.VisitorOn("shop", 0, 1), e.VisitorOn("shop", 1, 1)
	e.Send(t,
		profiletest.Batch("shop", a, profiletest.Identify(t0, "a@x.com")),
		profiletest.Batch("shop", b, profiletest.Identify(t0, "b@x.com")),
	)
	if got := e.members(t, "shop", "known"); len(got) != 2 {
		t.Fatalf("members = %v; want two persons", got)
	}
	e.Send(t,
		profiletest.Batch("shop", a, profiletest.IdentifyCustomer(t0+1, "C7", "a@x.com")),
		profiletest.Batch("shop", b, profiletest.IdentifyCustomer(t0+1, "C7", "b@x.com")),
	)
	got := e.members(t, "shop", "known")
	m, ok := got[membership.PersonID("shop", "e:a@x.com")]
	if len(got) != 1 || !ok || len(m.Visitors) != 2 {
		t.Fatalf("members after the join = %v; want the one person e:a@x.com with both visitors", got)
	}
	cs := e.changes(t, "shop", "known")
	last := cs[len(cs)-1]
	if last.Entered || last.Why != "linked" || last.Visitor != membership.PersonID("shop", "e:b@x.com") {
		t.Fatalf("last change = %+v; want b's person left, linked", last)
	}
}

// TestScrubPersonByCustomer: a person with no email is keyed by its
// customer id, and its records name it by that person id alone; erasing
// it scrubs them by the customer id — through people.Erase, and by the id
// alone when its visitors are already gone (a DELETE finishing an erasure
// a crash interrupted) — and the records of another such person stay.
func TestScrubPersonByCustomer(t *testing.T) {
	f := func(name string, erase func(t *testing.T, e *env, visitor event.UUID) int, want int) {
		t.Run(name, func(t *testing.T) {
			clk := &profiletest.Clock{}
			clk.Set(t0 + hour)
			e := openEnv(t, t.TempDir(), clk, nil)
			e.putPerson(t, "shop", "fans", `count(view) >= 1`)
			a, b := e.VisitorOn("shop", 0, 1), e.VisitorOn("shop", 1, 1)
			gone, kept := membership.PersonID("shop", "c:C7"), membership.PersonID("shop", "c:C8")
			e.Send(t,
				profiletest.Batch("shop", a, append(views(t0), profiletest.IdentifyCustomer(t0+1, "C7", ""))...),
				profiletest.Batch("shop", b, append(views(t0), profiletest.IdentifyCustomer(t0+1, "C8", ""))...),
			)
			if _, err := e.Segments.Sequence(context.Background()); err != nil {
				t.Fatalf("Sequence: %s", err)
			}
			byPerson := func() map[event.UUID]int {
				n := map[event.UUID]int{}
				for _, c := range e.changes(t, "shop", "fans") {
					n[c.Visitor]++
				}
				return n
			}
			if n := byPerson(); n[gone] == 0 || n[kept] == 0 {
				t.Fatalf("records before erasure by person = %v; want some of %s (c:C7) and %s (c:C8)", n, gone, kept)
			}
			keptBefore := byPerson()[kept]
			if n := erase(t, e, a); n != want {
				t.Fatalf("records scrubbed = %d; want %d", n, want)
			}
			n := byPerson()
			if n[gone] != 0 {
				t.Fatalf("records of c:C7 after erasure = %d; want none (all records: %+v)", n[gone], e.changes(t, "shop", "fans"))
			}
			if n[kept] != keptBefore {
				t.Fatalf("records of c:C8 after erasure = %d; want the %d of before", n[kept], keptBefore)
			}
		})
	}
	// The person's entry and the leave its last visitor's erasure made.
	f("erase", func(t *testing.T, e *env, _ event.UUID) int {
		p := &people.Person{}
		found, err := people.Find(e.DB, e.Config, "shop", people.ID{Value: "C7"}, 0, p)
		if err != nil || !found || len(p.Emails) != 0 {
			t.Fatalf("Find C7 = %v, %v, emails %v; want found, no email", found, err, p.Emails)
		}
		_, n, err := people.Erase(e.Builder, e.Segments, "shop", p.Visitors, p.Emails, p.Customers)
		if err != nil {
			t.Fatalf("Erase: %s", err)
		}
		return n
	}, 2)
	f("finish", func(t *testing.T, e *env, visitor event.UUID) int {
		if _, err := e.Builder.DeleteVisitor("shop", visitor); err != nil {
			t.Fatalf("DeleteVisitor: %s", err)
		}
		e.Wait(t)
		n, err := e.Segments.Scrub("shop", nil, nil, []string{"C7"})
		if err != nil {
			t.Fatalf("Scrub by customer id: %s", err)
		}
		return n
	}, 2)
}

// TestPersonMarksDurable: marks written by the builder's commits while no
// evaluator runs survive a restart, and the restarted evaluator enters the
// person.
func TestPersonMarksDurable(t *testing.T) {
	dir := t.TempDir()
	clk := &profiletest.Clock{}
	clk.Set(t0 + hour)
	e := openEnv(t, dir, clk, nil)
	e.putPerson(t, "shop", "known", `identified`)
	if err := e.Segments.Close(); err != nil { // the evaluator stops; the builder commits on
		t.Fatal(err)
	}
	e.Append(t, profiletest.Batch("shop", profiletest.Visitor(1), profiletest.Identify(t0, "a@x.com")))
	if err := e.Builder.WaitCaughtUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	marks, err := e.DB.CountExt([]byte{'P'})
	if err != nil || marks != 1 {
		t.Fatalf("person marks after the commit = %d, %v; want 1", marks, err)
	}
	e.Close(t)
	e = openEnv(t, dir, clk, nil)
	profiletest.WaitUntil(t, "the person entered", func() bool {
		_, ok, _ := e.Segments.IsMember("shop", "known", membership.PersonID("shop", "e:a@x.com"))
		return ok
	})
	if marks, err := e.DB.CountExt([]byte{'P'}); err != nil || marks != 0 {
		t.Fatalf("person marks after the evaluation = %d, %v; want 0", marks, err)
	}
}

func TestParsePer(t *testing.T) {
	for _, c := range []struct {
		in   string
		want membership.Per
		err  string
	}{
		{"", membership.PerVisitor, ""},
		{"visitor", membership.PerVisitor, ""},
		{"person", membership.PerPerson, ""},
		{"people", 0, `invalid per "people": want visitor or person`},
	} {
		got, err := membership.ParsePer(c.in)
		var ie *invalid.Error
		if c.err != "" {
			if err == nil || !errors.As(err, &ie) || err.Error() != c.err {
				t.Errorf("ParsePer(%q) = %v; want invalid.Error %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParsePer(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

// TestPersonListChange: a list upload re-evaluates the persons of the
// visitors it changes: the person enters with why "list".
func TestPersonListChange(t *testing.T) {
	clk := &profiletest.Clock{}
	clk.Set(t0 + hour)
	e := openEnv(t, "", clk, nil)
	a, b := e.VisitorOn("shop", 0, 1), e.VisitorOn("shop", 1, 1)
	e.Send(t,
		profiletest.Batch("shop", a, profiletest.Identify(t0, "ann@x.io")),
		profiletest.Batch("shop", b, append(views(t0), profiletest.Identify(t0, "ann@x.io"))...),
	)
	e.putPerson(t, "shop", "crm-viewers", `in_list("crm") and count(view) >= 1`)
	if got := e.members(t, "shop", "crm-viewers"); len(got) != 0 {
		t.Fatalf("members before the list = %v; want none", got)
	}
	e.putList(t, "shop", "crm", "email\nann@x.io\n")
	e.Wait(t)
	if _, ok := e.members(t, "shop", "crm-viewers")[membership.PersonID("shop", "e:ann@x.io")]; !ok {
		t.Fatalf("the person is not a member after the list upload")
	}
	if cs := e.changes(t, "shop", "crm-viewers"); len(cs) != 1 || cs[0].Why != "list" {
		t.Fatalf("changes = %+v; want one entry, why list", cs)
	}
}

// TestPersonWebhook: a per-person segment's webhook delivers the person's
// entry, with its id and email, when the link alone makes it enter.
func TestPersonWebhook(t *testing.T) {
	var (
		mu  sync.Mutex
		got []map[string]any
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var d struct{ Changes []map[string]any }
		if err := json.NewDecoder(r.Body).Decode(&d); err != nil {
			t.Errorf("webhook body: %s", err)
		}
		mu.Lock()
		got = append(got, d.Changes...)
		mu.Unlock()
	}))
	defer srv.Close()
	clk := &profiletest.Clock{}
	clk.Set(t0 + hour)
	e := openEnv(t, "", clk, nil)
	e.putPerson(t, "shop", "fans", `count(view) >= 3`)
	if err := e.Segments.SetWebhook("shop", "fans", srv.URL, "s3cret"); err != nil {
		t.Fatal(err)
	}
	a, b := e.VisitorOn("shop", 0, 1), e.VisitorOn("shop", 1, 1)
	e.Send(t,
		profiletest.Batch("shop", a, append(views(t0, t0+1), profiletest.Identify(t0+2, "ann@x.io"))...),
		profiletest.Batch("shop", b, views(t0+3)...),
	)
	e.Send(t, profiletest.Batch("shop", b, profiletest.Identify(t0+4, "ann@x.io")))
	profiletest.WaitUntil(t, "the person's entry delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 0
	})
	mu.Lock()
	defer mu.Unlock()
	if c := got[0]; len(got) != 1 || c["visitor"] != membership.PersonID("shop", "e:ann@x.io").String() || c["email"] != "ann@x.io" || c["change"] != "entered" {
		t.Fatalf("delivered %v; want one entry of the person with its email", got)
	}
}

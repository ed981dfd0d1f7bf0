package membership_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/profile/lists"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/tracker/event"
)

// putList uploads a CSV list and waits until the visitors it changed are
// re-evaluated and their change records sequenced.
func (e *env) putList(t testing.TB, site, name, csv string) lists.Meta {
	t.Helper()
	m, bf, err := e.Segments.PutList(site, name, strings.NewReader(csv), lists.FormatCSV)
	if err != nil {
		t.Fatalf("PutList %s: %s", name, err)
	}
	e.settled(t, bf)
	return m
}

func (e *env) settled(t testing.TB, bf interface {
	Wait()
	Progress() (int64, int64, bool)
}) {
	t.Helper()
	bf.Wait()
	if _, _, done := bf.Progress(); !done {
		t.Fatalf("the list's re-evaluation did not finish")
	}
	if _, err := e.Segments.Sequence(context.Background()); err != nil {
		t.Fatalf("Sequence: %s", err)
	}
}

func (e *env) memberIDs(t testing.TB, site, name string) []event.UUID {
	t.Helper()
	var ids []event.UUID
	for v := range e.members(t, site, name) {
		ids = append(ids, v)
	}
	slices.SortFunc(ids, func(a, b event.UUID) int { return strings.Compare(a.String(), b.String()) })
	return ids
}

func identifyCustomer(ts int64, customer string) event.Event {
	ev := profiletest.Event(event.TypeIdentify, ts, nil)
	ev.Customer = customer
	return ev
}

// A list change re-evaluates exactly the visitors whose email or customer
// id it added or removed: they enter and leave at once, with change
// records; a refused upload changes nothing; a deleted list is empty.
func TestListChangesReevaluate(t *testing.T) {
	clk := &profiletest.Clock{}
	clk.Set(t0 + hour)
	e := openEnv(t, t.TempDir(), clk, nil)
	v1, v2, v3, v4, v5, v6 := profiletest.Visitor(1), profiletest.Visitor(2), profiletest.Visitor(3), profiletest.Visitor(4), profiletest.Visitor(5), profiletest.Visitor(6)
	e.Send(t,
		profiletest.Batch("shop", v1, profiletest.Identify(t0, "A@x.io"), profiletest.Event(event.TypeView, t0, nutrilon)),
		profiletest.Batch("shop", v2, profiletest.Identify(t0, "b@x.io")), // no view
		profiletest.Batch("shop", v3, profiletest.Identify(t0, "c@x.io"), profiletest.Event(event.TypeView, t0, lego)),
		profiletest.Batch("shop", v4, profiletest.Event(event.TypeView, t0, lego)), // anonymous
		profiletest.Batch("shop", v5, identifyCustomer(t0, "C-5"), profiletest.Event(event.TypeView, t0, lego)),
		profiletest.Batch("other", v3, profiletest.Identify(t0, "a@x.io"), profiletest.Event(event.TypeView, t0, lego)),
	)

	// A list uploaded before the segment: the segment's backfill reads it.
	if m := e.putList(t, "shop", "crm", "email\nA@x.io\nb@x.io\n"); m.Emails != 2 || m.Gen != 1 {
		t.Fatalf("first upload: got %+v", m)
	}
	e.put(t, "shop", "crm-viewers", `in_list("crm") and count(view) >= 1`)
	e.put(t, "shop", "not-crm", `identified and not in_list("crm")`)
	e.put(t, "shop", "ghost", `in_list("nope")`)
	e.put(t, "other", "crm-viewers", `in_list("crm")`)
	if got := e.memberIDs(t, "shop", "crm-viewers"); !slices.Equal(got, []event.UUID{v1}) {
		t.Fatalf("members after the backfill: got %v; want [%s]", got, v1)
	}
	// identified is an email; v5 is known by its customer id only.
	if got := e.memberIDs(t, "shop", "not-crm"); !slices.Equal(got, []event.UUID{v3}) {
		t.Fatalf("not-crm after the backfill: got %v; want [%s]", got, v3)
	}
	if got := e.memberIDs(t, "shop", "ghost"); len(got) != 0 {
		t.Fatalf("a rule naming a list that does not exist has members %v", got)
	}
	if got := e.memberIDs(t, "other", "crm-viewers"); len(got) != 0 {
		t.Fatalf("another site's list was read: members %v", got)
	}

	// Replace: a@ leaves, c@ and customer C-5 enter, b@ (no view) stays out.
	clk.Set(t0 + 2*hour)
	if m := e.putList(t, "shop", "crm", "name,email,customer_id\nCarl,c@x.io,\nFive,,C-5\n"); m.Emails != 1 || m.Customers != 1 || m.Gen != 2 {
		t.Fatalf("replacement: got %+v", m)
	}
	if got := e.memberIDs(t, "shop", "crm-viewers"); !slices.Equal(got, []event.UUID{v3, v5}) {
		t.Fatalf("members after the replacement: got %v; want [%s %s]", got, v3, v5)
	}
	checkChanges(t, e.changes(t, "shop", "crm-viewers"), []wantChange{
		{v1, true, t0 + hour, "backfill"},
		{v1, false, t0 + 2*hour, "list"},
		{v3, true, t0 + 2*hour, "list"},
		{v5, true, t0 + 2*hour, "list"},
	})
	if got := e.memberIDs(t, "shop", "not-crm"); !slices.Equal(got, []event.UUID{v1, v2}) {
		t.Fatalf("not-crm after the replacement: got %v; want [%s %s]", got, v1, v2)
	}
	if cs := e.changes(t, "shop", "crm-viewers"); !strings.Contains(cs[2].Facts, `"in_list(\"crm\")":true`) {
		t.Fatalf("facts of an entry: got %s; want in_list(\"crm\") true", cs[2].Facts)
	}

	// A bad row on line 3 refuses the upload: the old list stays in force.
	_, _, err := e.Segments.PutList("shop", "crm", strings.NewReader("email\nd@x.io\nnot-an-email\nb@x.io\n"), lists.FormatCSV)
	if ie := (*invalid.Error)(nil); !errors.As(err, &ie) || err.Error() != `line 3: invalid email "not-an-email": want one @ between a local part and a domain` {
		t.Fatalf("bad row: got %v; want line 3's reason as an *invalid.Error", err)
	}
	if got := e.memberIDs(t, "shop", "crm-viewers"); !slices.Equal(got, []event.UUID{v3, v5}) {
		t.Fatalf("members after a refused upload: got %v; want [%s %s]", got, v3, v5)
	}
	if m, _, _ := e.Segments.Lists().Meta("shop", "crm"); m.Gen != 2 || m.Emails != 1 {
		t.Fatalf("list after a refused upload: got %+v; want generation 2", m)
	}

	// Live: a new visitor identifying with a listed email enters on its event.
	clk.Set(t0 + 3*hour)
	e.Send(t, profiletest.Batch("shop", v6, profiletest.Identify(t0+3*hour, "C@X.io"), profiletest.Event(event.TypeView, t0+3*hour, lego)))
	if got := e.memberIDs(t, "shop", "crm-viewers"); !slices.Equal(got, []event.UUID{v3, v5, v6}) {
		t.Fatalf("members after v6's event: got %v; want [%s %s %s]", got, v3, v5, v6)
	}

	// Delete: everyone leaves.
	clk.Set(t0 + 4*hour)
	found, bf, err := e.Segments.DeleteList("shop", "crm")
	if err != nil || !found {
		t.Fatalf("DeleteList: got %v, %v", found, err)
	}
	e.settled(t, bf)
	if got := e.memberIDs(t, "shop", "crm-viewers"); len(got) != 0 {
		t.Fatalf("members after the delete: got %v; want none", got)
	}
	cs := e.changes(t, "shop", "crm-viewers")
	checkChanges(t, cs[4:], []wantChange{
		{v6, true, t0 + 3*hour, "event"},
		{v3, false, t0 + 4*hour, "list"},
		{v5, false, t0 + 4*hour, "list"},
		{v6, false, t0 + 4*hour, "list"},
	})
	if found, _, err := e.Segments.DeleteList("shop", "crm"); found || err != nil {
		t.Fatalf("second DeleteList: got %v, %v; want not found", found, err)
	}
	if _, found, _ := e.Segments.Lists().Head("shop", "crm"); found {
		t.Fatalf("the deleted list's head is still stored")
	}
}

// A change whose re-evaluation a crash interrupted (the head flipped, the
// visitors not yet visited) is finished by the next start.
func TestListChangeResumesAfterRestart(t *testing.T) {
	dir, clk := t.TempDir(), &profiletest.Clock{}
	clk.Set(t0 + hour)
	e := openEnv(t, dir, clk, nil)
	v1, v2 := profiletest.Visitor(1), profiletest.Visitor(2)
	e.Send(t,
		profiletest.Batch("shop", v1, profiletest.Identify(t0, "a@x.io")),
		profiletest.Batch("shop", v2, profiletest.Identify(t0, "b@x.io")),
	)
	e.putList(t, "shop", "crm", "email\na@x.io\n")
	e.put(t, "shop", "crm", `in_list("crm")`)
	// The crash: the new generation is in force, nobody re-evaluated.
	unlock := e.Segments.Lists().Lock("shop", "crm")
	if _, err := e.Segments.Lists().Put("shop", "crm", strings.NewReader("email\nb@x.io\n"), lists.FormatCSV); err != nil {
		t.Fatal(err)
	}
	unlock()
	if got := e.memberIDs(t, "shop", "crm"); !slices.Equal(got, []event.UUID{v1}) {
		t.Fatalf("members before the restart: got %v; want [%s]", got, v1)
	}
	e.Close(t)

	e = openEnv(t, dir, clk, nil)
	bf := e.Segments.ListChange("shop", "crm")
	if bf == nil {
		t.Fatalf("no re-evaluation resumed")
	}
	e.settled(t, bf)
	if got := e.memberIDs(t, "shop", "crm"); !slices.Equal(got, []event.UUID{v2}) {
		t.Fatalf("members after the restart: got %v; want [%s]", got, v2)
	}
	if m, _, _ := e.Segments.Lists().Meta("shop", "crm"); m.Unsettled || m.Pending != 0 {
		t.Fatalf("list after the resumed re-evaluation: got %+v; want settled", m)
	}
}

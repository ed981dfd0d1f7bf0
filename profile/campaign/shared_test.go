package campaign_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/affinityhq/affinity/profile/campaign"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/tracker/event"
)

const sharedSpec = `{"name":"promo","arms":[{"name":"behaviour","segment":"mums","variants":["a","b"]},{"name":"crm","list":"crm"}],"holdout":20,"window":"7d"}`

// freeze reserves an id at offset and freezes sharedSpec on s.
func freeze(t *testing.T, s *campaign.Store, offset int64) (*campaign.Campaign, []byte) {
	t.Helper()
	id, err := s.ReserveID(offset)
	if err != nil {
		t.Fatalf("ReserveID: %s", err)
	}
	c, err := campaign.ParseSpec("shop", []byte(sharedSpec))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := s.Freeze(c, id, nil)
	if err != nil {
		t.Fatalf("Freeze: %s", err)
	}
	return c, rec
}

// A campaign frozen on one node and applied on another is the campaign a
// single node creates from the same members, with the same recipients;
// the tokens of the writer resolve on the other node.
func TestFreezeApply(t *testing.T) {
	_, ws := openShop(t, 60, 40, 80)
	_, ss := openShop(t, 60, 40, 80)
	_, os := openShop(t, 60, 40, 80)

	c, rec := freeze(t, ws, 0)
	if _, err := ws.Get("shop", c.ID); !errors.Is(err, campaign.ErrNotFound) {
		t.Fatalf("Freeze stored campaign %d: %v", c.ID, err)
	}
	if _, err := os.ReserveID(0); err != nil { // the reservation every node applies
		t.Fatal(err)
	}
	var applied [2]*campaign.Campaign
	for i, s := range []*campaign.Store{ws, os} {
		got, err := s.Apply(c.ID, rec)
		if err != nil {
			t.Fatalf("Apply on node %d: %s", i, err)
		}
		applied[i] = got
		if again, err := s.Apply(c.ID, rec); err != nil || string(again.AppendJSON(nil)) != string(got.AppendJSON(nil)) {
			t.Fatalf("Apply again on node %d: %v; want the stored campaign", i, err)
		}
	}
	ref := create(t, ss, "shop", sharedSpec)
	for i, got := range applied {
		if g, w := string(got.AppendJSON(nil)), string(ref.AppendJSON(nil)); g != w {
			t.Fatalf("node %d holds\n%s\nwant the single node's\n%s", i, g, w)
		}
	}
	rw, ro, rs := recipients(t, ws, applied[0]), recipients(t, os, applied[1]), recipients(t, ss, ref)
	if len(rw) != int(ref.Recipients()) || len(ro) != len(rw) || len(rs) != len(rw) {
		t.Fatalf("%d, %d and %d recipients; want %d", len(rw), len(ro), len(rs), ref.Recipients())
	}
	for email, r := range rw {
		if o := ro[email]; !bytes.Equal(o.Email, r.Email) || o.MAC != r.MAC || o.Cell != r.Cell || o.Number != r.Number {
			t.Fatalf("recipient %s: %+v on the other node; want %+v", email, ro[email], r)
		}
		if s := rs[email]; s.Cell != r.Cell || s.Number != r.Number {
			t.Fatalf("recipient %s: %+v; want the single node's %+v", email, r, s)
		}
		tok := campaign.AppendToken(nil, c.ID, r.Number, &r.MAC)
		if _, got, err := os.Resolve(tok); err != nil || got.Number != r.Number {
			t.Fatalf("the writer's token %s on the other node: %+v %v", tok, got, err)
		}
	}
	// The second campaign of the site is signed with the secret the
	// first brought: the other node's tokens check on the writer too.
	c2, rec2 := freeze(t, os, 1)
	if c2.ID != 2 || c2.SecretGen != c.SecretGen {
		t.Fatalf("second campaign: id %d gen %d; want 2, gen %d", c2.ID, c2.SecretGen, c.SecretGen)
	}
	if _, err := ws.ReserveID(1); err != nil {
		t.Fatal(err)
	}
	if _, err := ws.Apply(c2.ID, rec2); err != nil {
		t.Fatalf("Apply of the other node's campaign: %s", err)
	}
}

// A record that does not check is refused whole: nothing of it is stored.
func TestApplyRefuses(t *testing.T) {
	_, ws := openShop(t, 30, 20, 40)
	c, rec := freeze(t, ws, 0)
	other := profiletest.Open(t, profiletest.Options{}).Campaigns
	withSecret := func(b byte) []byte {
		r := bytes.Clone(rec)
		r[1] = b
		return r
	}
	for _, tc := range []struct {
		name string
		rec  []byte
		want string
	}{
		{"empty", nil, "campaign record"},
		{"version", append([]byte{9}, rec[1:]...), "version 9"},
		{"truncated", rec[:len(rec)-3], "truncated"},
		{"trailing", append(bytes.Clone(rec), 0), "trailing"},
		{"a recipient missing", cutLastRecipient(t, rec), "recipient[37]: truncated"},
	} {
		if _, err := other.Apply(c.ID, tc.rec); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want …%s…", tc.name, err, tc.want)
		}
		if _, err := other.Get("shop", c.ID); !errors.Is(err, campaign.ErrNotFound) {
			t.Fatalf("%s: campaign stored after a refused record: %v", tc.name, err)
		}
	}
	// Another secret of the generation this node holds: refused.
	if _, err := other.Apply(c.ID, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Apply(c.ID+1, withSecret(rec[1]^1)); err == nil || !strings.Contains(err.Error(), "differs") {
		t.Fatalf("a record with another secret: %v; want it refused", err)
	}
}

// cutLastRecipient drops the last recipient value of rec (its length
// byte and bytes), leaving the count.
func cutLastRecipient(t *testing.T, rec []byte) []byte {
	t.Helper()
	// A recipient value is short: its length fits one uvarint byte.
	for i := len(rec) - 2; i > 0; i-- {
		if int(rec[i]) == len(rec)-i-1 && rec[i+1] == 1 {
			return rec[:i]
		}
	}
	t.Fatal("no recipient value at the record's end")
	return nil
}

// Every node counts the same reservations to the same ids; one read
// again after a restart gives none.
func TestReserveID(t *testing.T) {
	_, s := openShop(t, 0, 0, 10)
	for _, tc := range []struct {
		offset int64
		want   uint64
	}{{3, 1}, {3, 0}, {2, 0}, {8, 2}, {9, 3}} {
		if got, err := s.ReserveID(tc.offset); err != nil || got != tc.want {
			t.Fatalf("ReserveID(%d) = %d, %v; want %d", tc.offset, got, err, tc.want)
		}
	}
	// A local Create goes on from the sequence.
	if c := create(t, s, "shop", `{"name":"p","arms":[{"name":"crm","list":"crm"}],"window":"1d"}`); c.ID != 4 {
		t.Fatalf("Create after reservations: id %d; want 4", c.ID)
	}
}

// The counter rows of disjoint partitions sum to a single node's
// counters; rows given twice, or broken, are refused.
func TestSumCounterRows(t *testing.T) {
	e, s := openShop(t, 0, 0, 40)
	c := create(t, s, "shop", `{"name":"p","arms":[{"name":"crm","list":"crm","variants":["a","b"]}],"holdout":30,"window":"1d"}`)
	var bs []*event.Batch
	for email, r := range recipients(t, s, c) {
		tok := campaign.AppendToken(nil, c.ID, r.Number, &r.MAC)
		open := event.Event{ID: profiletest.NewEventID(), Type: event.TypeOpen, TS: t0 + 1, Token: string(tok)}
		if strings.HasPrefix(email, "u1") {
			open.Type = event.TypeClick
		}
		bs = append(bs, profiletest.Batch("shop", campaign.EngagementVisitor(c.ID, r.Number), open))
	}
	e.Send(t, bs...)
	want, err := s.Counters(c)
	if err != nil || len(want) < 3 {
		t.Fatalf("Counters: %v %v; want cells on both partitions", want, err)
	}
	even, err := s.AppendCounterRows(nil, c, []bool{true, false})
	if err != nil {
		t.Fatal(err)
	}
	odd, err := s.AppendCounterRows(nil, c, []bool{false, true})
	if err != nil {
		t.Fatal(err)
	}
	if len(even) < 10 || len(odd) < 10 {
		t.Fatalf("counter rows of %d and %d bytes: want rows of both partitions", len(even), len(odd))
	}
	got, err := campaign.SumCounterRows(c, odd, even)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d cells; want %d", len(got), len(want))
	}
	for cell, w := range want {
		if got[cell] != w {
			t.Errorf("cell %+v: %+v; want %+v", cell, got[cell], w)
		}
	}
	for _, tc := range []struct {
		name   string
		bodies [][]byte
		want   string
	}{
		{"twice", [][]byte{even, even}, "given twice"},
		{"truncated", [][]byte{odd[:len(odd)-1]}, "truncated"},
		{"version", [][]byte{append([]byte{2}, odd[1:]...)}, "version 2"},
		{"another campaign", [][]byte{odd}, "bad campaign counter key"},
	} {
		cc := c
		if tc.name == "another campaign" {
			cc = &campaign.Campaign{ID: c.ID + 1}
		}
		if _, err := campaign.SumCounterRows(cc, tc.bodies...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want …%s…", tc.name, err, tc.want)
		}
	}
}

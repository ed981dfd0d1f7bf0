package campaign_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/affinityhq/affinity/profile/campaign"
	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/profile/lists"
	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/tracker/event"
)

const t0 = int64(1_790_000_000_000)

// openShop returns an Env whose site "shop" has a segment "mums" of the
// visitors who viewed (n of them, visitor i with email u<i>@x.io; every
// 10th without an email) and a list "crm" of the emails u<i>@x.io for
// i in [from, to).
func openShop(t *testing.T, n, from, to int) (*profiletest.Env, *campaign.Store) {
	t.Helper()
	return openShopIn(t, profiletest.Options{}, n, from, to)
}

// openShopIn is openShop on an Env of opts.
func openShopIn(t *testing.T, opts profiletest.Options, n, from, to int) (*profiletest.Env, *campaign.Store) {
	t.Helper()
	e := profiletest.Open(t, opts)
	e.Clock.Set(t0)
	var bs []*event.Batch
	for i := 0; i < n; i++ {
		evs := []event.Event{profiletest.Event(event.TypeView, t0, nil)}
		if i%10 != 9 {
			evs = append(evs, profiletest.Identify(t0, fmt.Sprintf("U%d@x.io", i)))
		}
		bs = append(bs, profiletest.Batch("shop", profiletest.Visitor(i), evs...))
	}
	// A second visitor of person u0: one recipient.
	bs = append(bs, profiletest.Batch("shop", profiletest.Visitor(n+1), profiletest.Event(event.TypeView, t0, nil), profiletest.Identify(t0, "u0@x.io")))
	e.Send(t, bs...)
	if _, _, err := e.Segments.Put("shop", "mums", "count(view) >= 1"); err != nil {
		t.Fatalf("cannot put segment: %s", err)
	}
	e.Segments.BackfillOf("shop", "mums").Wait()
	var csv strings.Builder
	csv.WriteString("email\n")
	for i := from; i < to; i++ {
		fmt.Fprintf(&csv, "u%d@x.io\n", i)
	}
	if _, bf, err := e.Segments.PutList("shop", "crm", strings.NewReader(csv.String()), lists.FormatCSV); err != nil {
		t.Fatalf("cannot put list: %s", err)
	} else {
		bf.Wait()
	}
	return e, e.Campaigns // the store the builder counts into
}

func create(t *testing.T, s *campaign.Store, site, spec string) *campaign.Campaign {
	t.Helper()
	c, err := campaign.ParseSpec(site, []byte(spec))
	if err != nil {
		t.Fatalf("ParseSpec: %s", err)
	}
	if err := s.Create(c); err != nil {
		t.Fatalf("Create: %s", err)
	}
	return c
}

func recipients(t *testing.T, s *campaign.Store, c *campaign.Campaign) map[string]campaign.Recipient {
	t.Helper()
	out := map[string]campaign.Recipient{}
	err := s.ScanRecipients(c, func(r *campaign.Recipient) bool {
		rc := *r
		rc.Email = append([]byte(nil), r.Email...)
		if _, dup := out[string(rc.Email)]; dup {
			t.Errorf("recipient %s twice", rc.Email)
		}
		out[string(rc.Email)] = rc
		return true
	})
	if err != nil {
		t.Fatalf("ScanRecipients: %s", err)
	}
	return out
}

// The freeze: one recipient per email, the first arm keeps a shared
// email, members without email are counted and left out, the split is
// InHoldout's, variants are dealt evenly, and later changes alter nothing.
func TestCreateFreezes(t *testing.T) {
	const n = 400
	e, s := openShop(t, n, 300, 700) // list: u300..u699; u300..u399 also in mums
	c := create(t, s, "shop", `{"name":"promo","arms":[{"name":"behaviour","segment":"mums","variants":["10%","15%","20%"]},{"name":"crm","list":"crm"}],"holdout":20,"window":"7d"}`)
	if c.ID != 1 || c.Sent != t0 || c.Goal != "purchase" || c.Window != 7*24*3600*1000 {
		t.Fatalf("campaign %+v", c)
	}
	beh, crm := c.Arms[0], c.Arms[1]
	// mums: n visitors + u0's second one; every 10th has no email.
	if beh.Members != n+1 || beh.NoEmail != n/10 || beh.InEarlierArm != 0 || beh.Treated+beh.Control != n-n/10 {
		t.Errorf("arm behaviour %+v", beh)
	}
	// crm: 400 emails, those of u300..u399 with an email are mums.
	if crm.Members != 400 || crm.NoEmail != 0 || crm.InEarlierArm != 90 || crm.Treated+crm.Control != 310 {
		t.Errorf("arm crm %+v", crm)
	}
	var vsum uint64
	for _, k := range beh.VariantTreated {
		if k < beh.Treated/3 || k > beh.Treated/3+1 {
			t.Errorf("variant sizes %v of %d treated: not even", beh.VariantTreated, beh.Treated)
		}
		vsum += k
	}
	if vsum != beh.Treated {
		t.Errorf("variant sizes %v sum to %d; want %d", beh.VariantTreated, vsum, beh.Treated)
	}
	got := recipients(t, s, c)
	if uint64(len(got)) != c.Recipients() {
		t.Fatalf("%d recipients stored; want %d", len(got), c.Recipients())
	}
	salt := campaign.Salt("shop", c.ID)
	var ctl int
	for email, r := range got {
		var i int
		fmt.Sscanf(email, "u%d@x.io", &i)
		wantArm := uint16(0)
		if i >= n || i%10 == 9 { // not in mums, or a member without email there
			wantArm = 1
		}
		if r.Arm != wantArm {
			t.Errorf("%s in arm %d; want %d", email, r.Arm, wantArm)
		}
		if r.Control != membership.InHoldout(salt, email, 20) {
			t.Errorf("%s: control %v; not InHoldout's split", email, r.Control)
		}
		if r.Control && r.Variant != 0 || !r.Control && r.Arm == 0 && r.Variant == 0 || r.Arm == 1 && r.Variant != 0 {
			t.Errorf("%s: variant %d (arm %d, control %v)", email, r.Variant, r.Arm, r.Control)
		}
		if r.Control {
			ctl++
		}
		if num, control, ok, err := s.Recipient(c, email); err != nil || !ok || num != r.Number || control != r.Control {
			t.Errorf("Recipient(%s) = %d %v %v %v; want %d %v", email, num, control, ok, err, r.Number, r.Control)
		}
	}
	if ctl < 100 || ctl > 180 { // 20% of 670
		t.Errorf("%d of %d in control; want about 20%%", ctl, len(got))
	}
	if _, _, ok, _ := s.Recipient(c, "u9@x.io"); ok {
		t.Errorf("u9 (no email) is a recipient")
	}

	// A new member after the freeze changes nothing.
	e.Send(t, profiletest.Batch("shop", profiletest.Visitor(5000), profiletest.Event(event.TypeView, t0, nil), profiletest.Identify(t0, "late@x.io")))
	if again := recipients(t, s, c); len(again) != len(got) {
		t.Errorf("%d recipients after a new member; frozen were %d", len(again), len(got))
	}
	// The same audience, another campaign: another split.
	c2 := create(t, s, "shop", `{"name":"promo2","arms":[{"name":"behaviour","segment":"mums"}],"holdout":50,"window":"1d"}`)
	if c2.ID != 2 || c2.Arms[0].Members != n+2 {
		t.Errorf("second campaign %+v", c2)
	}
	if cs, err := s.List("shop"); err != nil || len(cs) != 2 || cs[0].ID != 1 || cs[1].ID != 2 {
		t.Errorf("List = %v, %v", cs, err)
	}
}

func TestTokens(t *testing.T) {
	e, s := openShop(t, 50, 0, 0)
	c := create(t, s, "shop", `{"name":"p","arms":[{"name":"a","segment":"mums"}],"holdout":10,"window":"7d"}`)
	var tokens [][]byte
	var want []campaign.Recipient
	err := s.ScanRecipients(c, func(r *campaign.Recipient) bool {
		tokens = append(tokens, campaign.AppendToken(nil, c.ID, r.Number, &r.MAC))
		rc := *r
		rc.Email = append([]byte(nil), r.Email...)
		want = append(want, rc)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, tok := range tokens {
		gc, r, err := s.Resolve(tok)
		if err != nil || gc.ID != c.ID || r.Number != want[i].Number || string(r.Email) != string(want[i].Email) || r.Cell != want[i].Cell {
			t.Fatalf("Resolve(%s) = %+v, %v; want %+v", tok, r, err, want[i])
		}
		if len(tok) > campaign.MaxTokenLen {
			t.Errorf("token %s longer than %d", tok, campaign.MaxTokenLen)
		}
	}
	// Every single-character change of a token is refused.
	tok := tokens[3]
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range tok {
		for _, ch := range []byte(alphabet) {
			if ch == tok[i] {
				continue
			}
			bad := append([]byte(nil), tok...)
			bad[i] = ch
			if _, r, err := s.Resolve(bad); !isInvalid(err) {
				t.Fatalf("altered token %s (of %s) resolved to %+v, %v", bad, tok, r, err)
			}
		}
	}
	// Another site's campaign under the same id has another secret: the
	// campaign of a token decides the site, and its MAC fails elsewhere.
	e.Send(t, profiletest.Batch("other", profiletest.Visitor(1), profiletest.Event(event.TypeView, t0, nil), profiletest.Identify(t0, "z@x.io")))
	if _, _, err := e.Segments.Put("other", "mums", "count(view) >= 1"); err != nil {
		t.Fatal(err)
	}
	e.Segments.BackfillOf("other", "mums").Wait()
	oc := create(t, s, "other", `{"name":"p","arms":[{"name":"a","segment":"mums"}],"window":"7d"}`)
	var otherMAC [10]byte
	_ = s.ScanRecipients(oc, func(r *campaign.Recipient) bool { otherMAC = r.MAC; return false })
	// other's recipient 0 MAC on shop's campaign id: refused.
	if _, _, err := s.Resolve(campaign.AppendToken(nil, c.ID, 0, &otherMAC)); !isInvalid(err) {
		t.Errorf("a MAC of site other resolved on site shop: %v", err)
	}
	if _, err := s.Get("other", c.ID); !errors.Is(err, campaign.ErrNotFound) {
		t.Errorf("Get of shop's campaign on site other: %v", err)
	}
	// A deleted campaign's tokens resolve no more.
	if found, err := s.Delete("shop", c.ID); !found || err != nil {
		t.Fatalf("Delete = %v, %v", found, err)
	}
	if _, _, err := s.Resolve(tokens[0]); !isInvalid(err) {
		t.Errorf("a deleted campaign's token: %v", err)
	}
	if n, err := e.DB.CountExt([]byte{'Y'}); err != nil || n != int(oc.Recipients()) {
		t.Errorf("%d recipient keys after the delete; want other's %d (%v)", n, oc.Recipients(), err)
	}
}

func isInvalid(err error) bool {
	ie := (*invalid.Error)(nil)
	return errors.As(err, &ie)
}

func TestCreateRefusesUnknownSources(t *testing.T) {
	_, s := openShop(t, 5, 0, 2)
	for _, tc := range []struct{ spec, want string }{
		{`{"name":"p","arms":[{"name":"a","segment":"nope"}],"window":"7d"}`, `invalid arm "a": no segment "nope" of site "shop"`},
		{`{"name":"p","arms":[{"name":"a","list":"nope"}],"window":"7d"}`, `invalid arm "a": no list "nope" of site "shop"`},
	} {
		c, err := campaign.ParseSpec("shop", []byte(tc.spec))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Create(c); !isInvalid(err) || err.Error() != tc.want {
			t.Errorf("Create(%s) = %v; want %s", tc.spec, err, tc.want)
		}
	}
}

// The report sums counter keys of every partition with the frozen sizes;
// its JSON is valid and names each figure.
func TestReport(t *testing.T) {
	e, s := openShop(t, 100, 50, 150)
	c := create(t, s, "shop", `{"name":"p","arms":[{"name":"behaviour","segment":"mums","variants":["10%","20%"]},{"name":"crm","list":"crm"}],"holdout":30,"window":"7d"}`)
	// What the counting step will write: per partition, per cell.
	b := e.DB.NewBatch()
	put := func(cell campaign.Cell, part uint32, x campaign.Counters) {
		if err := b.ExtSet(campaign.CounterKey(nil, c.ID, cell, part), campaign.AppendCounters(nil, &x)); err != nil {
			t.Fatal(err)
		}
	}
	put(campaign.Cell{Arm: 0, Variant: 1}, 0, campaign.Counters{Opened: 10, Clicked: 5, Converted: 3, Orders: 4, Revenue: 40})
	put(campaign.Cell{Arm: 0, Variant: 1}, 1, campaign.Counters{Opened: 1, Converted: 1, Orders: 1, Revenue: 2})
	put(campaign.Cell{Arm: 0, Variant: 2}, 1, campaign.Counters{Opened: 7, Converted: 2, Orders: 2, Revenue: 20})
	put(campaign.Cell{Arm: 0, Control: true}, 0, campaign.Counters{Converted: 1, Orders: 1, Revenue: 5})
	put(campaign.Cell{Arm: 1}, 1, campaign.Counters{Opened: 9, Converted: 1, Orders: 1, Revenue: 1})
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	r, err := s.Report(c, t0+1000)
	if err != nil {
		t.Fatal(err)
	}
	a := r.Arms[0]
	if a.Treated.Recipients != c.Arms[0].Treated || a.Treated.Opened != 18 || a.Treated.Converted != 6 || a.Treated.Orders != 7 || a.Treated.Revenue != 62 {
		t.Errorf("behaviour treated %+v", a.Treated)
	}
	if a.Variants[0].Opened != 11 || a.Variants[0].Converted != 4 || a.Variants[1].Converted != 2 || a.Variants[0].Recipients+a.Variants[1].Recipients != a.Treated.Recipients {
		t.Errorf("behaviour variants %+v", a.Variants)
	}
	if a.Control.Converted != 1 || a.Control.Recipients != c.Arms[0].Control || r.Arms[1].Treated.Opened != 9 {
		t.Errorf("control %+v, crm %+v", a.Control, r.Arms[1].Treated)
	}
	if r.Final() {
		t.Errorf("final a second after the send")
	}
	var doc map[string]any
	out := r.AppendJSON(nil)
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("report JSON %s: %s", out, err)
	}
	arms := doc["arms"].([]any)
	crm := arms[1].(map[string]any)
	vs := crm["vs_first"].(map[string]any)
	ft := float64(a.Treated.Recipients)
	ct := float64(r.Arms[1].Treated.Recipients)
	if want := (9 / ct) / (18 / ft); math.Abs(vs["open_rate"].(float64)-want) > 1e-12 {
		t.Errorf("vs_first open_rate %v; want %v", vs["open_rate"], want)
	}
	up := arms[0].(map[string]any)["uplift"].(map[string]any)["conversion"].(map[string]any)
	u := campaign.TwoProportions(6, a.Treated.Recipients, 1, a.Control.Recipients)
	if up["absolute"].(float64) != u.Absolute || up["p_value"].(float64) != u.P {
		t.Errorf("uplift %v; want %+v", up, u)
	}
	if r.Arms[1].Control.Recipients > 0 && crm["uplift"].(map[string]any)["conversion"].(map[string]any)["relative"] != nil {
		t.Errorf("relative uplift without control conversions: %v", crm["uplift"])
	}
}

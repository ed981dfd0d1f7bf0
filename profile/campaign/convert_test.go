package campaign_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/profile/campaign"
	"github.com/affinityhq/affinity/profile/lists"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/tracker/event"
)

// purchase returns a purchase at ts of order id ("": none) with total.
func purchase(ts int64, order string, total float64) event.Event {
	e := profiletest.Event(event.TypePurchase, ts, nil)
	e.HasOrder, e.Order = true, event.Order{ID: order, Total: total, HasTotal: true}
	return e
}

// TestConversions applies purchases of recipients and others through the
// builder (real Badger, embedded log, two partitions) and checks every
// cell's converted, orders and revenue: the window's bounds to the
// millisecond, an order from two devices on two partitions at once, a
// purchase without an order id replayed and forwarded twice, control
// recipients, a customer id's email, a late link and a non-recipient.
func TestConversions(t *testing.T) {
	e, s := openShop(t, 0, 0, 60) // list crm: u0..u59@x.io
	c := create(t, s, "shop", `{"name":"p","arms":[{"name":"crm","list":"crm"}],"holdout":30,"window":"1h"}`)
	end := c.Sent + c.Window
	rs := recipients(t, s, c)
	var treated, control []string
	for i := range 60 {
		email := fmt.Sprintf("u%d@x.io", i)
		if rs[email].Control {
			control = append(control, email)
		} else {
			treated = append(treated, email)
		}
	}
	if len(treated) < 8 || len(control) < 2 {
		t.Fatalf("%d treated, %d control: too few for the cases", len(treated), len(control))
	}
	want := map[campaign.Cell]*campaign.Counters{}
	count := func(email string, converted, orders uint64, revenue float64) {
		r := rs[email]
		w := want[r.Cell]
		if w == nil {
			w = &campaign.Counters{}
			want[r.Cell] = w
		}
		w.Converted += converted
		w.Orders += orders
		w.Revenue += revenue
	}
	next := 1000
	device := func(part int) event.UUID { // a new visitor on log partition part
		for {
			v := profiletest.Visitor(next)
			next++
			if e.Log.Partition(event.AppendLogKey(nil, "shop", v)) == part {
				return v
			}
		}
	}
	var bs []*event.Batch
	add := func(v event.UUID, evs ...event.Event) { bs = append(bs, profiletest.Batch("shop", v, evs...)) }

	// The window's bounds: sent and sent+window count, a millisecond
	// outside does not.
	add(device(0), profiletest.Identify(c.Sent, treated[0]), purchase(end+1, "late", 10))
	add(device(1), profiletest.Identify(c.Sent, treated[1]), purchase(end, "at-end", 20))
	count(treated[1], 1, 1, 20)
	add(device(0), profiletest.Identify(c.Sent-5, treated[2]), purchase(c.Sent-1, "early", 5), purchase(c.Sent, "at-sent", 7))
	count(treated[2], 1, 1, 7)
	// Two orders of one recipient: converted once, both orders.
	add(device(1), profiletest.Identify(c.Sent, treated[3]), purchase(c.Sent+10, "o-1", 3), purchase(c.Sent+20, "o-2", 4))
	count(treated[3], 1, 2, 7)
	// One order from two devices of one email, on both partitions, in
	// one append: both forward it, it counts once.
	d0, d1 := device(0), device(1)
	add(d0, profiletest.Identify(c.Sent, treated[4]), purchase(c.Sent+100, "shared", 50))
	add(d1, profiletest.Identify(c.Sent, treated[4]), purchase(c.Sent+100, "shared", 50))
	count(treated[4], 1, 1, 50)
	// A purchase without an order id.
	noOrder := purchase(c.Sent+30, "", 9)
	noOrderDevice := device(0)
	add(noOrderDevice, profiletest.Identify(c.Sent, treated[5]), noOrder)
	count(treated[5], 1, 1, 9)
	// Control recipients convert alike.
	add(device(1), profiletest.Identify(c.Sent, control[0]), purchase(c.Sent+40, "c-1", 11))
	count(control[0], 1, 1, 11)
	// A visitor with only a customer id converts its linked person: the
	// customer's other visitor gave the email.
	add(device(0), profiletest.IdentifyCustomer(c.Sent-100, "cust-6", treated[6]))
	// A non-recipient's purchase counts nothing.
	add(device(1), profiletest.Identify(c.Sent, "stranger@x.io"), purchase(c.Sent+50, "s-1", 99))
	// A late link: the device buys, then identifies: not counted.
	late := device(0)
	add(late, purchase(c.Sent+60, "before-identify", 13))
	e.Send(t, bs...)
	bs = bs[:0]
	add(late, profiletest.Identify(c.Sent+70, treated[7]))
	add(device(1), profiletest.IdentifyCustomer(c.Sent+80, "cust-6", ""), purchase(c.Sent+90, "by-customer", 17))
	count(treated[6], 1, 1, 17)
	e.Send(t, bs...)
	checkCounters(t, s, c, want)

	// Replays: the purchase record without an order id again (the
	// builder's dedup drops it), and its convert forwarded twice more, as
	// a crash between forwarding and commit would: nothing more counts.
	rn, _, ok, err := s.Recipient(c, treated[5])
	if err != nil || !ok {
		t.Fatalf("recipient %s: %v, %v", treated[5], ok, err)
	}
	conv := &event.Batch{Site: "shop", Visitor: campaign.EngagementVisitor(c.ID, rn), Recv: c.Sent + 31, Events: []event.Event{{
		ID: noOrder.ID, Type: event.TypeConvert, TS: noOrder.TS, Campaign: c.ID, Recipient: rn, HasOrder: true, Order: event.Order{Total: 9, HasTotal: true},
	}}}
	e.Send(t, profiletest.Batch("shop", noOrderDevice, noOrder), conv, conv)
	// A convert outside the window, of another site or of no recipient:
	// nothing.
	bad := func(mut func(b *event.Batch)) *event.Batch {
		b := *conv
		b.Events = []event.Event{conv.Events[0]}
		b.Events[0].ID = profiletest.NewEventID()
		mut(&b)
		return &b
	}
	e.Send(t,
		bad(func(b *event.Batch) { b.Events[0].TS = end + 1 }),
		bad(func(b *event.Batch) { b.Site = "other" }),
		bad(func(b *event.Batch) { b.Events[0].Recipient = 1 << 30 }),
		bad(func(b *event.Batch) { b.Events[0].Campaign = c.ID + 100 }),
	)
	checkCounters(t, s, c, want)
	// at-end, at-sent, o-1, o-2, shared twice, no order, c-1, by-customer.
	if g := e.Metrics.GetOrCreateCounter("affinity_builder_conversions_forwarded_total").Get(); g != 9 {
		t.Errorf("%d conversions forwarded; want 9", g)
	}

	// The report says what it counts.
	r, err := s.Report(c, end+1)
	if err != nil {
		t.Fatal(err)
	}
	if j := string(r.AppendJSON(nil)); strings.Contains(j, "not counted") || !strings.Contains(j, `"conversion_rate":`) {
		t.Errorf("report JSON %s", j)
	}
}

// TestConvertNonRecipientAllocs: a purchase of a site without campaigns,
// or outside its campaigns' windows, forwards nothing and allocates
// nothing (a non-recipient inside a window costs one point read:
// BenchmarkConvert).
func TestConvertNonRecipientAllocs(t *testing.T) {
	_, s := openShop(t, 0, 0, 10)
	create(t, s, "shop", `{"name":"p","arms":[{"name":"crm","list":"crm"}],"window":"1h"}`)
	cnt := s.NewCounter(0)
	p := purchase(t0+10, "o-1", 5)
	after := purchase(t0+3600001, "o-2", 5)
	var dst []storage.Message
	for _, tc := range []struct {
		site string
		p    *event.Event
	}{{"other", &p}, {"shop", &after}} {
		allocs := testing.AllocsPerRun(100, func() {
			var err error
			if dst, err = cnt.Convert(dst[:0], tc.site, "u3@x.io", t0+20, tc.p); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 || len(dst) != 0 {
			t.Errorf("site %s, purchase at %d: %v allocs, %d messages; want 0, 0", tc.site, tc.p.TS, allocs, len(dst))
		}
	}
	if dst, err := cnt.Convert(dst[:0], "shop", "stranger@x.io", t0+20, &p); err != nil || len(dst) != 0 {
		t.Fatalf("non-recipient's purchase: %d messages, %v", len(dst), err)
	}
	// The recipient's purchase is forwarded: to its own visitor.
	dst, err := cnt.Convert(dst[:0], "shop", "u3@x.io", t0+20, &p)
	if err != nil || len(dst) != 1 {
		t.Fatalf("recipient's purchase: %d messages, %v", len(dst), err)
	}
	var b event.Batch
	if err := event.DecodeRecord(&b, dst[0].Value); err != nil {
		t.Fatal(err)
	}
	ev := &b.Events[0]
	if ev.Type != event.TypeConvert || ev.ID != p.ID || ev.TS != p.TS || ev.Order.ID != "o-1" || ev.Order.Total != 5 ||
		b.Visitor != campaign.EngagementVisitor(ev.Campaign, ev.Recipient) || string(dst[0].Key) != string(event.AppendLogKey(nil, "shop", b.Visitor)) {
		t.Errorf("convert record %+v %+v", b, *ev)
	}
}

// BenchmarkConvert is the builder's cost per purchase: of a
// non-recipient on a site with a campaign whose window holds it (one
// point read), of a site without campaigns (a map lookup).
func BenchmarkConvert(b *testing.B) {
	e := profiletest.Open(b, profiletest.Options{})
	e.Clock.Set(t0)
	if _, bf, err := e.Segments.PutList("shop", "crm", strings.NewReader("email\nu1@x.io\n"), lists.FormatCSV); err != nil {
		b.Fatal(err)
	} else {
		bf.Wait()
	}
	c, err := campaign.ParseSpec("shop", []byte(`{"name":"p","arms":[{"name":"crm","list":"crm"}],"window":"1h"}`))
	if err != nil {
		b.Fatal(err)
	}
	if err := e.Campaigns.Create(c); err != nil {
		b.Fatal(err)
	}
	cnt := e.Campaigns.NewCounter(0)
	p := purchase(t0+10, "o-1", 5)
	var dst []storage.Message
	for _, site := range []string{"shop", "no-campaigns"} {
		b.Run("site="+site, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				dst, _ = cnt.Convert(dst[:0], site, "stranger@x.io", t0+20, &p)
			}
		})
	}
}

// TestConvertForwardFails: when the log refuses the forwarded convert,
// the purchase's commit fails, and it is applied and forwarded again
// once the log takes it.
func TestConvertForwardFails(t *testing.T) {
	var refuse refusingLog
	e, s := openShopIn(t, profiletest.Options{Builder: func(o *builder.Options) {
		refuse.Log = o.Log
		o.Log = &refuse
	}}, 0, 0, 10)
	c := create(t, s, "shop", `{"name":"p","arms":[{"name":"crm","list":"crm"}],"window":"1h"}`)
	refuse.on.Store(true)
	e.Append(t, profiletest.Batch("shop", profiletest.Visitor(7), profiletest.Identify(c.Sent, "u1@x.io"), purchase(c.Sent+1, "o-9", 4)))
	profiletest.WaitUntil(t, "a refused forward", func() bool { return refuse.refused.Load() > 0 })
	if st := e.Builder.Status(); !strings.Contains(string(st.AppendText(nil)), "cannot forward 1 conversions") {
		t.Errorf("status %s; want the forward's error", st.AppendText(nil))
	}
	refuse.on.Store(false)
	e.Wait(t)
	got, err := s.Counters(c)
	if err != nil {
		t.Fatal(err)
	}
	var sum campaign.Counters
	for _, g := range got {
		sum.Add(&g)
	}
	if sum.Converted != 1 || sum.Orders != 1 || math.Abs(sum.Revenue-4) > 1e-9 {
		t.Errorf("counters %+v; want 1 converted, 1 order, revenue 4", sum)
	}
}

// refusingLog is a log whose Append fails while on is set: the builder's
// forwarding of conversions, refused.
type refusingLog struct {
	storage.Log
	on      atomic.Bool
	refused atomic.Int64
}

func (l *refusingLog) Append(ctx context.Context, msgs []storage.Message) error {
	if l.on.Load() {
		l.refused.Add(1)
		return fmt.Errorf("refused %d messages: %w", len(msgs), storage.ErrFull)
	}
	return l.Log.Append(ctx, msgs)
}

// TestFollowUpRules: received("ID") and converted("ID") in segment rules
// — a second wave to the treated who did not buy. A conversion is seen
// at the visitor's next evaluation (its next event), not at once.
func TestFollowUpRules(t *testing.T) {
	e, s := openShop(t, 0, 0, 40)
	c := create(t, s, "shop", `{"name":"p","arms":[{"name":"crm","list":"crm"}],"holdout":30,"window":"1h"}`)
	rs := recipients(t, s, c)
	var treated, control string
	for i := range 40 {
		email := fmt.Sprintf("u%d@x.io", i)
		if rs[email].Control && control == "" {
			control = email
		} else if !rs[email].Control && treated == "" {
			treated = email
		}
	}
	for name, src := range map[string]string{"wave2": `received("1") and not converted("1")`, "buyers": `converted("1")`, "other": `received("2")`} {
		if _, _, err := e.Segments.Put("shop", name, src); err != nil {
			t.Fatal(err)
		}
	}
	buyer, ctl, stranger := profiletest.Visitor(9001), profiletest.Visitor(9002), profiletest.Visitor(9003)
	e.Send(t, profiletest.Batch("shop", buyer, profiletest.Identify(c.Sent, treated)),
		profiletest.Batch("shop", ctl, profiletest.Identify(c.Sent, control)),
		profiletest.Batch("shop", stranger, profiletest.Identify(c.Sent, "stranger@x.io")))
	member := func(name string, v event.UUID) bool {
		t.Helper()
		_, ok, err := e.Segments.IsMember("shop", name, v)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	check := func(when string, want map[string][3]bool) {
		t.Helper()
		for name, w := range want {
			for i, v := range []event.UUID{buyer, ctl, stranger} {
				if g := member(name, v); g != w[i] {
					t.Errorf("%s: visitor %d in %s: %v; want %v", when, i, name, g, w[i])
				}
			}
		}
	}
	check("before buying", map[string][3]bool{"wave2": {true, false, false}, "buyers": {false, false, false}, "other": {false, false, false}})
	e.Send(t, profiletest.Batch("shop", buyer, purchase(c.Sent+10, "o-1", 5)), profiletest.Batch("shop", ctl, purchase(c.Sent+10, "o-2", 5)))
	e.Send(t, profiletest.Batch("shop", buyer, profiletest.Event(event.TypePageview, c.Sent+20, nil)),
		profiletest.Batch("shop", ctl, profiletest.Event(event.TypePageview, c.Sent+20, nil)))
	check("after buying and a pageview", map[string][3]bool{"wave2": {false, false, false}, "buyers": {true, true, false}, "other": {false, false, false}})
}

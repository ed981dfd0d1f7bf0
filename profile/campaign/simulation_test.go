package campaign_test

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/affinityhq/affinity/profile/campaign"
	"github.com/affinityhq/affinity/profile/lists"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/tracker/event"
)

// simMessage is one Segment message the simulation sends.
type simMessage struct {
	visitor event.UUID
	email   string // identify; "" for a purchase
	order   string
	total   float64
	ts      int64
}

func (m *simMessage) appendJSON(dst []byte) []byte {
	ts := time.UnixMilli(m.ts).UTC().Format("2006-01-02T15:04:05.000Z")
	id := profiletest.NewEventID()
	if m.email != "" {
		return fmt.Appendf(dst, `{"type":"identify","messageId":"%s","anonymousId":"%s","timestamp":"%s","traits":{"email":%q}}`, id, m.visitor, ts, m.email)
	}
	return fmt.Appendf(dst, `{"type":"track","event":"Order Completed","messageId":"%s","anonymousId":"%s","timestamp":"%s","properties":{"order_id":%q,"total":%.2f}}`,
		id, m.visitor, ts, m.order, m.total)
}

// TestSimulatedCampaign is the acceptance of conversions: a campaign of
// 22 000 recipients in two arms (one with variants) and a 10% holdout,
// with known conversion probabilities per group, whose recipients'
// devices identify and buy through the real collector's Segment batch
// API over HTTP — some inside the window, some after it, some orders
// sent twice, some persons on two devices buying the same order, some
// buyers not recipients. Every count of the report equals a brute-force
// count over the messages sent.
func TestSimulatedCampaign(t *testing.T) {
	if testing.Short() {
		t.Skip("22 000 recipients")
	}
	const perArm = 11000
	e := profiletest.Open(t, profiletest.Options{})
	e.Clock.Set(t0)
	for arm, name := range []string{"a", "b"} {
		var csv strings.Builder
		csv.WriteString("email\n")
		for i := arm * perArm; i < (arm+1)*perArm; i++ {
			fmt.Fprintf(&csv, "p%d@x.io\n", i)
		}
		if _, bf, err := e.Segments.PutList("shop", name, strings.NewReader(csv.String()), lists.FormatCSV); err != nil {
			t.Fatal(err)
		} else {
			bf.Wait()
		}
	}
	s := e.Campaigns
	c := create(t, s, "shop", `{"name":"sim","arms":[{"name":"a","list":"a"},{"name":"b","list":"b","variants":["10%","20%"]}],"holdout":10,"window":"1h"}`)
	if c.Recipients() != 2*perArm {
		t.Fatalf("%d recipients; want %d", c.Recipients(), 2*perArm)
	}
	rs := recipients(t, s, c)
	// The collector accepts the purchases as past events.
	e.Clock.Set(t0 + 3*3600*1000)
	base := startCollector(t, e, "shop")

	// Conversion probability per cell: arm, control, variant.
	prob := func(cell campaign.Cell) float64 {
		switch {
		case cell.Control:
			return 0.03
		case cell.Arm == 0:
			return 0.06
		case cell.Variant == 1:
			return 0.09
		default:
			return 0.05
		}
	}
	rnd := rand.New(rand.NewPCG(11, 12))
	// units are each person's messages, kept in one batch, identifies
	// first: a device is identified before it buys (a late link, which
	// does not count, is TestConversions').
	var units [][]simMessage
	wants := map[campaign.Cell]*campaign.Counters{}
	nextVisitor := 100_000
	newVisitor := func() event.UUID { nextVisitor++; return profiletest.Visitor(nextVisitor) }
	end := c.Sent + c.Window
	for i := range 2 * perArm {
		email := fmt.Sprintf("p%d@x.io", i)
		r, ok := rs[email]
		if !ok {
			t.Fatalf("%s is no recipient", email)
		}
		if rnd.Float64() >= prob(r.Cell) {
			continue
		}
		devices := []event.UUID{newVisitor()}
		if rnd.IntN(8) == 0 { // a second device of the person
			devices = append(devices, newVisitor())
		}
		var unit []simMessage
		for _, d := range devices {
			unit = append(unit, simMessage{visitor: d, email: email, ts: c.Sent - 1000})
		}
		orders := map[string]float64{}
		for k := range 1 + rnd.IntN(3) {
			order := fmt.Sprintf("o-%d-%d", i, k)
			total := float64(100+rnd.IntN(20000)) / 100
			ts := c.Sent + rnd.Int64N(c.Window+1)
			switch rnd.IntN(10) {
			case 0: // after the window, by a millisecond or more
				ts = end + 1 + rnd.Int64N(3600*1000)
			case 1: // exactly at its end
				ts = end
			}
			m := simMessage{visitor: devices[rnd.IntN(len(devices))], order: order, total: total, ts: ts}
			unit = append(unit, m)
			if rnd.IntN(6) == 0 { // sent again: by the same device, or the other one
				m.visitor = devices[rnd.IntN(len(devices))]
				unit = append(unit, m)
			}
			if ts <= end {
				orders[order] = total
			}
		}
		units = append(units, unit)
		if len(orders) > 0 {
			w := wants[r.Cell]
			if w == nil {
				w = &campaign.Counters{}
				wants[r.Cell] = w
			}
			w.Converted++
			for _, total := range orders {
				w.Orders++
				w.Revenue += total
			}
		}
	}
	// Buyers who are no recipients.
	for i := range 500 {
		v := newVisitor()
		units = append(units, []simMessage{{visitor: v, email: fmt.Sprintf("x%d@x.io", i), ts: c.Sent},
			{visitor: v, order: fmt.Sprintf("x-%d", i), total: 10, ts: c.Sent + 60_000}})
	}
	rnd.Shuffle(len(units), func(i, j int) { units[i], units[j] = units[j], units[i] })
	var bodies [][]byte
	nmsgs := 0
	for len(units) > 0 {
		body := []byte(`{"batch":[`)
		n := 0
		for len(units) > 0 && n+len(units[0]) <= 100 {
			for _, m := range units[0] {
				if n > 0 {
					body = append(body, ',')
				}
				body = m.appendJSON(body)
				n++
			}
			units = units[1:]
		}
		nmsgs += n
		bodies = append(bodies, append(body, "]}"...))
	}
	t.Logf("%d messages in %d batches", nmsgs, len(bodies))
	start := time.Now()
	var wg sync.WaitGroup
	const workers = 4
	per := (len(bodies) + workers - 1) / workers
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func(run [][]byte) {
			defer wg.Done()
			for _, body := range run {
				req, _ := http.NewRequest("POST", base+"/v1/batch", bytes.NewReader(body))
				req.SetBasicAuth("shop-key", "")
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("POST /v1/batch: %d %s", resp.StatusCode, b)
					return
				}
			}
		}(bodies[min(w*per, len(bodies)):min((w+1)*per, len(bodies))])
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	e.Wait(t)
	t.Logf("sent and applied in %s", time.Since(start).Round(time.Millisecond))

	checkCounters(t, s, c, wants)
	r, err := s.Report(c, end+1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range r.Arms {
		ar := &r.Arms[i]
		check := func(name string, g *campaign.Group, cells ...campaign.Cell) {
			var w campaign.Counters
			for _, cell := range cells {
				if x := wants[cell]; x != nil {
					w.Add(x)
				}
			}
			if g.Converted != w.Converted || g.Orders != w.Orders || math.Abs(g.Revenue-w.Revenue) > 1e-6 {
				t.Errorf("report arm %s %s: %+v; want %+v", ar.Arm.Name, name, g.Counters, w)
			}
			t.Logf("arm %s %s: %d recipients, %d converted (%.4f), %d orders, revenue %.2f", ar.Arm.Name, name, g.Recipients, g.Converted,
				float64(g.Converted)/float64(g.Recipients), g.Orders, g.Revenue)
		}
		a := uint16(i)
		if len(ar.Variants) == 0 {
			check("treated", &ar.Treated, campaign.Cell{Arm: a})
		} else {
			check("treated", &ar.Treated, campaign.Cell{Arm: a, Variant: 1}, campaign.Cell{Arm: a, Variant: 2})
			for j := range ar.Variants {
				check("variant "+ar.Arm.Variants[j], &ar.Variants[j], campaign.Cell{Arm: a, Variant: uint16(j + 1)})
			}
		}
		check("control", &ar.Control, campaign.Cell{Arm: a, Control: true})
		if ar.Treated.Recipients+ar.Control.Recipients != perArm {
			t.Errorf("arm %s: %d + %d recipients; want %d", ar.Arm.Name, ar.Treated.Recipients, ar.Control.Recipients, perArm)
		}
	}
}

package campaign_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/profile/campaign"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// The crash test counts opens, clicks and purchases in a child process (this test
// binary, re-executed to run TestCountCrashChild) that it SIGKILLs at
// random instants while records are appended and applied; a last child
// finishes. The counters must then equal a count over the records: each
// recipient's first open and click counted once, each of its orders
// once (forwarded again when a kill fell between the forward and the
// commit), whatever was replayed or applied again after a kill.

const (
	countCrashDirEnv    = "AFFINITY_CAMPAIGN_CRASH_DIR"
	countCrashFinishEnv = "AFFINITY_CAMPAIGN_CRASH_FINISH"
	countCrashTotal     = 6000
)

// crashBuyers is the number of the shop's visitors (openShopIn's
// visitors 0..crashBuyers-1, every 10th without an email) who buy in the
// crash stream, and visitor crashBuyers+1 is person u0's second device.
const crashBuyers = 300

// crashPurchase returns the purchase of record i of the crash stream,
// or nil: a quarter are purchases by the shop's visitors, of orders
// drawn from three per person so that orders repeat — on one device and
// on u0's two — with the total the order id gives.
func crashPurchase(i int) (*event.Batch, int) {
	r := rand.New(rand.NewPCG(uint64(i), 8))
	if r.IntN(4) != 0 {
		return nil, 0
	}
	k := r.IntN(crashBuyers + 2)
	person := k
	if k >= crashBuyers {
		k, person = crashBuyers+1, 0 // u0's second device
	}
	order := fmt.Sprintf("o-%d-%d", person, r.IntN(3))
	p := event.Event{ID: profiletest.EventID(i + 1), Type: event.TypePurchase, TS: t0 + int64(i), HasOrder: true,
		Order: event.Order{ID: order, Total: float64(len(order)) + float64(person%7), HasTotal: true}}
	return &event.Batch{Site: "shop", Visitor: profiletest.Visitor(k), Recv: p.TS, Events: []event.Event{p}}, person
}

// engagementRecord returns record i of the crash stream: a purchase
// (crashPurchase), or an open or a click of one of toks, as the
// collector logs it.
func engagementRecord(toks []tokenOf, c *campaign.Campaign, numbers []uint32, i int) *event.Batch {
	if b, _ := crashPurchase(i); b != nil {
		return b
	}
	r := rand.New(rand.NewPCG(uint64(i), 7))
	// Skewed: the first recipients engage many times (replays), the last
	// few or never.
	k := r.IntN(len(toks)) * r.IntN(len(toks)) / len(toks)
	typ := event.TypeOpen
	if r.IntN(8) == 0 {
		typ = event.TypeClick
	}
	v := campaign.EngagementVisitor(c.ID, numbers[k])
	ts := t0 + int64(i)
	return &event.Batch{Site: "shop", Visitor: v, Recv: ts, Events: []event.Event{{ID: profiletest.EventID(i + 1), Type: typ, TS: ts, Token: toks[k].tok}}}
}

func crashStream(t testing.TB, e *profiletest.Env) (*campaign.Campaign, []tokenOf, []uint32) {
	cs, err := e.Campaigns.List("shop")
	if err != nil || len(cs) != 1 {
		t.Fatalf("campaigns: %v, %v", cs, err)
	}
	c := cs[0]
	var toks []tokenOf
	var numbers []uint32
	if err := e.Campaigns.ScanRecipients(c, func(r *campaign.Recipient) bool {
		toks = append(toks, tokenOf{string(campaign.AppendToken(nil, c.ID, r.Number, &r.MAC)), r.Cell})
		numbers = append(numbers, r.Number)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return c, toks, numbers
}

func TestCountCrashChild(t *testing.T) {
	dir := os.Getenv(countCrashDirEnv)
	if dir == "" {
		t.Skip("runs only as the child of TestCountExactlyOnceAcrossCrashes")
	}
	e := profiletest.Open(t, profiletest.Options{Dir: dir, Builder: func(o *builder.Options) { o.FetchMax = 16 }})
	c, toks, numbers := crashStream(t, e)
	// The records appended so far, as the last child wrote down after its
	// last Append (not the log's count: the builder appends conversions).
	// A child killed between an Append and writing it down appends that
	// chunk again: a client's retry, which must count nothing more.
	progress := filepath.Join(dir, "appended")
	stored := 0
	if b, err := os.ReadFile(progress); err == nil {
		stored, _ = strconv.Atoi(string(b))
	}
	fmt.Println(profiletest.ChildReady)
	const chunk = 8
	for i := stored; i < countCrashTotal; i += chunk {
		var msgs []storage.Message
		for j := i; j < min(i+chunk, countCrashTotal); j++ {
			b := engagementRecord(toks, c, numbers, j)
			msgs = append(msgs, storage.Message{Key: event.AppendLogKey(nil, b.Site, b.Visitor), Value: event.AppendBatch(nil, b)})
		}
		if err := e.Log.Append(context.Background(), msgs); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(progress, []byte(strconv.Itoa(i+chunk)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if os.Getenv(countCrashFinishEnv) == "" {
		select {} // until killed
	}
	e.Wait(t)
}

// logged returns the number of records in e's log.
func logged(t testing.TB, e *profiletest.Env) int {
	n := 0
	for p := range 2 {
		_, next, err := e.Log.Offsets(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		n += int(next)
	}
	return n
}

// e2eBase is the number of records the setup logged before the stream
// (the shop's visitors), kept in a file by the parent.
func e2eBase(t testing.TB, dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "base"))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

func TestCountExactlyOnceAcrossCrashes(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	dir := t.TempDir()
	e, s := openShopIn(t, profiletest.Options{Dir: dir}, 300, 0, 0)
	create(t, s, "shop", `{"name":"p","arms":[{"name":"a","segment":"mums","variants":["x","y"]}],"holdout":20,"window":"7d"}`)
	base := logged(t, e)
	if err := os.WriteFile(filepath.Join(dir, "base"), []byte(strconv.Itoa(base)), 0o644); err != nil {
		t.Fatal(err)
	}
	e.Close(t)

	profiletest.CrashRun(t, "TestCountCrashChild", []string{countCrashDirEnv + "=" + dir}, countCrashFinishEnv,
		4, time.Second, func() string { return countProgress(t, dir) })

	e = profiletest.Open(t, profiletest.Options{Dir: dir})
	c, toks, numbers := crashStream(t, e)
	type seen struct{ open, click bool }
	per := map[int]*seen{}
	bought := map[int]map[string]float64{} // person → order → total
	for i := range countCrashTotal {
		b := engagementRecord(toks, c, numbers, i)
		if b.Events[0].Type == event.TypePurchase {
			_, person := crashPurchase(i)
			if person%10 == 9 {
				continue // no email: no recipient
			}
			if bought[person] == nil {
				bought[person] = map[string]float64{}
			}
			bought[person][b.Events[0].Order.ID] = b.Events[0].Order.Total
			continue
		}
		k := 0
		for toks[k].tok != b.Events[0].Token {
			k++
		}
		if per[k] == nil {
			per[k] = &seen{}
		}
		per[k].open = true
		per[k].click = per[k].click || b.Events[0].Type == event.TypeClick
	}
	want := map[campaign.Cell]*campaign.Counters{}
	for k, x := range per {
		w := want[toks[k].Cell]
		if w == nil {
			w = &campaign.Counters{}
			want[toks[k].Cell] = w
		}
		w.Opened++
		if x.click {
			w.Clicked++
		}
	}
	for person, orders := range bought {
		n, _, ok, err := e.Campaigns.Recipient(c, fmt.Sprintf("u%d@x.io", person))
		if err != nil || !ok {
			t.Fatalf("person %d: recipient %v, %v", person, ok, err)
		}
		k := slices.Index(numbers, n)
		w := want[toks[k].Cell]
		if w == nil {
			w = &campaign.Counters{}
			want[toks[k].Cell] = w
		}
		w.Converted++
		for _, total := range orders {
			w.Orders++
			w.Revenue += total
		}
	}
	t.Logf("%d records, %d of %d recipients engaged, %d bought, %d cells", countCrashTotal, len(per), len(toks), len(bought), len(want))
	if len(per) == len(toks) {
		t.Fatalf("every recipient engaged: the stream cannot tell a lost count")
	}
	checkCounters(t, e.Campaigns, c, want)
}

// countProgress reports how far the killed children got.
func countProgress(t *testing.T, dir string) string {
	db, err := state.Open(state.DefaultOptions(filepath.Join(dir, "state")))
	if err != nil {
		return "state not readable: " + err.Error()
	}
	defer db.Close()
	var consumed int64
	for p := range 2 {
		n, _ := db.Offset(p)
		consumed += n
	}
	n, _ := db.CountExt([]byte{'E'})
	return fmt.Sprintf("%d records consumed, %d recipients engaged", consumed-int64(e2eBase(t, dir)), n)
}

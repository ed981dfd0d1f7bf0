package builder_test

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/profile/catalog"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

var (
	acme  = event.Product{ID: "p1", Brand: "acme", Category: "baby/food", Age: "0-3", Price: 12, HasPrice: true}
	other = event.Product{ID: "p2", Brand: "other", Category: "baby/toys", Price: 60, HasPrice: true}
)

func TestApply(t *testing.T) {
	e := openEnv(t, t.TempDir(), 4, nil)
	var batches []*event.Batch
	for v := range 20 {
		evs := []event.Event{
			view(v*10, t0+int64(v), acme),
			withType(view(v*10+1, t0+int64(v)+1000, acme), event.TypeCart),
		}
		if v%2 == 0 {
			evs = append(evs, view(v*10+2, t0+2000, other))
		}
		if v%5 == 0 {
			evs = append(evs, withType(view(v*10+3, t0+3000, acme), event.TypePurchase))
		}
		batches = append(batches, profiletest.Batch("s1", profiletest.Visitor(v), evs...))
	}
	// A second record of visitor 0, and the same visitor bytes on site s2.
	batches = append(batches, profiletest.Batch("s1", profiletest.Visitor(0), withType(view(900, t0+8000, acme), event.TypeUncart)))
	batches = append(batches, profiletest.Batch("s2", profiletest.Visitor(0), view(901, t0+8000, other)))
	e.Append(t, batches...)
	e.Wait(t)

	ref := reference(e.Config, batches)
	if len(ref) != 21 {
		t.Fatalf("reference has %d profiles; want 21", len(ref))
	}
	checkState(t, e.DB, e.Config, ref)
	if got, want := counter(e.Metrics, "affinity_builder_events_applied_total"), uint64(20*2+10+4+2); got != want {
		t.Fatalf("events applied = %d; want %d", got, want)
	}

	// The interest scan: who has brand=acme with score ≥ θ at t0+9000,
	// best first: every visitor viewed and carted acme, the purchasers (0,
	// 5, 10, 15) scored 5 more.
	at := t0 + 9000
	theta := 8.5
	maxKey := state.ScoreKey(e.Config.LogThreshold(profile.DimBrand, theta, at))
	var got []event.UUID
	err := e.DB.ScanInterests("s1", "brand", "acme", maxKey, nil, func(pos state.InterestPos) bool {
		got = append(got, pos.Visitor)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("brand=acme ≥ %v: %d visitors; want the 4 purchasers", theta, len(got))
	}
	for _, v := range got {
		p := e.Profile(t, "s1", v)
		if s := p.Score(e.Config, profile.DimBrand, "acme", at); s < theta {
			t.Fatalf("visitor %s scored %v < θ=%v but was returned", v, s, theta)
		}
	}
	st := e.Builder.Status()
	if len(st.Partitions) != 4 || st.EventsApplied == 0 {
		t.Fatalf("Status = %+v; want 4 partitions and events applied", st)
	}
	for _, ps := range st.Partitions {
		if ps.Lag != 0 || ps.Error != "" {
			t.Fatalf("partition status after catching up = %+v; want no lag, no error", ps)
		}
	}
	if err := e.Builder.Health(t.Context()); err != nil {
		t.Fatalf("Health = %v; want nil", err)
	}
	// 11 events of product p2, which carries no age and is not in the
	// (empty) catalog: catalog misses.
	text := string(st.AppendText(nil))
	if !strings.HasPrefix(text, "builder events_applied=56 dedup_hits=0 catalog_misses=11\npartition 0 consumed=") {
		t.Fatalf("status text = %q", text)
	}
}

func TestDedupOfResentBatch(t *testing.T) {
	e := openEnv(t, t.TempDir(), 2, nil)
	b1 := profiletest.Batch("s1", profiletest.Visitor(1), view(1, t0, acme), view(2, t0+10, other))
	// The client did not see the answer and sent the batch again, then one
	// more batch repeating event 2 with a new event 3.
	b2 := profiletest.Batch("s1", profiletest.Visitor(1), view(1, t0, acme), view(2, t0+10, other))
	b3 := profiletest.Batch("s1", profiletest.Visitor(1), view(2, t0+10, other), view(3, t0+20, acme))
	e.Append(t, b1)
	e.Append(t, b2, b3)
	e.Wait(t)
	checkState(t, e.DB, e.Config, reference(e.Config, []*event.Batch{b1, b3}))
	if got := counter(e.Metrics, "affinity_builder_dedup_hits_total"); got != 3 {
		t.Fatalf("dedup hits = %d; want 3", got)
	}
	p := e.Profile(t, "s1", profiletest.Visitor(1))
	if n := p.Events[event.TypeView].Count; n != 3 {
		t.Fatalf("views counted = %d; want 3", n)
	}

	// After a restart (empty cache) the ids are still known.
	e.Close(t)
	e = openEnv(t, e.Dir, 2, nil)
	e.Append(t, b2)
	e.Wait(t)
	if n := e.Profile(t, "s1", profiletest.Visitor(1)).Events[event.TypeView].Count; n != 3 {
		t.Fatalf("views counted after a restart and a resend = %d; want 3", n)
	}
	if got := counter(e.Metrics, "affinity_builder_dedup_hits_total"); got != 2 {
		t.Fatalf("dedup hits after restart = %d; want 2", got)
	}
}

func putProducts(t *testing.T, db *state.DB, site string, ps ...catalog.Product) {
	t.Helper()
	w, err := db.NewProductWriter(site)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ps {
		if err := w.Put(ps[i].ID, catalog.AppendProduct(nil, &ps[i])); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestCatalogJoin(t *testing.T) {
	e := openEnv(t, t.TempDir(), 2, nil)
	putProducts(t, e.DB, "s1",
		catalog.Product{ID: "p1", Brand: "acme", Category: "baby/food", Age: "0-3", Price: 12, HasPrice: true},
		catalog.Product{ID: "p2", Brand: "other", Category: "toys"})
	only := func(id string) event.Product { return event.Product{ID: id} }
	b := profiletest.Batch("s1", profiletest.Visitor(1),
		view(1, t0, only("p1")),                               // joined: acme, baby, baby/food, 0-3, price band
		view(2, t0, event.Product{ID: "p2", Brand: "inline"}), // inline brand wins; category joined
		view(3, t0, only("p9")),                               // unknown: scored on its id only
		event.Event{ID: profiletest.EventID(4), Type: event.TypePurchase, TS: t0, HasOrder: true,
			Order: event.Order{ID: "o1", Items: []event.Product{only("p1"), only("p9")}}},
	)
	e.Append(t, b)
	e.Wait(t)
	p := e.Profile(t, "s1", profiletest.Visitor(1))
	f := func(d profile.Dim, v string, want float64) {
		t.Helper()
		if got := p.Score(e.Config, d, v, t0); math.Abs(got-want) > 1e-9 {
			t.Errorf("score %s=%s = %v; want %v", d, v, got, want)
		}
	}
	f(profile.DimBrand, "acme", 1+5)
	f(profile.DimCategory, "baby", 1+5)
	f(profile.DimCategory, "baby/food", 1+5)
	f(profile.DimAge, "0-3", 1+5)
	f(profile.DimPrice, e.Config.PriceBand(12), 1+5)
	f(profile.DimBrand, "inline", 1)
	f(profile.DimBrand, "other", 0)
	f(profile.DimCategory, "toys", 1)
	f(profile.DimProduct, "p9", 1+5)
	if got := counter(e.Metrics, "affinity_builder_catalog_misses_total"); got != 2 {
		t.Fatalf("catalog misses = %d; want 2 (p9 viewed, p9 bought)", got)
	}

	// A catalog update reaches the builder: p9 is now known.
	putProducts(t, e.DB, "s1", catalog.Product{ID: "p9", Brand: "late"})
	e.Append(t, profiletest.Batch("s1", profiletest.Visitor(1), view(5, t0, only("p9"))))
	e.Wait(t)
	if got := e.Profile(t, "s1", profiletest.Visitor(1)).Score(e.Config, profile.DimBrand, "late", t0); got != 1 {
		t.Fatalf("brand from the updated catalog scored %v; want 1", got)
	}
}

// identify returns an identify event with event id n.
func identify(n int, ts int64, email string) event.Event {
	e := profiletest.Identify(ts, email)
	e.ID = profiletest.EventID(n)
	return e
}

func visitorsByEmail(t *testing.T, db *state.DB, site, email string) []event.UUID {
	t.Helper()
	return linked(t, db.VisitorsByEmail, site, email)
}

func visitorsByCustomer(t *testing.T, db *state.DB, site, customer string) []event.UUID {
	t.Helper()
	return linked(t, db.VisitorsByCustomer, site, customer)
}

// linked returns the visitors an identity index scan (by email, by
// customer id) finds for id.
func linked(t *testing.T, scan func(site, id string, fn func([16]byte) bool) error, site, id string) []event.UUID {
	t.Helper()
	var got []event.UUID
	if err := scan(site, id, func(v [16]byte) bool { got = append(got, v); return true }); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestIdentityIndex(t *testing.T) {
	e := openEnv(t, t.TempDir(), 2, nil)
	e.Append(t,
		profiletest.Batch("s1", profiletest.Visitor(1), identify(1, t0, "  Ann@Example.COM ")),
		profiletest.Batch("s1", profiletest.Visitor(2), identify(2, t0, "ann@example.com")),
		profiletest.Batch("s1", profiletest.Visitor(3), identify(3, t0, "bob@example.com")),
	)
	e.Wait(t)
	if got := visitorsByEmail(t, e.DB, "s1", state.NormalizeEmail("ANN@example.com")); len(got) != 2 {
		t.Fatalf("visitors of ann = %v; want visitors 1 and 2", got)
	}
	// Visitor 2 identifies later as bob: the link moves.
	e.Append(t, profiletest.Batch("s1", profiletest.Visitor(2), identify(4, t0+100, "bob@example.com")))
	e.Wait(t)
	if got := visitorsByEmail(t, e.DB, "s1", "ann@example.com"); len(got) != 1 || got[0] != profiletest.Visitor(1) {
		t.Fatalf("visitors of ann after visitor 2 moved = %v; want [visitor 1]", got)
	}
	if got := visitorsByEmail(t, e.DB, "s1", "bob@example.com"); len(got) != 2 {
		t.Fatalf("visitors of bob = %v; want visitors 2 and 3", got)
	}
}

func TestCustomerLinks(t *testing.T) {
	e := openEnv(t, t.TempDir(), 2, nil)
	v1, v2 := profiletest.Visitor(1), profiletest.Visitor(2)
	customer := func(n int, ts int64, id string) event.Event {
		ev := profiletest.IdentifyCustomer(ts, id, "")
		ev.ID = profiletest.EventID(n)
		return ev
	}
	e.Append(t,
		profiletest.Batch("s1", v1, customer(1, t0, " c1 ")),
		profiletest.Batch("s1", v2, customer(2, t0, "c1")),
	)
	e.Wait(t)
	if got := visitorsByCustomer(t, e.DB, "s1", "c1"); len(got) != 2 {
		t.Fatalf("visitors of customer c1 = %v; want visitors 1 and 2", got)
	}
	// The same id again: no link write, only the profile and the offset.
	before := counter(e.Metrics, "affinity_builder_state_writes_total")
	e.Append(t, profiletest.Batch("s1", v2, customer(3, t0+50, "c1")))
	e.Wait(t)
	if got := counter(e.Metrics, "affinity_builder_state_writes_total") - before; got != 2 {
		t.Fatalf("state writes of an unchanged customer id = %d; want 2 (profile, offset)", got)
	}
	// Visitor 2 becomes c2 (later): the link moves; an older c3 does not.
	e.Append(t, profiletest.Batch("s1", v2, customer(4, t0+100, "c2"), customer(5, t0+10, "c3")))
	e.Wait(t)
	if got := visitorsByCustomer(t, e.DB, "s1", "c1"); len(got) != 1 || got[0] != v1 {
		t.Fatalf("visitors of c1 after visitor 2 moved = %v; want [visitor 1]", got)
	}
	if got := visitorsByCustomer(t, e.DB, "s1", "c2"); len(got) != 1 || got[0] != v2 {
		t.Fatalf("visitors of c2 = %v; want [visitor 2]", got)
	}
	if got := visitorsByCustomer(t, e.DB, "s1", "c3"); len(got) != 0 {
		t.Fatalf("visitors of c3 = %v; want none (an older id does not link)", got)
	}
	if found, err := e.Builder.DeleteVisitor("s1", v2); err != nil || !found {
		t.Fatalf("DeleteVisitor = %v, %v; want true, nil", found, err)
	}
	if got := visitorsByCustomer(t, e.DB, "s1", "c2"); len(got) != 0 {
		t.Fatalf("visitors of c2 after delete = %v; want none", got)
	}
}

// recordingHook records what it saw and writes an extension key per visitor.
type recordingHook struct {
	mu      sync.Mutex
	changed map[event.UUID]int
	deleted map[event.UUID]int
}

func (h *recordingHook) Changed(b *state.Batch, site string, v event.UUID, p *profile.Profile) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	key := append([]byte("T"+site+"|"), v[:]...)
	if p == nil {
		h.deleted[v]++
		return b.ExtDelete(key)
	}
	h.changed[v]++
	return b.ExtSet(key, []byte(p.Email))
}

func TestDeleteVisitor(t *testing.T) {
	hook := &recordingHook{changed: map[event.UUID]int{}, deleted: map[event.UUID]int{}}
	e := openEnv(t, t.TempDir(), 2, hook)
	b1 := profiletest.Batch("s1", profiletest.Visitor(1), view(1, t0, acme), view(2, t0, other), identify(3, t0, "ann@example.com"))
	b2 := profiletest.Batch("s1", profiletest.Visitor(2), view(4, t0, acme))
	e.Append(t, b1, b2)
	e.Wait(t)
	v1 := profiletest.Visitor(1)
	hookKey := append([]byte("Ts1|"), v1[:]...)
	if val, ok, _ := e.DB.Ext(hookKey, nil); !ok || string(val) != "ann@example.com" {
		t.Fatalf("hook's key = %q, %v; want it written in the commit", val, ok)
	}
	if hook.changed[profiletest.Visitor(1)] != 1 {
		t.Fatalf("hook saw visitor 1 changed %d times; want 1", hook.changed[profiletest.Visitor(1)])
	}

	found, err := e.Builder.DeleteVisitor("s1", profiletest.Visitor(1))
	if err != nil || !found {
		t.Fatalf("DeleteVisitor = %v, %v; want true, nil", found, err)
	}
	if p := e.Profile(t, "s1", profiletest.Visitor(1)); p != nil {
		t.Fatalf("profile still stored after delete")
	}
	if got := visitorsByEmail(t, e.DB, "s1", "ann@example.com"); len(got) != 0 {
		t.Fatalf("identity still links %v after delete", got)
	}
	if hook.deleted[profiletest.Visitor(1)] != 1 {
		t.Fatalf("hook saw visitor 1 deleted %d times; want 1", hook.deleted[profiletest.Visitor(1)])
	}
	if _, ok, _ := e.DB.Ext(hookKey, nil); ok {
		t.Fatalf("hook's key still there after delete")
	}
	// The index holds exactly visitor 2's entries.
	checkState(t, e.DB, e.Config, reference(e.Config, []*event.Batch{b2}))

	found, err = e.Builder.DeleteVisitor("s1", profiletest.Visitor(1))
	if err != nil || found {
		t.Fatalf("second DeleteVisitor = %v, %v; want false, nil", found, err)
	}
	// New events start a new profile (the deleted ids are forgotten too).
	b3 := profiletest.Batch("s1", profiletest.Visitor(1), view(1, t0, acme))
	e.Append(t, b3)
	e.Wait(t)
	checkState(t, e.DB, e.Config, reference(e.Config, []*event.Batch{b2, b3}))
}

func TestRestartResumesFromOffset(t *testing.T) {
	dir := t.TempDir()
	e := openEnv(t, dir, 3, nil)
	var all []*event.Batch
	for i := range 50 {
		b := profiletest.Batch("s1", profiletest.Visitor(i%7), view(i, t0+int64(i)*1000, acme))
		all = append(all, b)
		e.Append(t, b)
	}
	e.Wait(t)
	e.Close(t)

	e = openEnv(t, dir, 3, nil)
	for i := 50; i < 80; i++ {
		b := profiletest.Batch("s1", profiletest.Visitor(i%7), view(i, t0+int64(i)*1000, other))
		all = append(all, b)
		e.Append(t, b)
	}
	e.Wait(t)
	checkState(t, e.DB, e.Config, reference(e.Config, all))
	if got := counter(e.Metrics, "affinity_builder_events_applied_total"); got != 30 {
		t.Fatalf("events applied after restart = %d; want 30 (nothing re-applied)", got)
	}
	// The log is trimmed below the consumed offsets once state is synced.
	e.Close(t)
	e = openEnv(t, dir, 3, nil)
	total := int64(0)
	for p := range 3 {
		first, next, _ := e.Log.Offsets(t.Context(), p)
		if first != next {
			t.Fatalf("partition %d holds [%d, %d) after a clean stop; want it trimmed", p, first, next)
		}
		total += next
	}
	if total != 80 {
		t.Fatalf("log offsets sum to %d; want 80", total)
	}
}

func TestDeleteVisitorErrors(t *testing.T) {
	e := openEnv(t, t.TempDir(), 2, nil)
	found, err := e.Builder.DeleteVisitor("s1", profiletest.Visitor(42))
	if err != nil || found {
		t.Fatalf("DeleteVisitor of a never seen visitor = %v, %v; want false, nil", found, err)
	}
	found, err = e.Builder.DeleteVisitor(strings.Repeat("x", 300), profiletest.Visitor(1))
	if err != nil || found {
		t.Fatalf("DeleteVisitor with a site too long to exist = %v, %v; want false, nil", found, err)
	}
}

func TestVisit(t *testing.T) {
	e := openEnv(t, t.TempDir(), 2, nil)
	e.Append(t, profiletest.Batch("s1", profiletest.Visitor(1), view(1, t0, acme)))
	e.Wait(t)
	var seen *profile.Profile
	err := e.Builder.Visit("s1", profiletest.Visitor(1), func(b *state.Batch, p *profile.Profile) error {
		seen = p
		return b.ExtSet([]byte("Tvisit"), []byte("x"))
	})
	if err != nil || seen == nil || seen.Events[event.TypeView].Count != 1 {
		t.Fatalf("Visit of a known visitor: err %v, profile %v; want the profile with 1 view", err, seen)
	}
	if v, ok, _ := e.DB.Ext([]byte("Tvisit"), nil); !ok || string(v) != "x" {
		t.Fatalf("Visit's write = %q, %v; want it committed", v, ok)
	}
	err = e.Builder.Visit("s1", profiletest.Visitor(2), func(b *state.Batch, p *profile.Profile) error {
		if p != nil {
			t.Errorf("Visit of an unknown visitor got a profile")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// everyThird is the product of view i: other for every third, else acme.
func everyThird(i int) event.Product {
	if i%3 == 0 {
		return other
	}
	return acme
}

// TestMidBatchCommitsReadTheirWrites: a fetched batch past the
// transaction budget commits part-way, and the decoded tier then drops
// its visitors; the next record of the same visitor in that batch reads
// it from Badger, and must read what the commit just stored, not the
// profile as it was when the batch's read transaction began
// (state.VisitorReader lives no longer than one commit).
func TestMidBatchCommitsReadTheirWrites(t *testing.T) {
	e := profiletest.Open(t, profiletest.Options{Partitions: 1, Hook: profiletest.NoHook,
		State:   func(o *state.Options) { o.VisitorCacheBytes, o.MemTableBytes = -1, 1<<20 },
		Builder: func(o *builder.Options) { o.CacheBytes, o.FetchMax = 1, 1000 }})
	var all []*event.Batch
	for i := range 400 {
		// Runs of 4 records of one visitor, each a few commits long.
		all = append(all, profiletest.Batch("s1", profiletest.Visitor(i/4%10), view(i, t0+int64(i)*1000, everyThird(i)), view(10_000+i, t0+int64(i)*1000+1, acme)))
	}
	e.Append(t, all...) // one group: the builder fetches them together
	e.Wait(t)
	checkState(t, e.DB, e.Config, reference(e.Config, all))
	if commits := counter(e.Metrics, "affinity_builder_commits_total"); commits < 10 {
		t.Fatalf("%d commits for 400 records fetched together; want 10 or more: part-way commits (a small transaction budget)", commits)
	}
}

// TestCacheTiers runs a decoded tier too small to keep any visitor between
// commits, so every record reads its visitor from state: from the state's
// visitor cache of committed values or, without one, from Badger. The
// outcome equals the reference either way, dedup of resent batches
// included, and a deleted visitor starts over rather than coming back from
// the cache.
func TestCacheTiers(t *testing.T) {
	for _, cached := range []int64{-1, 32 << 20} {
		t.Run(fmt.Sprintf("visitor-cache=%d", cached), func(t *testing.T) {
			e := profiletest.Open(t, profiletest.Options{Partitions: 2, Hook: profiletest.NoHook,
				State:   func(o *state.Options) { o.VisitorCacheBytes = cached },
				Builder: func(o *builder.Options) { o.CacheBytes, o.FetchMax = 1, 4 }})
			var all []*event.Batch
			for i := range 300 {
				b := profiletest.Batch("s1", profiletest.Visitor(i%40), view(i, t0+int64(i)*1000, everyThird(i)))
				all = append(all, b)
				e.Append(t, b)
			}
			for i := 0; i < len(all); i += 7 {
				e.Append(t, all[i]) // a client retry: dropped as already applied
			}
			e.Wait(t)
			ref := reference(e.Config, all)
			checkState(t, e.DB, e.Config, ref)
			if misses := counter(e.Metrics, "affinity_builder_cache_misses_total"); misses < 300 {
				t.Fatalf("decoded tier: %d misses; want one at least per record (it keeps no visitor)", misses)
			}
			if got := counter(e.Metrics, "affinity_builder_dedup_hits_total"); got != 43 {
				t.Fatalf("dedup hits = %d; want 43 (every resent event)", got)
			}

			v := profiletest.Visitor(3)
			if ok, err := e.Builder.DeleteVisitor("s1", v); !ok || err != nil {
				t.Fatalf("DeleteVisitor: %v, %v; want true, nil", ok, err)
			}
			again := profiletest.Batch("s1", v, view(1000, t0+500_000, other))
			e.Append(t, again)
			e.Wait(t)
			key := string(event.AppendLogKey(nil, "s1", v))
			ref[key] = reference(e.Config, []*event.Batch{again})[key]
			checkState(t, e.DB, e.Config, ref)
		})
	}
}

// An order counts once per visitor, however late it is sent again and
// however many orders came after it: past the event-id dedup's window and
// its DedupMax ids, and after a restart (the set is stored, not cached).
func TestOrderDedupForever(t *testing.T) {
	dir := t.TempDir()
	e := openEnv(t, dir, 2, nil)
	v := profiletest.Visitor(1)
	const orders = 300 // more than DedupMax
	purchase := func(order int, ts int64) event.Event {
		ev := profiletest.Event(event.TypePurchase, ts, nil)
		ev.HasOrder = true
		ev.Order = event.Order{ID: fmt.Sprintf("A-%d", order), Total: 10, HasTotal: true, Items: []event.Product{acme}}
		return ev
	}
	send := func(e *profiletest.Env, recv int64) {
		t.Helper()
		var evs []event.Event
		for i := range orders {
			evs = append(evs, purchase(i, t0+int64(i)))
			if len(evs) == 100 {
				b := profiletest.Batch("s1", v, evs...)
				b.Recv = recv
				e.Send(t, b)
				evs = nil
			}
		}
	}
	check := func(e *profiletest.Env, what string) {
		t.Helper()
		p := e.Profile(t, "s1", v)
		if p == nil || p.Events[event.TypePurchase].Count != orders {
			t.Fatalf("%s: profile %v; want %d purchases", what, p, orders)
		}
	}
	send(e, t0+1000)
	check(e, "first send")
	// The same orders under new event ids, 30 days later.
	send(e, t0+30*24*3600*1000)
	check(e, "sent again 30 days later")
	if got := counter(e.Metrics, "affinity_builder_order_dedup_hits_total"); got != orders {
		t.Fatalf("order dedup hits = %d; want %d", got, orders)
	}
	e.Close(t)
	e = openEnv(t, dir, 2, nil)
	send(e, t0+60*24*3600*1000)
	check(e, "sent again after a restart")
}

// TestIndexDims: the interest index holds the configured dimensions only,
// and a restart with others rebuilds it from the profiles so that it
// again equals what they imply.
func TestIndexDims(t *testing.T) {
	dir := t.TempDir()
	var cfg *profile.Config // the builder's, of the last open
	open := func(spec string) *profiletest.Env {
		cfg = profile.DefaultConfig()
		if err := cfg.SetIndexDims(spec); err != nil {
			t.Fatal(err)
		}
		return profiletest.Open(t, profiletest.Options{Dir: dir, Partitions: 3, Hook: profiletest.NoHook, Builder: func(o *builder.Options) {
			o.Config = cfg
		}})
	}
	productEntries := func(e *profiletest.Env) int {
		n := 0
		for _, p := range []event.Product{acme, other} {
			if err := e.DB.ScanInterests("s1", "product", p.ID, math.MaxUint64, nil, func(state.InterestPos) bool { n++; return true }); err != nil {
				t.Fatal(err)
			}
		}
		return n
	}
	var all []*event.Batch
	for i := range 40 {
		p := acme
		if i%3 == 0 {
			p = other
		}
		all = append(all, profiletest.Batch("s1", profiletest.Visitor(i%9), view(i, t0+int64(i)*1000, p)))
	}

	e := open("all")
	e.Append(t, all[:20]...)
	e.Wait(t)
	checkState(t, e.DB, cfg, reference(e.Config, all[:20]))
	if n := productEntries(e); n == 0 {
		t.Fatal("no product entries with --index-dims all")
	}
	e.Close(t)

	e = open("brand,category,age,price") // the default
	if n := productEntries(e); n != 0 {
		t.Fatalf("%d product entries after product left the index; want 0", n)
	}
	e.Append(t, all[20:30]...)
	e.Wait(t)
	checkState(t, e.DB, cfg, reference(e.Config, all[:30]))
	e.Close(t)

	e = open("all")
	checkState(t, e.DB, cfg, reference(e.Config, all[:30])) // rebuilt from the profiles alone
	e.Append(t, all[30:]...)
	e.Wait(t)
	checkState(t, e.DB, cfg, reference(e.Config, all))
}

// TestIndexWrites counts the interest index writes of a commit: one put per
// new (visitor, value), a delete and a put per value whose score moved,
// none for what changes no score; several events of a visitor in one
// commit write each value once.
func TestIndexWrites(t *testing.T) {
	e := openEnv(t, t.TempDir(), 1, nil)
	v1, v2 := profiletest.Visitor(1), profiletest.Visitor(2)
	// acme is indexed under 5 values: brand, category baby and baby/food,
	// age, price band (not product: --index-dims).
	for _, step := range []struct {
		name  string
		batch *event.Batch
		want  uint64
	}{
		{"first view", profiletest.Batch("s1", v1, view(1, t0, acme)), 5},
		{"two views in one commit", profiletest.Batch("s1", v2, view(2, t0, acme), view(3, t0+10, acme)), 5},
		{"a view that moves every score", profiletest.Batch("s1", v1, view(4, t0+20, acme)), 10},
		{"a pageview (weight 0)", profiletest.Batch("s1", v1, withType(view(5, t0+30, acme), event.TypePageview)), 0},
		{"a view sent again", profiletest.Batch("s1", v1, view(4, t0+20, acme)), 0},
	} {
		before := counter(e.Metrics, "affinity_builder_index_writes_total")
		e.Append(t, step.batch)
		e.Wait(t)
		if got := counter(e.Metrics, "affinity_builder_index_writes_total") - before; got != step.want {
			t.Errorf("%s: index writes = %d; want %d", step.name, got, step.want)
		}
	}
	// Two visitors of acme's 5 indexed values, on /metrics.
	var out bytes.Buffer
	e.Metrics.WritePrometheus(&out)
	// Its bytes: the entries' and the visitor dictionary's first chunk
	// (1 MiB) and shards' tables (4 bytes a slot).
	heap := e.DB.InterestBytes()
	if min := int64(10*state.InterestEntryBytes + 1<<20); heap < min || heap > min+256*64*4 {
		t.Errorf("InterestBytes = %d; want within [%d, %d]", heap, min, min+256*64*4)
	}
	for _, want := range []string{"affinity_state_interest_entries 10\n", fmt.Sprintf("affinity_state_interest_bytes %d\n", heap)} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

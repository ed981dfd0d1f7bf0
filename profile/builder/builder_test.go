package builder_test

import (
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/catalog"
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
		batches = append(batches, batch("s1", visitor(v), t0+5000, evs...))
	}
	// A second record of visitor 0, and the same visitor bytes on site s2.
	batches = append(batches, batch("s1", visitor(0), t0+9000, withType(view(900, t0+8000, acme), event.TypeUncart)))
	batches = append(batches, batch("s2", visitor(0), t0+9000, view(901, t0+8000, other)))
	appendBatches(t, e.log, batches...)
	e.wait(t)

	ref := reference(e.cfg, batches)
	if len(ref) != 21 {
		t.Fatalf("reference has %d profiles; want 21", len(ref))
	}
	checkState(t, e.db, ref)
	if got, want := counter(e.set, "affinity_builder_events_applied_total"), uint64(20*2+10+4+2); got != want {
		t.Fatalf("events applied = %d; want %d", got, want)
	}

	// The interest scan: who has brand=acme with score ≥ θ at t0+9000,
	// best first: every visitor viewed and carted acme, the purchasers (0,
	// 5, 10, 15) scored 5 more.
	at := t0 + 9000
	theta := 8.5
	maxKey := scoreKeyOf(e.cfg.LogThreshold(profile.DimBrand, theta, at))
	var got []event.UUID
	err := e.db.ScanInterests("s1", "brand", "acme", maxKey, nil, func(pos state.InterestPos) bool {
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
		p := e.profileOf(t, "s1", v)
		if s := p.Score(e.cfg, profile.DimBrand, "acme", at); s < theta {
			t.Fatalf("visitor %s scored %v < θ=%v but was returned", v, s, theta)
		}
	}
	st := e.b.Status()
	if len(st.Partitions) != 4 || st.EventsApplied == 0 {
		t.Fatalf("Status = %+v; want 4 partitions and events applied", st)
	}
	for _, ps := range st.Partitions {
		if ps.Lag != 0 || ps.Error != "" {
			t.Fatalf("partition status after catching up = %+v; want no lag, no error", ps)
		}
	}
	if err := e.b.Health(t.Context()); err != nil {
		t.Fatalf("Health = %v; want nil", err)
	}
	// 11 events of product p2, which carries no age and is not in the
	// (empty) catalog: catalog misses.
	text := string(st.AppendText(nil))
	if !strings.HasPrefix(text, "builder events_applied=56 dedup_hits=0 catalog_misses=11\npartition 0 consumed=") {
		t.Fatalf("status text = %q", text)
	}
}

func scoreKeyOf(logG float64) uint64 {
	var k uint64
	for _, c := range profile.AppendScoreKey(nil, logG) {
		k = k<<8 | uint64(c)
	}
	return k
}

func TestDedupOfResentBatch(t *testing.T) {
	e := openEnv(t, t.TempDir(), 2, nil)
	b1 := batch("s1", visitor(1), t0+100, view(1, t0, acme), view(2, t0+10, other))
	// The client did not see the answer and sent the batch again, then one
	// more batch repeating event 2 with a new event 3.
	b2 := batch("s1", visitor(1), t0+200, view(1, t0, acme), view(2, t0+10, other))
	b3 := batch("s1", visitor(1), t0+300, view(2, t0+10, other), view(3, t0+20, acme))
	appendBatches(t, e.log, b1)
	appendBatches(t, e.log, b2, b3)
	e.wait(t)
	checkState(t, e.db, reference(e.cfg, []*event.Batch{b1, b3}))
	if got := counter(e.set, "affinity_builder_dedup_hits_total"); got != 3 {
		t.Fatalf("dedup hits = %d; want 3", got)
	}
	p := e.profileOf(t, "s1", visitor(1))
	if n := p.Events[event.TypeView].Count; n != 3 {
		t.Fatalf("views counted = %d; want 3", n)
	}

	// After a restart (empty cache) the ids are still known.
	e.close(t)
	e = openEnv(t, e.dir, 2, nil)
	appendBatches(t, e.log, b2)
	e.wait(t)
	if n := e.profileOf(t, "s1", visitor(1)).Events[event.TypeView].Count; n != 3 {
		t.Fatalf("views counted after a restart and a resend = %d; want 3", n)
	}
	if got := counter(e.set, "affinity_builder_dedup_hits_total"); got != 2 {
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
	putProducts(t, e.db, "s1",
		catalog.Product{ID: "p1", Brand: "acme", Category: "baby/food", Age: "0-3", Price: 12, HasPrice: true},
		catalog.Product{ID: "p2", Brand: "other", Category: "toys"})
	only := func(id string) event.Product { return event.Product{ID: id} }
	b := batch("s1", visitor(1), t0+100,
		view(1, t0, only("p1")),                               // joined: acme, baby, baby/food, 0-3, price band
		view(2, t0, event.Product{ID: "p2", Brand: "inline"}), // inline brand wins; category joined
		view(3, t0, only("p9")),                               // unknown: scored on its id only
		event.Event{ID: eventID(4), Type: event.TypePurchase, TS: t0, HasOrder: true,
			Order: event.Order{ID: "o1", Items: []event.Product{only("p1"), only("p9")}}},
	)
	appendBatches(t, e.log, b)
	e.wait(t)
	p := e.profileOf(t, "s1", visitor(1))
	f := func(d profile.Dim, v string, want float64) {
		t.Helper()
		if got := p.Score(e.cfg, d, v, t0); math.Abs(got-want) > 1e-9 {
			t.Errorf("score %s=%s = %v; want %v", d, v, got, want)
		}
	}
	f(profile.DimBrand, "acme", 1+5)
	f(profile.DimCategory, "baby", 1+5)
	f(profile.DimCategory, "baby/food", 1+5)
	f(profile.DimAge, "0-3", 1+5)
	f(profile.DimPrice, e.cfg.PriceBand(12), 1+5)
	f(profile.DimBrand, "inline", 1)
	f(profile.DimBrand, "other", 0)
	f(profile.DimCategory, "toys", 1)
	f(profile.DimProduct, "p9", 1+5)
	if got := counter(e.set, "affinity_builder_catalog_misses_total"); got != 2 {
		t.Fatalf("catalog misses = %d; want 2 (p9 viewed, p9 bought)", got)
	}

	// A catalog update reaches the builder: p9 is now known.
	putProducts(t, e.db, "s1", catalog.Product{ID: "p9", Brand: "late"})
	appendBatches(t, e.log, batch("s1", visitor(1), t0+200, view(5, t0, only("p9"))))
	e.wait(t)
	if got := e.profileOf(t, "s1", visitor(1)).Score(e.cfg, profile.DimBrand, "late", t0); got != 1 {
		t.Fatalf("brand from the updated catalog scored %v; want 1", got)
	}
}

func identify(id int, ts int64, email string) event.Event {
	return event.Event{ID: eventID(id), Type: event.TypeIdentify, TS: ts, Email: email}
}

func visitorsByEmail(t *testing.T, db *state.DB, site, email string) []event.UUID {
	t.Helper()
	var got []event.UUID
	if err := db.VisitorsByEmail(site, email, func(v [16]byte) bool { got = append(got, v); return true }); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestIdentityIndex(t *testing.T) {
	e := openEnv(t, t.TempDir(), 2, nil)
	appendBatches(t, e.log,
		batch("s1", visitor(1), t0+100, identify(1, t0, "  Ann@Example.COM ")),
		batch("s1", visitor(2), t0+100, identify(2, t0, "ann@example.com")),
		batch("s1", visitor(3), t0+100, identify(3, t0, "bob@example.com")),
	)
	e.wait(t)
	if got := visitorsByEmail(t, e.db, "s1", state.NormalizeEmail("ANN@example.com")); len(got) != 2 {
		t.Fatalf("visitors of ann = %v; want visitors 1 and 2", got)
	}
	// Visitor 2 identifies later as bob: the link moves.
	appendBatches(t, e.log, batch("s1", visitor(2), t0+200, identify(4, t0+100, "bob@example.com")))
	e.wait(t)
	if got := visitorsByEmail(t, e.db, "s1", "ann@example.com"); len(got) != 1 || got[0] != visitor(1) {
		t.Fatalf("visitors of ann after visitor 2 moved = %v; want [visitor 1]", got)
	}
	if got := visitorsByEmail(t, e.db, "s1", "bob@example.com"); len(got) != 2 {
		t.Fatalf("visitors of bob = %v; want visitors 2 and 3", got)
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
	b1 := batch("s1", visitor(1), t0+100, view(1, t0, acme), view(2, t0, other), identify(3, t0, "ann@example.com"))
	b2 := batch("s1", visitor(2), t0+100, view(4, t0, acme))
	appendBatches(t, e.log, b1, b2)
	e.wait(t)
	v1 := visitor(1)
	hookKey := append([]byte("Ts1|"), v1[:]...)
	if val, ok, _ := e.db.Ext(hookKey, nil); !ok || string(val) != "ann@example.com" {
		t.Fatalf("hook's key = %q, %v; want it written in the commit", val, ok)
	}
	if hook.changed[visitor(1)] != 1 {
		t.Fatalf("hook saw visitor 1 changed %d times; want 1", hook.changed[visitor(1)])
	}

	found, err := e.b.DeleteVisitor("s1", visitor(1))
	if err != nil || !found {
		t.Fatalf("DeleteVisitor = %v, %v; want true, nil", found, err)
	}
	if p := e.profileOf(t, "s1", visitor(1)); p != nil {
		t.Fatalf("profile still stored after delete")
	}
	if got := visitorsByEmail(t, e.db, "s1", "ann@example.com"); len(got) != 0 {
		t.Fatalf("identity still links %v after delete", got)
	}
	if hook.deleted[visitor(1)] != 1 {
		t.Fatalf("hook saw visitor 1 deleted %d times; want 1", hook.deleted[visitor(1)])
	}
	if _, ok, _ := e.db.Ext(hookKey, nil); ok {
		t.Fatalf("hook's key still there after delete")
	}
	// The index holds exactly visitor 2's entries.
	checkState(t, e.db, reference(e.cfg, []*event.Batch{b2}))

	found, err = e.b.DeleteVisitor("s1", visitor(1))
	if err != nil || found {
		t.Fatalf("second DeleteVisitor = %v, %v; want false, nil", found, err)
	}
	// New events start a new profile (the deleted ids are forgotten too).
	b3 := batch("s1", visitor(1), t0+200, view(1, t0, acme))
	appendBatches(t, e.log, b3)
	e.wait(t)
	checkState(t, e.db, reference(e.cfg, []*event.Batch{b2, b3}))
}

func TestRestartResumesFromOffset(t *testing.T) {
	dir := t.TempDir()
	e := openEnv(t, dir, 3, nil)
	var all []*event.Batch
	for i := range 50 {
		b := batch("s1", visitor(i%7), t0+int64(i)*1000, view(i, t0+int64(i)*1000, acme))
		all = append(all, b)
		appendBatches(t, e.log, b)
	}
	e.wait(t)
	e.close(t)

	e = openEnv(t, dir, 3, nil)
	for i := 50; i < 80; i++ {
		b := batch("s1", visitor(i%7), t0+int64(i)*1000, view(i, t0+int64(i)*1000, other))
		all = append(all, b)
		appendBatches(t, e.log, b)
	}
	e.wait(t)
	checkState(t, e.db, reference(e.cfg, all))
	if got := counter(e.set, "affinity_builder_events_applied_total"); got != 30 {
		t.Fatalf("events applied after restart = %d; want 30 (nothing re-applied)", got)
	}
	// The log is trimmed below the consumed offsets once state is synced.
	e.close(t)
	e = openEnv(t, dir, 3, nil)
	total := int64(0)
	for p := range 3 {
		first, next, _ := e.log.Offsets(t.Context(), p)
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
	found, err := e.b.DeleteVisitor("s1", visitor(42))
	if err != nil || found {
		t.Fatalf("DeleteVisitor of a never seen visitor = %v, %v; want false, nil", found, err)
	}
	found, err = e.b.DeleteVisitor(strings.Repeat("x", 300), visitor(1))
	if err != nil || found {
		t.Fatalf("DeleteVisitor with a site too long to exist = %v, %v; want false, nil", found, err)
	}
}

func TestVisit(t *testing.T) {
	e := openEnv(t, t.TempDir(), 2, nil)
	appendBatches(t, e.log, batch("s1", visitor(1), t0+100, view(1, t0, acme)))
	e.wait(t)
	var seen *profile.Profile
	err := e.b.Visit("s1", visitor(1), func(b *state.Batch, p *profile.Profile) error {
		seen = p
		return b.ExtSet([]byte("Tvisit"), []byte("x"))
	})
	if err != nil || seen == nil || seen.Events[event.TypeView].Count != 1 {
		t.Fatalf("Visit of a known visitor: err %v, profile %v; want the profile with 1 view", err, seen)
	}
	if v, ok, _ := e.db.Ext([]byte("Tvisit"), nil); !ok || string(v) != "x" {
		t.Fatalf("Visit's write = %q, %v; want it committed", v, ok)
	}
	err = e.b.Visit("s1", visitor(2), func(b *state.Batch, p *profile.Profile) error {
		if p != nil {
			t.Errorf("Visit of an unknown visitor got a profile")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

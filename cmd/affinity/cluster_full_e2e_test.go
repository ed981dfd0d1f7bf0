package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/affinityhq/affinity/bench/workload"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/tracker/event"
)

// fullBrands are the brands the full cluster test's visitors view.
var fullBrands = []string{"Lego", "Duplo", "Nutrilon", "Merries", "Philips"}

// fullSegments are the full cluster test's segments: monotone ones and
// ones a visitor leaves (a purchase closes an open cart), none that time
// alone changes within the test (their due instants are days away); one
// per person, whose persons span the members and move with their
// evaluating partitions.
var fullSegments = []struct{ name, rule, per string }{
	{"buyers", `count(purchase) >= 1`, ""},
	{"open-carts", `since(cart) <= 30d and since(purchase) > since(cart)`, ""},
	{"lego", `interest(brand, "Lego") >= 3.5`, ""},
	{"known", `identified and count(view) >= 2`, ""},
	{"people", `identified and count(view) >= 3`, "person"},
}

// fullTraffic makes the full cluster test's traffic from a seed: visitors
// visitors (workload.VisitorID, so on every partition), each sending one
// batch per wave — so every node evaluates a visitor at the same points
// as a node that applied each wave whole — of pageviews, product views,
// carts, uncarts and purchases. Visitor i belongs to person i mod
// persons: the first of its devices identifies with an email, the second
// with the email and a customer id, the third with the customer id
// alone, each in a wave of its own, so persons span partitions and link
// transitively.
type fullTraffic struct {
	seed     uint64
	site     string
	visitors int
	persons  int
	carted   []bool // by visitor: a cart not bought yet
}

// visitor is visitor i's id.
func (g *fullTraffic) visitor(i int) string {
	return workload.VisitorID(g.seed, i).String()
}

// personIDs returns the emails and customer ids the persons identify by.
func (g *fullTraffic) personIDs() []string {
	var ids []string
	for p := range g.persons {
		ids = append(ids, fmt.Sprintf("p%d@example.com", p), fmt.Sprintf("c-%d", p))
	}
	return ids
}

// batch returns visitor i's batch of wave w (1-based), its events dated
// just before now.
func (g *fullTraffic) batch(w, i int, now int64) []byte {
	r := rand.New(rand.NewPCG(g.seed, uint64(w)<<32|uint64(i)))
	var evs []string
	add := func(typ, rest string) {
		evs = append(evs, fmt.Sprintf(`{"id":%q,"t":%q,"ts":%d%s}`, uuidString(), typ, now-int64(20-len(evs))*1000, rest))
	}
	product := func() string {
		b := r.IntN(len(fullBrands))
		return fmt.Sprintf(`{"id":"sku-%d-%d","brand":%q,"category":"toys/%d","price":%d}`, b, r.IntN(4), fullBrands[b], b, 5+r.IntN(50))
	}
	if w == 1 {
		add("pageview", `,"url":"https://shop.example/"`)
	}
	for range 1 + r.IntN(4) {
		add("view", `,"product":`+product())
	}
	switch x := r.IntN(10); {
	case x < 3:
		add("cart", `,"product":`+product())
		g.carted[i] = true
	case x < 5 && g.carted[i]:
		add("purchase", fmt.Sprintf(`,"order":{"id":"o-%d-%d","total":25,"items":[{"id":"sku-0-1","qty":2,"price":12.5}]}`, w, i))
		g.carted[i] = false
	case x < 6:
		add("uncart", `,"product":`+product())
	}
	if p, device := i%g.persons, i/g.persons; w == 1+(i+device)%4 {
		switch device % 3 {
		case 0:
			add("identify", fmt.Sprintf(`,"email":"p%d@example.com"`, p))
		case 1:
			add("identify", fmt.Sprintf(`,"email":"p%d@example.com","customer_id":"c-%d"`, p, p))
		default:
			add("identify", fmt.Sprintf(`,"customer_id":"c-%d"`, p))
		}
	}
	return fmt.Appendf(nil, `{"site":%q,"v":%q,"events":[%s]}`, g.site, g.visitor(i), strings.Join(evs, ","))
}

// send posts wave w's batches of visitors from..to-1, alternating the
// collectors, from a few clients at once; every batch must be accepted.
func (g *fullTraffic) send(t *testing.T, w, from, to int, collectors []*proc) {
	t.Helper()
	now := time.Now().UnixMilli()
	bodies := make([][]byte, to-from)
	for i := range bodies {
		bodies[i] = g.batch(w, from+i, now)
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed []string
	)
	for c := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 30 * time.Second}
			for k := c; k < len(bodies); k += 6 {
				col := collectors[(from+k+w)%len(collectors)]
				if st := post(client, col.collector, bodies[k]); st != http.StatusAccepted {
					mu.Lock()
					failed = append(failed, fmt.Sprintf("wave %d visitor %d on %s: status %d", w, from+k, col.collector, st))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d batches not accepted: %s", len(failed), strings.Join(failed[:min(5, len(failed))], "; "))
	}
}

// segmentNames returns the names of the segments p says visitor is in,
// sorted, and when its membership next changes: the segments are listed in
// the order they were entered, each node's clock's (a member that rebuilt
// a partition entered them all at once).
func segmentNames(t *testing.T, p *proc, site, visitor string) string {
	t.Helper()
	code, body := apiDo(t, http.MethodGet, p.api+"/v1/visitors/"+site+"/"+visitor+"/segments", "", nil)
	var v struct {
		Segments []struct{ Name string }
		Next     *string `json:"next_change"`
	}
	if err := json.Unmarshal([]byte(body), &v); code != http.StatusOK || err != nil {
		t.Fatalf("visitor %s's segments on %s: %d %s", visitor, p.api, code, body)
	}
	var names []string
	for _, s := range v.Segments {
		names = append(names, s.Name)
	}
	slices.Sort(names)
	next := "never"
	if v.Next != nil {
		next = *v.Next
	}
	return fmt.Sprintf("%v next %s", names, next)
}

// personsAlike waits, up to 60 s, until ref and every node of live
// answer path (a per-person segment's export) alike, twice in a row a
// second apart with the same rows: the person evaluators run after the
// builders' commits (a hand-off refused while a partition moves waits a
// second), so a settled log is not yet settled persons, and two stale
// answers may be alike for a moment. sameOnEvery then shows what still
// differs.
func personsAlike(t *testing.T, ref *proc, live []*proc, path string) {
	t.Helper()
	last := ""
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		_, want := apiDo(t, http.MethodGet, ref.api+path, "", nil)
		want = enteredAt.ReplaceAllString(want, "T")
		alike := true
		for _, p := range live {
			_, got := apiDo(t, http.MethodGet, p.api+path, "", nil)
			alike = alike && enteredAt.ReplaceAllString(got, "T") == want
		}
		if alike && want == last {
			return
		}
		if last = ""; alike {
			last = want
		}
	}
}

// freeAPIAddr returns a loopback address free at the time of the call,
// for a node's --api-listen and --advertise-api to name before it starts.
func freeAPIAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestClusterFull is issue 13's cluster test: on a 3-broker kfake, two
// `affinity collect` processes take the traffic and three `affinity
// build` group members (each with --advertise-api, the definitions and
// the changes topics) apply it, beside a single-node reference pinned to
// every partition that applies the same events. Segments and webhooks
// are defined on different members (through the definitions topic) and
// on the reference. Four waves of traffic through both collectors; one
// member is SIGKILLed in the middle of wave 2, a fourth joins with no
// state before wave 4. After each wave settles (every partition owned
// once and consumed to the topic's end, by the brokers' offsets), every
// live member answers as the reference does: every visitor's profile,
// persons, the interest lists and each segment's members (NDJSON and
// CSV, paged with cursors alternating between the members). Then the
// change records on the changes topic and the webhook deliveries are
// compared with the reference's (compareChanges).
func TestClusterFull(t *testing.T) {
	const (
		parts  = 6
		site   = "e2e"
		topic  = "events"
		secret = "hook-secret"
	)
	seed := uint64(time.Now().UnixNano())
	if env := os.Getenv("AFFINITY_E2E_SEED"); env != "" { // a failed run's traffic again
		var err error
		if seed, err = strconv.ParseUint(env, 10, 64); err != nil {
			t.Fatalf("invalid AFFINITY_E2E_SEED %q: %s", env, err)
		}
	}
	traffic := &fullTraffic{seed: seed, site: site, visitors: 2000, persons: 800}
	traffic.carted = make([]bool, traffic.visitors)
	t.Logf("seed %d (AFFINITY_E2E_SEED): %d visitors, %d persons, %d partitions", seed, traffic.visitors, traffic.persons, parts)

	brokers := profiletest.StartKafka(t, kfake.SeedTopics(parts, topic))
	kafka := strings.Join(brokers, ",")
	collectors := []*proc{
		startAffinity(t, "collect", "--data", t.TempDir(), "--kafka", kafka, "--topic", topic, "--site", site),
		startAffinity(t, "collect", "--data", t.TempDir(), "--kafka", kafka, "--topic", topic, "--site", site),
	}
	ref := startAffinity(t, "build", "--data", t.TempDir(), "--kafka", kafka, "--topic", topic, "--own", fmt.Sprintf("0-%d", parts-1),
		"--defs-topic", "ref-definitions", "--changes-topic", "ref-changes")
	member := func() *proc {
		addr := freeAPIAddr(t)
		p := startAffinity(t, "build", "--data", t.TempDir(), "--kafka", kafka, "--topic", topic, "--changes-topic", "changes",
			"--api-listen", addr, "--advertise-api", "http://"+addr,
			"--group-session-timeout", "6s", "--group-rebalance-timeout", "6s")
		if p.api != "http://"+addr {
			t.Fatalf("member listens at %s; want its --api-listen %s", p.api, addr)
		}
		return p
	}
	members := []*proc{member(), member(), member()}
	waitOwned(t, "three members share", members, []string{"*", "*", "*"})

	groupHooks, refHooks := startHookReceiver(t), startHookReceiver(t)
	define := func(p *proc, method, path, ct, body string, want int) {
		t.Helper()
		if code, got := apiDo(t, method, p.api+path, ct, []byte(body)); code != want {
			t.Fatalf("%s %s on %s: %d %s; want %d", method, path, p.api, code, got, want)
		}
	}
	// Each segment is put on one member and its webhook on the next, once
	// that member applied the segment from the definitions topic (a write
	// is read back at once only on the node it was sent to).
	holding := func(what, path string) {
		t.Helper()
		for _, p := range members {
			waitUntil(t, p.api+" holding "+what, func() bool {
				code, _ := apiDo(t, http.MethodGet, p.api+path, "", nil)
				return code == http.StatusOK
			})
		}
	}
	for i, s := range fullSegments {
		seg := "/v1/segments/" + site + "/" + s.name
		define(members[i%3], http.MethodPut, seg+"?per="+s.per, "text/plain", s.rule, http.StatusCreated)
		define(ref, http.MethodPut, seg+"?per="+s.per, "text/plain", s.rule, http.StatusCreated)
		if s.per == "person" {
			continue // no webhook: a killed evaluator's undelivered records of no partition are gone with it, unmarked
		}
		define(ref, http.MethodPut, seg+"/webhook", "application/json", fmt.Sprintf(`{"url":%q,"secret":%q}`, refHooks.url, secret), http.StatusOK)
	}
	for i, s := range fullSegments {
		seg := "/v1/segments/" + site + "/" + s.name
		holding("segment "+s.name, seg)
		if s.per == "person" {
			continue
		}
		define(members[(i+1)%3], http.MethodPut, seg+"/webhook", "application/json", fmt.Sprintf(`{"url":%q,"secret":%q}`, groupHooks.url, secret), http.StatusOK)
	}
	for _, s := range fullSegments {
		if s.per != "person" {
			holding("segment "+s.name+"'s webhook", "/v1/segments/"+site+"/"+s.name+"/webhook")
		}
	}

	// check waits until the cluster settled and compares every live
	// member's answers with the reference's: every visitor's profile, a
	// tenth of their segment lists, every personEvery-th person, the
	// interest lists and every segment's members.
	check := func(when string, live []*proc, since time.Time, personEvery int) {
		t.Helper()
		waitSettled(t, brokers, topic, ref, live)
		settled, start := time.Since(since), time.Now()
		at := url.QueryEscape(time.Now().Add(time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339))
		for i := range traffic.visitors {
			sameOnEvery(t, ref, live, "/v1/visitors/"+site+"/"+traffic.visitor(i)+"?at="+at)
			if i%10 == 0 {
				want := segmentNames(t, ref, site, traffic.visitor(i))
				for _, p := range live {
					if got := segmentNames(t, p, site, traffic.visitor(i)); got != want {
						t.Fatalf("%s: visitor %s's segments on %s: %s; want the reference's %s", when, traffic.visitor(i), p.api, got, want)
					}
				}
			}
		}
		multi := 0
		for k, id := range traffic.personIDs() {
			if k%personEvery != 0 {
				continue
			}
			if body := sameOnEvery(t, ref, live, "/v1/people/"+site+"/"+url.PathEscape(id)+"?at="+at); strings.Count(body, `","`) > 0 && strings.Contains(body, `"visitors":["`) {
				multi++
			}
		}
		if multi == 0 {
			t.Fatalf("%s: no person of several devices", when)
		}
		for _, b := range fullBrands[:2] {
			path := "/v1/interests/" + site + "/brand/" + b + "?min=0.001&at=" + at
			all := sameOnEvery(t, ref, live, path)
			if rows := pagesAlike(t, ref, live, path, "ndjson", 97); rows != strings.Count(all, "\n") || rows == 0 {
				t.Fatalf("%s: interests in %s in pages: %d rows; whole: %d", when, b, rows, strings.Count(all, "\n"))
			}
		}
		sizes := map[string]int{}
		for _, s := range fullSegments {
			path := "/v1/segments/" + site + "/" + s.name + "/members?at=" + at
			if s.per == "person" {
				personsAlike(t, ref, live, path+"&format=ndjson")
			}
			whole := sameOnEvery(t, ref, live, path+"&format=ndjson")
			sameOnEvery(t, ref, live, path+"&format=csv")
			sizes[s.name] = strings.Count(whole, "\n")
			for _, format := range []string{"ndjson", "csv"} {
				if rows := pagesAlike(t, ref, live, path+"&format="+format, format, 61); rows != sizes[s.name] {
					t.Fatalf("%s: members of %s in %s pages: %d rows; whole: %d", when, s.name, format, rows, sizes[s.name])
				}
			}
		}
		t.Logf("%s: settled %s after its start, %d members answer as the reference (members %v), checked in %s",
			when, settled.Round(100*time.Millisecond), len(live), sizes, time.Since(start).Round(100*time.Millisecond))
	}

	half := traffic.visitors / 2
	start := time.Now()
	traffic.send(t, 1, 0, traffic.visitors, collectors)
	check("wave 1", members, start, 3)

	// An erasure before its partition moves: a visitor of the member that
	// is killed in wave 2 views a brand nobody else does, and is erased
	// through another member (routed to its owner) and on the reference.
	// A survivor then rebuilds the partition from the topic's start: the
	// visitor's later waves are a new profile there as on the reference
	// (check compares every visitor), and the brand shows nowhere.
	killed := members[1]
	killedParts := strings.Split(ownedOf(t, killed), ",")
	erased := traffic.erase(t, brokers, topic, parts, killedParts, collectors[0], ref, members)
	erased.nowhere(t, "after the erasure", append([]*proc{ref}, members...))

	traffic.send(t, 2, 0, half, collectors)
	if err := killed.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-killed.done
	markAtKill := groupMarks(t, brokers, "affinity-build", topic, parts)
	start = time.Now()
	traffic.send(t, 2, half, traffic.visitors, collectors)
	live := []*proc{members[0], members[2]}
	check("wave 2, after the SIGKILL of "+killed.api+" mid-wave (session timeout 6 s)", live, start, 3)
	erased.nowhere(t, "wave 2, after the SIGKILL of ", append([]*proc{ref}, live...))

	start = time.Now()
	traffic.send(t, 3, 0, traffic.visitors, collectors)
	check("wave 3", live, start, 3)
	erased.nowhere(t, "wave 3", append([]*proc{ref}, live...))

	start = time.Now()
	live = append(live, member())
	waitOwned(t, "the survivors and a new member share", live, []string{"*", "*", "*"})
	traffic.send(t, 4, 0, traffic.visitors, collectors)
	check("wave 4, a fourth member joined with no state", live, start, 1)
	erased.nowhere(t, "wave 4, a fourth member joined with no state", append([]*proc{ref}, live...))

	// The change records, once all are out: the changes topic and the
	// webhook deliveries hold the reference's, each once, but for the
	// SIGKILL's window (TestClusterEmitsEachChangeOnce): the killed
	// member's records above their mark may come again, under the same
	// id, from the next owner; and the deliveries it had not made at or
	// below its mark are gone with it (README "Running a cluster").
	killedOf := func(c changeRecord) (int64, bool) {
		p, off, ok := c.source(t)
		return off - markAtKill[p], ok && slices.Contains(killedParts, strconv.Itoa(p))
	}
	window := func(c changeRecord) bool {
		above, ok := killedOf(c)
		return ok && above > 0
	}
	var want, got, gotHooks []changeRecord
	for deadline, still := time.Now().Add(60*time.Second), 0; still < 3 && time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		n := len(want) + len(got) + len(gotHooks)
		want, got, gotHooks = readChangesTopic(t, brokers, "ref-changes"), readChangesTopic(t, brokers, "changes"), groupHooks.received()
		if len(want)+len(got)+len(gotHooks) == n && len(refHooks.received()) == len(want) {
			still++
		} else {
			still = 0
		}
	}
	// The erased visitor's records of before its erasure: on each changes
	// topic as far as its node had produced them then (which the two
	// nodes need not agree on), in no feed.
	want, got, gotHooks = erased.without(t, want), erased.without(t, got), erased.without(t, gotHooks)
	checkOnce(t, "changes topic", got, want, window, nil)
	delivered := map[string]bool{}
	for _, c := range gotHooks {
		if c.ID != nil {
			delivered[*c.ID] = true
		}
	}
	wantHooks := slices.DeleteFunc(erased.without(t, refHooks.received()), func(c changeRecord) bool {
		above, ok := killedOf(c)
		return ok && above <= 0 && !delivered[*c.ID]
	})
	checkOnce(t, "webhook deliveries", gotHooks, wantHooks, window, nil)
	t.Logf("webhooks: %d deliveries the killed member had not made are gone with it", len(refHooks.received())-len(wantHooks))

	// Each segment's changes feed, paged with its cursor alternating
	// between the members: the records the group emitted (the changes
	// topic's ids, each once), equal to the reference's feed but for the
	// SIGKILL's window — below a move's mark the new owner answers what the
	// old owners produced, copied from the changes topic, not its own
	// re-application (DESIGN "Each change once").
	for _, s := range fullSegments {
		path := "/v1/segments/" + site + "/" + s.name + "/changes?limit=500"
		feed := &e2eFeed{path: path, seen: map[string]int{}}
		for i := 0; feed.page(t, live[i%len(live)], true) > 0; i++ {
		}
		refFeed := &e2eFeed{path: path, seen: map[string]int{}}
		if s.per == "person" { // a single node's person records have no id to page by: its topic's
			for _, c := range want {
				if c.Segment == s.name {
					refFeed.recs = append(refFeed.recs, c)
				}
			}
			refFeed.records = len(refFeed.recs)
		} else {
			for refFeed.page(t, ref, false) > 0 {
			}
		}
		what := "the changes feed of " + s.name
		if kept := erased.without(t, feed.recs); len(kept) != len(feed.recs) {
			t.Errorf("%s: %d records of erased visitor %s of before its erasure", what, len(feed.recs)-len(kept), erased.visitor)
		}
		checkOnce(t, what, feed.recs, refFeed.recs, window, nil)
		emitted := map[string]bool{}
		for _, c := range got {
			if c.Segment == s.name && c.ID != nil {
				emitted[*c.ID] = true
			}
		}
		for id := range emitted {
			if !feed.ids[id] {
				t.Errorf("%s: id %s is on the changes topic but not in the feed", what, id)
			}
		}
		for id := range feed.ids {
			if !emitted[id] {
				t.Errorf("%s: id %s is in the feed but was never produced to the changes topic", what, id)
			}
		}
		t.Logf("%s: %d records in %d pages alternating %d members, the %d ids produced to the changes topic; the reference's %d",
			what, feed.records, feed.pages, len(live), len(emitted), refFeed.records)
	}
}

// erasedVisitor is a visitor of the full cluster test erased in the
// middle of it: its records of its partition whose source offset is at or
// below offset are of before the erasure.
type erasedVisitor struct {
	site, visitor, brand string
	partition            int
	offset               int64
}

// erase picks a visitor on one of parts (as partition numbers' text) —
// the first that identified its person in wave 1, so that erasing it
// leaves the person with no visitor until a later wave identifies its
// next (the person's leave must survive a move of its evaluation), else
// the first there — makes it view a brand of its own, waits until the cluster
// applied that, and erases it through members[0] and on ref, at the
// offset the partition's log has reached.
func (g *fullTraffic) erase(t *testing.T, brokers []string, topic string, n int, parts []string, collector, ref *proc, members []*proc) *erasedVisitor {
	t.Helper()
	e := &erasedVisitor{site: g.site, brand: "Erasedbrand", partition: -1}
	for _, wave1 := range []bool{true, false} {
		for i := 0; i < g.visitors && e.partition < 0; i++ {
			if wave1 && (i+i/g.persons)%4 != 0 {
				continue
			}
			p := storage.PartitionFor(event.AppendLogKey(nil, g.site, workload.VisitorID(g.seed, i)), n)
			if slices.Contains(parts, strconv.Itoa(p)) {
				e.visitor, e.partition = g.visitor(i), p
			}
		}
	}
	if e.partition < 0 {
		t.Fatalf("no visitor on partitions %v", parts)
	}
	body := fmt.Appendf(nil, `{"site":%q,"v":%q,"events":[{"id":%q,"t":"view","ts":%d,"product":{"id":"sku-erased","brand":%q,"category":"toys/9","price":9}}]}`,
		g.site, e.visitor, uuidString(), time.Now().UnixMilli(), e.brand)
	if st := post(&http.Client{Timeout: 30 * time.Second}, collector.collector, body); st != http.StatusAccepted {
		t.Fatalf("the erased visitor's batch: status %d", st)
	}
	waitSettled(t, brokers, topic, ref, members)
	if _, got := apiDo(t, http.MethodGet, members[0].api+"/v1/visitors/"+g.site+"/"+e.visitor, "", nil); !strings.Contains(got, e.brand) {
		t.Fatalf("visitor %s before its erasure: %s; want its view of %s", e.visitor, got, e.brand)
	}
	e.offset = profiletest.TopicEnds(t, brokers, topic)[e.partition]
	for _, p := range []*proc{members[0], ref} {
		if code, got := apiDo(t, http.MethodDelete, p.api+"/v1/visitors/"+g.site+"/"+e.visitor, "", nil); code != http.StatusNoContent {
			t.Fatalf("DELETE of visitor %s on %s: %d %s; want 204", e.visitor, p.api, code, got)
		}
	}
	t.Logf("visitor %s erased at offset %d of partition %d, owned by the member killed next", e.visitor, e.offset, e.partition)
	return e
}

// nowhere wants no answer of nodes to hold the erased visitor's view of
// its brand: not its profile, not the brand's interest list.
func (e *erasedVisitor) nowhere(t *testing.T, when string, nodes []*proc) {
	t.Helper()
	for _, p := range nodes {
		if _, got := apiDo(t, http.MethodGet, p.api+"/v1/visitors/"+e.site+"/"+e.visitor, "", nil); strings.Contains(got, e.brand) {
			t.Fatalf("%s: erased visitor %s on %s: %s; its view of %s from before the erasure is back", when, e.visitor, p.api, got, e.brand)
		}
		if _, got := apiDo(t, http.MethodGet, p.api+"/v1/interests/"+e.site+"/brand/"+e.brand+"?min=0.000001", "", nil); strings.Contains(got, e.visitor) {
			t.Fatalf("%s: interests in %s on %s: %s; want no erased visitor %s", when, e.brand, p.api, got, e.visitor)
		}
	}
}

// without returns cs but the erased visitor's records of before its
// erasure.
func (e *erasedVisitor) without(t *testing.T, cs []changeRecord) []changeRecord {
	t.Helper()
	return slices.DeleteFunc(slices.Clone(cs), func(c changeRecord) bool {
		p, off, ok := c.source(t)
		// A source's offset is the one after the visitor's last record its
		// commit applied (state.Source): at or below the erasure's, the
		// record derives from events before it.
		return ok && c.Visitor == e.visitor && p == e.partition && off <= e.offset
	})
}

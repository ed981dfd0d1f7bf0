package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/affinityhq/affinity/profile/profiletest"
)

// changeRecord is a change record as the changes topic and a webhook
// delivery carry it (membership.Change.AppendJSON).
type changeRecord struct {
	Seq     string
	ID      *string
	Site    string
	Segment string
	Visitor string
	Change  string
	Why     string
}

// content is what a record says, apart from the node's seq, its clock
// ("at") and the facts read at it: two nodes applying the same events
// emit the same contents.
func (c changeRecord) content() string {
	return c.Site + "|" + c.Segment + "|" + c.Visitor + "|" + c.Change + "|" + c.Why
}

// source returns the events partition and offset of c's "id"
// ("P-OFFSET-ORD"); ok is false for a record of no partition.
func (c changeRecord) source(t testing.TB) (part int, offset int64, ok bool) {
	t.Helper()
	if c.ID == nil {
		return 0, 0, false
	}
	f := strings.Split(*c.ID, "-")
	if len(f) != 3 {
		t.Fatalf("change record id %q: want P-OFFSET-ORD", *c.ID)
	}
	p, err1 := strconv.Atoi(f[0])
	off, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("change record id %q: want P-OFFSET-ORD", *c.ID)
	}
	return p, off, true
}

// readChangesTopic returns every record on topic (all its partitions,
// up to their ends now).
func readChangesTopic(t testing.TB, brokers []string, topic string) []changeRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := profiletest.OpenTopic(t, brokers, topic)
	defer l.Close()
	var out []changeRecord
	for p := range l.Partitions() {
		_, end, err := l.Offsets(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if end == 0 {
			continue
		}
		r, err := l.OpenReader(p, 0)
		if err != nil {
			t.Fatal(err)
		}
		for next := int64(0); next < end; {
			recs, err := r.Fetch(ctx, nil, 1000)
			if err != nil {
				t.Fatalf("fetch from %q partition %d: %v", topic, p, err)
			}
			for _, rec := range recs {
				var c changeRecord
				if err := json.Unmarshal(rec.Value, &c); err != nil {
					t.Fatalf("change record %q: %v", rec.Value, err)
				}
				out = append(out, c)
				next = rec.Offset + 1
			}
		}
		r.Close()
	}
	return out
}

// hookReceiver is a webhook receiver on 127.0.0.1 that keeps every
// change record delivered to it.
type hookReceiver struct {
	url string

	mu         sync.Mutex
	records    []changeRecord
	deliveries int
}

func startHookReceiver(t testing.TB) *hookReceiver {
	t.Helper()
	h := &hookReceiver{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var d struct{ Changes []changeRecord }
		if err == nil {
			err = json.Unmarshal(body, &d)
		}
		if err != nil {
			t.Errorf("webhook delivery %q: %v", body, err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.records = append(h.records, d.Changes...)
		h.deliveries++
		h.mu.Unlock()
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	h.url = "http://" + ln.Addr().String() + "/hook"
	return h
}

// received returns the records delivered so far.
func (h *hookReceiver) received() []changeRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.records)
}

// checkOnce compares the change records a cluster emitted (got) with a
// single node's over the same events (want): after dropping the copies
// of a record emitted again under the same "id", every content as often
// as in want. window says whether a record is in the window a SIGKILL
// leaves (emitted by the killed node, its mark not yet committed): only
// there may an id come out twice, always with the same content — or, if
// redelivered is not nil, where it says a record came again from the
// node that sent it first (a webhook delivery acknowledged when the node
// died, before it stored its position).
func checkOnce(t *testing.T, what string, got, want []changeRecord, window func(changeRecord) bool, redelivered func(first, again changeRecord) bool) {
	t.Helper()
	wantN := map[string]int{}
	for _, c := range want {
		wantN[c.content()]++
	}
	gotN := map[string]int{}
	byID := map[string][]changeRecord{}
	again := 0
	for _, c := range got {
		if c.ID == nil {
			gotN[c.content()]++
			continue
		}
		cs := byID[*c.ID]
		byID[*c.ID] = append(cs, c)
		if len(cs) == 0 {
			gotN[c.content()]++
			continue
		}
		again++
		ok := window(c) && window(cs[0]) || redelivered != nil && redelivered(cs[0], c)
		if !ok || c.content() != cs[0].content() {
			t.Errorf("%s: id %s again outside the SIGKILL's window or with another content: %+v, %+v", what, *c.ID, cs[0], c)
		}
	}
	for k, n := range gotN {
		if n != wantN[k] {
			t.Errorf("%s: %q %d times; the single node emitted it %d times", what, k, n, wantN[k])
		}
	}
	for k, n := range wantN {
		if gotN[k] == 0 {
			t.Errorf("%s: %q missing; the single node emitted it %d times", what, k, n)
		}
	}
	t.Logf("%s: %d records, %d of them again (same id) in the SIGKILL's window; the single node's: %d", what, len(got), again, len(want))
}

var partitionLine = regexp.MustCompile(`(?m)^partition (\d+) consumed=(\d+) `)

// consumedOf returns the consumed offset of each partition p's builder
// owns, from its /healthz.
func consumedOf(t *testing.T, p *proc) map[int]int64 {
	t.Helper()
	got := map[int]int64{}
	for _, m := range partitionLine.FindAllStringSubmatch(healthz(t, p), -1) {
		part, _ := strconv.Atoi(m[1])
		off, _ := strconv.ParseInt(m[2], 10, 64)
		got[part] = off
	}
	return got
}

// groupMarks returns the emission marks of group on topic: its committed
// offsets (cluster.Marks), 0 for none.
func groupMarks(t *testing.T, brokers []string, group, topic string, parts int) map[int]int64 {
	t.Helper()
	ps := make([]int, parts)
	for i := range ps {
		ps[i] = i
	}
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	resp, err := c.OffsetFetch(context.Background(), &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ps}})
	if err == nil {
		err = resp.Error
	}
	if err != nil {
		t.Fatalf("cannot fetch the committed offsets of group %q: %v", group, err)
	}
	marks := map[int]int64{}
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			t.Fatalf("committed offset of partition %d of group %q: %v", p.Partition, group, p.Error)
		}
		marks[p.Partition] = max(p.CommittedOffset, 0)
	}
	return marks
}

// TestClusterEmitsEachChangeOnce runs a collector, a single reference
// builder and two builders in a group, all with --changes-topic and the
// same webhooks, over rounds of events that flip segment memberships in
// and out. One member is SIGKILLed mid-stream and later started again on
// its data; the changes topic and the webhook deliveries of the group
// must then hold every change of the reference exactly once, but for one
// window: records of the killed member's partitions above their mark at
// the kill (emitted, the mark not yet committed) may come out again from
// the survivor, under the same id, which a consumer drops; and the webhook
// delivery the killed member had in flight comes again from it when it
// is back (same id, same seq). Each visitor
// has one record a round, so the survivor's commits hold the same records
// of a visitor as the killed member's did, wherever they end.
func TestClusterEmitsEachChangeOnce(t *testing.T) {
	const (
		parts    = 4
		visitors = 24
		site     = "e2e"
		topic    = "events"
		group    = "affinity-build"
	)
	brokers := profiletest.StartKafka(t, kfake.SeedTopics(int32(parts), topic))
	kafkaAddr := strings.Join(brokers, ",")
	col := startAffinity(t, "collect", "--data", t.TempDir(), "--kafka", kafkaAddr, "--topic", topic, "--site", site)
	ref := startAffinity(t, "build", "--data", t.TempDir(), "--kafka", kafkaAddr, "--topic", topic,
		"--changes-topic", "changes-ref", "--own", fmt.Sprintf("0-%d", parts-1))
	member := func(dir string) *proc {
		return startAffinity(t, "build", "--data", dir, "--kafka", kafkaAddr, "--topic", topic, "--changes-topic", "changes-group",
			"--group", group, "--group-session-timeout", "6s", "--group-rebalance-timeout", "6s")
	}
	dir2 := t.TempDir()
	b1, b2 := member(t.TempDir()), member(dir2)
	waitOwned(t, "two members share", []*proc{b1, b2}, []string{"*", "*"})

	refHooks, groupHooks := startHookReceiver(t), startHookReceiver(t)
	rules := map[string]string{
		"pending": `since(purchase) > since(cart)`,
		"carts2":  `count(cart) >= 2`,
		"known":   `identified`,
	}
	for name, rule := range rules {
		for _, d := range []struct {
			p    *proc
			hook string
		}{{ref, refHooks.url}, {b1, groupHooks.url}} {
			seg := d.p.api + "/v1/segments/" + site + "/" + name
			if code, body := apiDo(t, http.MethodPut, seg, "text/plain", []byte(rule)); code != http.StatusCreated {
				t.Fatalf("PUT %s: %d %s", seg, code, body)
			}
			hook := fmt.Sprintf(`{"url":%q,"secret":"s3cret"}`, d.hook)
			if code, body := apiDo(t, http.MethodPut, seg+"/webhook", "application/json", []byte(hook)); code != http.StatusOK {
				t.Fatalf("PUT %s/webhook: %d %s", seg, code, body)
			}
		}
		waitUntil(t, "b2 has the webhook of "+name, func() bool {
			code, _ := apiDo(t, http.MethodGet, b2.api+"/v1/segments/"+site+"/"+name+"/webhook", "", nil)
			return code == http.StatusOK
		})
	}

	events := profiletest.OpenTopic(t, brokers, topic)
	defer events.Close()
	ends := func() map[int]int64 {
		got := map[int]int64{}
		for p := range parts {
			_, end, err := events.Offsets(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			got[p] = end
		}
		return got
	}
	// settled waits until the reference and the members (between them)
	// applied every event on the topic.
	settled := func(members ...*proc) {
		t.Helper()
		want := ends()
		deadline := time.Now().Add(90 * time.Second)
		for {
			applied := map[int]int64{}
			for _, p := range members {
				for part, off := range consumedOf(t, p) {
					applied[part] = max(applied[part], off)
				}
			}
			if refC := consumedOf(t, ref); maps.Equal(refC, want) && maps.Equal(applied, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("not settled: the topic's ends %v, the members applied %v", want, applied)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	vs := make([]string, visitors)
	for i := range vs {
		vs[i] = uuidString()
	}
	client := &http.Client{Timeout: 30 * time.Second}
	// send posts one batch per visitor: a cart or a purchase, taking each
	// visitor in and out of "pending" every round, and an identify in
	// round 1; one record per visitor a round, so the flips are the same
	// whatever commits a builder makes of a round.
	send := func(round int) {
		t.Helper()
		now := time.Now().UnixMilli()
		for i, v := range vs {
			typ, extra := "cart", `,"product":{"id":"sku-1","brand":"Lego"}`
			if (round+i)%2 == 1 {
				typ, extra = "purchase", `,"order":{"id":"o-`+strconv.Itoa(round)+`","total":25,"items":[{"id":"sku-1","qty":1,"price":25}]}`
			}
			evs := fmt.Sprintf(`{"id":%q,"t":%q,"ts":%d%s}`, uuidString(), typ, now, extra)
			if round == 1 && i%3 == 0 {
				evs += fmt.Sprintf(`,{"id":%q,"t":"identify","ts":%d,"email":"v%d@example.com"}`, uuidString(), now, i)
			}
			body := fmt.Sprintf(`{"site":%q,"v":%q,"events":[%s]}`, site, v, evs)
			if st := post(client, col.collector, []byte(body)); st != http.StatusAccepted {
				t.Fatalf("round %d, visitor %d: status %d", round, i, st)
			}
		}
	}
	for r := range 3 {
		send(r)
		settled(b1, b2)
	}
	// Mid-stream: b2's marks have caught up with what it applied, a round
	// goes out and b2 dies while it applies and emits it.
	killed := ownedOf(t, b2)
	waitUntil(t, "b2's marks catch up", func() bool {
		marks := groupMarks(t, brokers, group, topic, parts)
		for part, off := range consumedOf(t, b2) {
			if marks[part] != off {
				return false
			}
		}
		return true
	})
	send(3)
	b2.cmd.Process.Kill()
	<-b2.done
	markAtKill := groupMarks(t, brokers, group, topic, parts)
	t.Logf("b2 owned %s; marks at the SIGKILL %v", killed, markAtKill)
	waitOwned(t, "b1 owns every partition", []*proc{b1}, []string{"0,1,2,3"})
	settled(b1)
	for r := 4; r < 6; r++ {
		send(r)
		settled(b1)
	}
	// b2 again, on its own data: it takes its partitions back, resuming
	// from where it died.
	b2 = member(dir2)
	waitOwned(t, "b1 and b2 share again", []*proc{b1, b2}, []string{"*", "*"})
	for r := 6; r < 8; r++ {
		send(r)
		settled(b1, b2)
	}

	window := func(c changeRecord) bool {
		p, off, ok := c.source(t)
		return ok && slices.Contains(strings.Split(killed, ","), strconv.Itoa(p)) && off > markAtKill[p]
	}
	var want []changeRecord
	waitUntil(t, "the reference's changes", func() bool {
		prev := len(want)
		want = readChangesTopic(t, brokers, "changes-ref")
		return len(want) > 0 && len(want) == prev && len(refHooks.received()) == len(want)
	})
	if len(want) < 8*visitors {
		t.Fatalf("the reference emitted %d changes; want at least a flip per visitor and round", len(want))
	}
	var got []changeRecord
	deadline := time.Now().Add(30 * time.Second)
	for {
		time.Sleep(time.Second)
		prev := len(got)
		got = readChangesTopic(t, brokers, "changes-group")
		if len(got) == prev && len(groupHooks.received()) >= len(want) || time.Now().After(deadline) {
			break
		}
	}
	checkOnce(t, "changes topic", got, want, window, nil)
	// The killed member, started again, sends again the delivery it had
	// in flight: the same records under the same seq.
	redelivered := func(first, again changeRecord) bool {
		p, _, ok := first.source(t)
		return ok && slices.Contains(strings.Split(killed, ","), strconv.Itoa(p)) && first.Seq == again.Seq
	}
	checkOnce(t, "webhook deliveries", groupHooks.received(), refHooks.received(), window, redelivered)
}

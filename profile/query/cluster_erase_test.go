package query_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/profile/cluster"
	"github.com/affinityhq/affinity/profile/defs"
	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/tracker/event"
)

// groupParts is the events topic's partition count of a groupCluster.
const groupParts = 4

// groupCluster is a build group as cmd/affinity runs one, in process:
// nodes sharing an events, a definitions and a changes topic on kfake,
// each with its own Badger, joining a real consumer group (cluster.Member)
// that assigns their partitions and routing queries by the group's
// description (cluster.Directory); and a reference single node with its
// own embedded log fed the same events.
type groupCluster struct {
	brokers []string
	defs    *defs.Options
	ref     *profiletest.Env
}

// groupNode is a node of a groupCluster.
type groupNode struct {
	*profiletest.Env
	member *cluster.Member
	left   bool
}

func newGroupCluster(t *testing.T) *groupCluster {
	t.Helper()
	g := &groupCluster{brokers: profiletest.StartKafka(t, kfake.SeedTopics(1, "changes", "defs"))}
	g.defs = &defs.Options{Brokers: g.brokers, Topic: "defs"}
	g.ref = profiletest.Open(t, profiletest.Options{Partitions: groupParts, Serve: true})
	g.ref.Clock.Set(t0 + 3600000)
	return g
}

// join starts a node that owns nothing until the group assigns it
// partitions, wired as cmd/affinity's build (startMember, openProfiles):
// emission marks, the changes topic as sink and history, and at each
// assignment the definitions topic applied to its end before the
// partitions open. It leaves the group when t ends, or by leave.
func (g *groupCluster) join(t *testing.T) *groupNode {
	t.Helper()
	ko := storage.DefaultKafkaOptions(g.brokers...)
	ko.Topic, ko.Partitions = "events", groupParts
	events, err := storage.OpenKafkaLog(context.Background(), ko)
	if err != nil {
		t.Fatalf("cannot open the events topic: %s", err)
	}
	t.Cleanup(func() { _ = events.Close() })
	changes := profiletest.OpenTopic(t, g.brokers, "changes")
	t.Cleanup(func() { _ = changes.Close() })
	marks := cluster.NewMarks()
	n := &groupNode{}
	n.Env = profiletest.Open(t, profiletest.Options{Partitions: groupParts, Serve: true, Events: events, Definitions: g.defs,
		Builder: func(o *builder.Options) { o.Partitions, o.EmitMark = []int{}, marks.Mark },
		Membership: func(o *membership.Options) {
			o.Sink, o.Gate, o.History = membership.LogSink(changes), marks, membership.LogHistory(changes)
		}})
	n.Clock.Set(t0 + 3600000)
	o := cluster.DefaultOptions()
	o.Brokers, o.Topic, o.API, o.Owner, o.Logger = g.brokers, "events", n.URL, n.Builder, t.Logf
	o.SessionTimeout, o.RebalanceTimeout = 6*time.Second, 6*time.Second
	o.Marks, o.Flush = marks, n.Segments.Flush
	o.TakeOver = func(ctx context.Context, marks map[int]int64) {
		if err := n.Definitions.CatchUp(ctx); err != nil {
			t.Errorf("definitions catch-up: %s", err)
		}
		n.Segments.TakeOver(ctx, marks)
		n.Segments.RestorePersons(ctx, marks)
	}
	dir := cluster.NewDirectory(cluster.DirectoryOptions{Brokers: g.brokers, Topic: "events", Group: o.Group, Partitions: groupParts,
		Generation: func() int32 { return n.member.Generation() }, TTL: 100 * time.Millisecond})
	t.Cleanup(func() { _ = dir.Close() })
	o.OnGeneration = dir.Invalidate
	if n.member, err = cluster.New(o); err != nil {
		t.Fatal(err)
	}
	r, err := cluster.NewRouter(cluster.RouterOptions{Lookup: dir.Lookup, Partitions: groupParts, Owned: n.Builder.Serving})
	if err != nil {
		t.Fatal(err)
	}
	n.Query.SetCluster(r)
	if err := n.member.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.leave(t) })
	return n
}

// leave leaves the group (the node's last records produced, its marks
// committed) and closes the node. Idempotent.
func (n *groupNode) leave(t *testing.T) {
	t.Helper()
	if n.left {
		return
	}
	n.left = true
	if err := n.member.Close(); err != nil {
		t.Errorf("member Close: %s", err)
	}
	n.Close(t)
}

// settle waits until the group is stable with each node owning want's
// partitions (by node), every partition's feed history copied, and every
// node caught up with the events topic.
func (g *groupCluster) settle(t *testing.T, want map[*groupNode][]int) {
	t.Helper()
	profiletest.WaitUntil(t, "the group's assignment", func() bool {
		for n, parts := range want {
			got := n.Builder.Owned()
			slices.Sort(got)
			if !slices.Equal(got, parts) || !slices.Equal(n.member.Owned(), got) {
				return false
			}
			for _, p := range parts {
				if !n.Segments.HistoryReady(p) {
					return false
				}
			}
		}
		return true
	})
	for n := range want {
		n.Wait(t)
	}
}

// send appends bs to the group's events topic through node n and to the
// reference's log, and waits until all of them applied them.
func (g *groupCluster) send(t *testing.T, n *groupNode, nodes []*groupNode, bs ...*event.Batch) {
	t.Helper()
	n.Append(t, bs...)
	g.ref.Send(t, bs...)
	for _, m := range nodes {
		m.Wait(t)
	}
}

// TestClusterErasureMoves: a visitor erased at its partition's owner stays
// erased when the partition moves to a node that rebuilds it from the
// events topic's start, with no state of its own: the erasure's record on
// the definitions topic says where the partition's log was, and the new
// owner skips the visitor's records below it. Every surface of the group
// — the visitor's lookup, interests, members exports, the changes feed —
// then answers what one node that applied the same events and the same
// erasure answers, byte for byte, and holds nothing of the erased past.
func TestClusterErasureMoves(t *testing.T) {
	g := newGroupCluster(t)
	a := g.join(t)
	g.settle(t, map[*groupNode][]int{a: {0, 1, 2, 3}})
	b := g.join(t)
	// A keeps half of its partitions, B gets the others: B never held A's.
	var aParts, bParts []int
	profiletest.WaitUntil(t, "the partitions split", func() bool {
		aParts, bParts = a.member.Owned(), b.member.Owned()
		return len(aParts) == 2 && len(bParts) == 2
	})
	slices.Sort(aParts)
	slices.Sort(bParts)
	g.settle(t, map[*groupNode][]int{a: aParts, b: bParts})
	p := aParts[0]
	for _, e := range []*profiletest.Env{g.ref, a.Env} {
		for _, seg := range [][2]string{{"fans", `interest(brand, "lego") > 0.1`}, {"hush", `interest(brand, "zqhidden") > 0.01`}} {
			if code, body := e.Do(t, http.MethodPut, "/v1/segments/shop/"+seg[0], "text/plain", []byte(seg[1]), true); code != 201 {
				t.Fatalf("PUT segment: %d %s", code, body)
			}
		}
	}
	profiletest.WaitUntil(t, "the segments on node B", func() bool {
		_, ok, _ := b.Segments.Definition("shop", "hush")
		return ok
	})

	// Visitors on every partition; V, on A's partition p, viewed the
	// "zqhidden" brand before its erasure and only "lego" after.
	v := g.ref.VisitorOn(clusterSite, p, 7000)
	var others []event.UUID
	for i := range 12 {
		others = append(others, g.ref.VisitorOn(clusterSite, i%groupParts, 8000+100*i))
	}
	brands := []string{"lego", "nutrilon"}
	wave := func(at int64) []*event.Batch {
		var bs []*event.Batch
		for i, o := range others {
			bs = append(bs, profiletest.Batch(clusterSite, o, profiletest.View(at-int64(i)*60000, event.Product{ID: fmt.Sprint("p", i), Brand: brands[i%2], Category: "toys"})))
		}
		return bs
	}
	before := append(wave(t0-2*day), profiletest.Batch(clusterSite, v,
		profiletest.View(t0-2*day, event.Product{ID: "s1", Brand: "zqhidden", Category: "hidden"}),
		profiletest.View(t0-2*day+1000, event.Product{ID: "l1", Brand: "lego", Category: "toys"})))
	nodes := []*groupNode{a, b}
	g.send(t, a, nodes, before...)
	if _, body := a.Get(t, "/v1/visitors/shop/"+v.String()); !strings.Contains(body, "zqhidden") {
		t.Fatalf("V before its erasure on its owner: %s; want its zqhidden view", body)
	}
	if _, body := b.Get(t, "/v1/segments/shop/hush/members"); !strings.Contains(body, v.String()) {
		t.Fatalf("hush's members before V's erasure, asked of node B: %s; want V", body)
	}

	// V is erased at its owner, A, and on the reference.
	wantCode, want := g.ref.Do(t, http.MethodDelete, "/v1/visitors/shop/"+v.String(), "", nil, true)
	if code, body := a.Do(t, http.MethodDelete, "/v1/visitors/shop/"+v.String(), "", nil, true); code != wantCode || body != want || code != http.StatusNoContent {
		t.Fatalf("DELETE of V on its owner: %d %s; want the reference's %d %s", code, body, wantCode, want)
	}
	same := func(nodes []*groupNode, path string) string {
		t.Helper()
		wantCode, want := g.ref.Get(t, path)
		for _, n := range nodes {
			if code, got := n.Get(t, path); code != wantCode || got != want {
				t.Fatalf("GET %s on %s: %d\n%s\nwant the reference's %d\n%s", path, n.URL, code, got, wantCode, want)
			}
		}
		return want
	}
	if body := same(nodes, "/v1/visitors/shop/"+v.String()); !strings.Contains(body, "no visitor") {
		t.Errorf("V just erased: %s; want the reference's 404", body)
	}

	// More events of V and the others after the erasure: V's make a new
	// profile.
	after := append(wave(t0-day), profiletest.Batch(clusterSite, v,
		profiletest.View(t0-day, event.Product{ID: "l2", Brand: "lego", Category: "toys"})))
	g.send(t, a, nodes, after...)
	at := url.QueryEscape(time.UnixMilli(t0 + 3600000).UTC().Format(time.RFC3339))
	check := func(nodes []*groupNode) {
		t.Helper()
		for _, o := range others {
			same(nodes, "/v1/visitors/shop/"+o.String()+"?at="+at)
			same(nodes, "/v1/visitors/shop/"+o.String()+"/segments")
		}
		for _, path := range []string{"/v1/interests/shop/brand/lego?min=0.001&at=" + at, "/v1/segments/shop/fans/members?at=" + at, "/v1/segments/shop/fans/members?format=csv&at=" + at} {
			if body := same(nodes, path); !strings.Contains(body, v.String()) {
				t.Errorf("GET %s: %s; want V's new profile in it", path, body)
			}
		}
		// V's lookups: its new profile, nothing of the erased one.
		if body := same(nodes, "/v1/visitors/shop/"+v.String()+"?at="+at); strings.Contains(body, "zqhidden") || !strings.Contains(body, "lego") {
			t.Errorf("V after its erasure: %s; want its lego view alone", body)
		}
		if body := same(nodes, "/v1/visitors/shop/"+v.String()+"/segments"); strings.Contains(body, "hush") || !strings.Contains(body, "fans") {
			t.Errorf("V's segments after its erasure: %s; want fans alone", body)
		}
		for _, path := range []string{"/v1/interests/shop/brand/zqhidden?min=0.001&at=" + at, "/v1/segments/shop/hush/members?at=" + at} {
			if body := same(nodes, path); strings.Contains(body, v.String()) {
				t.Errorf("GET %s: %s; V's erased past in it", path, body)
			}
		}
		// The group's feed of each segment, paged across the nodes: the
		// reference's records (V's of before its erasure scrubbed there).
		f := &clusterFixture{ref: g.ref}
		for _, n := range nodes {
			f.nodes = append(f.nodes, n.Env)
		}
		for _, name := range []string{"fans", "hush"} {
			r := &feedReader{f: f, name: name, seen: map[string]string{}}
			r.readAll(t, 4)
			ref := referenceFeed(t, g.ref, name)
			if len(r.seen) != len(ref) {
				t.Errorf("%s's feed: %d records; want the reference's %d", name, len(r.seen), len(ref))
			}
			for id, rec := range ref {
				if got := r.seen[id]; got != rec {
					t.Errorf("%s's feed: record %s:\n%s\nwant\n%s", name, id, got, rec)
				}
			}
			for id, rec := range r.seen {
				if name == "hush" && strings.Contains(rec, v.String()) {
					t.Errorf("hush's feed: record %s of V's erased past: %s", id, rec)
				}
			}
		}
	}
	check(nodes)

	// A leaves: B takes p over and rebuilds it from the topic's start.
	if off, err := b.DB.Offset(p); err != nil || off != 0 {
		t.Fatalf("node B's state of partition %d: offset %d, %v; want none", p, off, err)
	}
	a.leave(t)
	g.settle(t, map[*groupNode][]int{b: {0, 1, 2, 3}})
	check([]*groupNode{b})
}

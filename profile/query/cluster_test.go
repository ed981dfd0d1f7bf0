package query_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/profile/cluster"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/tracker/event"
)

// clusterFixture is two nodes of a build group, each owning half of four
// partitions, and a reference node owning all of them, every one fed the
// same events: whatever a node of the group answers must be the
// reference's answer, byte for byte.
type clusterFixture struct {
	nodes []*profiletest.Env
	ref   *profiletest.Env
	// owners is the group's view the nodes route by; a test empties an
	// entry to simulate a rebalance.
	owners atomic.Pointer[[]string]
}

const clusterSite = "shop"

func newClusterFixture(t testing.TB) *clusterFixture {
	t.Helper()
	const parts = 4
	own := func(ps ...int) func(*builder.Options) {
		return func(o *builder.Options) { o.Partitions = ps }
	}
	n0 := profiletest.Open(t, profiletest.Options{Partitions: parts, Serve: true, Builder: own(0, 2)})
	n1 := profiletest.Open(t, profiletest.Options{Partitions: parts, Serve: true, Builder: own(1, 3)})
	for _, n := range []*profiletest.Env{n0, n1} { // as a member's (cmd/affinity)
		n.Segments.SampleByPartition(n.Builder.Owned, func(site string, v event.UUID) int { return n.Log.Partition(event.AppendLogKey(nil, site, v)) })
	}
	return routeCluster(t, parts, profiletest.Open(t, profiletest.Options{Partitions: parts, Serve: true}), n0, n1)
}

// routeCluster makes a clusterFixture of ref and two nodes owning
// partitions 0, 2 and 1, 3 of parts: each node routes by the fixture's
// view.
func routeCluster(t testing.TB, parts int, ref *profiletest.Env, nodes ...*profiletest.Env) *clusterFixture {
	t.Helper()
	f := &clusterFixture{nodes: nodes, ref: ref}
	for _, e := range f.all() {
		e.Clock.Set(t0 + 3600000) // segments evaluate when the events happen
	}
	a, b := f.nodes[0].URL, f.nodes[1].URL
	f.setOwners(a, b, a, b)
	for _, n := range f.nodes {
		r, err := cluster.NewRouter(cluster.RouterOptions{
			Lookup: func(context.Context) (*cluster.View, error) {
				return &cluster.View{State: "Stable", Owners: *f.owners.Load(), At: time.Now()}, nil
			},
			Partitions: parts,
			Owned:      n.Builder.Owned,
		})
		if err != nil {
			t.Fatal(err)
		}
		n.Query.SetCluster(r)
	}
	return f
}

func (f *clusterFixture) setOwners(urls ...string) { f.owners.Store(&urls) }

func (f *clusterFixture) all() []*profiletest.Env {
	return append([]*profiletest.Env{f.ref}, f.nodes...)
}

// send feeds the same batches to every node and waits until each applied
// its partitions' share.
func (f *clusterFixture) send(t testing.TB, bs ...*event.Batch) {
	t.Helper()
	for _, e := range f.all() {
		e.Append(t, bs...)
	}
	for _, e := range f.all() {
		e.Wait(t)
	}
}

// sendSettled feeds the batches one at a time, every node's person
// evaluator settled after each: the records of a person's passing states
// depend on which commits an evaluation sees, on one node as on several.
func (f *clusterFixture) sendSettled(t testing.TB, bs ...*event.Batch) {
	t.Helper()
	for _, b := range bs {
		f.send(t, b)
		for range 3 { // a round hands marks on; the receiver's may hand checks back
			for _, e := range f.all() {
				e.Wait(t)
			}
		}
	}
}

// sampleSizes samples every segment's size on every node at each of ats,
// and returns from and to (query-escaped RFC 3339) around them.
func (f *clusterFixture) sampleSizes(t *testing.T, ats ...int64) (from, to string) {
	t.Helper()
	for _, at := range ats {
		for _, e := range f.all() {
			e.Clock.Set(at)
			if _, err := e.Segments.RecordSizes(); err != nil {
				t.Fatal(err)
			}
		}
	}
	from = url.QueryEscape(time.UnixMilli(t0 + profiletest.Hour).UTC().Format(time.RFC3339))
	to = url.QueryEscape(time.UnixMilli(t0 + 4*profiletest.Hour).UTC().Format(time.RFC3339))
	return from, to
}

// same asks every node of the group path and wants the reference's status
// and body.
func (f *clusterFixture) same(t *testing.T, method, path string) string {
	t.Helper()
	wantCode, want := f.ref.Do(t, method, path, "", nil, true)
	for i, n := range f.nodes {
		if code, got := n.Do(t, method, path, "", nil, true); code != wantCode || got != want {
			t.Fatalf("%s %s on node %d: %d\n%s\nwant the reference's %d\n%s", method, path, i, code, got, wantCode, want)
		}
	}
	return want
}

// clusterEvents makes visitors spread over the partitions: views of two
// brands, and persons whose devices sit on different partitions (linked
// by email, and transitively by customer id).
func clusterEvents(e *profiletest.Env) (visitors []event.UUID, persons []string, bs []*event.Batch) {
	brands := []string{"nutrilon", "lego"}
	for i := range 24 {
		v := profiletest.Visitor(1000 + i)
		visitors = append(visitors, v)
		evs := []event.Event{profiletest.View(t0-int64(i)*3600000, event.Product{ID: fmt.Sprint("p", i), Brand: brands[i%2], Category: "baby/food", Price: float64(5 + i), HasPrice: true})}
		for range i % 3 {
			evs = append(evs, profiletest.View(t0-int64(i)*day, event.Product{ID: "x", Brand: "lego", Category: "toys"}))
		}
		bs = append(bs, profiletest.Batch(clusterSite, v, evs...))
	}
	// A person of three devices on three partitions: two share an email,
	// the third shares the second's customer id.
	p0, p1, p2 := e.VisitorOn(clusterSite, 0, 2000), e.VisitorOn(clusterSite, 1, 2000), e.VisitorOn(clusterSite, 3, 2000)
	bs = append(bs,
		profiletest.Batch(clusterSite, p0, profiletest.Identify(t0-3*day, "ann@example.com"), profiletest.View(t0-day, event.Product{ID: "a", Brand: "nutrilon"})),
		profiletest.Batch(clusterSite, p1, profiletest.IdentifyCustomer(t0-2*day, "c-7", "ann@example.com"), profiletest.View(t0-3600000, event.Product{ID: "b", Brand: "lego"})),
		profiletest.Batch(clusterSite, p2, profiletest.IdentifyCustomer(t0-day, "c-7", ""), profiletest.View(t0, event.Product{ID: "c", Brand: "lego"})),
	)
	visitors = append(visitors, p0, p1, p2)
	return visitors, []string{"ann@example.com", "c-7", "nobody@example.com"}, bs
}

func TestClusterAnswersAsOneNode(t *testing.T) {
	f := newClusterFixture(t)
	for _, e := range f.all() {
		if code, body := e.Do(t, http.MethodPut, "/v1/segments/shop/fans", "text/plain", []byte(`interest(brand, "lego") > 0.1`), true); code != 201 {
			t.Fatalf("PUT segment: %d %s", code, body)
		}
	}
	visitors, persons, bs := clusterEvents(f.ref)
	f.send(t, bs...)
	at := url.QueryEscape(time.UnixMilli(t0 + 3600000).UTC().Format(time.RFC3339))

	t.Run("visitors", func(t *testing.T) {
		for _, v := range visitors {
			f.same(t, http.MethodGet, "/v1/visitors/shop/"+v.String()+"?at="+at)
			f.same(t, http.MethodGet, "/v1/visitors/shop/"+v.String()+"/segments")
		}
		f.same(t, http.MethodGet, "/v1/visitors/shop/"+profiletest.Visitor(99999).String())
		f.same(t, http.MethodGet, "/v1/visitors/shop/not-a-uuid")
	})
	t.Run("persons", func(t *testing.T) {
		for _, p := range persons {
			body := f.same(t, http.MethodGet, "/v1/people/shop/"+url.PathEscape(p)+"?at="+at)
			for _, v := range visitors[len(visitors)-3:] {
				if p != "nobody@example.com" && !strings.Contains(body, v.String()) {
					t.Fatalf("person %s: %s; want its 3 visitors", p, body)
				}
			}
		}
	})
	t.Run("members", func(t *testing.T) {
		for _, format := range []string{"ndjson", "csv"} {
			all := f.same(t, http.MethodGet, "/v1/segments/shop/fans/members?format="+format+"&at="+at)
			if n := strings.Count(all, "\n"); n < 10 {
				t.Fatalf("%s export: %d lines; want members on every partition", format, n)
			}
			// Pages of 3, each asked of another node, the cursor of one
			// resumed by the other.
			cursor, pages := "", 0
			for ; pages < 20; pages++ {
				path := "/v1/segments/shop/fans/members?format=" + format + "&limit=3&at=" + at + "&cursor=" + cursor
				page := f.same(t, http.MethodGet, path)
				lines := strings.Split(strings.TrimSuffix(page, "\n"), "\n")
				last := lines[len(lines)-1]
				if format == "ndjson" {
					if !strings.HasPrefix(last, `{"cursor":"`) {
						break
					}
					cursor = strings.TrimSuffix(strings.TrimPrefix(last, `{"cursor":"`), `"}`)
				} else {
					if len(lines) < 4 { // header and fewer than 3 rows
						break
					}
					cursor = last[:36]
				}
			}
			if pages < 3 {
				t.Fatalf("%s export: %d pages; want several", format, pages)
			}
		}
	})
	t.Run("interests", func(t *testing.T) {
		f.same(t, http.MethodGet, "/v1/interests/shop/brand/lego?min=0.01&at="+at)
		cursor := ""
		for pages := 0; ; pages++ {
			page := f.same(t, http.MethodGet, "/v1/interests/shop/brand/lego?min=0.01&limit=4&at="+at+"&cursor="+cursor)
			i := strings.LastIndex(strings.TrimSuffix(page, "\n"), "\n")
			last := page[i+1:]
			if !strings.HasPrefix(last, `{"cursor":"`) {
				if pages < 2 {
					t.Fatalf("%d pages; want several", pages)
				}
				break
			}
			cursor = strings.TrimSuffix(strings.TrimSpace(strings.TrimPrefix(last, `{"cursor":"`)), `"}`)
		}
		f.same(t, http.MethodGet, "/v1/interests/shop/brand/lego?min=-1")
	})
	t.Run("delete", func(t *testing.T) {
		v := visitors[5]
		f.nodes[0].Do(t, http.MethodDelete, "/v1/visitors/shop/"+v.String(), "", nil, true)
		f.ref.Do(t, http.MethodDelete, "/v1/visitors/shop/"+v.String(), "", nil, true)
		f.same(t, http.MethodGet, "/v1/visitors/shop/"+v.String())
		// A person's devices are erased at their owners. (Its
		// changes_scrubbed counts this node's feed: feeds are each node's.)
		for _, e := range []*profiletest.Env{f.nodes[0], f.ref} {
			if code, body := e.Do(t, http.MethodDelete, "/v1/people/shop/ann@example.com", "", nil, true); code != 200 || !strings.Contains(body, `"visitors_deleted":3`) {
				t.Fatalf("DELETE person: %d %s; want 3 visitors deleted", code, body)
			}
		}
		for _, p := range visitors[len(visitors)-3:] {
			f.same(t, http.MethodGet, "/v1/visitors/shop/"+p.String())
		}
		f.same(t, http.MethodGet, "/v1/people/shop/c-7")
	})
}

func TestClusterUnavailable(t *testing.T) {
	f := newClusterFixture(t)
	for _, e := range f.all() {
		if code, body := e.Do(t, http.MethodPut, "/v1/segments/shop/fans", "text/plain", []byte(`count(view) >= 1`), true); code != 201 {
			t.Fatalf("PUT segment: %d %s", code, body)
		}
	}
	visitors, _, bs := clusterEvents(f.ref)
	f.send(t, bs...)
	a, b := f.nodes[0].URL, f.nodes[1].URL
	// Partition 3 has no owner: a rebalance.
	f.setOwners(a, b, a, "")
	onThree := f.ref.VisitorOn(clusterSite, 3, 1000)
	onZero := f.ref.VisitorOn(clusterSite, 0, 1000)
	want503 := func(what string, code int, h http.Header, body string) {
		t.Helper()
		if code != 503 || !strings.Contains(body, "partition 3") || h.Get("Retry-After") == "" {
			t.Errorf("%s: %d %q (Retry-After %q); want 503 naming partition 3, with Retry-After", what, code, body, h.Get("Retry-After"))
		}
	}
	for i, n := range f.nodes {
		code, h, body := n.DoResponse(t, http.MethodGet, "/v1/visitors/shop/"+onThree.String(), nil, nil, true)
		if i == 0 {
			want503("visitor on the unowned partition", code, h, body)
		} else if code != 200 {
			// Node 1 still owns partition 3 (its builder was not told):
			// it answers from its state, as the owner.
			t.Errorf("visitor on node 1's own partition: %d %s", code, body)
		}
		for _, path := range []string{"/v1/segments/shop/fans/members", "/v1/interests/shop/brand/lego", "/v1/people/shop/ann@example.com"} {
			code, h, body := n.DoResponse(t, http.MethodGet, path, nil, nil, true)
			want503(fmt.Sprintf("node %d %s", i, path), code, h, body)
		}
	}
	if code, body := f.nodes[1].Get(t, "/v1/visitors/shop/"+onZero.String()); code != 200 {
		t.Errorf("a visitor of an owned partition during a rebalance elsewhere: %d %s", code, body)
	}
	// A view naming a node that no longer owns the partition: the node
	// refuses the forwarded request, which is not forwarded again.
	f.setOwners(b, b, a, b)
	code, h, body := f.nodes[1].DoResponse(t, http.MethodGet, "/v1/visitors/shop/"+onZero.String(), nil, nil, true)
	if code != 503 || !strings.Contains(body, "partition 0 is not served by this node") || h.Get("Retry-After") == "" {
		t.Errorf("stale view: %d %q; want 503 from the node that lost partition 0", code, body)
	}
	code, _, body = f.nodes[0].DoResponse(t, http.MethodGet, "/v1/segments/shop/fans/members", nil, nil, true)
	if code != 503 || !strings.Contains(body, "not served by this node") {
		t.Errorf("stale view, members: %d %q; want 503", code, body)
	}
	// An owner that does not answer.
	f.setOwners(a, "http://127.0.0.1:1", a, b)
	code, h, body = f.nodes[0].DoResponse(t, http.MethodGet, "/v1/visitors/shop/"+f.ref.VisitorOn(clusterSite, 1, 1000).String(), nil, nil, true)
	if code != 503 || !strings.Contains(body, "cannot reach the owner http://127.0.0.1:1 of partition 1") || h.Get("Retry-After") == "" {
		t.Errorf("unreachable owner: %d %q", code, body)
	}
	// The internal routes answer only forwarded requests.
	if code, body := f.nodes[0].Get(t, "/v1/internal/profiles/shop/"+visitors[0].String()); code != 404 {
		t.Errorf("internal route asked directly: %d %s; want 404", code, body)
	}
	hop := http.Header{api.HeaderHop: {"1"}, api.HeaderPartitions: {"0,x"}}
	if code, body := f.nodes[0].DoHeader(t, http.MethodGet, "/v1/segments/shop/fans/members", hop, nil, true); code != 400 || !strings.Contains(body, `invalid X-Affinity-Partitions "0,x"`) {
		t.Errorf("bad partitions header: %d %q; want 400 naming it", code, body)
	}
}

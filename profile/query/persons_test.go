package query_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/affinityhq/affinity/internal/codec"
	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/tracker/event"
)

// personLines returns the members and change records of a per-person
// segment on envs, one line each, sorted: the members of a build group are
// the union of its evaluators', each person on one of them.
func personLines(t *testing.T, name string, envs ...*profiletest.Env) (members, changes []string) {
	t.Helper()
	for _, e := range envs {
		if err := e.Segments.Members(clusterSite, name, nil, func(m *membership.Member) bool {
			vs := slices.Clone(m.Visitors)
			slices.SortFunc(vs, func(a, b event.UUID) int { return slices.Compare(a[:], b[:]) })
			members = append(members, fmt.Sprint(m.Visitor, m.Person, m.Email, m.Entered, vs))
			return true
		}); err != nil {
			t.Fatal(err)
		}
		if err := e.Segments.Changes(clusterSite, name, 0, func(c *membership.Change) bool {
			changes = append(changes, fmt.Sprint(c.Visitor, c.Entered, c.At, c.Why, c.Email))
			return true
		}); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(members)
	slices.Sort(changes)
	return members, changes
}

// TestPersonsAcrossNodes: two members of a build group, each applying
// half of the partitions and evaluating the persons whose evaluating
// partition it serves, hand marks to each other over POST
// /v1/internal/persons; their per-person members and change records,
// together, are the single-node reference's, and no person is a member
// on both.
func TestPersonsAcrossNodes(t *testing.T) {
	f := newClusterFixture(t)
	for _, n := range f.nodes {
		n.Segments.SetPersons(n.Query.Persons(4, profiletest.Token))
	}
	for _, e := range f.all() {
		for name, rule := range map[string]string{"known": `identified`, "fans": `interest(brand, "lego") > 0.1`} {
			if _, _, err := e.Segments.PutPer(clusterSite, name, rule, membership.PerPerson); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, _, bs := clusterEvents(f.ref)
	// Persons whose devices sit on partitions of both nodes, keyed by
	// emails evaluated on either node.
	for i := range 8 {
		email := fmt.Sprintf("p%d@example.com", i)
		a, b := f.ref.VisitorOn(clusterSite, i%4, 3000+100*i), f.ref.VisitorOn(clusterSite, (i+1)%4, 5000+100*i)
		bs = append(bs,
			profiletest.Batch(clusterSite, a, profiletest.Identify(t0-day, email), profiletest.View(t0-day, event.Product{ID: "l", Brand: "lego"})),
			profiletest.Batch(clusterSite, b, profiletest.Identify(t0-3600000, email)))
	}
	f.sendSettled(t, bs...)
	evaluated := map[int]int{}
	for i := range 8 {
		evaluated[membership.PersonPartition(clusterSite, fmt.Sprintf("e:p%d@example.com", i), 4)%2]++
	}
	if evaluated[0] == 0 || evaluated[1] == 0 {
		t.Fatalf("persons by evaluating node %v: want some on each", evaluated)
	}
	for _, name := range []string{"known", "fans"} {
		wantM, wantC := personLines(t, name, f.ref)
		gotM, gotC := personLines(t, name, f.nodes...)
		if len(wantM) < 9 {
			t.Fatalf("%s: the reference has %d members; want ann's and the 8 p's", name, len(wantM))
		}
		if !slices.Equal(gotM, wantM) {
			t.Fatalf("%s: the group's members\n%s\nwant the reference's\n%s", name, strings.Join(gotM, "\n"), strings.Join(wantM, "\n"))
		}
		if !slices.Equal(gotC, wantC) {
			t.Fatalf("%s: the group's changes\n%s\nwant the reference's\n%s", name, strings.Join(gotC, "\n"), strings.Join(wantC, "\n"))
		}
	}
}

// TestServePersons: the hand-off endpoint answers only a forwarded request
// for a partition this node serves, stores nothing of a body with a bad
// mark, and 204 once it stored them.
func TestServePersons(t *testing.T) {
	f := newClusterFixture(t)
	n := f.nodes[0] // serves 0 and 2
	hop := func(parts string) http.Header {
		h := http.Header{api.HeaderHop: {"1"}}
		if parts != "" {
			h.Set(api.HeaderPartitions, parts)
		}
		return h
	}
	good := []byte("P\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x04shoph\x05event\x06linked\x0de:a@b.example")
	bad := []byte(strings.Replace(string(good), "event", "evenx", 1))
	body := func(marks ...[]byte) []byte { // version 1 (FORMAT.md)
		return append([]byte{1}, codec.AppendStrings(nil, marks)...)
	}
	for _, c := range []struct {
		name   string
		h      http.Header
		body   []byte
		code   int
		reason string
	}{
		{"not forwarded", http.Header{api.HeaderPartitions: {"0"}}, body(good), 404, ""},
		{"no partitions", hop(""), body(good), 400, "without X-Affinity-Partitions"},
		{"not served", hop("1"), body(good), 503, "partition 1 is not served"},
		{"truncated", hop("0"), body(good)[:10], 400, "invalid handed person marks"},
		{"bad mark", hop("0"), body(good, bad), 400, "invalid handed person mark 50"},
		{"good", hop("0"), body(good), 204, ""},
	} {
		code, body := n.DoHeader(t, http.MethodPost, "/v1/internal/persons", c.h, c.body, true)
		if code != c.code || !strings.Contains(body, c.reason) {
			t.Errorf("%s: %d %q; want %d with %q", c.name, code, body, c.code, c.reason)
		}
	}
}

package membership_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/people"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/tracker/event"
)

// groupStore is people.Store over the committed state of every node of
// the group: what the query side's remoteStore reads over HTTP.
type groupStore struct {
	mu    sync.Mutex
	nodes []*env
	// owners are the evaluators of the evaluating partitions (nil: none
	// now, a rebalance); a nil slice: node p%len(nodes) of partition p.
	owners []*env
}

// owner returns the evaluator of partition p now, nil if none.
func (s *groupStore) owner(p int) *env {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.owners != nil {
		return s.owners[p]
	}
	return s.nodes[p%len(s.nodes)]
}

// own makes n the evaluator of every partition (nil: none, as while a
// group rebalances).
func (s *groupStore) own(n *env) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.owners = make([]*env, groupPartitions)
	for p := range s.owners {
		s.owners[p] = n
	}
}

// all returns the nodes of the group now.
func (s *groupStore) all() []*env {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nodes
}

// set makes nodes the group (a move: the evaluators run concurrently).
func (s *groupStore) set(nodes ...*env) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nodes = nodes
}

func (s *groupStore) Profile(site string, v [16]byte, dst []byte) ([]byte, bool, error) {
	for _, n := range s.all() {
		if prof, ok, err := n.DB.Profile(site, v, dst); err != nil || ok {
			return prof, ok, err
		}
	}
	return dst, false, nil
}

func (s *groupStore) VisitorsByEmail(site, email string, fn func([16]byte) bool) error {
	return s.linked(fn, func(n *env, add func([16]byte) bool) error { return n.DB.VisitorsByEmail(site, email, add) })
}

func (s *groupStore) VisitorsByCustomer(site, c string, fn func([16]byte) bool) error {
	return s.linked(fn, func(n *env, add func([16]byte) bool) error { return n.DB.VisitorsByCustomer(site, c, add) })
}

// linked merges the nodes' link indexes in visitor order, as one DB's.
func (s *groupStore) linked(fn func([16]byte) bool, read func(*env, func([16]byte) bool) error) error {
	var vs [][16]byte
	for _, n := range s.all() {
		if err := read(n, func(v [16]byte) bool { vs = append(vs, v); return true }); err != nil {
			return err
		}
	}
	slices.SortFunc(vs, func(a, b [16]byte) int { return slices.Compare(a[:], b[:]) })
	for _, v := range slices.Compact(vs) {
		if !fn(v) {
			break
		}
	}
	return nil
}

// groupNode is membership.Persons of node self of a group whose store
// says who evaluates each partition (groupStore.owner); HandOff hands the
// marks to that node's AcceptHanded, or fails while there is none.
type groupNode struct {
	self  atomic.Pointer[env] // set once the node is open
	store *groupStore
}

func (g *groupNode) Store() people.Store { return g.store }
func (g *groupNode) Partitions() int     { return groupPartitions }
func (g *groupNode) Evaluates(p int) bool {
	self := g.self.Load()
	return self != nil && g.store.owner(p) == self
}
func (g *groupNode) HandOff(_ context.Context, p int, marks [][]byte) error {
	o := g.store.owner(p)
	if o == nil {
		return fmt.Errorf("partition %d has no evaluator now", p)
	}
	return o.Segments.AcceptHanded(marks)
}

const groupPartitions = 4

// keyOn returns an email whose person's evaluating partition is served
// by node i of n: for placing a person's evaluation on a chosen node.
func keyOn(site, name string, i, n int) string {
	for k := 0; ; k++ {
		email := fmt.Sprintf("%s%d@x.com", name, k)
		if membership.PersonPartition(site, "e:"+email, groupPartitions)%n == i {
			return email
		}
	}
}

// TestPersonsInGroup: two nodes, each holding the profiles of its own
// visitors, evaluate each person on one node over the group's state and
// hand the other marks to it; the union of their members and change
// records equals one node's over the same events (the reference): a
// person whose visitors sit on both nodes enters by the link, leaves by
// time, and a join by a customer id makes the higher person leave
// (linked) where it was evaluated, though that is not where the lower is.
func TestPersonsInGroup(t *testing.T) {
	clk := &profiletest.Clock{}
	clk.Set(t0 + hour)
	ref, store := openGroup(t, clk, nil)
	all := append([]*env{ref}, store.nodes...)
	for _, n := range all {
		n.putPerson(t, "shop", "fans", `count(view, 7d) >= 3`)
		n.putPerson(t, "shop", "known", `identified`)
	}
	// send appends each batch to the node of its visitor (on) and to the
	// reference, then runs every node until none has marks left.
	send := func(on []int, batches ...*event.Batch) {
		t.Helper()
		for i, b := range batches {
			store.nodes[on[i]].Append(t, b)
			ref.Append(t, b)
		}
		settle(t, all)
	}
	a, b, c, d := profiletest.Visitor(1), profiletest.Visitor(2), profiletest.Visitor(3), profiletest.Visitor(4)
	ann := keyOn("shop", "ann", 1, 2) // evaluated on node 1; a is on node 0
	low := keyOn("shop", "a", 0, 2)   // the join's lower key, on node 0
	high := keyOn("shop", "zz", 1, 2) // the join's higher key, on node 1
	send([]int{0, 1},
		profiletest.Batch("shop", a, append(views(t0, t0+10), profiletest.Identify(t0+20, ann))...),
		profiletest.Batch("shop", b, views(t0+30)...))
	send([]int{1}, profiletest.Batch("shop", b, profiletest.Identify(t0+40, ann)))
	send([]int{1, 0},
		profiletest.Batch("shop", c, profiletest.Identify(t0+50, low)),
		profiletest.Batch("shop", d, profiletest.Identify(t0+51, high)))
	check := func(when string, want int) {
		t.Helper()
		for _, seg := range []string{"fans", "known"} {
			got := sameAsReference(t, when, ref, store.nodes, nil, "shop", seg)
			if seg == "known" && got != want {
				t.Fatalf("%s: known has %d persons; want %d", when, got, want)
			}
		}
	}
	check("after the link", 3)
	if got := ref.members(t, "shop", "fans"); len(got) != 1 {
		t.Fatalf("reference fans = %v; want ann's person (3 views over two visitors)", got)
	}
	// The join: c (node 1) and d (node 0) take customer C7 (at distinct
	// instants: the merged profile's email is the latest identify's).
	send([]int{1, 0},
		profiletest.Batch("shop", c, profiletest.IdentifyCustomer(t0+60, "C7", low)),
		profiletest.Batch("shop", d, profiletest.IdentifyCustomer(t0+61, "C7", high)))
	check("after the join", 2)
	// Time: ann's window drops below 3 views at t0+7d on its evaluator.
	for _, n := range all {
		n.Advance(t, t0+8*day)
	}
	settle(t, all)
	check("at t0+8d", 2)
}

// openGroup opens a reference node and a group of two nodes on clk, each
// evaluating the persons of the partitions the group's store gives it;
// tune, if set, sets more of node i's options.
func openGroup(t *testing.T, clk *profiletest.Clock, tune func(i int, o *membership.Options)) (ref *env, store *groupStore) {
	t.Helper()
	ref, store = openEnv(t, "", clk, nil), &groupStore{}
	for i := range 2 {
		g := &groupNode{store: store}
		n := openEnv(t, "", clk, func(o *membership.Options) {
			o.Persons = g
			if tune != nil {
				tune(i, o)
			}
		})
		g.self.Store(n)
		store.nodes = append(store.nodes, n)
	}
	return ref, store
}

// sameAsReference fails unless the union of the members of segment
// site/name on nodes is ref's (no person a member on two nodes), and the
// union of their change records and emitted (the records of a node gone)
// is ref's, but for seq; it returns how many members there are.
func sameAsReference(t *testing.T, when string, ref *env, nodes []*env, emitted []membership.Change, site, name string) int {
	t.Helper()
	got := map[event.UUID]membership.Member{}
	for _, n := range nodes {
		for v, m := range n.members(t, site, name) {
			if _, twice := got[v]; twice {
				t.Fatalf("%s: %s: person %s (%s) is a member on two nodes", when, name, v, m.Person)
			}
			m.Visitors = sortedUUIDs(m.Visitors...)
			got[v] = m
		}
	}
	want := ref.members(t, site, name)
	for v, m := range want {
		m.Visitors = sortedUUIDs(m.Visitors...)
		want[v] = m
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: %s: group members\n%v\nwant the reference's\n%v", when, name, got, want)
	}
	var gotC, wantC []string
	for _, ch := range emitted {
		gotC = append(gotC, changeLine(ch))
	}
	for _, n := range nodes {
		for _, ch := range n.changes(t, site, name) {
			gotC = append(gotC, changeLine(ch))
		}
	}
	for _, ch := range ref.changes(t, site, name) {
		wantC = append(wantC, changeLine(ch))
	}
	slices.Sort(gotC)
	slices.Sort(wantC)
	if !slices.Equal(gotC, wantC) {
		t.Fatalf("%s: %s: group changes\n%v\nwant the reference's\n%v", when, name, gotC, wantC)
	}
	return len(got)
}

// changeLine is a change record without its seq, for comparing feeds.
func changeLine(c membership.Change) string {
	return fmt.Sprintf("%s %s %v %d %s %s %s", c.Visitor, c.Person, c.Entered, c.At, c.Why, c.Email, c.Facts)
}

// settle runs every node three rounds: a node's round may hand marks to
// another, whose evaluation may hand candidate old keys back.
func settle(t *testing.T, nodes []*env) {
	t.Helper()
	for range 3 {
		for _, n := range nodes {
			n.Wait(t)
		}
	}
}

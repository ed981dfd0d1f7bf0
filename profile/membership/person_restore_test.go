package membership_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/valyala/fastjson"

	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/people"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// restoreFaults breaks a node's restore (RestorePersons) where a case
// says. Its changes topic and the group's profiles are the real ones (a
// kfake topic, the nodes' Badger state); a fault cuts them off part-way,
// as a broker or an owner that stops answering would (kfake cannot be
// stopped and brought back with its records).
type restoreFaults struct {
	// readFail > 0: the next read of the changes topic fails after that
	// many records; readHold with it: it waits there instead until its
	// context ends (a newer assignment cancels it).
	readFail atomic.Int64
	readHold atomic.Bool
	// profileFail: reading this visitor's profile from the group fails
	// until cleared.
	profileFail atomic.Pointer[event.UUID]
	// cut gets what cut the restore off first; the restore then waits
	// there until release, so the test looks while it is cut off.
	cut     chan string
	once    sync.Once
	release chan struct{}
	opened  sync.Once
	// handedAgain counts the rounds that handed awaiting marks again.
	handedAgain atomic.Int64
}

func newRestoreFaults() *restoreFaults {
	return &restoreFaults{cut: make(chan string, 1), release: make(chan struct{})}
}

// report tells the test what cut the restore off and waits for release.
func (f *restoreFaults) report(what string) {
	f.once.Do(func() { f.cut <- what })
	<-f.release
}

// releaseAll lets every reported fault go on. Idempotent.
func (f *restoreFaults) releaseAll() { f.opened.Do(func() { close(f.release) }) }

// tune wraps the changes topic and the group's store of o in f, and its
// logger: the restore logs its evaluation's failure before it retries.
func (f *restoreFaults) tune(t *testing.T, o *membership.Options) {
	history, persons := o.History, o.Persons
	o.History = func(ctx context.Context, fn func([]byte) error) error {
		after, hold := f.readFail.Swap(0), f.readHold.Swap(false)
		var n int64
		return history(ctx, func(v []byte) error {
			if n++; after == 0 || n <= after {
				return fn(v)
			}
			if hold {
				f.report("read held")
				<-ctx.Done()
				return ctx.Err()
			}
			f.report("read failed")
			return errors.New("the changes topic is unreachable")
		})
	}
	o.Persons = faultyPersons{persons, faultyStore{persons.Store(), f}}
	o.Logger = func(format string, args ...any) {
		t.Logf(format, args...)
		msg := fmt.Sprintf(format, args...)
		if strings.Contains(msg, "again to their evaluators") {
			f.handedAgain.Add(1)
		}
		// The restore's own failure, not a background evaluation's.
		if strings.Contains(msg, "cannot evaluate the restored persons") && strings.Contains(msg, "cannot reach the owner") {
			f.report("evaluation failed")
		}
	}
}

type faultyPersons struct {
	membership.Persons
	store people.Store
}

func (p faultyPersons) Store() people.Store { return p.store }

type faultyStore struct {
	people.Store
	f *restoreFaults
}

func (s faultyStore) Profile(site string, v [16]byte, dst []byte) ([]byte, bool, error) {
	if bad := s.f.profileFail.Load(); bad != nil && *bad == event.UUID(v) {
		return dst, false, fmt.Errorf("cannot reach the owner of visitor %s", event.UUID(v))
	}
	return s.Store.Profile(site, v, dst)
}

// TestPersonsRestoreFailsPartWay: node 1 of a two-node group evaluates
// 260 persons (more than one evaluation batch of a restore), produces
// their entries into "known", then commits their entries into "fans" but
// dies before producing them (after a rebalance in which node 0 handed
// its marks again: at the move only the restore evaluates node 1's
// persons, no awaiting mark stands in for it). Node 0 takes over every
// partition, and its restore of node 1's persons is cut off part-way:
// while reading the changes topic, or after it evaluated the first batch
// of the restored persons (their owed entries emitted, the rest not).
// Until a later restore completes, the persons' partitions are not ready
// (the query API answers 503), though the state then says a person who
// is a member is not one. The restore that completes — a retry, one of a
// newer assignment, or one after a restart on the same state dir —
// leaves the members a single node has over the same events (the
// reference), and each change record once: on the changes topic, in node
// 0's feed and in the feed by source.
func TestPersonsRestoreFailsPartWay(t *testing.T) {
	const persons = 260
	all := map[int]int64{0: 0, 1: 0, 2: 0, 3: 0}
	for _, tc := range []struct {
		name string
		arm  func(f *restoreFaults, target event.UUID)
		// resume, called once the fault cut the restore off, brings the
		// restore to an end on node n (or a node it returns in n's place).
		resume func(f *restoreFaults, n *env, reopen func() *env) *env
	}{{
		name: "the changes topic fails mid-read, the restore retries",
		arm:  func(f *restoreFaults, _ event.UUID) { f.readFail.Store(100) },
		resume: func(_ *restoreFaults, n *env, _ func() *env) *env {
			return n
		},
	}, {
		name: "a newer assignment cancels the restore mid-read",
		arm: func(f *restoreFaults, _ event.UUID) {
			f.readFail.Store(100)
			f.readHold.Store(true)
		},
		resume: func(_ *restoreFaults, n *env, _ func() *env) *env {
			n.Segments.RestorePersons(context.Background(), all)
			return n
		},
	}, {
		name: "the group's profiles fail mid-evaluation, the restore retries",
		arm:  func(f *restoreFaults, target event.UUID) { f.profileFail.Store(&target) },
		resume: func(f *restoreFaults, n *env, _ func() *env) *env {
			f.profileFail.Store(nil)
			return n
		},
	}, {
		name: "a newer assignment cancels the restore mid-evaluation",
		arm:  func(f *restoreFaults, target event.UUID) { f.profileFail.Store(&target) },
		resume: func(f *restoreFaults, n *env, _ func() *env) *env {
			n.Segments.RestorePersons(context.Background(), all)
			f.profileFail.Store(nil)
			return n
		},
	}, {
		name: "the node stops mid-evaluation and restarts on its state",
		arm:  func(f *restoreFaults, target event.UUID) { f.profileFail.Store(&target) },
		resume: func(f *restoreFaults, _ *env, reopen func() *env) *env {
			n := reopen()
			f.profileFail.Store(nil)
			n.Segments.RestorePersons(context.Background(), all)
			return n
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each on brokers and state of its own; most of each is waiting for a retry
			brokers := profiletest.StartKafka(t, kfake.SeedTopics(1, "changes"))
			topic := profiletest.OpenTopic(t, brokers, "changes")
			t.Cleanup(func() { _ = topic.Close() }) // after the nodes
			clk := &profiletest.Clock{}
			clk.Set(t0 + hour)
			var dead atomic.Bool // node 1's sink fails: its records stay in its outbox
			sink := membership.LogSink(topic)
			f := newRestoreFaults()
			defer f.releaseAll() // before the nodes close: a held restore would hold their Close
			node0 := func(o *membership.Options) {
				o.History, o.Sink = membership.LogHistory(topic), sink
				f.tune(t, o)
			}
			ref, store := openGroup(t, clk, func(i int, o *membership.Options) {
				if i == 0 {
					node0(o)
					return
				}
				o.History = membership.LogHistory(topic)
				o.Sink = func(ctx context.Context, cs []membership.Change) error {
					if dead.Load() {
						return errors.New("node 1 is dead")
					}
					return sink(ctx, cs)
				}
			})
			n0, n1 := store.nodes[0], store.nodes[1]
			assign(t, n0, 0, 2)
			assign(t, n1, 1, 3)
			for _, n := range []*env{ref, n0, n1} {
				n.putPerson(t, "shop", "known", `identified`)
				n.putPerson(t, "shop", "fans", `count(view) >= 1`)
			}
			// Every person is evaluated on node 1, its visitor is on node
			// 0; target's key sorts last, so the restore evaluates it in
			// its last batch.
			var (
				identify, view []*event.Batch
				target         event.UUID
				targetKey      string
			)
			for i := range persons {
				v := profiletest.Visitor(i + 1)
				email := keyOn("shop", fmt.Sprintf("p%03d-", i), 1, 2)
				identify = append(identify, profiletest.Batch("shop", v, profiletest.Identify(t0+int64(i), email)))
				view = append(view, profiletest.Batch("shop", v, views(t0+day+int64(i))...))
				if email > targetKey {
					target, targetKey = v, email
				}
			}
			targetID := membership.PersonID("shop", "e:"+targetKey)
			n0.Append(t, identify...)
			ref.Append(t, identify...)
			settle(t, []*env{ref, n0, n1})
			dead.Store(true)
			clk.Set(t0 + 2*day)
			n0.Append(t, view...)
			ref.Append(t, view...)
			settle(t, []*env{ref, n0})
			if _, err := n1.Segments.RunPersons(context.Background()); err != nil { // the marks node 0 handed
				t.Fatalf("node 1 cannot evaluate the persons: %s", err)
			}
			if got := len(n1.members(t, "shop", "fans")); got != persons {
				t.Fatalf("node 1 has %d fans; want %d (committed, never produced)", got, persons)
			}
			// A rebalance that leaves each node its partitions: node 0
			// hands the marks it handed node 1 again, and forgets them.
			// So at the move only the restore evaluates node 1's persons.
			n0.Segments.RestorePersons(context.Background(), map[int]int64{0: 0, 2: 0})
			profiletest.WaitUntil(t, "node 0 hands its marks again", func() bool { return f.handedAgain.Load() > 0 })
			if _, err := n1.Segments.RunPersons(context.Background()); err != nil {
				t.Fatalf("node 1 cannot evaluate the persons: %s", err)
			}
			if got := profiletest.TopicEnd(t, brokers, "changes"); got != persons {
				t.Fatalf("the changes topic holds %d records before the move; want %d (the entries into known)", got, persons)
			}
			emitted := map[string][]membership.Change{} // what node 1 produced: its feed
			for _, seg := range []string{"known", "fans"} {
				emitted[seg] = n1.changes(t, "shop", seg)
			}
			if err := n1.Segments.Close(); err != nil {
				t.Fatal(err)
			}

			// The move: node 0 is assigned every partition, and a fault
			// cuts its restore of node 1's persons off part-way.
			tc.arm(f, target)
			store.own(nil)
			n0.Segments.RestorePersons(context.Background(), all)
			store.set(n0)
			store.own(n0)
			n1.Close(t)
			var how string
			select {
			case how = <-f.cut:
			case <-time.After(20 * time.Second):
				t.Fatal("timed out after 20 s waiting for the fault to cut the restore off")
			}
			for _, p := range []int{1, 3} {
				if n0.Segments.PersonsReady(p) {
					t.Fatalf("partition %d is ready after its restore's %s; want it pending (503) until a restore completes", p, how)
				}
			}
			if how == "evaluation failed" {
				// What the 503 hides: the first batch's persons entered
				// fans, target not yet.
				fans := n0.members(t, "shop", "fans")
				if _, ok := fans[targetID]; ok || len(fans) == 0 || len(fans) >= persons {
					t.Fatalf("after the %s, node 0 has %d fans, target among them: %v; want the first batch's only", how, len(fans), ok)
				}
			}
			f.releaseAll()
			reopen := func() *env {
				t.Helper()
				store.own(nil)
				store.set()
				n0.Close(t)
				g := &groupNode{store: store}
				n := openEnv(t, n0.Dir, clk, func(o *membership.Options) {
					o.Persons = g
					node0(o)
				})
				g.self.Store(n)
				store.set(n)
				return n
			}
			n := tc.resume(f, n0, reopen)
			store.own(n)
			restored(t, n, 0, 1, 2, 3)
			settle(t, []*env{ref, n})

			for _, seg := range []string{"known", "fans"} {
				sameAsReference(t, "after the restore", ref, []*env{n}, emitted[seg], "shop", seg)
				var want, feed []string
				for _, c := range ref.changes(t, "shop", seg) {
					want = append(want, changeLine(c))
				}
				slices.Sort(want)
				var from []state.Source
				for p := range groupPartitions {
					from = append(from, state.Source{Partition: int32(p), Offset: -1})
				}
				srcs := map[state.Source]bool{}
				for _, c := range n.sourceChanges(t, "shop", seg, from...) {
					if srcs[c.Src] {
						t.Fatalf("%s: the feed by source has source %+v twice", seg, c.Src)
					}
					srcs[c.Src] = true
					feed = append(feed, changeLine(c))
				}
				slices.Sort(feed)
				if !slices.Equal(feed, want) {
					t.Fatalf("%s: the feed by source\n%v\nwant the reference's records\n%v", seg, feed, want)
				}
				if got := topicChanges(t, topic, seg); !slices.Equal(got, want) {
					t.Fatalf("%s: the changes topic\n%v\nwant the reference's records, each once\n%v", seg, got, want)
				}
			}
		})
	}
}

// topicChanges returns the records of segment seg on the changes topic l,
// sorted, as changeLine gives them. A record produced again with its seq
// and source counts once: the sink is at-least-once (LogSink), and a node
// stopped between producing records and committing their seqs produces
// them again; a second emission has a seq and a source of its own.
func topicChanges(t *testing.T, l storage.Log, seg string) []string {
	t.Helper()
	type emission struct {
		seq uint64
		src state.Source
	}
	var (
		p     fastjson.Parser
		c     membership.Change
		got   []string
		seen  = map[emission]bool{}
		again int
	)
	if err := membership.LogHistory(l)(context.Background(), func(v []byte) error {
		if err := membership.ParseChangeJSON(&c, &p, v); err != nil {
			return err
		}
		if c.Segment != seg {
			return nil
		}
		k := emission{c.Seq, c.Src}
		if seen[k] {
			again++
			return nil
		}
		seen[k] = true
		got = append(got, changeLine(c))
		return nil
	}); err != nil {
		t.Fatalf("cannot read the changes topic: %s", err)
	}
	if again > 0 {
		t.Logf("%s: %d records on the changes topic were produced again with their seq and source", seg, again)
	}
	slices.Sort(got)
	return got
}

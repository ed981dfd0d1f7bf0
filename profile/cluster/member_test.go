package cluster

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/affinityhq/affinity/profile/profiletest"
)

// owner records what a Member hands it, and checks the fence: an
// assignment always follows an Own of nothing.
type owner struct {
	t     *testing.T
	mu    sync.Mutex
	parts []int
	calls int
}

func (o *owner) Own(parts []int) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(parts) > 0 && len(o.parts) > 0 {
		o.t.Errorf("Own(%v) while owning %v: a generation began before the last one was revoked", parts, o.parts)
	}
	o.parts = slices.Clone(parts)
	o.calls++
	return nil
}

func (o *owner) owned() []int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.parts)
}

// startMember joins the group on brokers as api, with stateful (nil:
// none) as the partitions its state holds and its options adjusted by
// tune; it leaves when t ends.
func startMember(t *testing.T, brokers []string, topic, api string, stateful []int, tune ...func(*Options)) (*Member, *owner) {
	o := &owner{t: t}
	opts := DefaultOptions()
	opts.Brokers, opts.Topic, opts.API, opts.Owner, opts.Logger = brokers, topic, api, o, t.Logf
	opts.SessionTimeout, opts.RebalanceTimeout = 6*time.Second, 6*time.Second
	if stateful != nil {
		opts.Stateful = func() []int { return stateful }
	}
	for _, f := range tune {
		f(&opts)
	}
	m, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m, o
}

// TestMemberAsksForItsState: a member started with state of partitions 2
// and 3 (a restarted node) gets them back from the member that took
// every partition meanwhile.
func TestMemberAsksForItsState(t *testing.T) {
	const topic = "events"
	c, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.SeedTopics(4, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, ob := startMember(t, c.ListenAddrs(), topic, "http://b:8081", nil)
	profiletest.WaitUntil(t, "b owns every partition", func() bool { return len(ob.owned()) == 4 })
	_, oa := startMember(t, c.ListenAddrs(), topic, "http://a:8081", []int{2, 3})
	profiletest.WaitUntil(t, "a owns two partitions", func() bool { return len(oa.owned()) == 2 })
	if got := oa.owned(); !slices.Equal(got, []int{2, 3}) {
		t.Fatalf("a, with state of [2 3], owns %v; want [2 3]", got)
	}
}

// TestMembersShareAndMove: two members split the topic's partitions, the
// Directory names each partition's owner by its API URL, and when one
// leaves the other owns them all.
func TestMembersShareAndMove(t *testing.T) {
	const topic, parts = "events", 4
	c, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.SeedTopics(parts, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	start := func(api string) (*Member, *owner) { return startMember(t, brokers, topic, api, nil) }
	ma, oa := start("http://a:8081")
	mb, ob := start("http://b:8081")
	profiletest.WaitUntil(t, "both members own two partitions each", func() bool {
		return len(oa.owned()) == 2 && len(ob.owned()) == 2 && ma.Generation() == mb.Generation()
	})
	all := append(oa.owned(), ob.owned()...)
	slices.Sort(all)
	if !slices.Equal(all, []int{0, 1, 2, 3}) {
		t.Fatalf("owned a=%v b=%v; want every partition once", oa.owned(), ob.owned())
	}

	d := NewDirectory(DirectoryOptions{Brokers: brokers, Topic: topic, Group: "affinity-build", Partitions: parts, Generation: mb.Generation})
	defer d.Close()
	var v *View
	profiletest.WaitUntil(t, "the group is described as stable", func() bool {
		d.Invalidate(0)
		v, err = d.Lookup(t.Context())
		return err == nil && v.State == "Stable"
	})
	for _, p := range oa.owned() {
		if url, ok := v.Owner(p); !ok || url != "http://a:8081" {
			t.Fatalf("owner of partition %d = %q, %v; want http://a:8081", p, url, ok)
		}
	}
	for _, p := range ob.owned() {
		if url, ok := v.Owner(p); !ok || url != "http://b:8081" {
			t.Fatalf("owner of partition %d = %q, %v; want http://b:8081", p, url, ok)
		}
	}
	if len(v.Members) != 2 || v.Generation != mb.Generation() {
		t.Fatalf("view = %+v; want 2 members in generation %d", v, mb.Generation())
	}
	js := string(v.AppendJSON(nil))
	if !strings.Contains(js, `"api":"http://a:8081","partitions":[`) || !strings.Contains(js, `"state":"Stable"`) {
		t.Fatalf("view JSON = %s", js)
	}

	if err := ma.Close(); err != nil {
		t.Fatal(err)
	}
	if got := oa.owned(); len(got) != 0 {
		t.Fatalf("a owns %v after Close; want nothing", got)
	}
	profiletest.WaitUntil(t, "b owns every partition", func() bool { return len(ob.owned()) == parts })

	// A new member: the partitions spread again (which ones each keeps
	// is TestAssign's).
	_, oa2 := start("http://a2:8081")
	profiletest.WaitUntil(t, "a2 and b own two each", func() bool { return len(oa2.owned()) == 2 && len(ob.owned()) == 2 })
}

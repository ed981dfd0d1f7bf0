package cluster

import (
	"context"
	"maps"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/affinityhq/affinity/profile/profiletest"
)

// startMarkedMember is startMember with Marks, and a Flush that marks
// each owned partition p at 100+p, as the segment engine's Flush marks
// what it emitted before the generation ends.
func startMarkedMember(t *testing.T, brokers []string, topic, api string) (*Member, *Marks, *owner) {
	t.Helper()
	k := NewMarks()
	m, o := startMember(t, brokers, topic, api, nil, func(opts *Options) {
		opts.Marks = k
		opts.Flush = func(context.Context) error {
			marks := map[int]int64{}
			for p := range marksOf(k, 64) {
				marks[p] = 100 + int64(p)
			}
			return k.Emitted(k.Generation(), marks)
		}
	})
	return m, k, o
}

// marksOf returns the marks of the partitions k emits.
func marksOf(k *Marks, parts int) map[int]int64 {
	got := map[int]int64{}
	for p := range parts {
		if ok, mark := k.Emits(p); ok {
			got[p] = mark
		}
	}
	return got
}

// TestMarksMoveWithPartitions: a member's marks are the group's committed
// offsets: committed in its generation (not in an older one), committed
// again by its Flush when the generation ends, and read by the member
// that gets the partitions next.
func TestMarksMoveWithPartitions(t *testing.T) {
	const topic, parts = "events", 4
	brokers := profiletest.StartKafka(t, kfake.SeedTopics(parts, topic))
	ma, ka, oa := startMarkedMember(t, brokers, topic, "http://a:8081")
	profiletest.WaitUntil(t, "a owns every partition", func() bool { return len(oa.owned()) == parts })
	if got, want := marksOf(ka, parts), map[int]int64{0: 0, 1: 0, 2: 0, 3: 0}; !maps.Equal(got, want) {
		t.Fatalf("a's first marks %v; want %v (none committed)", got, want)
	}
	gen := ka.Generation()
	if err := ka.Emitted(gen-1, map[int]int64{0: 50}); err != nil || ka.Mark(0) != 0 {
		t.Fatalf("Emitted in an older generation: %v, mark %d; want nothing done", err, ka.Mark(0))
	}
	if err := ka.Emitted(gen, map[int]int64{0: 5, 1: 6}); err != nil {
		t.Fatal(err)
	}
	if err := ka.Emitted(gen, map[int]int64{0: 3}); err != nil || ka.Mark(0) != 5 || ka.Mark(1) != 6 {
		t.Fatalf("marks after 5, 6 and a lower 3: %d, %d (%v); want 5, 6", ka.Mark(0), ka.Mark(1), err)
	}

	// b joins: a's generation ends, its Flush marks every partition at
	// 100+p through it, and each member reads those for its share.
	_, kb, ob := startMarkedMember(t, brokers, topic, "http://b:8081")
	profiletest.WaitUntil(t, "a and b own two each", func() bool { return len(oa.owned()) == 2 && len(ob.owned()) == 2 })
	for _, k := range []*Marks{ka, kb} {
		for p, mark := range marksOf(k, parts) {
			if mark != 100+int64(p) {
				t.Errorf("mark of partition %d after the move: %d; want %d", p, mark, 100+p)
			}
		}
	}
	if err := ma.Close(); err != nil {
		t.Fatal(err)
	}
	if ka.Generation() != -1 || len(marksOf(ka, parts)) != 0 {
		t.Errorf("a's marks after Close: generation %d, %v; want none", ka.Generation(), marksOf(ka, parts))
	}
	profiletest.WaitUntil(t, "b owns every partition", func() bool { return len(ob.owned()) == parts })
	if got, want := marksOf(kb, parts), map[int]int64{0: 100, 1: 101, 2: 102, 3: 103}; !maps.Equal(got, want) {
		t.Errorf("b's marks owning all: %v; want %v", got, want)
	}
}

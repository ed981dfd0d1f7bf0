package cluster

import (
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/segmentio/kafka-go"
)

// Marks are the emission marks of the events partitions this member owns:
// per partition, the highest source offset (state.Source.Offset) whose
// change records a node moved into its feed and produced to the changes
// topic. A mark is stored as the group's committed offset of its events
// partition — a slot the group does not otherwise use (consumed offsets
// live in each node's state DB) that every member reads at its assignment
// and that only a member of the current generation can write. A Member
// given Marks fills them at each assignment and empties them when the
// generation ends; the segment engine's sequencer reads and advances them
// (membership.Gate), and the builder ends a catch-up commit at a mark
// (builder.Options.EmitMark). Safe for concurrent use.
type Marks struct {
	mu    sync.Mutex
	topic string
	gen   *kafka.Generation // nil between generations
	id    int32             // gen's id, -1 between generations
	marks map[int]int64     // the owned partitions' marks; 0: none
}

// NewMarks returns Marks that own nothing until a Member's first
// generation.
func NewMarks() *Marks {
	return &Marks{id: -1}
}

// begin makes the partitions assigned in gen the emitted ones, with the
// offsets the group had committed for them as their marks.
func (k *Marks) begin(gen *kafka.Generation, topic string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.gen, k.id, k.topic = gen, gen.ID, topic
	k.marks = map[int]int64{}
	for _, a := range gen.Assignments[topic] {
		// Nothing committed reads as the group's StartOffset (< 0).
		k.marks[a.ID] = max(a.Offset, 0)
	}
}

// end makes no partition emitted until the next begin.
func (k *Marks) end() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.gen, k.id, k.marks = nil, -1, nil
}

// Emits returns whether partition p is owned in the current generation
// and its mark (0: none).
func (k *Marks) Emits(p int) (bool, int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	mark, ok := k.marks[p]
	return ok, mark
}

// all returns a copy of the owned partitions' marks.
func (k *Marks) all() map[int]int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return maps.Clone(k.marks)
}

// Mark returns partition p's mark in the current generation, 0 when it
// has none or is not owned.
func (k *Marks) Mark(p int) int64 {
	_, mark := k.Emits(p)
	return mark
}

// Generation returns the id of the generation the marks are of, -1
// between generations.
func (k *Marks) Generation() int32 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.id
}

// Emitted commits marks, through generation gen, for the partitions owned
// in it whose mark they move forward. It does nothing when gen is no
// longer the current generation: the records stay unmarked and the next
// owner emits them again.
func (k *Marks) Emitted(gen int32, marks map[int]int64) error {
	k.mu.Lock()
	g, topic := k.gen, k.topic
	commit := make(map[int]int64, len(marks))
	for p, off := range marks {
		if cur, ok := k.marks[p]; ok && off > cur {
			commit[p] = off
		}
	}
	k.mu.Unlock()
	if g == nil || g.ID != gen || len(commit) == 0 {
		return nil
	}
	if err := g.CommitOffsets(map[string]map[int]int64{topic: commit}); err != nil {
		return fmt.Errorf("cannot commit the emission marks %v of topic %q in generation %d: %w", commit, topic, gen, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.gen != g {
		return errors.New("the generation ended while its emission marks were committed")
	}
	for p, off := range commit {
		k.marks[p] = max(k.marks[p], off)
	}
	return nil
}

package builder_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/tracker/event"
)

// erasure is one erased visitor as Options.Erasures yields it.
type erasure struct {
	site      string
	visitor   event.UUID
	partition int
	offset    int64
}

func erasuresOf(es ...erasure) func(fn func(string, event.UUID, int, int64)) error {
	return func(fn func(string, event.UUID, int, int64)) error {
		for _, e := range es {
			fn(e.site, e.visitor, e.partition, e.offset)
		}
		return nil
	}
}

// rebuild starts a builder with a fresh state and log of parts
// partitions, knowing erasures, appends batches in order (so their
// offsets are those they had on the log they came from), and waits until
// it applied them.
func rebuild(t *testing.T, parts int, batches []*event.Batch, erasures ...erasure) *profiletest.Env {
	t.Helper()
	e := profiletest.Open(t, profiletest.Options{Partitions: parts, Hook: profiletest.NoHook, Builder: func(o *builder.Options) {
		o.Erasures = erasuresOf(erasures...)
	}})
	e.Send(t, batches...)
	return e
}

// TestRebuildSkipsErased: a visitor erased when its partition was at
// offset O is rebuilt, from offset 0 and a state without it, of its
// records at or after O alone — byte for byte the profile of a builder
// that never saw the earlier ones, no link to its old email, no index
// entry — while the other visitors are rebuilt whole.
func TestRebuildSkipsErased(t *testing.T) {
	owner := openEnv(t, t.TempDir(), 2, nil)
	v, w := owner.VisitorOn("s1", 1, 1), owner.VisitorOn("s1", 1, 100)
	before := []*event.Batch{
		profiletest.Batch("s1", v, view(1, t0, acme), identify(2, t0, "ann@example.com")),
		profiletest.Batch("s1", w, view(3, t0, other)),
		profiletest.Batch("s1", v, view(4, t0+1000, other)),
	}
	owner.Send(t, before...)
	found, err := owner.Builder.DeleteVisitor("s1", v)
	if err != nil || !found {
		t.Fatalf("DeleteVisitor = %v, %v; want true, nil", found, err)
	}
	p, at := owner.Builder.ErasedAt("s1", v)
	if p != 1 || at != 3 {
		t.Fatalf("ErasedAt after the delete = partition %d offset %d; want 1, 3 (the partition's next offset)", p, at)
	}
	// The same event ids again after the erasure: a new profile's.
	after := []*event.Batch{
		profiletest.Batch("s1", v, view(1, t0+5000, acme)),
		profiletest.Batch("s1", w, view(5, t0+6000, acme)),
	}
	owner.Send(t, after...)
	want := reference(owner.Config, append([]*event.Batch{before[1]}, after...))
	checkState(t, owner.DB, owner.Config, want)

	for _, tc := range []struct {
		name     string
		erasures []erasure
		want     []*event.Batch
		skipped  uint64
	}{
		{"with the erasure", []erasure{{"s1", v, p, at}}, append([]*event.Batch{before[1]}, after...), 2},
		{"without it (the bug)", nil, append(before, after...), 0},
		{"erased at offset 0 (nothing known)", []erasure{{"s1", v, p, 0}}, append(before, after...), 0},
		{"another visitor erased", []erasure{{"s1", profiletest.Visitor(9999), 0, 50}}, append(before, after...), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := rebuild(t, 2, append(before, after...), tc.erasures...)
			checkState(t, e.DB, e.Config, reference(e.Config, tc.want))
			if got := counter(e.Metrics, "affinity_builder_erased_records_skipped_total"); got != tc.skipped {
				t.Errorf("records skipped = %d; want %d", got, tc.skipped)
			}
			wantLinks := 0
			if tc.skipped == 0 {
				wantLinks = 1
			}
			if got := visitorsByEmail(t, e.DB, "s1", "ann@example.com"); len(got) != wantLinks {
				t.Errorf("visitors linked to the erased email: %v; want %d", got, wantLinks)
			}
		})
	}
}

// TestErasedWhileRebuilding: an erasure that reaches a builder while its
// partition is still below the erasure's offset deletes what it built of
// the visitor (all of it from before the erasure) and skips the rest
// below the offset; one that comes after the partition passed the offset
// deletes the profile too (it cannot tell its records apart), and one the
// builder made itself (DeleteVisitor) changes nothing more.
func TestErasedWhileRebuilding(t *testing.T) {
	e := profiletest.Open(t, profiletest.Options{Partitions: 1, Hook: profiletest.NoHook})
	v, w := profiletest.Visitor(1), profiletest.Visitor(2)
	e.Send(t, profiletest.Batch("s1", v, view(1, t0, acme), identify(2, t0, "ann@example.com")), profiletest.Batch("s1", w, view(3, t0, other)))
	// The erasure was at offset 4 of the log; this builder is at 2.
	if err := e.Builder.Erased("s1", v, 0, 4); err != nil {
		t.Fatal(err)
	}
	if e.Profile(t, "s1", v) != nil || len(visitorsByEmail(t, e.DB, "s1", "ann@example.com")) != 0 {
		t.Fatalf("visitor erased at offset 4 still has a profile or link at offset 2")
	}
	late := profiletest.Batch("s1", v, view(5, t0+1, other)) // offset 3: before the erasure
	fresh := profiletest.Batch("s1", v, view(6, t0+2, acme)) // offset 4: after it
	e.Send(t, profiletest.Batch("s1", w, view(4, t0+1, acme)), late, fresh)
	want := profile.AppendProfile(nil, reference(e.Config, []*event.Batch{fresh})[string(event.AppendLogKey(nil, "s1", v))])
	if got := e.Profile(t, "s1", v); got == nil || !bytes.Equal(profile.AppendProfile(nil, got), want) {
		t.Fatalf("profile after the erasure = %+v; want the one of offset 4 alone", got)
	}
	if err := e.Builder.Erased("s1", v, 0, 4); err != nil || e.Profile(t, "s1", v) == nil {
		t.Fatalf("the same erasure again: %v; want nothing deleted", err)
	}
	// An erasure at offset 5 that comes once the partition is at 6: the
	// profile goes, with what it held of after offset 5 (logged).
	e.Send(t, profiletest.Batch("s1", v, view(7, t0+3, other)))
	if err := e.Builder.Erased("s1", v, 0, 5); err != nil || e.Profile(t, "s1", v) != nil {
		t.Fatalf("an erasure the partition passed: %v; want the profile deleted", err)
	}
	// The builder's own erasure: its offset is the next, and the record
	// of it changes nothing more.
	e.Send(t, profiletest.Batch("s1", w, view(8, t0+3, acme)))
	if found, err := e.Builder.DeleteVisitor("s1", w); err != nil || !found {
		t.Fatalf("DeleteVisitor = %v, %v", found, err)
	}
	e.Send(t, profiletest.Batch("s1", w, view(9, t0+4, acme)))
	if p, at := e.Builder.ErasedAt("s1", w); p != 0 || at != 7 {
		t.Fatalf("ErasedAt = %d, %d; want 0, 7", p, at)
	}
	if err := e.Builder.Erased("s1", w, 0, 7); err != nil || e.Profile(t, "s1", w) == nil {
		t.Fatalf("the record of this builder's own erasure: %v; want the new profile kept", err)
	}
	if p, at := e.Builder.ErasedAt("s1", profiletest.Visitor(3)); p != 0 || at != 0 {
		t.Fatalf("ErasedAt of a visitor never erased = %d, %d; want 0, 0", p, at)
	}
}

// TestErasedRefuses: an erasure whose partition is not the visitor's
// under this log is refused, at Erased and at Start.
func TestErasedRefuses(t *testing.T) {
	e := openEnv(t, t.TempDir(), 2, nil)
	v := e.VisitorOn("s1", 1, 1)
	if err := e.Builder.Erased("s1", v, 0, 3); err == nil || !strings.Contains(err.Error(), "invalid partition 0") || !strings.Contains(err.Error(), "partition 1") {
		t.Errorf("Erased of the wrong partition: %v; want an error naming both", err)
	}
	bo := builder.DefaultOptions()
	bo.Log, bo.State = e.Log, e.DB
	bo.Erasures = erasuresOf(erasure{"s1", v, 7, 3})
	b, err := builder.New(bo)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err == nil || !strings.Contains(err.Error(), "invalid partition 7") {
		t.Errorf("Start with an erasure of partition 7 of 2: %v; want it refused", err)
	}
}

package builder_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// TestOwnRevokeAndReown: a partition revoked and owned again resumes from
// its own last commit, so the profiles equal those of a builder that owned
// both partitions all along; while revoked, nothing of it is committed.
func TestOwnRevokeAndReown(t *testing.T) {
	e := openEnv(t, t.TempDir(), 2, nil)
	round := func(r int) []*event.Batch {
		var bs []*event.Batch
		for v := range 12 {
			bs = append(bs, profiletest.Batch("s1", profiletest.Visitor(v),
				view(r*1000+v, t0+int64(r*100+v), acme),
				withType(view(r*1000+500+v, t0+int64(r*100+v)+1, other), event.TypeCart)))
		}
		return bs
	}
	first := round(1)
	e.Send(t, first...)

	if err := e.Builder.Own([]int{0}); err != nil {
		t.Fatalf("Own([0]) = %v", err)
	}
	if got := e.Builder.Owned(); !slices.Equal(got, []int{0}) {
		t.Fatalf("Owned after revoking 1 = %v; want [0]", got)
	}
	if st := e.Builder.Status(); len(st.Partitions) != 1 || st.Partitions[0].Partition != 0 {
		t.Fatalf("Status partitions after revoking 1 = %+v; want only partition 0", st.Partitions)
	}
	var text bytes.Buffer
	e.Metrics.WritePrometheus(&text)
	if bytes.Contains(text.Bytes(), []byte(`partition="1"`)) {
		t.Fatalf("metrics after revoking 1 still name it:\n%s", text.String())
	}
	v1 := e.VisitorOn("s1", 1, 0)
	err := e.Builder.Visit("s1", v1, func(*state.Batch, *profile.Profile) error { return nil })
	var noe *builder.NotOwnerError
	if !errors.Is(err, builder.ErrNotOwner) || !errors.As(err, &noe) || noe.Partition != 1 {
		t.Fatalf("Visit of a visitor of revoked partition 1 = %v; want a NotOwnerError of partition 1", err)
	}
	if _, err := e.Builder.DeleteVisitor("s1", v1); !errors.Is(err, builder.ErrNotOwner) {
		t.Fatalf("DeleteVisitor of a visitor of revoked partition 1 = %v; want ErrNotOwner", err)
	}
	held, err := e.DB.Offset(1)
	if err != nil {
		t.Fatal(err)
	}

	// The second round, with the first resent (client retries): partition
	// 0 applies it, partition 1 waits in the log.
	second := append(round(2), first...)
	e.Send(t, second...)
	if got, err := e.DB.Offset(1); err != nil || got != held {
		t.Fatalf("offset of revoked partition 1 = %d, %v; want %d: nothing of it committed", got, err, held)
	}
	if got, want := profile.AppendProfile(nil, e.Profile(t, "s1", v1)), profile.AppendProfile(nil, reference(e.Config, first)[string(event.AppendLogKey(nil, "s1", v1))]); !bytes.Equal(got, want) {
		t.Fatalf("profile of %s on revoked partition 1 changed", v1)
	}

	if err := e.Builder.Own([]int{0, 1}); err != nil {
		t.Fatalf("Own([0 1]) = %v", err)
	}
	e.Wait(t)
	checkState(t, e.DB, e.Config, reference(e.Config, append(first, second...)))
	if got, want := counter(e.Metrics, "affinity_builder_dedup_hits_total"), uint64(2*len(first)); got != want {
		t.Fatalf("dedup hits = %d; want %d: the resent first round only", got, want)
	}
	text.Reset()
	e.Metrics.WritePrometheus(&text)
	if !bytes.Contains(text.Bytes(), []byte(`affinity_builder_consumed_offset{partition="1"}`)) {
		t.Fatalf("metrics after owning 1 again lack its offset:\n%s", text.String())
	}
}

// TestOwnNothingThenAll: a builder that starts owning nothing (a group
// member before its first generation) applies nothing until Own, then
// everything from offset 0.
func TestOwnNothingThenAll(t *testing.T) {
	e := profiletest.Open(t, profiletest.Options{Partitions: 2, Hook: profiletest.NoHook, Builder: func(o *builder.Options) { o.Partitions = []int{} }})
	var bs []*event.Batch
	for v := range 8 {
		bs = append(bs, profiletest.Batch("s1", profiletest.Visitor(v), view(v, t0, acme)))
	}
	e.Append(t, bs...)
	if got := e.Builder.Owned(); len(got) != 0 {
		t.Fatalf("Owned = %v; want none", got)
	}
	if got := counter(e.Metrics, "affinity_builder_events_applied_total"); got != 0 {
		t.Fatalf("events applied owning nothing = %d; want 0", got)
	}
	if err := e.Builder.Own([]int{1, 0}); err != nil {
		t.Fatal(err)
	}
	e.Wait(t)
	checkState(t, e.DB, e.Config, reference(e.Config, bs))
}

func TestOwnInvalid(t *testing.T) {
	e := openEnv(t, t.TempDir(), 2, profiletest.NoHook)
	for _, tc := range []struct {
		parts []int
		want  string
	}{
		{[]int{2}, "cannot change the owned partitions: invalid partition 2: out of range [0, 2)"},
		{[]int{-1}, "cannot change the owned partitions: invalid partition -1: out of range [0, 2)"},
		{[]int{0, 1, 0}, "cannot change the owned partitions: invalid partition 0: listed twice"},
	} {
		err := e.Builder.Own(tc.parts)
		if err == nil || err.Error() != tc.want {
			t.Fatalf("Own(%v) = %v; want %q", tc.parts, err, tc.want)
		}
		if got := e.Builder.Owned(); !slices.Equal(got, []int{0, 1}) {
			t.Fatalf("Owned after refused Own(%v) = %v; want [0 1] unchanged", tc.parts, got)
		}
	}
	e.Close(t)
	if err := e.Builder.Own([]int{0}); err == nil {
		t.Fatal("Own after Close = nil; want an error")
	}
}

// TestServingWaitsForCatchUp: a partition Own gives a running builder
// serves queries only once it applied the log up to its end as it was
// then — what the node it moved from had applied — while partitions
// owned from Start serve at once.
func TestServingWaitsForCatchUp(t *testing.T) {
	var paused atomic.Bool
	e := profiletest.Open(t, profiletest.Options{Hook: profiletest.NoHook, Builder: func(o *builder.Options) {
		o.Partitions = []int{0}
		o.Writable = func() error {
			if paused.Load() {
				return errors.New("commits held by the test")
			}
			return nil
		}
	}})
	for i := range 10 {
		e.Append(t, profiletest.Batch("s1", e.VisitorOn("s1", i%2, i*10), view(i, t0+int64(i), acme)))
	}
	e.Wait(t)
	if got := e.Builder.Serving(); !slices.Equal(got, []int{0}) {
		t.Fatalf("Serving = %v; want [0], owned from Start", got)
	}
	paused.Store(true)
	if err := e.Builder.Own([]int{0, 1}); err != nil {
		t.Fatal(err)
	}
	if got := e.Builder.Owned(); !slices.Equal(got, []int{0, 1}) {
		t.Fatalf("Owned = %v; want [0 1]", got)
	}
	if got := e.Builder.Serving(); !slices.Equal(got, []int{0}) {
		t.Fatalf("Serving while partition 1 catches up = %v; want [0]", got)
	}
	paused.Store(false)
	e.Wait(t)
	if got := e.Builder.Serving(); !slices.Equal(got, []int{0, 1}) {
		t.Fatalf("Serving after the catch-up = %v; want [0 1]", got)
	}
}

// commitStarts is a Hook that records the offset the state held when
// each commit that changed a profile began: where the commit before it
// ended.
type commitStarts struct {
	mu     sync.Mutex
	db     *state.DB
	starts []int64
}

func (h *commitStarts) Changed(*state.Batch, string, event.UUID, *profile.Profile) error {
	off, err := h.db.Offset(0)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := len(h.starts); n == 0 || h.starts[n-1] != off {
		h.starts = append(h.starts, off)
	}
	return nil
}

// ownTenAtMark opens a one-partition node with hook h (whose state it
// sets in *db) and emission mark mark, appends one view of each of ten
// visitors, owns the partition and waits until it applied them.
func ownTenAtMark(t *testing.T, h builder.Hook, db **state.DB, mark int64) (*profiletest.Env, []*event.Batch) {
	t.Helper()
	e := profiletest.Open(t, profiletest.Options{Partitions: 1, Hook: h, Builder: func(o *builder.Options) {
		o.Partitions = []int{}
		o.EmitMark = func(int) int64 { return mark }
	}})
	*db = e.DB
	var bs []*event.Batch
	for v := range 10 {
		bs = append(bs, profiletest.Batch("s1", profiletest.Visitor(v), view(v, t0, acme)))
	}
	e.Append(t, bs...)
	if err := e.Builder.Own([]int{0}); err != nil {
		t.Fatal(err)
	}
	e.Wait(t)
	return e, bs
}

// TestOwnEndsCatchUpAtEmitMark: a partition opened below its emission
// mark commits at exactly the mark, so no commit spans records another
// node emitted the changes of and records it did not; without a mark (or
// one at or below where it resumes) the catch-up commits as it fetches.
func TestOwnEndsCatchUpAtEmitMark(t *testing.T) {
	for _, tc := range []struct {
		mark int64
		want []int64 // where the commits began
	}{
		{0, []int64{0}},
		{4, []int64{0, 4}},
		{9, []int64{0, 9}},
		{10, []int64{0}},
		{12, []int64{0}}, // past the log's end: it never gets there
	} {
		h := &commitStarts{}
		e, bs := ownTenAtMark(t, h, &h.db, tc.mark)
		h.mu.Lock()
		if !slices.Equal(h.starts, tc.want) {
			t.Errorf("mark %d: commits began at %v; want %v", tc.mark, h.starts, tc.want)
		}
		h.mu.Unlock()
		checkState(t, e.DB, e.Config, reference(e.Config, bs))
		e.Close(t)
	}
}

// reconciles is a Reconciler Hook that records, each time Reconcile was
// called, how many commits had begun and the source a record written
// there gets once it raised the ordinals to 7.
type reconciles struct {
	commitStarts
	at []string
}

func (h *reconciles) MarkReady(context.Context, int, int64) error { return nil }

func (h *reconciles) Reconcile(_ context.Context, m *builder.Mark) error {
	src := m.Batch.RaiseOrdinal(7)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.at = append(h.at, fmt.Sprintf("mark %d after %d commits, source %d-%d", m.Mark, len(h.starts), src.Offset, src.Ord))
	return nil
}

// TestOwnReconcilesAtEmitMark: a partition whose state is at exactly its
// emission mark — caught up to it, or opened there — is handed to a
// Reconciler Hook once, before any record above the mark is applied, with
// its batch numbering at the mark; below the mark, past it, or with no
// mark, it is not.
func TestOwnReconcilesAtEmitMark(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		mark   int64
		want   string
		starts []int64
	}{
		{0, "[]", []int64{0}},
		{4, "[mark 4 after 1 commits, source 4-7]", []int64{0, 4}},
		{10, "[mark 10 after 1 commits, source 10-7]", []int64{0}},
		{12, "[]", []int64{0}},
	} {
		h := &reconciles{}
		e, _ := ownTenAtMark(t, h, &h.db, tc.mark)
		profiletest.WaitUntil(t, "the reconcile", func() bool {
			h.mu.Lock()
			defer h.mu.Unlock()
			return tc.want == "[]" || len(h.at) > 0
		})
		h.mu.Lock()
		if got := fmt.Sprint(h.at); got != tc.want || !slices.Equal(h.starts, tc.starts) {
			t.Errorf("mark %d: reconciled %s after commits beginning at %v; want %s after %v", tc.mark, got, h.starts, tc.want, tc.starts)
		}
		h.mu.Unlock()
		e.Close(t)
	}

	// Opened at its mark (a restart there), it reconciles before it fetches.
	h := &reconciles{}
	open := func(mark int64) *profiletest.Env {
		return profiletest.Open(t, profiletest.Options{Dir: dir, Partitions: 1, Hook: h, Builder: func(o *builder.Options) {
			o.EmitMark = func(int) int64 { return mark }
		}})
	}
	e := open(0)
	h.db = e.DB
	e.Append(t, profiletest.Batch("s1", profiletest.Visitor(1), view(1, t0, acme)))
	e.Wait(t)
	e.Close(t)
	e = open(1)
	h.db = e.DB
	profiletest.WaitUntil(t, "the reconcile at open", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.at) > 0
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	if want := fmt.Sprintf("[mark 1 after 1 commits, source 1-%d]", state.VisitOrdinals); fmt.Sprint(h.at) != want {
		t.Errorf("opened at its mark: reconciled %v; want %s (no commit since the restart, numbering from state.VisitOrdinals)", h.at, want)
	}
}

// sources is a Hook that records the source of the first change record
// of each profile it sees.
type sources struct {
	mu  sync.Mutex
	got []state.Source
}

func (h *sources) Changed(b *state.Batch, _ string, _ event.UUID, _ *profile.Profile) error {
	src, _ := b.NextSource()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got = append(h.got, src)
	return nil
}

// TestSourcesPerVisitor: a visitor's change records come from the offset
// after its last record in the commit, whatever commit it is in, and the
// visitors of a commit are evaluated in that order, so a partition's
// records come in the order of their sources.
func TestSourcesPerVisitor(t *testing.T) {
	h := &sources{}
	e := profiletest.Open(t, profiletest.Options{Partitions: 1, Hook: h, Builder: func(o *builder.Options) { o.Partitions = []int{} }})
	a, b := profiletest.Visitor(1), profiletest.Visitor(2)
	e.Append(t,
		profiletest.Batch("s1", a, view(1, t0, acme)),   // offset 0
		profiletest.Batch("s1", b, view(2, t0, acme)),   // 1
		profiletest.Batch("s1", a, view(3, t0+1, acme)), // 2
	)
	if err := e.Builder.Own([]int{0}); err != nil { // one fetch, one commit
		t.Fatal(err)
	}
	e.Wait(t)
	h.mu.Lock()
	defer h.mu.Unlock()
	want := []state.Source{{Partition: 0, Offset: 2}, {Partition: 0, Offset: 3}}
	if !slices.Equal(h.got, want) {
		t.Errorf("sources %+v; want b's from 2, then a's from 3", h.got)
	}
}

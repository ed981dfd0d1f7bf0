package membership

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/affinityhq/affinity/storage/state"
)

// TestEvaluatingWait: a backfill's wait holds while a batch noted before it
// has not committed or dropped its writes, and not after; a batch is
// noted once per generation.
func TestEvaluatingWait(t *testing.T) {
	db, err := state.Open(state.DefaultOptions(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ev evaluating
	done := context.Background()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	check := func(what string, ctx context.Context, maxWait time.Duration, want error) {
		t.Helper()
		if err := ev.wait(ctx, maxWait); !errors.Is(err, want) {
			t.Fatalf("%s: wait = %v; want %v", what, err, want)
		}
	}
	check("nothing noted", cancelled, 0, nil)

	a, b := db.NewBatch(), db.NewBatch()
	ev.note(a)
	ev.note(a)
	ev.note(b)
	if n := len(ev.batches); n != 2 {
		t.Fatalf("%d batches noted; want 2 (a once per generation)", n)
	}
	check("a and b evaluating, ctx ended", cancelled, time.Hour, context.Canceled)
	check("a and b evaluating, past maxWait", done, 0, errEvaluationStuck)

	if err := a.ExtSet([]byte("Ztest"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	check("a committed, b evaluating", done, 0, errEvaluationStuck)
	b.Reset() // dropped: its writes will never be stored
	check("a committed, b dropped", cancelled, 0, nil)

	ev.note(a) // a's next generation; the old entries are pruned
	if n := len(ev.batches); n != 1 {
		t.Fatalf("%d batches noted after both moved and a evaluates again; want 1", n)
	}
	check("a evaluating again", cancelled, time.Hour, context.Canceled)
}

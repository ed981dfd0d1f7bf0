package membership

import (
	"path/filepath"
	"runtime"
	"testing"

	"github.com/affinityhq/affinity/storage/state"
)

// TestOutboxIDsLow follows the sequencer's resume point through batches
// that take ids and then commit, reset or are dropped without either.
func TestOutboxIDsLow(t *testing.T) {
	db, err := state.Open(state.DefaultOptions(filepath.Join(t.TempDir(), "state")))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var o outboxIDs
	o.restore(10)
	low := func(want uint64) {
		t.Helper()
		if got := o.low(); got != want {
			t.Fatalf("low() = %d; want %d", got, want)
		}
	}
	take := func(b *state.Batch, want uint64) {
		t.Helper()
		if got := o.take(b); got != want {
			t.Fatalf("take() = %d; want %d", got, want)
		}
		if err := b.ExtSet(appendOutboxKey(nil, want), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	low(11) // nothing taken: the next id
	b1, b2 := db.NewBatch(), db.NewBatch()
	take(b1, 11)
	take(b2, 12)
	take(b1, 13)
	low(11)
	if err := b2.Commit(); err != nil {
		t.Fatal(err)
	}
	low(11) // b1 still holds 11 and 13
	b1.Reset()
	low(14) // dropped: 11 and 13 never appear
	take(b1, 14)
	take(b2, 15)
	low(14)
	if err := b1.Commit(); err != nil {
		t.Fatal(err)
	}
	low(15)
	if err := b2.Commit(); err != nil {
		t.Fatal(err)
	}
	low(16)

	// A batch dropped without a Reset stops holding the resume point back
	// once it is collected.
	func() {
		b3 := db.NewBatch()
		take(b3, 16)
	}()
	for i := 0; i < 10 && o.low() != 17; i++ {
		runtime.GC()
	}
	low(17)
}

package builder

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/state"
)

// TestRevokedPartitionCannotCommit: a caller that found a partition before
// it was revoked (a Visit racing Own) can neither lock it for work nor
// commit it: the fence is checked under the partition's lock.
func TestRevokedPartitionCannotCommit(t *testing.T) {
	dir := t.TempDir()
	lo := storage.DefaultEmbeddedOptions(filepath.Join(dir, "log"))
	lo.Partitions = 2
	l, err := storage.OpenEmbeddedLog(lo)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	db, err := state.Open(state.DefaultOptions(filepath.Join(dir, "state")))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	o := DefaultOptions()
	o.Log, o.State = l, db
	b, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	stale := b.own.Load().parts[1]
	if err := b.Own([]int{0}); err != nil {
		t.Fatal(err)
	}
	if err := stale.lockOwned(); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("lockOwned of revoked partition 1 = %v; want ErrNotOwner", err)
	}
	stale.mu.Lock()
	err = stale.commit(99)
	stale.mu.Unlock()
	if !errors.Is(err, ErrNotOwner) {
		t.Fatalf("commit of revoked partition 1 = %v; want ErrNotOwner", err)
	}
	if got, err := db.Offset(1); err != nil || got == 99 {
		t.Fatalf("offset of partition 1 = %d, %v; want the commit refused", got, err)
	}
}

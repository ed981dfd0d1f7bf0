package builder

import (
	"strconv"
	"testing"

	"github.com/affinityhq/affinity/profile"
)

// TestReleaseChangesBounded: the spare change buffers a commit hands back
// are kept up to maxSpareChanges, however many entries it had dirty, and a
// buffer grown past 1024 changes is never kept.
func TestReleaseChangesBounded(t *testing.T) {
	var pt partition
	for i := range maxSpareChanges + 500 {
		en := &entry{changes: make([]profile.ScoreChange, 3, 8)}
		en.changes[0].Value = "brand-" + strconv.Itoa(i)
		pt.releaseChanges(en)
		if en.changes != nil {
			t.Fatalf("entry %d still holds its buffer after release", i)
		}
	}
	if got := len(pt.spareChanges); got != maxSpareChanges {
		t.Fatalf("%d spare buffers after %d releases; want %d", got, maxSpareChanges+500, maxSpareChanges)
	}
	for i, b := range pt.spareChanges {
		if len(b) != 0 || b[:1][0].Value != "" {
			t.Fatalf("spare buffer %d not emptied: len %d, first %q", i, len(b), b[:1][0].Value)
		}
	}

	pt.spareChanges = nil
	pt.releaseChanges(&entry{changes: make([]profile.ScoreChange, 0, maxSpareChangeCap+1)})
	if len(pt.spareChanges) != 0 {
		t.Fatal("a buffer over maxSpareChangeCap was kept")
	}
	pt.releaseChanges(&entry{})
	if len(pt.spareChanges) != 0 {
		t.Fatal("an entry without a buffer added a spare")
	}
}

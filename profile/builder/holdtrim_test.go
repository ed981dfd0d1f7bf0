package builder_test

import (
	"testing"
	"time"

	"github.com/affinityhq/affinity/profile/profiletest"
)

// TestHoldTrim holds the log's trimming while records are applied: the log
// keeps them all through syncs, and after the release the next sync trims
// below the consumed offsets.
func TestHoldTrim(t *testing.T) {
	e := openEnv(t, t.TempDir(), 2, nil)
	release := e.Builder.HoldTrim()
	for i := range 20 {
		e.Append(t, profiletest.Batch("s1", profiletest.Visitor(i%5), view(i, t0+int64(i), acme)))
	}
	e.Wait(t)
	time.Sleep(100 * time.Millisecond) // several SyncIntervals of 20 ms
	held := func() (n int64) {
		for p := range 2 {
			first, next, err := e.Log.Offsets(t.Context(), p)
			if err != nil {
				t.Fatal(err)
			}
			n += next - first
		}
		return n
	}
	if n := held(); n != 20 {
		t.Fatalf("the log holds %d records while trimming is held; want all 20", n)
	}
	release()
	release() // idempotent
	deadline := time.Now().Add(10 * time.Second)
	for held() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the log still holds %d records after the release; want it trimmed", held())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

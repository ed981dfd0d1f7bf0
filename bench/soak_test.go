package bench

import (
	"strings"
	"testing"
)

// TestQuickSoak runs the quick soak on the real binary: ingest at half its
// maximum, lookups, segment changes and exports for ~20 s, with no error,
// a clean stop, and open files and goroutines flat.
func TestQuickSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the affinity binary for ~20 s")
	}
	o := QuickSoakOptions()
	o.Ingest.Dir = t.TempDir()
	rep, err := RunSoak(o)
	if rep != nil {
		var out strings.Builder
		PrintSoak(&out, rep)
		t.Logf("\n%s", out.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests == 0 || rep.Lookups == 0 || rep.Exports == 0 || rep.Changes < 2 {
		t.Errorf("soak did too little: %d requests, %d lookups, %d exports, %d segment changes", rep.Requests, rep.Lookups, rep.Exports, rep.Changes)
	}
	if !rep.Flat || len(rep.Series) == 0 {
		t.Errorf("not flat or not measured: %d samples", len(rep.Series))
	}
}

package bench

import (
	"strings"
	"testing"
)

// TestQuickE2E runs the quick e2e scenario: the builder must apply every
// event the collector acknowledged, and the lag must have been measured.
func TestQuickE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a collector and builder process")
	}
	o := QuickE2EOptions()
	o.Ingest.Dir = t.TempDir()
	o.MaxPhase, o.Phase = o.MaxPhase/2, o.Phase/2
	rep, err := RunE2E(o)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	PrintE2E(&out, rep)
	t.Logf("\n%s", out.String())
	if rep.Accepted == 0 || rep.Refused != 0 || rep.Errors != 0 {
		t.Errorf("%d requests answered 202, %d otherwise, %d failed; want only 202s", rep.Accepted, rep.Refused, rep.Errors)
	}
	if rep.AppliedEvents != rep.SentAccepted {
		t.Errorf("builder applied %d events; want the %d acknowledged", rep.AppliedEvents, rep.SentAccepted)
	}
	if rep.LagCount == 0 {
		t.Errorf("no lag measured")
	}
}

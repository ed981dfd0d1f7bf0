package bench

import (
	"strings"
	"testing"
)

// TestQuickQuery runs the quick query scenario: every lookup of a
// pre-filled visitor must answer 200 with the visitor's profile, idle and
// under ingest, and every export must stream exactly the segment's
// members, which are every pre-filled visitor.
func TestQuickQuery(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a log and starts a node process")
	}
	o := QuickQueryOptions()
	o.Ingest.Dir = t.TempDir()
	o.Visitors = 2_000
	o.MaxPhase, o.Phase = o.MaxPhase/2, o.Phase/2
	rep, err := RunQuery(o)
	if rep != nil {
		var out strings.Builder
		PrintQuery(&out, rep)
		t.Logf("\n%s", out.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	if rep.SegmentSize != int64(o.Visitors) {
		t.Errorf("segment %q has %d members; want %d", rep.Rule, rep.SegmentSize, o.Visitors)
	}
	for _, r := range []LookupResult{rep.LookupMax, rep.Idle, rep.IdleBaseline, rep.UnderIngest, rep.IngestBaseline} {
		if r.Lookups == 0 || r.OK != r.Lookups {
			t.Errorf("%s: %d of %d lookups answered 200 with the profile (%d 404, %d other, %d errors; last: %s)",
				r.Name, r.OK, r.Lookups, r.NotFound, r.Other, r.Errors, r.LastError)
		}
	}
	if rep.Ingest.RPS == 0 || rep.Ingest.Refused != 0 || rep.Ingest.Errors != 0 {
		t.Errorf("ingest beside the lookups: %.0f req/s, %d non-202, %d errors; want only 202s", rep.Ingest.RPS, rep.Ingest.Refused, rep.Ingest.Errors)
	}
	if len(rep.Exports) != 3 {
		t.Fatalf("%d exports; want 3", len(rep.Exports))
	}
	for _, x := range rep.Exports {
		if x.Rows != rep.SegmentSize || x.Bad != 0 || x.LastError != "" {
			t.Errorf("export %s: %d rows, %d bad (%s); want the %d members", x.Name, x.Rows, x.Bad, x.LastError, rep.SegmentSize)
		}
	}
}

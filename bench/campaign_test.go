package bench

import (
	"strings"
	"testing"

	"github.com/valyala/fastjson"
)

// TestQuickCampaign runs the quick campaign scenario: the freeze must
// hold every buyer and list email once, every export stream exactly its
// group's rows, each well-formed with a token of the campaign, and every
// report read answer 200 with the report, idle and under ingest.
func TestQuickCampaign(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node process")
	}
	o := QuickCampaignOptions()
	o.Ingest.Dir = t.TempDir()
	o.Recipients = 4_001
	o.MaxPhase, o.Phase = o.MaxPhase/2, o.Phase/2
	rep, err := RunCampaign(o)
	if rep != nil {
		var out strings.Builder
		PrintCampaign(&out, rep)
		t.Logf("\n%s", out.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	if rep.SegmentSize != 2_000 || rep.ListSize != 2_001 {
		t.Errorf("segment of %d buyers, list of %d emails; want 2000 and 2001", rep.SegmentSize, rep.ListSize)
	}
	if rep.Frozen != int64(o.Recipients) || rep.Treated+rep.Control != rep.Frozen || rep.Control == 0 || rep.Treated == 0 {
		t.Errorf("froze %d recipients, %d treated and %d control; want %d, both groups non-empty", rep.Frozen, rep.Treated, rep.Control, o.Recipients)
	}
	// A 10% holdout of 4001: 400 ± 4σ (σ = 19).
	if rep.Control < 324 || rep.Control > 476 {
		t.Errorf("%d control recipients; want about 400 (10%% holdout)", rep.Control)
	}
	if len(rep.Exports) != 3 {
		t.Fatalf("%d exports; want 3", len(rep.Exports))
	}
	for i, want := range []int64{rep.Treated, rep.Treated, rep.Control} {
		x := rep.Exports[i]
		if x.Want != want || x.Rows != want || x.Bad != 0 || x.LastError != "" {
			t.Errorf("export %s: %d rows (want %d), %d bad (%s); want the %d of the group", x.Name, x.Rows, x.Want, x.Bad, x.LastError, want)
		}
	}
	for _, r := range []LookupResult{rep.Idle, rep.UnderIngest} {
		if r.Lookups == 0 || r.OK != r.Lookups {
			t.Errorf("%s: %d of %d report reads answered 200 with the report (%d 404, %d other, %d errors; last: %s)",
				r.Name, r.OK, r.Lookups, r.NotFound, r.Other, r.Errors, r.LastError)
		}
	}
	if rep.Ingest.RPS == 0 || rep.Ingest.Refused != 0 || rep.Ingest.Errors != 0 {
		t.Errorf("ingest beside the reports: %.0f req/s, %d non-202, %d errors; want only 202s", rep.Ingest.RPS, rep.Ingest.Refused, rep.Ingest.Errors)
	}
}

// TestCheckRecipientRow: the export check refuses what a broken export
// would send.
func TestCheckRecipientRow(t *testing.T) {
	arms := map[string]bool{"behaviour": true, "crm": true}
	const tok = "AQEAAAAAAAAAAAAAAA" // campaign 1, recipient 0, a zero MAC
	var p fastjson.Parser
	f := func(line string, csv bool, wantOK bool) {
		t.Helper()
		reason := checkRecipientRow(&p, []byte(line), csv, 1, arms)
		if (reason == "") != wantOK {
			t.Errorf("checkRecipientRow(%q, csv %v) = %q; want ok %v", line, csv, reason, wantOK)
		}
	}
	f("buyer1@example.com,behaviour,,"+tok+"\n", true, true)
	f("crm7@example.com,crm,,"+tok+"\n", true, true)
	f(`{"email":"crm7@example.com","arm":"crm","variant":"","token":"`+tok+`"}`+"\n", false, true)
	f("buyer1@example.com,behaviour,,"+tok[:len(tok)-1]+"\n", true, false)            // a truncated token
	f("buyer1@example.com,behaviour,,AgEAAAAAAAAAAAAAAA\n", true, false)              // a version 2 token
	f("buyer1@example.com,behaviour,,AQIAAAAAAAAAAAAAAA\n", true, false)              // another campaign's
	f("buyer1@example.com,other,,"+tok+"\n", true, false)                             // an unknown arm
	f("buyer1@example.com,behaviour,10%,"+tok+"\n", true, false)                      // a variant
	f("buyer1,behaviour,,"+tok+"\n", true, false)                                     // no @
	f("buyer1@example.com,behaviour,"+tok+"\n", true, false)                          // 3 fields
	f(`{"email":"crm7@example.com","arm":"crm","variant":"","token":"`, false, false) // truncated JSON
}

package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain lets the test binary serve as a role process: RunIngest
// re-executes it with AFFINITY_BENCH_ROLE set.
func TestMain(m *testing.M) {
	RunRole()
	os.Exit(m.Run())
}

// TestQuickIngest runs the quick ingest scenario end to end, every system
// in its own process, and checks that every system accepted batches and
// that every log holds exactly the events it acknowledged. No timing is
// asserted.
func TestQuickIngest(t *testing.T) {
	if testing.Short() {
		t.Skip("starts six processes for a few seconds each")
	}
	o := QuickIngestOptions()
	o.Dir = t.TempDir()
	o.Rounds = 1
	o.Phase = o.Phase / 2
	rep, err := RunIngest(o)
	if err != nil {
		logs, _ := filepath.Glob(filepath.Join(o.Dir, "*.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			t.Logf("%s:\n%s", l, b)
		}
		t.Fatal(err)
	}
	var out strings.Builder
	PrintIngest(&out, rep)
	t.Logf("\n%s", out.String())
	if len(rep.Systems) != len(AllIngestSystems) {
		t.Fatalf("%d systems measured; want %d", len(rep.Systems), len(AllIngestSystems))
	}
	for _, s := range rep.Systems {
		if s.Accepted == 0 || s.Refused != 0 || s.Errors != 0 {
			t.Errorf("%s: %d requests answered 202, %d otherwise, %d failed (%s); want only 202s",
				s.Name, s.Accepted, s.Refused, s.Errors, s.LastError)
		}
		if s.Name == sysNoop {
			continue
		}
		if s.LogEvents != s.SentAccepted || s.SentAccepted == 0 {
			t.Errorf("%s: the log holds %d events; want the %d acknowledged", s.Name, s.LogEvents, s.SentAccepted)
		}
	}
	svg := filepath.Join(t.TempDir(), "ingest.svg")
	if err := WriteSVG(svg, "quick", rep.Timeline, AllIngestSystems); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(svg); !strings.Contains(string(b), "<polyline") {
		t.Errorf("chart %s has no line", svg)
	}
}

package bench

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestQuickBuild runs the quick build scenario: the builder and the Redis
// peer must each apply every event of the pre-filled log. It needs
// redis-server (Debian: apt-get install redis-server).
func TestQuickBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a log and starts three processes")
	}
	o := QuickBuildOptions()
	if _, err := exec.LookPath(o.RedisServer); err != nil {
		t.Skipf("no %s on this machine: %s", o.RedisServer, err)
	}
	o.Dir = t.TempDir()
	o.Workload.Events = 20_000
	o.Workload.Visitors = 2_000
	o.SmallVisitors = 500
	rep, err := RunBuild(o)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	PrintBuild(&out, rep)
	t.Logf("\n%s", out.String())
	if len(rep.Runs) != 2 || rep.Runs[0].Visitors != 500 || rep.Runs[0].Events != 5_000 || rep.Runs[1].Visitors != 2_000 {
		t.Fatalf("runs %+v; want 500 visitors with 5000 events, then 2000", rep.Runs)
	}
	for _, run := range rep.Runs {
		for _, s := range run.Systems {
			if want := run.Events * int64(o.Rounds); s.Events != want {
				t.Errorf("%d visitors: %s applied %d events; want %d", run.Visitors, s.Name, s.Events, want)
			}
		}
		if run.Ratio == nil || run.Ratio.Value <= 0 {
			t.Errorf("%d visitors: no ratio: %+v", run.Visitors, run.Ratio)
		}
		if a := run.Systems[0]; a.PeakRSSAnonMB <= 0 || a.PeakRSSAnonMB > a.PeakRSSMB {
			t.Errorf("%d visitors: peak anonymous RSS %.0f MB of a peak RSS of %.0f MB", run.Visitors, a.PeakRSSAnonMB, a.PeakRSSMB)
		}
		// As root on a machine with cgroup v1's memory controller (this
		// project's), the builder must have run within the limit.
		if _, err := os.Stat(cgroupV1Root + "/memory.limit_in_bytes"); err == nil && os.Getuid() == 0 {
			if a := run.Systems[0]; !strings.HasPrefix(rep.Cgroup, "in a memory cgroup") || a.CgroupLimitMB <= 0 || a.CgroupPeakMB <= 0 {
				t.Errorf("%d visitors: as root: %s, limit %.0f MB, peak charge %.0f MB", run.Visitors, rep.Cgroup, a.CgroupLimitMB, a.CgroupPeakMB)
			}
		}
		if run.PeakRSSToBudget <= 0 {
			t.Errorf("%d visitors: no peak RSS to budget", run.Visitors)
		}
		// Every applied event of the workload scores indexed values, in
		// memory; each commit writes profiles and an offset to Badger,
		// fewer than one per event (commits coalesce a visitor's records).
		if a := run.Systems[0]; a.IndexWritesPerEvent <= 1 || a.WritesPerEvent <= 0 || a.WritesPerEvent >= 1 {
			t.Errorf("%d visitors: Badger writes per event %v, index changes %v; want 0 < Badger < 1 < index", run.Visitors, a.WritesPerEvent, a.IndexWritesPerEvent)
		}
	}
	if f := rep.FlatCost; f == nil || f.Ratio <= 0 {
		t.Errorf("no flat cost: %+v", rep.FlatCost)
	}
	for _, want := range []string{"slowest/median", "flat cost:", "peak RSS / memory budget", "Badger writes per event", "interest index changes per event"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the table lacks %q", want)
		}
	}
}

func TestBuildSystemWindows(t *testing.T) {
	s := &BuildSystem{windows: []float64{100, 40, 90, 110, 80}}
	s.finish()
	if s.SlowestWindowEPS != 40 || s.MedianWindowEPS != 90 || s.SlowestToMedian != 40.0/90 {
		t.Errorf("slowest %v, median %v, ratio %v; want 40, 90, 0.44", s.SlowestWindowEPS, s.MedianWindowEPS, s.SlowestToMedian)
	}
}

package bench

import (
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
	rep, err := RunBuild(o)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	PrintBuild(&out, rep)
	t.Logf("\n%s", out.String())
	for _, s := range rep.Systems {
		if want := o.Workload.Events * int64(o.Rounds); s.Events != want {
			t.Errorf("%s applied %d events; want %d", s.Name, s.Events, want)
		}
	}
	if rep.Ratio == nil || rep.Ratio.Value <= 0 {
		t.Errorf("no ratio: %+v", rep.Ratio)
	}
}

package budget

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestGCPercentFor(t *testing.T) {
	const mb = 1 << 20
	for _, tc := range []struct {
		name        string
		live, limit int64
		want        int
	}{
		{"no limit", 400 * mb, math.MaxInt64, gcPercentMin},
		{"no live heap yet", 0, 2700 * mb, gcPercentMin},
		// The bench's query node: ~400 MB live of a ~2.7 GB limit.
		{"small live heap", 400 * mb, 2800 * mb, 390},
		{"goal just past GOGC=100's", 900 * mb, 2700 * mb, 110},
		{"live heap over half the goal", 1000 * mb, 2700 * mb, gcPercentMin},
		{"live heap at the limit", 2700 * mb, 2700 * mb, gcPercentMin},
		{"tiny live heap", 10 * mb, 2700 * mb, gcPercentMax},
	} {
		if got := gcPercentFor(tc.live, tc.limit); got != tc.want {
			t.Errorf("%s: gcPercentFor(%d MB, %d MB) = %d; want %d", tc.name, tc.live/mb, tc.limit/mb, got, tc.want)
		}
	}
}

// TestPaceGC checks that the pacer follows the live heap and the limit in
// force, cycle after cycle, in this process's own runtime.
func TestPaceGC(t *testing.T) {
	t.Setenv("GOGC", "") // the pacer's, not the environment's
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))

	live := make([][]byte, 64) // 64 MiB held across the cycles
	for i := range live {
		live[i] = make([]byte, 1<<20)
	}
	waitFor := func(what string, ok func(int) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			runtime.GC()
			p := gcPercent()
			if ok(p) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("GOGC %d after GCs for 10 s; want %s", p, what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	Split{GoMemLimit: 8 << 30}.SetGoMemLimit()
	// ~70 MB live of 8 GiB: the goal is far; GOGC is the most allowed.
	waitFor("the maximum with a far limit", func(p int) bool { return p == gcPercentMax })
	if got := debug.SetGCPercent(gcPercentMax); got != gcPercentMax {
		t.Fatalf("the runtime's GOGC is %d; the pacer says %d", got, gcPercentMax)
	}
	// A limit a little over the live heap: GOGC=100 is the floor.
	debug.SetMemoryLimit(96 << 20)
	waitFor("the minimum with a near limit", func(p int) bool { return p == gcPercentMin })
	// In between: 0.7 x 512 MiB over ~70 MB live, about 410.
	debug.SetMemoryLimit(512 << 20)
	waitFor("between the bounds", func(p int) bool { return p > 300 && p < 500 })
	runtime.KeepAlive(live)
}

package main

import (
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// TestServeDoublesProcs: `affinity serve` runs the Go runtime with two Ps
// per CPU (storage.SpareProcs: a goroutine waiting on the disk in a sync
// or a page fault holds its P), unless GOMAXPROCS is set.
func TestServeDoublesProcs(t *testing.T) {
	for _, tc := range []struct {
		env  string // GOMAXPROCS; "" is unset for the runtime
		want int
	}{
		{"", 2 * runtime.NumCPU()},
		{"1", 1},
		{"7", 7},
	} {
		t.Run("GOMAXPROCS="+tc.env, func(t *testing.T) {
			t.Setenv("GOMAXPROCS", tc.env)
			p := startAffinity(t, "serve", "--data", t.TempDir(), "--site", "e2e")
			if got := metricValue(t, p.api, "go_gomaxprocs"); got != float64(tc.want) {
				t.Errorf("go_gomaxprocs %v; want %d (%d CPUs)", got, tc.want, runtime.NumCPU())
			}
			if want := "GOMAXPROCS " + strconv.Itoa(tc.want); !strings.Contains(p.output(), want) {
				t.Errorf("the start-up log does not say %q:\n%s", want, p.output())
			}
		})
	}
}

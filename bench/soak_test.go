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
	if rep.MaxRPS <= 0 || rep.MaxRPS > rep.BurstRPS || rep.PeakRSSMB <= 0 || rep.PeakAnonMB > 1.15*rep.MemoryMB {
		t.Errorf("sustained maximum %.0f req/s of a %.0f req/s burst; peak RSS %.0f MB of a %.0f MB budget", rep.MaxRPS, rep.BurstRPS, rep.PeakRSSMB, rep.MemoryMB)
	}
	if !rep.Flat || len(rep.Series) == 0 {
		t.Errorf("not flat or not measured: %d samples", len(rep.Series))
	}
}

// TestWindowStats: the highest and the median of each figure, each on its
// own (the highest RSS and the highest goroutines may be different samples).
func TestWindowStats(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      []NodeStats
		hi, med NodeStats
	}{
		{"empty", nil, NodeStats{}, NodeStats{}},
		{"one", []NodeStats{{T: 1, RSSMB: 10, AnonMB: 8, FileMB: 2, OpenFiles: 5, Goroutines: 7}},
			NodeStats{T: 1, RSSMB: 10, AnonMB: 8, FileMB: 2, OpenFiles: 5, Goroutines: 7},
			NodeStats{T: 1, RSSMB: 10, AnonMB: 8, FileMB: 2, OpenFiles: 5, Goroutines: 7}},
		{"a spike of goroutines moves the highest, not the median", []NodeStats{
			{T: 1, RSSMB: 10, AnonMB: 8, FileMB: 2, OpenFiles: 5, Goroutines: 300},
			{T: 2, RSSMB: 30, AnonMB: 20, FileMB: 10, OpenFiles: 6, Goroutines: 900},
			{T: 3, RSSMB: 20, AnonMB: 12, FileMB: 8, OpenFiles: 4, Goroutines: 310},
		},
			NodeStats{T: 3, RSSMB: 30, AnonMB: 20, FileMB: 10, OpenFiles: 6, Goroutines: 900},
			NodeStats{T: 2, RSSMB: 20, AnonMB: 12, FileMB: 8, OpenFiles: 5, Goroutines: 310}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hi, med := windowStats(tc.in)
			if hi != tc.hi || med != tc.med {
				t.Errorf("windowStats = %+v, %+v; want %+v, %+v", hi, med, tc.hi, tc.med)
			}
		})
	}
}

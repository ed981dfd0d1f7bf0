package bench

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime/trace"
	"slices"
	"time"
)

// EnvTraceDips, when set to a directory, makes the build roles keep a Go
// execution trace of their last seconds (runtime/trace's flight recorder)
// and write it there as <role>-dip-<n>.trace shortly after a 1-s window
// of their progress falls below targetSlowestToMedian (the build's
// slowest-window target) of the median so far: what every goroutine did
// in and just before the bench's slowest windows (go tool trace). At most
// maxDipTraces per process.
const EnvTraceDips = "AFFINITY_BENCH_TRACE_DIPS"

const (
	maxDipTraces = 3
	// dipMinWindows is how many 1-s windows make a median worth comparing
	// against (the first seconds of a build warm caches up).
	dipMinWindows = 5
)

// dipTracer watches a progress count and writes flight-recorder traces of
// its dips; a nil *dipTracer (EnvTraceDips unset) does nothing.
type dipTracer struct {
	dir, role string
	fr        *trace.FlightRecorder
	// counts are the count at each observe, times their instants: the
	// 1-s rate is over the last observations a second apart.
	counts  []int64
	times   []time.Time
	rates   []float64
	dumpAt  time.Time // zero: no dump due
	dumped  int
	lastDip time.Time
}

// newDipTracer starts the flight recorder of this role process when
// EnvTraceDips is set; it logs and returns nil when it cannot.
func newDipTracer() *dipTracer {
	dir, role := os.Getenv(EnvTraceDips), os.Getenv(envRole)
	if dir == "" {
		return nil
	}
	fr := trace.NewFlightRecorder(trace.FlightRecorderConfig{MinAge: 5 * time.Second, MaxBytes: 256 << 20})
	if err := fr.Start(); err != nil {
		log.Printf("no traces of dips: cannot start the flight recorder: %s", err)
		return nil
	}
	return &dipTracer{dir: dir, role: role, fr: fr}
}

// observe takes the count at now; it writes a trace when one is due.
func (d *dipTracer) observe(now time.Time, count int64) {
	if d == nil {
		return
	}
	d.counts, d.times = append(d.counts, count), append(d.times, now)
	// The observation a second or more before this one.
	i := len(d.times) - 2
	for i >= 0 && now.Sub(d.times[i]) < time.Second {
		i--
	}
	if i >= 0 && now.Sub(d.times[i]) < 2*time.Second {
		rate := float64(count-d.counts[i]) / now.Sub(d.times[i]).Seconds()
		if len(d.rates) >= dipMinWindows && d.dumpAt.IsZero() && d.dumped < maxDipTraces && now.Sub(d.lastDip) > 5*time.Second {
			if med := medianOf(d.rates); rate < targetSlowestToMedian*med {
				// A second more, so that the trace holds the dip's inside.
				d.dumpAt, d.lastDip = now.Add(time.Second), now
				log.Printf("dip: %.0f/s over the last second, %.2f of the median %.0f/s; tracing it", rate, rate/med, med)
			}
		}
		d.rates = append(d.rates, rate)
	}
	if !d.dumpAt.IsZero() && !now.Before(d.dumpAt) {
		d.dumpAt = time.Time{}
		d.dumped++
		if err := d.write(filepath.Join(d.dir, fmt.Sprintf("%s-dip-%d.trace", d.role, d.dumped))); err != nil {
			log.Printf("dip: %s", err)
		}
	}
}

func (d *dipTracer) write(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("cannot write the trace of a dip: %w", err)
	}
	if _, err := d.fr.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("cannot write the trace of a dip to %s: %w", path, err)
	}
	log.Printf("dip: trace in %s", path)
	return f.Close()
}

func (d *dipTracer) stop() {
	if d != nil {
		d.fr.Stop()
	}
}

// medianOf returns the median of xs without reordering them.
func medianOf(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return median(s)
}

package budget

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// The GC pacing beside the heap limit. With the default GOGC of 100 a node
// whose live heap is small against its limit collects every time the heap
// doubles: the query node of the bench (~400 MB live of a 2.7 GB limit)
// ran a 150-ms mark phase every ~3.5 s under ingest, and every lookup
// that waited more than a few ms waited in one (README "Performance").
// Letting the heap grow toward the limit instead (GOGC=off) made those
// rare, but a heap that lives at its limit collects continuously there
// and returns pages to the kernel that the next allocation faults back in
// (on the bench's VM a page the host must back anew costs ~30 µs: README
// "Performance", issue #10's late session): the 1M-visitor build spent
// 1.4x the CPU per event.
//
// So the pacer aims between the two: after each GC, GOGC is set so that
// the next one starts when the heap reaches gcGoalOfLimit of the limit,
// never sooner than GOGC=100 would have, never later than gcPercentMax.
// A live heap of more than half that goal leaves GOGC at 100: the heap
// then never gets near the limit before the default pacing collects it.
// Measured in the bench's query scenario (A/B, interleaved): the node
// collected every ~16 s instead, and lookup p99 under ingest went from
// 48.5 and 36.4 ms to 4.7, 10.0 and 5.4 ms; the default build's CPU per
// event did not move (7.5 and 7.2 → 7.5 and 7.4 CPU-s/M).
const (
	gcGoalOfLimit = 0.7
	gcPercentMin  = 100
	gcPercentMax  = 800
)

// gcPercentFor returns the GOGC that starts the next GC when a heap of
// live bytes has grown to gcGoalOfLimit of limit, within [gcPercentMin,
// gcPercentMax]; gcPercentMin without a limit or a live heap.
func gcPercentFor(live, limit int64) int {
	if live <= 0 || limit <= 0 || limit == math.MaxInt64 {
		return gcPercentMin
	}
	p := (gcGoalOfLimit*float64(limit)/float64(live) - 1) * 100
	return int(math.Round(min(max(p, gcPercentMin), gcPercentMax)))
}

// gcPacer sets GOGC after every GC cycle (gcPercentFor of the live heap
// the cycle marked and the limit then in force), from a finalizer the
// cycle runs: no goroutine polls.
type gcPacer struct {
	mu      sync.Mutex
	percent int
	sample  [1]metrics.Sample
}

var pacer struct {
	once sync.Once
	p    *gcPacer
}

// paceGC starts the GC pacer of this process, once. GOGC in the
// environment is the operator's choice: then nothing is paced.
func paceGC() {
	pacer.once.Do(func() {
		if os.Getenv("GOGC") != "" {
			return
		}
		p := &gcPacer{percent: -1}
		p.sample[0].Name = "/gc/heap/live:bytes"
		pacer.p = p
		p.adjust()
		p.arm()
	})
}

// gcSentinel is garbage from birth: its finalizer runs once per GC cycle
// and arms the next one.
type gcSentinel struct{ p *gcPacer }

func (p *gcPacer) arm() {
	runtime.SetFinalizer(&gcSentinel{p: p}, func(s *gcSentinel) {
		s.p.adjust()
		s.p.arm()
	})
}

// adjust sets GOGC for the live heap the last cycle marked.
func (p *gcPacer) adjust() {
	p.mu.Lock()
	defer p.mu.Unlock()
	metrics.Read(p.sample[:])
	var live int64
	if p.sample[0].Value.Kind() == metrics.KindUint64 {
		live = int64(p.sample[0].Value.Uint64())
	}
	if n := gcPercentFor(live, debug.SetMemoryLimit(-1)); n != p.percent {
		debug.SetGCPercent(n)
		p.percent = n
	}
}

// gcPercent returns the GOGC the pacer set last; -1 when it does not run
// (GOGC set in the environment, or no heap limit set yet).
func gcPercent() int {
	if pacer.p == nil {
		return -1
	}
	pacer.p.mu.Lock()
	defer pacer.p.mu.Unlock()
	return pacer.p.percent
}

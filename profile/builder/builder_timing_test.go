package builder_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// BenchmarkBuilderApply measures events applied per second from a
// pre-filled embedded log (8 partitions, records of 5 events, up to 100k
// visitors) into a fresh state DB: decode, dedup, apply, index, commit.
func BenchmarkBuilderApply(b *testing.B) { benchmarkApply(b, 0) }

// BenchmarkBuilderApplyWithErasures: the same with 1000 erased visitors
// on the log's partitions, none of them the benchmark's: every record
// costs a lookup in the erased set (erased.go), the price of a partition
// that has erasures at all.
func BenchmarkBuilderApplyWithErasures(b *testing.B) { benchmarkApply(b, 1000) }

// benchmarkApply applies b.N events with erased visitors erased (none of
// them the events').
func benchmarkApply(b *testing.B, erased int) {
	const perRecord = 5
	dir := b.TempDir()
	lo := storage.DefaultEmbeddedOptions(filepath.Join(dir, "log"))
	lo.MaxBytes = 8 << 30
	l, err := storage.OpenEmbeddedLog(lo)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	db, err := state.Open(state.DefaultOptions(filepath.Join(dir, "state")))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()

	records := (b.N + perRecord - 1) / perRecord
	visitors := min(100000, max(records/2, 1))
	var msgs []storage.Message
	bytes := 0
	flush := func() {
		if err := l.Append(context.Background(), msgs); err != nil {
			b.Fatal(err)
		}
		msgs = msgs[:0]
	}
	for i := range records {
		v := int(mix(uint64(i)) % uint64(visitors))
		r := &event.Batch{Site: "s1", Visitor: profiletest.Visitor(v), Recv: t0 + int64(i)}
		for j := range perRecord {
			h := mix(uint64(i*perRecord + j))
			pid := int(h % 500)
			r.Events = append(r.Events, event.Event{
				ID: profiletest.EventID(i*perRecord + j), Type: types[h>>8%4], TS: t0 + int64(i) - int64(j),
				HasProduct: true,
				Product: event.Product{ID: "p" + itoa(pid), Brand: brands[pid%len(brands)],
					Category: categories[pid%len(categories)], Age: ages[pid%len(ages)], Price: float64(pid % 300), HasPrice: true},
			})
		}
		val := event.AppendBatch(nil, r)
		bytes += len(val)
		msgs = append(msgs, storage.Message{Key: event.AppendLogKey(nil, r.Site, r.Visitor), Value: val})
		if len(msgs) == 2000 {
			flush()
		}
	}
	if len(msgs) > 0 {
		flush()
	}

	opts := builder.DefaultOptions()
	opts.Log, opts.State = l, db
	opts.Metrics = metrics.NewSet()
	opts.Erasures = func(fn func(string, event.UUID, int, int64)) error {
		for i := range erased {
			v := profiletest.Visitor(1<<30 + i)
			fn("s1", v, l.Partition(event.AppendLogKey(nil, "s1", v)), 1<<40)
		}
		return nil
	}
	bl, err := builder.New(opts)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(bytes / max(b.N, 1)))
	b.ResetTimer()
	cpu0 := profiletest.CPUTime()
	if path := os.Getenv("AFFINITY_BENCH_CPUPROFILE"); path != "" {
		// Profiles the apply phase only, not the filling of the log.
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	if err := bl.Start(); err != nil {
		b.Fatal(err)
	}
	if err := bl.WaitCaughtUp(context.Background()); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	cpu := profiletest.CPUTime() - cpu0
	b.StopTimer()
	n := float64(records * perRecord)
	b.ReportMetric(n/elapsed.Seconds(), "events/s")
	// CPU time per event (all cores) does not depend on what else runs on
	// the machine: 2 cores / cpu-ns/event bounds the rate on an idle one.
	b.ReportMetric(float64(cpu.Nanoseconds())/n, "cpu-ns/event")
	b.ReportMetric(float64(opts.Metrics.GetOrCreateCounter("affinity_builder_state_writes_total").Get())/n, "writes/event")
	b.ReportMetric(float64(opts.Metrics.GetOrCreateCounter("affinity_builder_index_writes_total").Get())/n, "index-writes/event")
	if err := bl.Close(); err != nil {
		b.Fatal(err)
	}
	var nv, profBytes, seenBytes int
	err = db.ScanVisitors("s1", func(_ [16]byte, prof, seen []byte) bool {
		nv, profBytes, seenBytes = nv+1, profBytes+len(prof), seenBytes+len(seen)
		return true
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(profBytes)/float64(max(nv, 1)), "profile-B/visitor")
	b.ReportMetric(float64(seenBytes)/float64(max(nv, 1)), "dedup-B/visitor")
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

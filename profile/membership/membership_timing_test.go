package membership_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/profile/lists"
	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// openBenchEngine returns a state DB in a temporary directory and an
// Engine on it, not started, its clock at t0 + 1 h, its options adjusted
// by tune.
func openBenchEngine(b *testing.B, tune ...func(*membership.Options)) (*state.DB, *profile.Config, *membership.Engine) {
	b.Helper()
	db, err := state.Open(state.DefaultOptions(filepath.Join(b.TempDir(), "state")))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	cfg := profile.DefaultConfig()
	mo := membership.DefaultOptions()
	mo.State, mo.Config = db, cfg
	mo.Now = func() time.Time { return time.UnixMilli(t0 + hour) }
	for _, f := range tune {
		f(&mo)
	}
	m, err := membership.New(mo)
	if err != nil {
		b.Fatal(err)
	}
	return db, cfg, m
}

// BenchmarkChanged is the cost the segments add to each changed profile
// the builder commits: read the visitor's memberships, evaluate the
// issue's example rules (11 segments), write what changed into the batch.
func BenchmarkChanged(b *testing.B) {
	db, cfg, m := openBenchEngine(b)
	for name, rule := range randomRules {
		if _, _, err := m.Put("shop", name, rule); err != nil {
			b.Fatal(err)
		}
	}
	p := &profile.Profile{}
	for i, typ := range []event.Type{event.TypeView, event.TypeView, event.TypeCart, event.TypePurchase, event.TypeView} {
		e := profiletest.Event(typ, t0-int64(i)*hour, nutrilon)
		p.Apply(&e, cfg, t0, nil)
	}
	batch := db.NewBatch()
	v := profiletest.Visitor(1)
	// Store the visitor's state once, so that the loop measures the
	// steady state: evaluations that change nothing.
	if err := m.Changed(batch, "shop", v, p); err != nil {
		b.Fatal(err)
	}
	if err := batch.Commit(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := m.Changed(batch, "shop", v, p); err != nil {
			b.Fatal(err)
		}
		batch.Reset()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(randomRules)), "ns/rule")
}

// BenchmarkBuilderWithSegments is the builder's throughput from an
// embedded log with no Hook, and with the membership engine evaluating the
// 11 rules of randomRules: 20 000 events (4 per record) of 2 000 visitors.
func BenchmarkBuilderWithSegments(b *testing.B) {
	for _, withSegments := range []bool{false, true} {
		b.Run(map[bool]string{false: "no-hook", true: "11-segments"}[withSegments], func(b *testing.B) {
			const visitors, records = 2000, 5000
			b.ReportAllocs()
			events := 0
			var elapsed time.Duration
			for b.Loop() {
				b.StopTimer()
				dir := b.TempDir()
				lo := storage.DefaultEmbeddedOptions(filepath.Join(dir, "log"))
				lo.Partitions = 2
				l, err := storage.OpenEmbeddedLog(lo)
				if err != nil {
					b.Fatal(err)
				}
				db, err := state.Open(state.DefaultOptions(filepath.Join(dir, "state")))
				if err != nil {
					b.Fatal(err)
				}
				cfg := profile.DefaultConfig()
				bo := builder.DefaultOptions()
				bo.Log, bo.State, bo.Config = l, db, cfg
				var m *membership.Engine
				if withSegments {
					mo := membership.DefaultOptions()
					mo.State, mo.Config = db, cfg
					mo.Now = func() time.Time { return time.UnixMilli(t0) }
					if m, err = membership.New(mo); err != nil {
						b.Fatal(err)
					}
					for name, rule := range randomRules {
						if _, _, err := m.Put("shop", name, rule); err != nil {
							b.Fatal(err)
						}
					}
					bo.Hook = m
				}
				msgs := make([]storage.Message, 0, records)
				for i := range records {
					v := profiletest.Visitor(i % visitors)
					bt := profiletest.Batch("shop", v, profiletest.Event(event.TypeView, t0-int64(i), nutrilon), profiletest.Event(event.TypeCart, t0-int64(i), lego),
						profiletest.Event(event.TypeView, t0-int64(i), lego), profiletest.Event(event.TypePurchase, t0-int64(i), nutrilon))
					msgs = append(msgs, storage.Message{Key: event.AppendLogKey(nil, "shop", v), Value: event.AppendBatch(nil, bt)})
				}
				for i := 0; i < len(msgs); i += 1000 {
					if err := l.Append(context.Background(), msgs[i:i+1000]); err != nil {
						b.Fatal(err)
					}
				}
				bl, err := builder.New(bo)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				if err := bl.Start(); err != nil {
					b.Fatal(err)
				}
				if err := bl.WaitCaughtUp(context.Background()); err != nil {
					b.Fatal(err)
				}
				elapsed += time.Since(start)
				events += 4 * records
				b.StopTimer()
				_ = bl.Close()
				_ = l.Close()
				_ = db.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(events)/elapsed.Seconds(), "events/s")
		})
	}
}

// BenchmarkChangedInList is BenchmarkChanged for one segment reading a
// static list of 100k emails: without in_list, and with it for a visitor
// whose email is in the list (a hash search and a point read) and one whose
// email is not (a hash search).
func BenchmarkChangedInList(b *testing.B) {
	db, cfg, m := openBenchEngine(b)
	csv := []byte("email\n")
	for i := range 100_000 {
		csv = fmt.Appendf(csv, "person.%d@example.com\n", i)
	}
	if _, _, err := m.PutList("shop", "crm", bytes.NewReader(csv), lists.FormatCSV); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, rule, email string }{
		{"no-in_list", `count(view) >= 1`, "person.7@example.com"},
		{"in_list-hit", `in_list("crm") and count(view) >= 1`, "person.7@example.com"},
		{"in_list-miss", `in_list("crm") and count(view) >= 1`, "nobody@example.com"},
	} {
		b.Run(c.name, func(b *testing.B) {
			if _, _, err := m.Put("shop", "seg", c.rule); err != nil {
				b.Fatal(err)
			}
			p := &profile.Profile{}
			e := profiletest.Event(event.TypeView, t0, nutrilon)
			p.Apply(&e, cfg, t0, nil)
			p.Email = c.email
			batch := db.NewBatch()
			v := profiletest.Visitor(1)
			if err := m.Changed(batch, "shop", v, p); err != nil {
				b.Fatal(err)
			}
			if err := batch.Commit(); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := m.Changed(batch, "shop", v, p); err != nil {
					b.Fatal(err)
				}
				batch.Reset()
			}
		})
	}
}

// BenchmarkSequence is the sequencer's cost per change record: 1000
// records of one events partition moved from the outbox into the feed,
// without and with a cluster's Gate (a lookup of the partition's mark
// per record).
func BenchmarkSequence(b *testing.B) {
	for _, gated := range []bool{false, true} {
		b.Run(fmt.Sprintf("gate=%t", gated), func(b *testing.B) {
			db, cfg, m := openBenchEngine(b, func(mo *membership.Options) {
				if gated {
					mo.Gate = &testGate{gen: 1, marks: map[int]int64{0: 0}}
				}
			})
			if _, _, err := m.Put("shop", "viewers", `count(view) >= 1`); err != nil {
				b.Fatal(err)
			}
			p := &profile.Profile{}
			e := profiletest.Event(event.TypeView, t0, nutrilon)
			p.Apply(&e, cfg, t0, nil)
			const records = 1000
			batch, next := db.NewBatch(), int64(0)
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				next += records
				batch.SetOffset(0, next)
				for i := range records {
					batch.SourceAt(next - records + int64(i) + 1)
					if err := m.Changed(batch, "shop", profiletest.Visitor(int(next)+i), p); err != nil {
						b.Fatal(err)
					}
				}
				if err := batch.Commit(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if n, err := m.Sequence(context.Background()); err != nil || n != records {
					b.Fatalf("Sequence moved %d records, %v; want %d", n, err, records)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/records, "ns/record")
		})
	}
}

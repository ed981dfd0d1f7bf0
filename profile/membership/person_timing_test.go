package membership_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/tracker/event"
)

// BenchmarkRunPersons: the person evaluator over persons of two visitors
// on different partitions, each visitor marked by a commit: resolve,
// merge, evaluate three per-person segments, one write per batch.
func BenchmarkRunPersons(b *testing.B) {
	const persons = 500
	clk := &profiletest.Clock{}
	clk.Set(t0 + hour)
	e := &env{profiletest.Open(b, profiletest.Options{Clock: clk})}
	for name, rule := range map[string]string{"fans": `count(view) >= 3`, "recent": `since(view) <= 7d`, "lego": `interest(brand, "Lego") > 1`} {
		if _, _, err := e.Segments.PutPer("shop", name, rule, membership.PerPerson); err != nil {
			b.Fatal(err)
		}
	}
	if err := e.Segments.Close(); err != nil { // the benchmark runs the evaluator
		b.Fatal(err)
	}
	type pair struct{ a, b event.UUID }
	ps := make([]pair, persons)
	for i := range ps {
		ps[i] = pair{e.VisitorOn("shop", 0, 10*i+1), e.VisitorOn("shop", 1, 10*i+1)}
	}
	send := func() {
		var bs []*event.Batch
		for i, p := range ps {
			email := fmt.Sprintf("p%d@x.io", i)
			bs = append(bs,
				profiletest.Batch("shop", p.a, append(views(t0, t0+1), profiletest.Identify(t0+2, email))...),
				profiletest.Batch("shop", p.b, append(views(t0+3), profiletest.Identify(t0+4, email))...))
		}
		e.Append(b, bs...)
		if err := e.Builder.WaitCaughtUp(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		send()
		b.StartTimer()
		n, err := e.Segments.RunPersons(context.Background())
		if err != nil || n != 2*persons {
			b.Fatalf("RunPersons = %d, %v; want %d marks", n, err, 2*persons)
		}
	}
	b.ReportMetric(float64(b.N*persons)/b.Elapsed().Seconds(), "persons/s")
}

package workload_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/affinityhq/affinity/bench/workload"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/tracker/event"
)

func smallOptions() workload.Options {
	o := workload.DefaultOptions()
	o.Visitors = 500
	o.Events = 20_000
	o.Products = 2000
	return o
}

// TestJSONDecodes checks that every generated body is a batch the
// collector's decoder accepts, and that it decodes to the generated batch.
func TestJSONDecodes(t *testing.T) {
	o := smallOptions()
	now := time.Now().UnixMilli()
	o.Now = func() int64 { return now }
	g, err := workload.New(o, nil)
	if err != nil {
		t.Fatal(err)
	}
	dec := event.NewDecoder(event.DefaultOptions())
	var b, got event.Batch
	var body []byte
	types := map[event.Type]int{}
	n := 0
	for g.Next(&b) {
		body = workload.AppendJSON(body[:0], &b)
		if err := dec.DecodeBatch(&got, body, now); err != nil {
			t.Fatalf("batch %d refused: %s\n%s", n, err, body)
		}
		b.Recv = now
		if !got.Equal(&b) {
			t.Fatalf("batch %d decodes to another batch\nbody %s", n, body)
		}
		if len(b.Events) < 1 || len(b.Events) > o.MaxBatch {
			t.Fatalf("batch %d has %d events; want 1..%d", n, len(b.Events), o.MaxBatch)
		}
		for i := range b.Events {
			types[b.Events[i].Type]++
		}
		n++
	}
	if g.Made() != o.Events {
		t.Fatalf("made %d events; want %d", g.Made(), o.Events)
	}
	// Every type the snippet's shop traffic sends; custom events come from
	// server-side calls (the Segment-compatible API), which the workload
	// does not model.
	for ty := event.TypePageview; ty <= event.TypeIdentify; ty++ {
		if types[ty] == 0 {
			t.Errorf("no %s event in %d", ty, o.Events)
		}
	}
	if types[event.TypeView] < types[event.TypeCart] || types[event.TypeCart] < types[event.TypePurchase] {
		t.Errorf("funnel out of shape: %v", types)
	}
	if g.Visitors() < o.Visitors*9/10 {
		t.Errorf("%d visitors made; want about %d", g.Visitors(), o.Visitors)
	}
}

// TestDeterministic checks that a seed gives the same records and another
// seed other ones.
func TestDeterministic(t *testing.T) {
	run := func(seed uint64) []byte {
		o := smallOptions()
		o.Seed = seed
		o.Events = 2000
		g, err := workload.New(o, nil)
		if err != nil {
			t.Fatal(err)
		}
		var b event.Batch
		var out, key []byte
		for g.Next(&b) {
			out, key = workload.AppendRecord(out, key, &b)
		}
		return append(out, key...)
	}
	a, b, c := run(1), run(1), run(2)
	if !bytes.Equal(a, b) {
		t.Fatalf("seed 1 gave different records on two runs")
	}
	if bytes.Equal(a, c) {
		t.Fatalf("seeds 1 and 2 gave the same records")
	}
}

// TestFill writes a sharded workload into an embedded log and reads every
// record back.
func TestFill(t *testing.T) {
	l, err := storage.OpenEmbeddedLog(storage.DefaultEmbeddedOptions(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	o := smallOptions()
	st, err := workload.Fill(context.Background(), l, o, 3, 64, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Events != o.Events {
		t.Fatalf("filled %d events; want %d", st.Events, o.Events)
	}
	var events, records int64
	var b event.Batch
	for p := range l.Partitions() {
		first, next, err := l.Offsets(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		r, err := l.OpenReader(p, first)
		if err != nil {
			t.Fatal(err)
		}
		for off := first; off < next; {
			recs, err := r.Fetch(context.Background(), nil, 1000)
			if err != nil {
				t.Fatal(err)
			}
			for _, rec := range recs {
				if err := event.DecodeRecord(&b, rec.Value); err != nil {
					t.Fatalf("partition %d offset %d: %s", p, rec.Offset, err)
				}
				if l.Partition(rec.Key) != p {
					t.Fatalf("record key %x in partition %d; want %d", rec.Key, p, l.Partition(rec.Key))
				}
				events += int64(len(b.Events))
				records++
			}
			off += int64(len(recs))
		}
		r.Close()
	}
	if events != st.Events || records != st.Batches {
		t.Fatalf("log holds %d events in %d records; want %d in %d", events, records, st.Events, st.Batches)
	}
}

func BenchmarkNextJSON(b *testing.B) {
	o := workload.DefaultOptions()
	o.Events = 0
	now := time.Now().UnixMilli()
	o.Now = func() int64 { return now }
	g, err := workload.New(o, nil)
	if err != nil {
		b.Fatal(err)
	}
	var batch event.Batch
	var body []byte
	b.ReportAllocs()
	events := 0
	for b.Loop() {
		g.Next(&batch)
		body = workload.AppendJSON(body[:0], &batch)
		events += len(batch.Events)
	}
	b.ReportMetric(float64(events)/float64(b.N), "events/op")
}

package storage_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/affinityhq/affinity/storage"
)

// BenchmarkEmbeddedAppend measures durable appends from many goroutines, as
// the collector makes them: every Append waits for its group's fsync, so the
// figure depends on the disk; group commit is what keeps it from being one
// fsync per call.
func BenchmarkEmbeddedAppend(b *testing.B) {
	for _, perCall := range []int{1, 16} {
		b.Run(fmt.Sprintf("msgs=%d", perCall), func(b *testing.B) {
			opts := storage.DefaultEmbeddedOptions(b.TempDir())
			opts.MaxBytes = 1 << 40
			l, err := storage.OpenEmbeddedLog(opts)
			if err != nil {
				b.Fatalf("OpenEmbeddedLog: %s", err)
			}
			defer l.Close()
			value := make([]byte, 512)
			var seq atomic.Int64
			b.SetBytes(int64(perCall * (len(value) + len("site-1|visitor-0000"))))
			b.ReportAllocs()
			b.SetParallelism(32) // goroutines per GOMAXPROCS: many waiting collectors
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				msgs := make([]storage.Message, perCall)
				for pb.Next() {
					v := seq.Add(1)
					for i := range msgs {
						msgs[i] = storage.Message{Key: fmt.Appendf(msgs[i].Key[:0], "site-1|visitor-%04d", (v+int64(i))%10000), Value: value}
					}
					if err := l.Append(ctx, msgs); err != nil {
						b.Errorf("Append: %s", err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkEmbeddedTrim measures a trim per record, as the builder makes
// them after each commit: records of 512 bytes appended in batches of 50,
// then trimmed in steps of 1,000 (the timer runs only for the trims).
func BenchmarkEmbeddedTrim(b *testing.B) {
	opts := storage.DefaultEmbeddedOptions(b.TempDir())
	opts.Partitions = 1
	opts.MaxBytes = 1 << 40
	l, err := storage.OpenEmbeddedLog(opts)
	if err != nil {
		b.Fatalf("OpenEmbeddedLog: %s", err)
	}
	defer l.Close()
	ctx := context.Background()
	value := make([]byte, 512)
	msgs := make([]storage.Message, 50)
	for i := range msgs {
		msgs[i] = storage.Message{Key: []byte("site-1|visitor-0001"), Value: value}
	}
	const step = 1000 // 20 appends
	b.ReportAllocs()
	b.SetBytes(int64(len(value)))
	b.ResetTimer()
	for done := 0; done < b.N; done += step {
		b.StopTimer()
		for range step / len(msgs) {
			if err := l.Append(ctx, msgs); err != nil {
				b.Fatal(err)
			}
		}
		_, next, err := l.Offsets(ctx, 0)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := l.Trim(ctx, 0, next); err != nil {
			b.Fatal(err)
		}
	}
}

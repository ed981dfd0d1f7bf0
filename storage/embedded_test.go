package storage_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/logtest"
)

func TestEmbeddedLogContract(t *testing.T) {
	logtest.Run(t, func(t *testing.T) storage.Log {
		return openEmbedded(t, storage.DefaultEmbeddedOptions(t.TempDir()))
	})
}

func openEmbedded(t *testing.T, opts storage.EmbeddedOptions) *storage.EmbeddedLog {
	t.Helper()
	opts.Logger = t.Logf
	l, err := storage.OpenEmbeddedLog(opts)
	if err != nil {
		t.Fatalf("OpenEmbeddedLog: %s", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func appendN(t *testing.T, l storage.Log, key string, from, n int) {
	t.Helper()
	msgs := make([]storage.Message, n)
	for i := range msgs {
		msgs[i] = storage.Message{Key: []byte(key), Value: []byte(fmt.Sprintf("%s-%d", key, from+i))}
	}
	if err := l.Append(context.Background(), msgs); err != nil {
		t.Fatalf("Append: %s", err)
	}
}

func checkOffsets(t *testing.T, l storage.Log, p int, wantFirst, wantNext int64) {
	t.Helper()
	first, next, err := l.Offsets(context.Background(), p)
	if err != nil {
		t.Fatalf("Offsets(%d): %s", p, err)
	}
	if first != wantFirst || next != wantNext {
		t.Fatalf("Offsets(%d) = %d, %d; want %d, %d", p, first, next, wantFirst, wantNext)
	}
}

func TestEmbeddedLogSurvivesReopen(t *testing.T) {
	opts := storage.DefaultEmbeddedOptions(t.TempDir())
	opts.Partitions = 4
	l := openEmbedded(t, opts)
	keys := []string{"a", "b", "c", "d", "e", "f"}
	for _, k := range keys {
		appendN(t, l, k, 0, 10)
	}
	nexts := make([]int64, l.Partitions())
	for p := range nexts {
		_, nexts[p], _ = l.Offsets(context.Background(), p)
	}
	bytes := l.Bytes()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %s", err)
	}

	l = openEmbedded(t, opts)
	if got := l.Bytes(); got != bytes {
		t.Fatalf("Bytes after reopen = %d; want %d", got, bytes)
	}
	for p, next := range nexts {
		checkOffsets(t, l, p, 0, next)
	}
	for _, k := range keys {
		appendN(t, l, k, 10, 5)
	}
	for _, k := range keys {
		p := l.Partition([]byte(k))
		_, next, _ := l.Offsets(context.Background(), p)
		seen := 0
		for _, r := range logtest.ReadN(t, l, p, 0, int(next)) {
			if string(r.Key) != k {
				continue
			}
			if want := fmt.Sprintf("%s-%d", k, seen); string(r.Value) != want {
				t.Fatalf("key %q record at offset %d = %q; want %q", k, r.Offset, r.Value, want)
			}
			seen++
		}
		if seen != 15 {
			t.Fatalf("key %q: %d records after reopen and 5 more appends; want 15", k, seen)
		}
	}
}

func TestEmbeddedLogReopenAfterTrimAll(t *testing.T) {
	opts := storage.DefaultEmbeddedOptions(t.TempDir())
	l := openEmbedded(t, opts)
	p := l.Partition([]byte("k"))
	appendN(t, l, "k", 0, 10)
	if err := l.Trim(context.Background(), p, 10); err != nil {
		t.Fatalf("Trim: %s", err)
	}
	checkOffsets(t, l, p, 10, 10)
	if got := l.Bytes(); got != 0 {
		t.Fatalf("Bytes after trimming everything = %d; want 0", got)
	}
	l.Close()

	// The trim point keeps the offsets going although no record is left.
	l = openEmbedded(t, opts)
	checkOffsets(t, l, p, 10, 10)
	appendN(t, l, "k", 10, 1)
	checkOffsets(t, l, p, 10, 11)
	if recs := logtest.ReadN(t, l, p, 0, 1); recs[0].Offset != 10 || string(recs[0].Value) != "k-10" {
		t.Fatalf("first record after trim and reopen = offset %d %q; want 10 %q", recs[0].Offset, recs[0].Value, "k-10")
	}
}

func TestEmbeddedLogPartitionCountIsFixed(t *testing.T) {
	opts := storage.DefaultEmbeddedOptions(t.TempDir())
	openEmbedded(t, opts).Close()
	opts.Partitions = 3
	_, err := storage.OpenEmbeddedLog(opts)
	if err == nil || !strings.Contains(err.Error(), "partition") {
		t.Fatalf("reopening with another partition count = %v; want an error about partitions", err)
	}
}

func TestEmbeddedLogTrim(t *testing.T) {
	l := openEmbedded(t, storage.DefaultEmbeddedOptions(t.TempDir()))
	p := l.Partition([]byte("k"))
	// More than one trim chunk (4096 records) to cover the chunking.
	for i := 0; i < 5000; i += 1000 {
		appendN(t, l, "k", i, 1000)
	}
	full := l.Bytes()
	if err := l.Trim(context.Background(), p, 4500); err != nil {
		t.Fatalf("Trim: %s", err)
	}
	checkOffsets(t, l, p, 4500, 5000)
	if got, want := l.Bytes(), full/10; got < want-want/10 || got > want+want/10 {
		t.Fatalf("Bytes after trimming 90%% = %d of %d; want about %d", got, full, want)
	}
	// A reader below the trim point starts at it.
	if recs := logtest.ReadN(t, l, p, 0, 1); recs[0].Offset != 4500 || string(recs[0].Value) != "k-4500" {
		t.Fatalf("first record read from 0 after Trim = offset %d %q; want 4500 %q", recs[0].Offset, recs[0].Value, "k-4500")
	}
	// Trimming below the first offset is a no-op, above next is clamped.
	if err := l.Trim(context.Background(), p, 10); err != nil {
		t.Fatalf("Trim below first: %s", err)
	}
	if err := l.Trim(context.Background(), p, 1e9); err != nil {
		t.Fatalf("Trim past next: %s", err)
	}
	checkOffsets(t, l, p, 5000, 5000)
	if got := l.Bytes(); got != 0 {
		t.Fatalf("Bytes after trimming everything = %d; want 0", got)
	}
}

// TestEmbeddedLogTrimAcrossReopen: a trim frees the exact bytes of the
// records it deletes (the sizes the writer kept, or, after a reopen, the
// ones recovery read), so the byte count agrees with a recount at every
// step and ends at 0.
func TestEmbeddedLogTrimAcrossReopen(t *testing.T) {
	opts := storage.DefaultEmbeddedOptions(t.TempDir())
	l := openEmbedded(t, opts)
	p := l.Partition([]byte("k"))
	for i := 0; i < 6000; i += 1000 { // values "k-0" to "k-5999": sizes vary
		appendN(t, l, "k", i, 1000)
	}
	for _, before := range []int64{1, 4098, 4099, 5999, 6000} { // 4097 records: two trim chunks
		if err := l.Trim(context.Background(), p, before); err != nil {
			t.Fatalf("Trim(%d): %s", before, err)
		}
		bytes := l.Bytes()
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		l = openEmbedded(t, opts) // recounts the records left
		if got := l.Bytes(); got != bytes {
			t.Fatalf("after Trim(%d): Bytes %d, recounted at reopen %d", before, bytes, got)
		}
		checkOffsets(t, l, p, before, 6000)
		if before < 6000 {
			if recs := logtest.ReadN(t, l, p, 0, 1); recs[0].Offset != before || string(recs[0].Value) != fmt.Sprintf("k-%d", before) {
				t.Fatalf("first record after Trim(%d) = offset %d %q", before, recs[0].Offset, recs[0].Value)
			}
		}
	}
	if got := l.Bytes(); got != 0 {
		t.Fatalf("Bytes after trimming everything = %d; want 0", got)
	}
	appendN(t, l, "k", 6000, 3)
	if err := l.Trim(context.Background(), p, 6002); err != nil {
		t.Fatal(err)
	}
	checkOffsets(t, l, p, 6002, 6003)
	if recs := logtest.ReadN(t, l, p, 0, 1); recs[0].Offset != 6002 || string(recs[0].Value) != "k-6002" {
		t.Fatalf("first record after appends past a full trim = offset %d %q", recs[0].Offset, recs[0].Value)
	}
}

func TestEmbeddedLogBudget(t *testing.T) {
	opts := storage.DefaultEmbeddedOptions(t.TempDir())
	opts.MaxBytes = 64 << 10
	l := openEmbedded(t, opts)
	ctx := context.Background()
	value := make([]byte, 1000)
	msgs := []storage.Message{{Key: []byte("k"), Value: value}}
	p := l.Partition([]byte("k"))

	var err error
	n := 0
	for ; n < 1000; n++ {
		if err = l.Append(ctx, msgs); err != nil {
			break
		}
	}
	if !errors.Is(err, storage.ErrFull) {
		t.Fatalf("Append past MaxBytes after %d appends = %v; want ErrFull", n, err)
	}
	if n < 60 || n > 66 {
		t.Fatalf("MaxBytes=64KiB took %d appends of 1 KiB; want about 64", n)
	}
	start := time.Now()
	if err := l.Append(ctx, msgs); !errors.Is(err, storage.ErrFull) {
		t.Fatalf("Append on a full log = %v; want ErrFull", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Append on a full log took %s; want it to fail at once", d)
	}
	if err := l.Writable(ctx); !errors.Is(err, storage.ErrFull) || !strings.Contains(err.Error(), "MaxBytes") {
		t.Fatalf("Writable on a full log = %v; want ErrFull naming MaxBytes", err)
	}

	// The budget survives a restart.
	l.Close()
	l = openEmbedded(t, opts)
	if err := l.Append(ctx, msgs); !errors.Is(err, storage.ErrFull) {
		t.Fatalf("Append on a full log after reopen = %v; want ErrFull", err)
	}

	if err := l.Trim(ctx, p, int64(n/2)); err != nil {
		t.Fatalf("Trim: %s", err)
	}
	if err := l.Writable(ctx); err != nil {
		t.Fatalf("Writable after Trim = %v; want nil", err)
	}
	if err := l.Append(ctx, msgs); err != nil {
		t.Fatalf("Append after Trim = %v; want nil", err)
	}
	checkOffsets(t, l, p, int64(n/2), int64(n+1))
}

func TestEmbeddedLogRejectsOversizedAppends(t *testing.T) {
	l := openEmbedded(t, storage.DefaultEmbeddedOptions(t.TempDir()))
	ctx := context.Background()
	big := []storage.Message{{Key: []byte("k"), Value: make([]byte, 2<<20)}}
	if err := l.Append(ctx, big); err == nil || errors.Is(err, storage.ErrFull) {
		t.Fatalf("Append of a 2 MiB message = %v; want an error that is not ErrFull", err)
	}
	many := make([]storage.Message, 40)
	for i := range many {
		many[i] = storage.Message{Key: []byte("k"), Value: make([]byte, 100<<10)}
	}
	if err := l.Append(ctx, many); err == nil || errors.Is(err, storage.ErrFull) {
		t.Fatalf("Append of 4 MiB in one call = %v; want an error that is not ErrFull", err)
	}
	// The largest allowed message goes through.
	ok := []storage.Message{{Key: []byte("k"), Value: make([]byte, 1<<20-100)}}
	if err := l.Append(ctx, ok); err != nil {
		t.Fatalf("Append of a message just under 1 MiB: %s", err)
	}
	checkOffsets(t, l, l.Partition([]byte("k")), 0, 1)
}

func TestEmbeddedLogOptions(t *testing.T) {
	f := func(opts storage.EmbeddedOptions, want string) {
		t.Helper()
		l, err := storage.OpenEmbeddedLog(opts)
		if err == nil {
			l.Close()
			t.Fatalf("OpenEmbeddedLog(%+v) = nil error; want one containing %q", opts, want)
		}
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("OpenEmbeddedLog(%+v) = %q; want it to contain %q", opts, err, want)
		}
	}
	f(storage.EmbeddedOptions{}, "Dir")
	f(storage.EmbeddedOptions{Dir: t.TempDir(), Partitions: -1}, "Partitions")
	f(storage.EmbeddedOptions{Dir: t.TempDir(), MaxBytes: -1}, "MaxBytes")

	// Zero fields take their defaults.
	l := openEmbedded(t, storage.EmbeddedOptions{Dir: t.TempDir()})
	if got := l.Partitions(); got != 8 {
		t.Fatalf("Partitions() with zero options = %d; want 8", got)
	}
}

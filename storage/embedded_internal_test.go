package storage

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestEmbeddedLogQueue stalls the writer inside a commit to check what
// happens to the appends queued behind it: a full queue answers ErrFull at
// once, a queued append whose context ends returns and is not written, the
// others are written when the writer moves on.
func TestEmbeddedLogQueue(t *testing.T) {
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	hook := func() {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
	}
	opts := DefaultEmbeddedOptions(t.TempDir())
	opts.MaxPendingAppends = 2
	l, err := openEmbeddedLog(opts, hook)
	if err != nil {
		t.Fatalf("openEmbeddedLog: %s", err)
	}
	defer l.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()

	msg := func(v string) []Message { return []Message{{Key: []byte("k"), Value: []byte(v)}} }
	appendAsync := func(ctx context.Context, v string) <-chan error {
		errc := make(chan error, 1)
		go func() { errc <- l.Append(ctx, msg(v)) }()
		return errc
	}
	ctx := context.Background()
	errA := appendAsync(ctx, "a")
	<-entered // the writer holds a's group

	errB := appendAsync(ctx, "b")
	ctxC, cancelC := context.WithCancel(ctx)
	errC := appendAsync(ctxC, "c")
	deadline := time.Now().Add(5 * time.Second)
	for len(l.queue) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("queue holds %d appends; want 2", len(l.queue))
		}
		time.Sleep(time.Millisecond)
	}

	start := time.Now()
	if err := l.Append(ctx, msg("d")); !errors.Is(err, ErrFull) {
		t.Fatalf("Append with a full queue = %v; want ErrFull", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Append with a full queue took %s; want it to fail at once", d)
	}
	if err := l.Writable(ctx); !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "MaxPendingAppends") {
		t.Fatalf("Writable with a full queue = %v; want ErrFull naming MaxPendingAppends", err)
	}

	cancelC()
	select {
	case err := <-errC:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("queued Append whose context was cancelled = %v; want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("queued Append did not return after its context was cancelled")
	}

	close(release)
	for name, errc := range map[string]<-chan error{"a": errA, "b": errB} {
		if err := <-errc; err != nil {
			t.Fatalf("Append %s: %s", name, err)
		}
	}
	p := l.Partition([]byte("k"))
	if _, next, _ := l.Offsets(ctx, p); next != 2 {
		t.Fatalf("next = %d; want 2 (a and b, not the cancelled c)", next)
	}
	r, _ := l.OpenReader(p, 0)
	recs, err := r.Fetch(ctx, nil, 10)
	if err != nil || len(recs) != 2 || string(recs[0].Value) != "a" || string(recs[1].Value) != "b" {
		t.Fatalf("records = %+v, %v; want a, b", recs, err)
	}
	if got, want := l.reserved.Load(), l.Bytes(); got != want {
		t.Fatalf("reserved bytes = %d; want %d, the stored bytes", got, want)
	}
}

// TestEmbeddedLogCloseFinishesQueued checks that Close writes the appends
// already queued before it returns.
func TestEmbeddedLogCloseFinishesQueued(t *testing.T) {
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	hook := func() {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
	}
	opts := DefaultEmbeddedOptions(t.TempDir())
	l, err := openEmbeddedLog(opts, hook)
	if err != nil {
		t.Fatalf("openEmbeddedLog: %s", err)
	}
	ctx := context.Background()
	errs := make(chan error, 5)
	for i := 0; i < 5; i++ {
		go func() { errs <- l.Append(ctx, []Message{{Key: []byte("k"), Value: []byte{byte(i)}}}) }()
		if i == 0 {
			<-entered
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(l.queue) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("queue holds %d appends; want 4", len(l.queue))
		}
		time.Sleep(time.Millisecond)
	}
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	for !l.g.isClosed() {
		time.Sleep(time.Millisecond)
	}
	close(release)
	if err := <-closed; err != nil {
		t.Fatalf("Close: %s", err)
	}
	for i := 0; i < 5; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("Append queued before Close: %s", err)
		}
	}
	l, err = OpenEmbeddedLog(opts)
	if err != nil {
		t.Fatalf("reopen: %s", err)
	}
	defer l.Close()
	if _, next, _ := l.Offsets(ctx, l.Partition([]byte("k"))); next != 5 {
		t.Fatalf("next after reopen = %d; want 5", next)
	}
}

func TestRecordValueRoundTrip(t *testing.T) {
	f := func(key, value []byte) {
		t.Helper()
		m := Message{Key: key, Value: value}
		enc := appendRecordValue(nil, &m)
		if len(enc) != recordValueLen(&m) {
			t.Fatalf("recordValueLen = %d; encoded %d bytes", recordValueLen(&m), len(enc))
		}
		k, v, err := decodeRecordValue(enc)
		if err != nil || !bytes.Equal(k, key) || !bytes.Equal(v, value) {
			t.Fatalf("decodeRecordValue(%s) = %q, %q, %v; want %q, %q", hex.Dump(enc), k, v, err, key, value)
		}
	}
	f(nil, nil)
	f([]byte("site|visitor"), []byte("event batch"))
	f(bytes.Repeat([]byte{'k'}, 300), []byte{0, 1, 2}) // two-byte length
	f([]byte{}, bytes.Repeat([]byte{'v'}, 1<<16))

	for _, bad := range [][]byte{{}, {0x80}, {0x05, 'a'}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}} {
		if _, _, err := decodeRecordValue(bad); err == nil {
			t.Fatalf("decodeRecordValue(%x) = nil error; want an error", bad)
		}
	}
}

func TestKeyLayout(t *testing.T) {
	k := appendRecordKey(nil, 3, 258)
	want := []byte{'l', 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 1, 2}
	if !bytes.Equal(k, want) {
		t.Fatalf("record key of partition 3 offset 258 = %x; want %x", k, want)
	}
	p, off, err := parseRecordKey(k)
	if err != nil || p != 3 || off != 258 {
		t.Fatalf("parseRecordKey(%x) = %d, %d, %v; want 3, 258", k, p, off, err)
	}
	if !bytes.HasPrefix(k, partitionPrefix(3)) {
		t.Fatalf("record key %x lacks its partition prefix %x", k, partitionPrefix(3))
	}
	if bytes.Compare(appendRecordKey(nil, 0, 255), appendRecordKey(nil, 0, 256)) >= 0 {
		t.Fatalf("record keys do not sort in offset order")
	}
	if got := metaKey(3); !bytes.Equal(got, []byte{'m', 0, 0, 0, 3}) {
		t.Fatalf("meta key of partition 3 = %x", got)
	}
	first, err := decodeMeta(encodeMeta(12345))
	if err != nil || first != 12345 {
		t.Fatalf("meta round trip = %d, %v; want 12345", first, err)
	}
	n, err := decodeHeader(encodeHeader(8))
	if err != nil || n != 8 {
		t.Fatalf("header round trip = %d, %v; want 8", n, err)
	}
	for _, bad := range [][]byte{nil, {2, 0, 0, 0, 8}, {1, 0, 0, 0, 0}, {1, 0, 0, 8}} {
		if _, err := decodeHeader(bad); err == nil {
			t.Fatalf("decodeHeader(%x) = nil error; want an error", bad)
		}
	}
	for _, bad := range [][]byte{nil, {'l', 0, 0, 0, 1}, append([]byte{'m'}, make([]byte, 12)...)} {
		if _, _, err := parseRecordKey(bad); err == nil {
			t.Fatalf("parseRecordKey(%x) = nil error; want an error", bad)
		}
	}
}

func FuzzDecodeRecordValue(f *testing.F) {
	f.Add([]byte{})
	f.Add(appendRecordValue(nil, &Message{Key: []byte("site|visitor"), Value: []byte("batch")}))
	f.Add([]byte{0x80, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		k, v, err := decodeRecordValue(data)
		if err != nil {
			return
		}
		enc := appendRecordValue(nil, &Message{Key: k, Value: v})
		k2, v2, err := decodeRecordValue(enc)
		if err != nil || !bytes.Equal(k, k2) || !bytes.Equal(v, v2) {
			t.Fatalf("re-encoding %x changed it: %x", data, enc)
		}
	})
}

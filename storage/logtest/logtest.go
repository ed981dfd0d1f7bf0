// Package logtest is the contract suite every storage.Log implementation
// passes: call Run from the implementation's tests.
//
// The suite opens a fresh log per subtest, so open must give an empty log
// every time (a new directory, a new topic). Subtests do not run in parallel
// with each other.
package logtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/affinityhq/affinity/storage"
)

// waitFor bounds every wait of the suite for something that must happen.
const waitFor = 15 * time.Second

// quiet is how long the suite watches for something that must NOT happen
// (a Fetch returning with nothing appended). It only delays a passing run.
const quiet = 150 * time.Millisecond

// Run runs the contract suite against the logs open returns. open must
// return a new, empty log; Run closes it at the end of each subtest.
func Run(t *testing.T, open func(t *testing.T) storage.Log) {
	tests := []struct {
		name string
		fn   func(t *testing.T, l storage.Log)
	}{
		{"PartitionIsPartitionFor", testPartitionIsPartitionFor},
		{"EmptyLogOffsets", testEmptyLogOffsets},
		{"AppendReadBack", testAppendReadBack},
		{"OrderPerKey", testOrderPerKey},
		{"ConcurrentAppenders", testConcurrentAppenders},
		{"OffsetsAfterAppend", testOffsetsAfterAppend},
		{"ReaderBlocksUntilAppend", testReaderBlocksUntilAppend},
		{"ReaderRespectsContext", testReaderRespectsContext},
		{"ReaderFromMiddle", testReaderFromMiddle},
		{"FetchRespectsMax", testFetchRespectsMax},
		{"TrimKeepsLaterRecords", testTrimKeepsLaterRecords},
		{"AppendWithDoneContext", testAppendWithDoneContext},
		{"EmptyAppend", testEmptyAppend},
		{"Writable", testWritable},
		{"BadArguments", testBadArguments},
		{"Close", testClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := open(t)
			t.Cleanup(func() {
				if err := l.Close(); err != nil {
					t.Errorf("Close: %s", err)
				}
			})
			tt.fn(t, l)
		})
	}
}

func testPartitionIsPartitionFor(t *testing.T, l storage.Log) {
	n := l.Partitions()
	if n <= 0 {
		t.Fatalf("Partitions() = %d; want > 0", n)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 1000; i++ {
		key := randBytes(rng, rng.IntN(40))
		if got, want := l.Partition(key), storage.PartitionFor(key, n); got != want {
			t.Fatalf("Partition(%x) = %d; want PartitionFor = %d", key, got, want)
		}
	}
}

func testEmptyLogOffsets(t *testing.T, l storage.Log) {
	for p := 0; p < l.Partitions(); p++ {
		first, next := offsets(t, l, p)
		if first != 0 || next != 0 {
			t.Fatalf("Offsets(%d) of an empty log = %d, %d; want 0, 0", p, first, next)
		}
	}
}

// testAppendReadBack appends varied messages, reusing the caller's buffers
// after every Append (it must not keep them), and reads every partition
// back: byte-identical, routed by PartitionFor, offsets dense from 0.
func testAppendReadBack(t *testing.T, l storage.Log) {
	rng := rand.New(rand.NewPCG(5, 6))
	var want []storage.Message
	for i := 0; i < 300; i++ {
		key := []byte(fmt.Sprintf("site-1|visitor-%d", rng.IntN(40)))
		value := randBytes(rng, rng.IntN(2000))
		switch i {
		case 7:
			value = []byte{} // an empty value
		case 11:
			key = []byte{} // an empty key
		}
		want = append(want, storage.Message{Key: key, Value: value})
	}

	scratch := make([]storage.Message, 0, 50)
	var keyBuf, valueBuf []byte
	for start := 0; start < len(want); start += 50 {
		scratch, keyBuf, valueBuf = scratch[:0], keyBuf[:0], valueBuf[:0]
		for _, m := range want[start : start+50] {
			keyBuf = append(keyBuf, m.Key...)
			valueBuf = append(valueBuf, m.Value...)
		}
		ko, vo := 0, 0
		for _, m := range want[start : start+50] {
			scratch = append(scratch, storage.Message{
				Key:   keyBuf[ko : ko+len(m.Key) : ko+len(m.Key)],
				Value: valueBuf[vo : vo+len(m.Value) : vo+len(m.Value)],
			})
			ko, vo = ko+len(m.Key), vo+len(m.Value)
		}
		appendOK(t, l, scratch...)
		for i := range keyBuf {
			keyBuf[i] = 0xAA
		}
		for i := range valueBuf {
			valueBuf[i] = 0xBB
		}
	}

	for p := 0; p < l.Partitions(); p++ {
		var wantP []storage.Message
		for _, m := range want {
			if storage.PartitionFor(m.Key, l.Partitions()) == p {
				wantP = append(wantP, m)
			}
		}
		first, next := offsets(t, l, p)
		if first != 0 || next != int64(len(wantP)) {
			t.Fatalf("Offsets(%d) = %d, %d; want 0, %d", p, first, next, len(wantP))
		}
		got := readN(t, l, p, 0, len(wantP))
		for i, r := range got {
			if r.Partition != p || r.Offset != int64(i) {
				t.Fatalf("record %d of partition %d is at partition %d offset %d; want %d, %d", i, p, r.Partition, r.Offset, p, i)
			}
			if !bytes.Equal(r.Key, wantP[i].Key) || !bytes.Equal(r.Value, wantP[i].Value) {
				t.Fatalf("record %d of partition %d:\ngot  key %q value %d bytes %.32x\nwant key %q value %d bytes %.32x",
					i, p, r.Key, len(r.Value), r.Value, wantP[i].Key, len(wantP[i].Value), wantP[i].Value)
			}
			if q := storage.PartitionFor(r.Key, l.Partitions()); q != p {
				t.Fatalf("record %d with key %q is in partition %d; PartitionFor says %d", i, r.Key, p, q)
			}
		}
	}
}

// testOrderPerKey appends numbered messages of a few keys in batches of
// varying size and checks every key's numbers read back in order.
func testOrderPerKey(t *testing.T, l storage.Log) {
	rng := rand.New(rand.NewPCG(7, 8))
	const keys, perKey = 5, 60
	seq := make([]int, keys)
	var batch []storage.Message
	for left := keys * perKey; left > 0; {
		batch = batch[:0]
		for n := 1 + rng.IntN(8); n > 0 && left > 0; n-- {
			k := rng.IntN(keys)
			for seq[k] == perKey {
				k = (k + 1) % keys
			}
			batch = append(batch, storage.Message{Key: []byte(fmt.Sprintf("key-%d", k)), Value: []byte(fmt.Sprint(seq[k]))})
			seq[k]++
			left--
		}
		appendOK(t, l, batch...)
	}

	for k := 0; k < keys; k++ {
		key := []byte(fmt.Sprintf("key-%d", k))
		p := l.Partition(key)
		_, next := offsets(t, l, p)
		want := 0
		for _, r := range readN(t, l, p, 0, int(next)) {
			if !bytes.Equal(r.Key, key) {
				continue
			}
			if got := string(r.Value); got != fmt.Sprint(want) {
				t.Fatalf("key %q: record at offset %d is number %s; want %d", key, r.Offset, got, want)
			}
			want++
		}
		if want != perKey {
			t.Fatalf("key %q: read %d records; want %d", key, want, perKey)
		}
	}
}

// testConcurrentAppenders runs 8 goroutines appending 200 messages each in
// small batches; every message must be read back exactly once, and each
// goroutine's messages of one key in the order it appended them.
func testConcurrentAppenders(t *testing.T, l storage.Log) {
	const goroutines, perG = 8, 200
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			var batch []storage.Message
			for i := 0; i < perG; {
				batch = batch[:0]
				for n := 1 + rng.IntN(5); n > 0 && i < perG; n-- {
					key := fmt.Sprintf("visitor-%d", rng.IntN(64))
					batch = append(batch, storage.Message{Key: []byte(key), Value: []byte(fmt.Sprintf("%d %d", g, i))})
					i++
				}
				if err := l.Append(ctx, batch); err != nil {
					errs <- fmt.Errorf("goroutine %d: Append: %w", g, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	seen := make(map[string]bool)
	type gk struct {
		g   int
		key string
	}
	last := make(map[gk]int)
	total := 0
	for p := 0; p < l.Partitions(); p++ {
		_, next := offsets(t, l, p)
		total += int(next)
		for _, r := range readN(t, l, p, 0, int(next)) {
			v := string(r.Value)
			if seen[v] {
				t.Fatalf("message %q read twice", v)
			}
			seen[v] = true
			var g, i int
			if _, err := fmt.Sscanf(v, "%d %d", &g, &i); err != nil {
				t.Fatalf("unexpected record value %q", v)
			}
			k := gk{g, string(r.Key)}
			if prev, ok := last[k]; ok && prev >= i {
				t.Fatalf("goroutine %d key %q: message %d read after %d", g, r.Key, i, prev)
			}
			last[k] = i
		}
	}
	if total != goroutines*perG || len(seen) != goroutines*perG {
		t.Fatalf("log holds %d records, %d distinct; want %d", total, len(seen), goroutines*perG)
	}
}

func testOffsetsAfterAppend(t *testing.T, l storage.Log) {
	key := []byte("offsets")
	p := l.Partition(key)
	for _, n := range []int{1, 4, 10} {
		_, before := offsets(t, l, p)
		batch := make([]storage.Message, n)
		for i := range batch {
			batch[i] = storage.Message{Key: key, Value: []byte{byte(i)}}
		}
		appendOK(t, l, batch...)
		first, next := offsets(t, l, p)
		if first != 0 || next != before+int64(n) {
			t.Fatalf("Offsets(%d) after appending %d to next %d = %d, %d; want 0, %d", p, n, before, first, next, before+int64(n))
		}
	}
	for q := 0; q < l.Partitions(); q++ {
		if q == p {
			continue
		}
		if first, next := offsets(t, l, q); first != 0 || next != 0 {
			t.Fatalf("Offsets(%d) of an untouched partition = %d, %d; want 0, 0", q, first, next)
		}
	}
}

func testReaderBlocksUntilAppend(t *testing.T, l storage.Log) {
	key := []byte("blocking")
	p := l.Partition(key)
	r, err := l.OpenReader(p, 0)
	if err != nil {
		t.Fatalf("OpenReader: %s", err)
	}
	defer r.Close()

	type result struct {
		recs []storage.Record
		err  error
	}
	got := make(chan result, 1)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	go func() {
		recs, err := r.Fetch(ctx, nil, 10)
		got <- result{recs, err}
	}()
	select {
	case res := <-got:
		t.Fatalf("Fetch on an empty partition returned %d records, err %v; want it to block", len(res.recs), res.err)
	case <-time.After(quiet):
	}

	appendOK(t, l, storage.Message{Key: key, Value: []byte("woken")})
	res := <-got
	if res.err != nil {
		t.Fatalf("Fetch after Append: %s", res.err)
	}
	if len(res.recs) != 1 || string(res.recs[0].Value) != "woken" || res.recs[0].Offset != 0 {
		t.Fatalf("Fetch after Append = %+v; want the one record at offset 0", res.recs)
	}
}

func testReaderRespectsContext(t *testing.T, l storage.Log) {
	r, err := l.OpenReader(0, 0)
	if err != nil {
		t.Fatalf("OpenReader: %s", err)
	}
	defer r.Close()

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := r.Fetch(ctx, nil, 10)
		errc <- err
	}()
	select {
	case err := <-errc:
		t.Fatalf("Fetch returned %v before its context was cancelled; want it to block", err)
	case <-time.After(quiet):
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Fetch with a cancelled context returned %v; want context.Canceled", err)
		}
	case <-time.After(waitFor):
		t.Fatalf("Fetch did not return within %s of its context's cancel", waitFor)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := r.Fetch(ctx, nil, 10); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Fetch with an expiring context returned %v; want context.DeadlineExceeded", err)
	}

	// The reader is still usable after a cancelled Fetch and loses nothing.
	key := keyFor(l, 0)
	appendOK(t, l, storage.Message{Key: key, Value: []byte("after cancel")})
	ctx, cancel = context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	recs, err := r.Fetch(ctx, nil, 10)
	if err != nil || len(recs) != 1 || string(recs[0].Value) != "after cancel" {
		t.Fatalf("Fetch after a cancelled Fetch = %+v, %v; want the one record appended", recs, err)
	}
}

func testReaderFromMiddle(t *testing.T, l storage.Log) {
	key := []byte("middle")
	p := l.Partition(key)
	var batch []storage.Message
	for i := 0; i < 20; i++ {
		batch = append(batch, storage.Message{Key: key, Value: []byte(fmt.Sprint(i))})
	}
	appendOK(t, l, batch...)
	got := readN(t, l, p, 7, 13)
	for i, r := range got {
		if r.Offset != int64(7+i) || string(r.Value) != fmt.Sprint(7+i) {
			t.Fatalf("record %d read from offset 7 is offset %d value %q; want %d, %q", i, r.Offset, r.Value, 7+i, fmt.Sprint(7+i))
		}
	}
}

func testFetchRespectsMax(t *testing.T, l storage.Log) {
	key := []byte("max")
	p := l.Partition(key)
	var batch []storage.Message
	for i := 0; i < 30; i++ {
		batch = append(batch, storage.Message{Key: key, Value: []byte(fmt.Sprint(i))})
	}
	appendOK(t, l, batch...)

	r, err := l.OpenReader(p, 0)
	if err != nil {
		t.Fatalf("OpenReader: %s", err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	sentinel := storage.Record{Offset: -1}
	dst := []storage.Record{sentinel}
	for len(dst) < 31 {
		n := len(dst)
		dst, err = r.Fetch(ctx, dst, 4)
		if err != nil {
			t.Fatalf("Fetch after %d records: %s", n-1, err)
		}
		if got := len(dst) - n; got < 1 || got > 4 {
			t.Fatalf("Fetch(max 4) appended %d records; want 1 to 4", got)
		}
	}
	if dst[0].Offset != -1 {
		t.Fatalf("Fetch overwrote dst[0]; want records appended after it")
	}
	for i, r := range dst[1:] {
		if r.Offset != int64(i) {
			t.Fatalf("record %d has offset %d", i, r.Offset)
		}
	}
}

func testTrimKeepsLaterRecords(t *testing.T, l storage.Log) {
	key := []byte("trim")
	p := l.Partition(key)
	var batch []storage.Message
	for i := 0; i < 10; i++ {
		batch = append(batch, storage.Message{Key: key, Value: []byte(fmt.Sprint(i))})
	}
	appendOK(t, l, batch...)
	if err := l.Trim(context.Background(), p, 5); err != nil {
		t.Fatalf("Trim(%d, 5): %s", p, err)
	}
	first, next := offsets(t, l, p)
	if first < 0 || first > 5 || next != 10 {
		t.Fatalf("Offsets after Trim(5) = %d, %d; want first in [0, 5] and next 10", first, next)
	}
	for i, r := range readN(t, l, p, 5, 5) {
		if r.Offset != int64(5+i) || string(r.Value) != fmt.Sprint(5+i) {
			t.Fatalf("record %d after Trim is offset %d value %q; want %d", i, r.Offset, r.Value, 5+i)
		}
	}
	appendOK(t, l, storage.Message{Key: key, Value: []byte("10")})
	if _, next := offsets(t, l, p); next != 11 {
		t.Fatalf("next after Trim and one Append = %d; want 11", next)
	}
}

func testAppendWithDoneContext(t *testing.T, l storage.Log) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	key := []byte("cancelled")
	err := l.Append(ctx, []storage.Message{{Key: key, Value: []byte("x")}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a cancelled context = %v; want context.Canceled", err)
	}
	if _, next := offsets(t, l, l.Partition(key)); next != 0 {
		t.Fatalf("next after a cancelled Append = %d; want 0 (nothing written)", next)
	}
}

func testEmptyAppend(t *testing.T, l storage.Log) {
	if err := l.Append(context.Background(), nil); err != nil {
		t.Fatalf("Append(nil) = %v; want nil", err)
	}
}

func testWritable(t *testing.T, l storage.Log) {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := l.Writable(ctx); err != nil {
		t.Fatalf("Writable of a new log = %v; want nil", err)
	}
}

func testBadArguments(t *testing.T, l storage.Log) {
	ctx := context.Background()
	n := l.Partitions()
	for _, p := range []int{-1, n, n + 100} {
		if _, _, err := l.Offsets(ctx, p); err == nil {
			t.Fatalf("Offsets(%d) of %d partitions = nil error; want an error", p, n)
		}
		if r, err := l.OpenReader(p, 0); err == nil {
			r.Close()
			t.Fatalf("OpenReader(%d, 0) of %d partitions = nil error; want an error", p, n)
		}
		if err := l.Trim(ctx, p, 1); err == nil {
			t.Fatalf("Trim(%d, 1) of %d partitions = nil error; want an error", p, n)
		}
	}
	if r, err := l.OpenReader(0, -1); err == nil {
		r.Close()
		t.Fatalf("OpenReader(0, -1) = nil error; want an error")
	}
	r, err := l.OpenReader(0, 0)
	if err != nil {
		t.Fatalf("OpenReader(0, 0): %s", err)
	}
	defer r.Close()
	if _, err := r.Fetch(ctx, nil, 0); err == nil {
		t.Fatalf("Fetch(max 0) = nil error; want an error")
	}
}

func testClose(t *testing.T, l storage.Log) {
	key := []byte("close")
	appendOK(t, l, storage.Message{Key: key, Value: []byte("kept")})
	r, err := l.OpenReader(l.Partition(key), 1)
	if err != nil {
		t.Fatalf("OpenReader: %s", err)
	}
	defer r.Close()
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		_, err := r.Fetch(ctx, nil, 1)
		errc <- err
	}()

	if err := l.Close(); err != nil {
		t.Fatalf("Close: %s", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %s", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, storage.ErrClosed) {
			t.Fatalf("Fetch blocked across Close returned %v; want ErrClosed", err)
		}
	case <-time.After(waitFor):
		t.Fatalf("Fetch blocked across Close did not return within %s", waitFor)
	}

	ctx := context.Background()
	if err := l.Append(ctx, []storage.Message{{Key: key, Value: []byte("late")}}); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("Append after Close = %v; want ErrClosed", err)
	}
	if err := l.Append(ctx, nil); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("empty Append after Close = %v; want ErrClosed", err)
	}
	if _, _, err := l.Offsets(ctx, 0); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("Offsets after Close = %v; want ErrClosed", err)
	}
	if _, err := l.OpenReader(0, 0); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("OpenReader after Close = %v; want ErrClosed", err)
	}
	if err := l.Trim(ctx, 0, 1); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("Trim after Close = %v; want ErrClosed", err)
	}
	if err := l.Writable(ctx); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("Writable after Close = %v; want ErrClosed", err)
	}
	if _, err := r.Fetch(ctx, nil, 1); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("Fetch after Close = %v; want ErrClosed", err)
	}
}

// appendOK appends msgs or fails the test.
func appendOK(t *testing.T, l storage.Log, msgs ...storage.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := l.Append(ctx, msgs); err != nil {
		t.Fatalf("Append of %d messages: %s", len(msgs), err)
	}
}

func offsets(t *testing.T, l storage.Log, p int) (first, next int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	first, next, err := l.Offsets(ctx, p)
	if err != nil {
		t.Fatalf("Offsets(%d): %s", p, err)
	}
	return first, next
}

// ReadN reads n records of partition p from offset from, failing t if they
// do not arrive within a deadline. Other packages' tests may use it.
func ReadN(t *testing.T, l storage.Log, p int, from int64, n int) []storage.Record {
	t.Helper()
	return readN(t, l, p, from, n)
}

// ReadAll returns every record l holds, partition after partition, each in
// offset order. Other packages' tests use it to check what was stored.
func ReadAll(t testing.TB, l storage.Log) []storage.Record {
	t.Helper()
	var all []storage.Record
	for p := 0; p < l.Partitions(); p++ {
		first, next, err := l.Offsets(context.Background(), p)
		if err != nil {
			t.Fatalf("Offsets(%d): %s", p, err)
		}
		all = append(all, readN(t, l, p, first, int(next-first))...)
	}
	return all
}

func readN(t testing.TB, l storage.Log, p int, from int64, n int) []storage.Record {
	t.Helper()
	if n == 0 {
		return nil
	}
	r, err := l.OpenReader(p, from)
	if err != nil {
		t.Fatalf("OpenReader(%d, %d): %s", p, from, err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	recs := make([]storage.Record, 0, n)
	for len(recs) < n {
		recs, err = r.Fetch(ctx, recs, n-len(recs))
		if err != nil {
			t.Fatalf("reading %d records of partition %d from %d: got %d, then %s", n, p, from, len(recs), err)
		}
	}
	if len(recs) > n {
		t.Fatalf("Fetch returned %d records; asked for at most %d", len(recs), n)
	}
	if !slices.IsSortedFunc(recs, func(a, b storage.Record) int { return int(a.Offset - b.Offset) }) {
		t.Fatalf("records of partition %d out of offset order", p)
	}
	return recs
}

// keyFor returns a key that l routes to partition p.
func keyFor(l storage.Log, p int) []byte {
	for i := 0; ; i++ {
		key := []byte(fmt.Sprintf("key-for-%d", i))
		if l.Partition(key) == p {
			return key
		}
	}
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

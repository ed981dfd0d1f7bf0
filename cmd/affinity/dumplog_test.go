package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/tracker/event"
)

func TestDumpLog(t *testing.T) {
	ctx := context.Background()
	opts := storage.DefaultEmbeddedOptions(t.TempDir())
	opts.Partitions = 2
	l, err := storage.OpenEmbeddedLog(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	now := time.Now().UnixMilli()
	ts := strings.ReplaceAll(`{"site":"s","v":"8c6f4e1a-2b3c-4d5e-8f90-a1b2c3d4e5f6","events":[
{"id":"1c6f4e1a-2b3c-4d5e-8f90-a1b2c3d4e5f6","t":"view","ts":TS,"url":"https://shop/p","product":{"id":"p1","brand":"Nutrilon","category":"baby/food","age":"0-1","price":0}},
{"id":"2c6f4e1a-2b3c-4d5e-8f90-a1b2c3d4e5f6","t":"purchase","ts":TS,"order":{"id":"o1","total":12.5,"items":[{"id":"p1","qty":2},{"id":"p2"}]}},
{"id":"3c6f4e1a-2b3c-4d5e-8f90-a1b2c3d4e5f6","t":"identify","ts":TS,"email":"A@b.example","traits":{"kid":"2026-01-02","n":1.50,"ok":false,"q":"say \"hi\""}}]}`,
		"TS", "1795499362000")
	var b event.Batch
	dec := event.NewDecoder(event.DefaultOptions())
	if err := dec.DecodeBatch(&b, []byte(ts), now); err != nil {
		t.Fatal(err)
	}
	b.Recv = 1795499362123
	key := event.AppendLogKey(nil, b.Site, b.Visitor)
	if err := l.Append(ctx, []storage.Message{{Key: key, Value: event.AppendBatch(nil, &b)}}); err != nil {
		t.Fatal(err)
	}
	var out, warn bytes.Buffer
	if err := dumpLog(ctx, &out, &warn, l); err != nil {
		t.Fatal(err)
	}
	head := `{"partition":` + string(rune('0'+l.Partition(key))) + `,"offset":0,"site":"s","v":"8c6f4e1a-2b3c-4d5e-8f90-a1b2c3d4e5f6","recv":1795499362123,`
	want := head + `"id":"1c6f4e1a-2b3c-4d5e-8f90-a1b2c3d4e5f6","t":"view","ts":1795499362000,"url":"https://shop/p","product":{"id":"p1","brand":"Nutrilon","category":"baby/food","age":"0-1","price":0}}
` + head + `"id":"2c6f4e1a-2b3c-4d5e-8f90-a1b2c3d4e5f6","t":"purchase","ts":1795499362000,"order":{"id":"o1","total":12.5,"items":[{"id":"p1","qty":2},{"id":"p2"}]}}
` + head + `"id":"3c6f4e1a-2b3c-4d5e-8f90-a1b2c3d4e5f6","t":"identify","ts":1795499362000,"email":"A@b.example","traits":{"kid":"2026-01-02","n":1.50,"ok":false,"q":"say \"hi\""}}
`
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
	if warn.Len() != 0 {
		t.Fatalf("got warnings %q; want none", warn.String())
	}

	// Once the builder has trimmed a partition, the dump says so.
	p := l.Partition(key)
	if err := l.Trim(ctx, p, 1); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := dumpLog(ctx, &out, &warn, l); err != nil {
		t.Fatal(err)
	}
	if wantWarn := fmt.Sprintf("dump-log: partition %d starts at offset 1: the records below were consumed by the builder and trimmed\n", p); out.Len() != 0 || warn.String() != wantWarn {
		t.Fatalf("after a trim got %q and warnings %q; want nothing and %q", out.String(), warn.String(), wantWarn)
	}
}

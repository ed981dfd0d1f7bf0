package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/tracker/event"
)

func TestDumpLog(t *testing.T) {
	ctx := context.Background()
	if _, err := openDumpEmbedded(t.TempDir(), 2); err == nil {
		t.Fatal("opened the embedded log of an empty --data; want an error")
	}
	data := t.TempDir()
	opts := storage.DefaultEmbeddedOptions(filepath.Join(data, "log"))
	opts.Partitions = 2
	el, err := storage.OpenEmbeddedLog(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := el.Close(); err != nil {
		t.Fatal(err)
	}
	l, err := openDumpEmbedded(data, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	key := checkDump(t, l, l, "consumed by the builder and trimmed")

	// Once the builder has trimmed a partition, the dump says so.
	var out, warn bytes.Buffer
	p := l.Partition(key)
	if err := l.Trim(ctx, p, 1); err != nil {
		t.Fatal(err)
	}
	if err := dumpLog(ctx, &out, &warn, l, "consumed by the builder and trimmed"); err != nil {
		t.Fatal(err)
	}
	if wantWarn := fmt.Sprintf("dump-log: partition %d starts at offset 1: the records below were consumed by the builder and trimmed\n", p); out.Len() != 0 || warn.String() != wantWarn {
		t.Fatalf("after a trim got %q and warnings %q; want nothing and %q", out.String(), warn.String(), wantWarn)
	}
}

// TestDumpLogKafka dumps a Kafka topic (kfake, or AFFINITY_KAFKA's
// cluster): the same lines as from the embedded log.
func TestDumpLogKafka(t *testing.T) {
	topic := fmt.Sprintf("dump-events-%d", time.Now().UnixNano())
	brokers := kafkaBrokers(t, 2, topic)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := openDumpKafka(ctx, brokers, topic+"-none"); err == nil {
		t.Fatal("opened a topic that does not exist; want an error, not a new topic")
	}
	ko := storage.DefaultKafkaOptions(brokers...)
	ko.Topic, ko.Partitions = topic, 2
	producer, err := storage.OpenKafkaLog(ctx, ko)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	l, err := openDumpKafka(ctx, brokers, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	checkDump(t, producer, l, "deleted by the topic's retention")
}

// checkDump appends one batch to in and checks the lines dump-log writes of
// out, the same log opened by dump-log, and returns the batch's key.
func checkDump(t *testing.T, in, out storage.Log, trimmed string) []byte {
	t.Helper()
	ctx := context.Background()
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
	if err := in.Append(ctx, []storage.Message{{Key: key, Value: event.AppendBatch(nil, &b)}}); err != nil {
		t.Fatal(err)
	}
	var dump, warn bytes.Buffer
	if err := dumpLog(ctx, &dump, &warn, out, trimmed); err != nil {
		t.Fatal(err)
	}
	head := `{"partition":` + string(rune('0'+out.Partition(key))) + `,"offset":0,"site":"s","v":"8c6f4e1a-2b3c-4d5e-8f90-a1b2c3d4e5f6","recv":1795499362123,`
	want := head + `"id":"1c6f4e1a-2b3c-4d5e-8f90-a1b2c3d4e5f6","t":"view","ts":1795499362000,"url":"https://shop/p","product":{"id":"p1","brand":"Nutrilon","category":"baby/food","age":"0-1","price":0}}
` + head + `"id":"2c6f4e1a-2b3c-4d5e-8f90-a1b2c3d4e5f6","t":"purchase","ts":1795499362000,"order":{"id":"o1","total":12.5,"items":[{"id":"p1","qty":2},{"id":"p2"}]}}
` + head + `"id":"3c6f4e1a-2b3c-4d5e-8f90-a1b2c3d4e5f6","t":"identify","ts":1795499362000,"email":"A@b.example","traits":{"kid":"2026-01-02","n":1.50,"ok":false,"q":"say \"hi\""}}
`
	if dump.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", dump.String(), want)
	}
	if warn.Len() != 0 {
		t.Fatalf("got warnings %q; want none", warn.String())
	}
	return key
}

// A convert (the builder's forward of a purchase) shows its campaign and
// recipient, recipient 0 included.
func TestDumpedConvert(t *testing.T) {
	b := &event.Batch{Site: "s", Recv: 5, Events: []event.Event{{Type: event.TypeConvert, TS: 4, Campaign: 7, HasOrder: true,
		Order: event.Order{ID: "o-1", Total: 2.5, HasTotal: true}}}}
	got, err := json.Marshal(dumpedEvent(storage.Record{Partition: 1, Offset: 9}, b, &b.Events[0]))
	if err != nil {
		t.Fatal(err)
	}
	want := `"t":"convert","ts":4,"order":{"id":"o-1","total":2.5,"items":[]},"campaign":7,"recipient":0}`
	if !strings.HasSuffix(string(got), want) {
		t.Fatalf("got %s; want …%s", got, want)
	}
}

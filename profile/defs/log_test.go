package defs_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/affinityhq/affinity/profile/defs"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/storage"
)

// chunkBytes is small, so a list of a few rows travels in chunks.
const chunkBytes = 32

func openNode(t testing.TB, brokers []string, dir string) *profiletest.Env {
	t.Helper()
	o := defs.DefaultOptions()
	o.Brokers, o.Topic, o.ChunkBytes, o.ApplyTimeout = brokers, "defs-test", chunkBytes, 20*time.Second
	return profiletest.Open(t, profiletest.Options{Dir: dir, Serve: true, Definitions: &o})
}

func do(t *testing.T, e *profiletest.Env, method, path, ct, body string, want int) string {
	t.Helper()
	code, got := e.Do(t, method, path, ct, []byte(body), true)
	if code != want {
		t.Fatalf("%s %s: got %d %s; want %d", method, path, code, got, want)
	}
	return got
}

// same fails unless every node answers path with the same body, once
// they have applied the same definitions. The first node's answer is read
// again each time: it may still be applying too (a segment's status
// moves on as its backfill ends), and its first answer is not the one
// they agree on.
func same(t *testing.T, path string, nodes ...*profiletest.Env) string {
	t.Helper()
	var want string
	for _, n := range nodes[1:] {
		var got string
		profiletest.WaitUntil(t, "GET "+path+" answering the same on every node", func() bool {
			_, want = nodes[0].Get(t, path)
			_, got = n.Get(t, path)
			return stripVolatile(got) == stripVolatile(want)
		})
	}
	return want
}

// stripVolatile drops what differs between nodes by design: a webhook's
// delivery position and the progress of a node's own backfill.
func stripVolatile(s string) string {
	if i := strings.Index(s, `"delivered"`); i >= 0 {
		s = s[:i]
	}
	if i := strings.Index(s, `"backfill"`); i >= 0 {
		s = s[:i]
	}
	if i := strings.Index(s, `"reevaluation"`); i >= 0 {
		s = s[:i]
	}
	return s
}

const listCSV = "email,customer_id\na@example.com,\nb@example.com,\nc@example.com,\n,cust-1\n,cust-2\nd@example.com,\n"

func TestDefinitionsReachEveryNode(t *testing.T) {
	brokers := profiletest.StartKafka(t)
	a, bDir := openNode(t, brokers, ""), t.TempDir()
	b := openNode(t, brokers, bDir)

	do(t, a, "PUT", "/v1/segments/shop/buyers", "text/plain", `count(purchase, 90d) >= 1`, 201)
	do(t, a, "PUT", "/v1/segments/shop/crm", "text/plain", `in_list("crm")`, 201)
	do(t, a, "PUT", "/v1/segments/shop/buyers/webhook", "application/json", `{"url":"http://127.0.0.1:1/hook","secret":"s3cret"}`, 200)
	if len(listCSV) <= 2*chunkBytes {
		t.Fatalf("BUG: the list of %d bytes would not travel in several chunks of %d", len(listCSV), chunkBytes)
	}
	do(t, a, "PUT", "/v1/lists/shop/crm", "text/csv", listCSV, 201)
	do(t, a, "PUT", "/v1/catalog/shop", "application/x-ndjson", `{"id":"p1","name":"Lego","brand":"lego","category":"toys","price":10}`+"\n", 200)
	do(t, b, "DELETE", "/v1/segments/shop/crm", "", "", 204)

	// A write on B that its validation refuses reaches no node.
	end := profiletest.TopicEnd(t, brokers, "defs-test")
	got := do(t, b, "PUT", "/v1/segments/shop/bad", "text/plain", `count(nonsense`, 400)
	if !strings.Contains(got, "invalid") && !strings.Contains(got, "expected") {
		t.Errorf("bad rule: got %s; want a reason", got)
	}
	do(t, b, "PUT", "/v1/lists/shop/bad", "text/csv", "email\nnot-an-email\n", 400)
	do(t, b, "PUT", "/v1/segments/shop/buyers/webhook", "application/json", `{"url":"ftp://x","secret":"s"}`, 400)
	if after := profiletest.TopicEnd(t, brokers, "defs-test"); after != end {
		t.Errorf("refused writes: the topic grew from offset %d to %d; want nothing produced", end, after)
	}
	if code, body := a.Get(t, "/v1/segments/shop/bad"); code != 404 {
		t.Errorf("GET of the refused segment on A: got %d %s; want 404", code, body)
	}

	paths := []string{"/v1/segments/shop", "/v1/segments/shop/buyers/webhook", "/v1/lists/shop", "/v1/lists/shop/crm?format=csv", "/v1/catalog/shop/p1"}
	for _, p := range paths {
		same(t, p, a, b)
	}
	if _, got := b.Get(t, "/v1/lists/shop/crm?format=csv"); !strings.Contains(got, "d@example.com") || !strings.Contains(got, "cust-2") {
		t.Errorf("list on B: got %q; want every row of the chunked upload", got)
	}
	if code, _ := a.Get(t, "/v1/segments/shop/crm"); code != 404 {
		t.Errorf("segment deleted on B, GET on A: got %d; want 404", code)
	}

	// B restarts from its stored offset and gets what was written while
	// it was down; a fresh node C reads the topic from offset 0.
	b.Close(t)
	do(t, a, "PUT", "/v1/segments/shop/lapsed", "text/plain", `count(purchase, 90d) == 0`, 201)
	do(t, a, "DELETE", "/v1/lists/shop/crm", "", "", 204)
	b = openNode(t, brokers, bDir)
	if off, err := b.Definitions.StoredOffset(); err != nil || off == 0 {
		t.Errorf("B's stored offset after its restart: got %d, %v; want > 0", off, err)
	}
	c := openNode(t, brokers, "")
	for _, p := range append(paths, "/v1/segments/shop/lapsed") {
		same(t, p, a, b, c)
	}
	if code, _ := c.Get(t, "/v1/lists/shop/crm"); code != 404 {
		t.Errorf("deleted list on the fresh node: got %d; want 404", code)
	}
}

// A webhook whose segment's put follows it on the topic (compaction keeps
// each key's last record: a segment replaced after its webhook was set)
// is applied with that put, and dropped by a delete.
func TestWebhookBeforeItsSegment(t *testing.T) {
	brokers := profiletest.StartKafka(t)
	a := openNode(t, brokers, "")
	hook := &defs.Record{Kind: defs.KindWebhook, Op: defs.OpPut, Site: "shop", Name: "s1", Args: []string{"http://127.0.0.1:1/h", "k"}}
	if _, err := a.Definitions.Submit(context.Background(), hook); !errors.Is(err, defs.ErrMissing) {
		t.Fatalf("webhook of a missing segment: got %v; want ErrMissing", err)
	}
	seg := &defs.Record{Kind: defs.KindSegment, Op: defs.OpPut, Site: "shop", Name: "s1", Args: []string{"visitor"}, Body: []byte(`count(view, 1d) >= 1`)}
	if _, err := a.Definitions.Submit(context.Background(), seg); err != nil {
		t.Fatalf("segment put: %s", err)
	}
	if code, body := a.Get(t, "/v1/segments/shop/s1/webhook"); code != 200 || !strings.Contains(body, "127.0.0.1:1/h") {
		t.Errorf("held webhook after its segment's put: got %d %s; want it set", code, body)
	}

	hook.Name, seg.Name = "s2", "s2"
	if _, err := a.Definitions.Submit(context.Background(), hook); !errors.Is(err, defs.ErrMissing) {
		t.Fatalf("webhook of a missing segment: got %v; want ErrMissing", err)
	}
	del := &defs.Record{Kind: defs.KindSegment, Op: defs.OpDelete, Site: "shop", Name: "s2"}
	if _, err := a.Definitions.Submit(context.Background(), del); err != nil {
		t.Fatalf("segment delete: %s", err)
	}
	if _, err := a.Definitions.Submit(context.Background(), seg); err != nil {
		t.Fatalf("segment put: %s", err)
	}
	if code, body := a.Get(t, "/v1/segments/shop/s2/webhook"); code != 404 {
		t.Errorf("webhook held before a delete of its segment: got %d %s; want 404", code, body)
	}

	// A held webhook survives a restart: the stored offset stays at it.
	hook.Name, seg.Name = "s3", "s3"
	if _, err := a.Definitions.Submit(context.Background(), hook); !errors.Is(err, defs.ErrMissing) {
		t.Fatalf("webhook of a missing segment: got %v; want ErrMissing", err)
	}
	a.Close(t)
	a = openNode(t, brokers, a.Dir)
	if _, err := a.Definitions.Submit(context.Background(), seg); err != nil {
		t.Fatalf("segment put: %s", err)
	}
	if code, body := a.Get(t, "/v1/segments/shop/s3/webhook"); code != 200 {
		t.Errorf("webhook held across a restart, after its segment's put: got %d %s; want it set", code, body)
	}
}

// An upload whose chunks are not all on the topic is never applied: a
// writer that crashed between its chunks, or a head naming chunks of
// another upload.
func TestHalfWrittenUploadIsNotApplied(t *testing.T) {
	brokers := profiletest.StartKafka(t)
	a := openNode(t, brokers, "")
	ko := storage.DefaultKafkaOptions(brokers...)
	ko.Topic, ko.CreateTopic = "defs-test", false
	kl, err := storage.OpenKafkaLog(context.Background(), ko)
	if err != nil {
		t.Fatal(err)
	}
	defer kl.Close()
	write := func(rs ...defs.Record) {
		t.Helper()
		msgs := make([]storage.Message, len(rs))
		for i := range rs {
			msgs[i] = storage.Message{Key: rs[i].AppendKey(nil), Value: rs[i].AppendValue(nil)}
		}
		if err := kl.Append(context.Background(), msgs); err != nil {
			t.Fatal(err)
		}
	}
	chunk := func(upload uint64, i int, body string) defs.Record {
		return defs.Record{Kind: defs.KindList, Op: defs.OpChunk, Site: "shop", Name: "crm", Upload: upload, Chunks: 2, Index: i, Body: []byte(body)}
	}
	head := func(upload uint64) defs.Record {
		return defs.Record{Kind: defs.KindList, Op: defs.OpPut, Site: "shop", Name: "crm", Args: []string{"text/csv"}, Upload: upload, Chunks: 2}
	}
	// Upload 1 lost its second chunk; upload 2's head finds chunk 1 of
	// upload 3 only.
	write(chunk(1, 0, "email\na@example.com\n"), head(1), chunk(2, 0, "email\n"), chunk(3, 1, "b@example.com\n"), head(2))
	end := profiletest.TopicEnd(t, brokers, "defs-test")
	profiletest.WaitUntil(t, "the node reaching the topic's end", func() bool { return a.Definitions.Applied() >= end })
	if code, body := a.Get(t, "/v1/lists/shop/crm"); code != 404 {
		t.Errorf("list of half-written uploads: got %d %s; want 404", code, body)
	}
	// The same upload whole applies.
	write(chunk(4, 0, "email\na@example.com\n"), chunk(4, 1, "b@example.com\n"), head(4))
	profiletest.WaitUntil(t, "the whole upload applied", func() bool {
		code, body := a.Get(t, "/v1/lists/shop/crm?format=csv")
		return code == 200 && strings.Contains(body, "b@example.com")
	})
}

// A list's new upload makes its writer delete the chunks of the one it
// replaces with Kafka tombstones (null values, which compaction drops).
func TestReplacedUploadChunksAreTombstoned(t *testing.T) {
	brokers := profiletest.StartKafka(t)
	a := openNode(t, brokers, "")
	do(t, a, "PUT", "/v1/lists/shop/crm", "text/csv", listCSV, 201)
	do(t, a, "PUT", "/v1/lists/shop/crm", "text/csv", listCSV+"e@example.com,\n", 200)
	wantChunks := (len(listCSV) + chunkBytes - 1) / chunkBytes

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: "defs-test", Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	tombstones := map[string]bool{}
	firstUpload := map[string]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for len(tombstones) < wantChunks {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read %d tombstones of %d chunks: %s", len(tombstones), wantChunks, err)
		}
		var rec defs.Record
		switch {
		case m.Value == nil:
			if !firstUpload[string(m.Key)] {
				t.Fatalf("a tombstone of key %q: not a chunk of the replaced upload", m.Key)
			}
			tombstones[string(m.Key)] = true
		case rec.Decode(m.Key, m.Value) != nil:
			t.Fatalf("a record at offset %d does not decode", m.Offset)
		case rec.Op == defs.OpChunk && len(firstUpload) < wantChunks: // the first upload's come first
			firstUpload[string(m.Key)] = true
		}
	}
	if code, body := a.Get(t, "/v1/lists/shop/crm?format=csv"); code != 200 || !strings.Contains(body, "e@example.com") {
		t.Errorf("the list after its chunks were replaced: %d %s", code, body)
	}
}

// An upload of several default-sized chunks (each near Kafka's message
// limit) reaches another node whole.
func TestLargeUploadInDefaultChunks(t *testing.T) {
	brokers := profiletest.StartKafka(t)
	open := func() *profiletest.Env {
		o := defs.DefaultOptions()
		o.Brokers, o.Topic = brokers, "defs-test"
		return profiletest.Open(t, profiletest.Options{Serve: true, Definitions: &o})
	}
	a, b := open(), open()
	var sb strings.Builder
	sb.WriteString("email\n")
	for i := 0; sb.Len() < 3*defs.DefaultOptions().ChunkBytes+100; i++ {
		sb.WriteString("person-" + strconv.Itoa(i) + "@example.com\n")
	}
	rows := strings.Count(sb.String(), "\n") - 1
	do(t, a, "PUT", "/v1/lists/shop/big", "text/csv", sb.String(), 201)
	profiletest.WaitUntil(t, "the list on b", func() bool {
		code, body := b.Get(t, "/v1/lists/shop/big")
		return code == 200 && strings.Contains(body, `"rows":`+strconv.Itoa(rows)+",")
	})
}

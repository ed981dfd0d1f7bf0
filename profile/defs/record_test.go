package defs

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/affinityhq/affinity/internal/codec"
	"github.com/affinityhq/affinity/tracker/event"
)

var update = flag.Bool("update", false, "rewrite the fuzz seed corpus under testdata/fuzz")

// records are the round-trip cases and the fuzz seeds.
var records = []Record{
	{Kind: KindSegment, Op: OpPut, Site: "shop", Name: "buyers", Args: []string{"visitor"}, Body: []byte(`count(purchase, 90d) >= 1`), At: 1764297000000, Origin: 7, Request: 1},
	{Kind: KindSegment, Op: OpDelete, Site: "shop", Name: "buyers", At: 1, Origin: 7, Request: 2},
	{Kind: KindWebhook, Op: OpPut, Site: "shop", Name: "buyers", Args: []string{"https://example.com/h", "secret"}},
	{Kind: KindWebhook, Op: OpDelete, Site: "shop", Name: "buyers"},
	{Kind: KindList, Op: OpChunk, Site: "shop", Name: "crm", Upload: 1 << 60, Chunks: 3, Index: 2, Body: []byte("c@example.com\n")},
	{Kind: KindList, Op: OpPut, Site: "shop", Name: "crm", Args: []string{"text/csv"}, Upload: 1 << 60, Chunks: 3, At: -5},
	{Kind: KindList, Op: OpDelete, Site: "shop", Name: "crm"},
	{Kind: KindCatalog, Op: OpPut, Site: "shop", Name: "k3j2", Args: []string{"application/x-ndjson"}, Body: []byte(`{"id":"p1"}` + "\n")},
	{Kind: KindCampaignID, Op: OpPut, Site: "shop", Name: "k3j3", At: 1764297000000, Origin: 7, Request: 3},
	{Kind: KindCampaign, Op: OpPut, Site: "shop", Name: "4", Upload: 9, Chunks: 2, Origin: 7, Request: 4},
	{Kind: KindCampaign, Op: OpDelete, Site: "shop", Name: "4"},
	{Kind: KindErasure, Op: OpPut, Site: "shop", Name: "k3j4", Body: AppendErasedBody(nil, erasedSample), At: 1764297000000, Origin: 7, Request: 5},
	{Kind: KindErasure, Op: OpPut, Site: "shop", Name: "k3j5", Body: bytes.Repeat([]byte{0x5e}, 32), At: 1764297000000, Origin: 7, Request: 6, Version: 1},
}

// erasedSample are the visitors of the erasure record among records: one
// whose owner knew its offset, one erased by another node (offset 0).
var erasedSample = []Erased{{Visitor: [16]byte{1: 0xab}, Partition: 3, Offset: 1 << 40}, {Visitor: [16]byte{15: 7}}}

func TestRecordRoundTrip(t *testing.T) {
	for _, want := range records {
		key, val := want.AppendKey(nil), want.AppendValue(nil)
		var got Record
		if err := got.Decode(key, val); err != nil {
			t.Errorf("%s: cannot decode:\nkey %s\nvalue %s: %s", want.Describe(), hex.Dump(key), hex.Dump(val), err)
			continue
		}
		if len(got.Body) == 0 {
			got.Body = want.Body // nil and empty
		}
		if got.Version != want.version() {
			t.Errorf("%s: version %d; want %d", want.Describe(), got.Version, want.version())
		}
		got.Version = want.Version
		if !reflect.DeepEqual(got, want) {
			t.Errorf("round trip: got %+v; want %+v\nvalue %s", got, want, hex.Dump(val))
		}
	}
}

func TestRecordDecodeRefuses(t *testing.T) {
	seg := records[0]
	chunk := records[4]
	f := func(name string, key, val []byte, want string) {
		t.Helper()
		var r Record
		err := r.Decode(key, val)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v; want an error with %q", name, err, want)
		}
	}
	f("unknown kind", append([]byte{'q'}, seg.AppendKey(nil)[1:]...), seg.AppendValue(nil), "unknown kind")
	f("version", seg.AppendKey(nil), append([]byte{2}, seg.AppendValue(nil)[1:]...), "version 2")
	f("unknown op", seg.AppendKey(nil), append([]byte{1, 9}, seg.AppendValue(nil)[2:]...), "unknown op 9")
	f("truncated", seg.AppendKey(nil), seg.AppendValue(nil)[:10], "cannot decode definition record")
	f("trailing", seg.AppendKey(nil), append(seg.AppendValue(nil), 0), "trailing")
	f("chunk under a plain key", seg.AppendKey(nil), chunk.AppendValue(nil), "without chunk fields")
	wrong := chunk
	wrong.Index = 1
	f("chunk under another chunk's key", wrong.AppendKey(nil), chunk.AppendValue(nil), "under the key of chunk 1")
	del := records[1]
	del.Body = []byte("x")
	f("delete with a body", del.AppendKey(nil), del.AppendValue(nil), "with a body")
	f("version 2 of a segment", seg.AppendKey(nil), append([]byte{2}, seg.AppendValue(nil)[1:]...), "version 2; this build reads 1, and 2 of an erasure")
}

// An erasure's body: of version 2 each visitor with its partition and
// offset, of version 1 the ids alone (offset 0); a body that does not
// decode is an error naming what is wrong.
func TestErasures(t *testing.T) {
	f := func(name string, r Record, want []Erased, wantErr string) {
		t.Helper()
		var got Record
		if err := got.Decode(r.AppendKey(nil), r.AppendValue(nil)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		es, err := got.Erasures(nil)
		if wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), wantErr) || len(es) != 0 {
				t.Errorf("%s: got %+v, %v; want an error with %q", name, es, err, wantErr)
			}
			return
		}
		if err != nil || !reflect.DeepEqual(es, want) {
			t.Errorf("%s: got %+v, %v; want %+v", name, es, err, want)
		}
	}
	x := records[len(records)-2]
	f("version 2", x, erasedSample, "")
	v1 := records[len(records)-1]
	f("version 1", v1, []Erased{{Visitor: event.UUID(v1.Body)}, {Visitor: event.UUID(v1.Body[16:])}}, "")
	v1.Body = v1.Body[:20]
	f("version 1 of 20 bytes", v1, nil, "20 bytes is not 16-byte visitor ids")
	x.Body = AppendErasedBody(nil, erasedSample)[:18]
	f("version 2 cut in a visitor's partition", x, nil, "erasure record body")
	x.Body = append(AppendErasedBody(nil, erasedSample[:1]), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)
	f("version 2 cut in a visitor", x, nil, "erasure record body")
	x.Body = append(make([]byte, 16), codec.AppendUvarint(nil, 1<<40)...)
	x.Body = append(x.Body, 1)
	f("a partition out of range", x, nil, "out of range")
	seg := records[0]
	if _, err := seg.Erasures(nil); err == nil {
		t.Errorf("the erasures of a segment record: no error")
	}
}

// FuzzErasedBody: an erasure's body comes from the topic; no input may
// panic the decoder, and what decodes re-encodes to the same bytes.
func FuzzErasedBody(f *testing.F) {
	body := AppendErasedBody(nil, erasedSample)
	f.Add(body)
	f.Add(body[:len(body)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		es, err := decodeErasedBody(nil, data)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n") || len(es) != 0 {
				t.Fatalf("error %q with %d visitors", err, len(es))
			}
			return
		}
		if got := AppendErasedBody(nil, es); !bytes.Equal(got, data) {
			t.Fatalf("%+v re-encodes to\n%s; want\n%s", es, hex.Dump(got), hex.Dump(data))
		}
	})
}

func FuzzDecodeRecord(f *testing.F) {
	if *update {
		writeSeeds(f)
	}
	for _, r := range records {
		f.Add(r.AppendKey(nil), r.AppendValue(nil))
	}
	f.Fuzz(func(t *testing.T, key, val []byte) {
		var r Record
		if err := r.Decode(key, val); err != nil {
			if strings.ContainsAny(err.Error(), "\n") {
				t.Fatalf("a multi-line error: %q", err)
			}
			return
		}
		// Canonical: what decodes re-encodes to the same bytes.
		if k := r.AppendKey(nil); !bytes.Equal(k, key) {
			t.Fatalf("key re-encodes to\n%s; want\n%s", hex.Dump(k), hex.Dump(key))
		}
		if v := r.AppendValue(nil); !bytes.Equal(v, val) {
			t.Fatalf("value re-encodes to\n%s; want\n%s", hex.Dump(v), hex.Dump(val))
		}
	})
}

// writeSeeds writes the fuzz seed corpus (-update): the records, and
// their values cut in half, as a reader cut mid-record would see.
func writeSeeds(t testing.TB) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecodeRecord")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, r := range records {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n[]byte(%q)\n", r.AppendKey(nil), r.AppendValue(nil))
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		v := r.AppendValue(nil)
		body = fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n[]byte(%q)\n", r.AppendKey(nil), v[:len(v)/2])
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%d-cut", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

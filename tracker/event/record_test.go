package event

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

var fixtures = []string{"all_types.json", "purchase.json", "identify.json", "unicode.json", "batch10.json", "batch100.json"}

// TestRecordRoundTrip: JSON → Batch → record → Batch gives the same batch,
// and the record re-encodes to the same bytes.
func TestRecordRoundTrip(t *testing.T) {
	var got Batch
	for _, name := range fixtures {
		want := mustDecode(t, readFixture(t, name))
		record := AppendBatch(nil, want)
		if err := DecodeRecord(&got, record); err != nil {
			t.Fatalf("%s: %s\n%s", name, err, hex.Dump(record))
		}
		if !got.Equal(want) {
			t.Fatalf("%s: got\n%s\nwant\n%s", name, dump(&got), dump(want))
		}
		if again := AppendBatch(nil, &got); !bytes.Equal(again, record) {
			t.Fatalf("%s: re-encoded record differs:\ngot\n%s\nwant\n%s", name, hex.Dump(again), hex.Dump(record))
		}
		// The batch views its own copy of the record.
		clear(record)
		if !got.Equal(want) {
			t.Fatalf("%s: the batch changed with the record it was decoded from", name)
		}
	}
}

// TestRecordRoundTripEdges covers values no JSON batch has: they must still
// round-trip, as the record carries whatever a Batch holds.
func TestRecordRoundTripEdges(t *testing.T) {
	f := func(name string, b *Batch) {
		t.Helper()
		record := AppendBatch(nil, b)
		var got Batch
		if err := DecodeRecord(&got, record); err != nil {
			t.Fatalf("%s: %s\n%s", name, err, hex.Dump(record))
		}
		if !got.Equal(b) {
			t.Fatalf("%s: got\n%s\nwant\n%s", name, dump(&got), dump(b))
		}
	}
	f("empty", &Batch{})
	f("extreme times", &Batch{Recv: math.MaxInt64, Events: []Event{
		{TS: math.MinInt64}, {TS: math.MaxInt64}, {TS: 0}, {TS: -1},
	}})
	f("negative recv", &Batch{Recv: math.MinInt64, Events: []Event{{TS: math.MaxInt64}}})
	f("unknown type and kind", &Batch{Events: []Event{{Type: 200, Traits: []Trait{{Key: "", Value: "", Kind: 9}}}}})
	f("all fields", &Batch{Site: "s", Visitor: UUID{1, 2, 3}, Recv: 1, Events: []Event{{
		ID: UUID{15: 1}, Type: TypePurchase, TS: 2, HasProduct: true,
		Product:  Product{ID: "p", Brand: "b", Category: "c", Age: "a", Price: math.MaxFloat64, HasPrice: true, Qty: math.MaxUint32},
		HasOrder: true, Order: Order{ID: "o", Total: math.SmallestNonzeroFloat64, HasTotal: true, Items: []Product{{}, {Qty: 1}}},
		Email: "e", Customer: "c", URL: "u", Traits: []Trait{{Key: "k", Value: "v"}},
	}, {Type: TypeCustom, Name: "Newsletter Signup"}}})
	for _, b := range engagementBatches {
		f("engagement", b)
	}
	f("long string", &Batch{Site: strings.Repeat("s", 1<<16)})
}

func TestRecordLayout(t *testing.T) {
	// The example of FORMAT.md, byte for byte.
	b := &Batch{Site: "s1", Visitor: UUID{0: 0xaa, 15: 0xbb}, Recv: 1000, Events: []Event{{
		ID: UUID{0: 0x01, 15: 0x02}, Type: TypeView, TS: 999, HasProduct: true,
		Product: Product{ID: "p", Price: 2.5, HasPrice: true},
	}}}
	want := "04" + "0273 31" + "aa" + strings.Repeat("00", 14) + "bb" + "d00f" + "01" +
		"01000000000000000000000000000002" + "02" + "01" + "01" +
		"11" + "0170" + "0000000000000440"
	want = strings.ReplaceAll(want, " ", "")
	if got := hex.EncodeToString(AppendBatch(nil, b)); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// TestDecodeRecordVersion1 reads records written before event names
// (version 1): the same layout without presence bit 6, which it refuses.
func TestDecodeRecordVersion1(t *testing.T) {
	var b Batch
	for _, name := range fixtures {
		want := mustDecode(t, readFixture(t, name))
		v1 := AppendBatch(nil, want)
		v1[0] = 1
		if err := DecodeRecord(&b, v1); err != nil || !b.Equal(want) {
			t.Fatalf("%s as version 1: got error %v and\n%s\nwant\n%s", name, err, dump(&b), dump(want))
		}
	}
	named := AppendBatch(nil, &Batch{Site: "s", Events: []Event{{Type: TypeCustom, Name: "Signup"}}})
	if err := DecodeRecord(&b, named); err != nil || b.Events[0].Name != "Signup" {
		t.Fatalf("version 2 with a name: got error %v, name %q; want the name", err, b.Events[0].Name)
	}
	named[0] = 1
	if err := DecodeRecord(&b, named); err == nil || !strings.Contains(err.Error(), "unknown presence bits 0x40") {
		t.Fatalf("version 1 with a name: got error %v; want unknown presence bits 0x40", err)
	}
	// A part a version added is refused by the versions before it.
	for _, tc := range []struct {
		part  string
		since byte
		bits  string
		b     *Batch
		ok    func(e *Event) bool
	}{
		{"token", 3, "0x80", engagementBatches[0], func(e *Event) bool { return e.Token == "AQEAAAAAAAAAAAAAAAA" }},
		{"campaign recipient", 4, "0x100", engagementBatches[2], func(e *Event) bool {
			return e.Type == TypeConvert && e.Campaign == 7 && e.Recipient == 1<<32-1 && e.Order.ID == "o-1" && e.Order.Total == 12.5
		}},
	} {
		for v := byte(1); v <= RecordVersion; v++ {
			rec := AppendBatch(nil, tc.b)
			rec[0] = v
			err := DecodeRecord(&b, rec)
			if v < tc.since && (err == nil || !strings.Contains(err.Error(), "unknown presence bits "+tc.bits)) {
				t.Fatalf("version %d with a %s: got error %v; want unknown presence bits %s", v, tc.part, err, tc.bits)
			}
			if v >= tc.since && (err != nil || !tc.ok(&b.Events[0])) {
				t.Fatalf("version %d with a %s: got error %v, event %+v", v, tc.part, err, b.Events[0])
			}
		}
	}
	v2 := AppendBatch(nil, mustDecode(t, readFixture(t, fixtures[0])))
	v2[0] = 2
	if err := DecodeRecord(&b, v2); err != nil {
		t.Fatalf("version 2 record: %v", err)
	}
}

// engagementBatches are records of the collector's engagement endpoints:
// an open and a click with a recipient's token.
var engagementBatches = []*Batch{
	{Site: "s", Visitor: UUID{1}, Recv: 5, Events: []Event{{ID: UUID{2}, Type: TypeOpen, TS: 5, Token: "AQEAAAAAAAAAAAAAAAA"}}},
	{Site: "s", Visitor: UUID{1}, Recv: 6, Events: []Event{{ID: UUID{3}, Type: TypeClick, TS: 6, Token: "AQEAAAAAAAAAAAAAAAA", URL: "https://shop.example/x"}}},
	// A purchase forwarded to its recipient's visitor (the builder's).
	{Site: "s", Visitor: UUID{1}, Recv: 7, Events: []Event{{ID: UUID{4}, Type: TypeConvert, TS: 6, HasOrder: true,
		Order: Order{ID: "o-1", Total: 12.5, HasTotal: true}, Campaign: 7, Recipient: 1<<32 - 1}}},
}

// TestDecodeRecordTruncated cuts records at every byte: each prefix must be
// refused with an error, never a panic nor a shorter batch.
func TestDecodeRecordTruncated(t *testing.T) {
	var b Batch
	for _, name := range fixtures {
		record := AppendBatch(nil, mustDecode(t, readFixture(t, name)))
		for n := range len(record) {
			if err := DecodeRecord(&b, record[:n]); err == nil {
				t.Fatalf("%s: a record cut to %d of %d bytes was accepted:\n%s", name, n, len(record), hex.Dump(record[:n]))
			}
		}
	}
}

func TestDecodeRecordRefused(t *testing.T) {
	valid := AppendBatch(nil, mustDecode(t, readFixture(t, "all_types.json")))
	f := func(name string, record []byte, msg string) {
		t.Helper()
		var b Batch
		err := DecodeRecord(&b, record)
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Fatalf("%s: got error %v; want …%s…\n%s", name, err, msg, hex.Dump(record))
		}
	}
	hdr := func(count ...byte) []byte { // version, site "", visitor, recv 0, then count
		return append(append([]byte{1, 0}, make([]byte, 17)...), count...)
	}
	ev := func(rest ...byte) []byte { // an event up to its flags
		return append(append(make([]byte, 16), 2, 0), rest...)
	}
	rec := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	f("empty", nil, "cannot decode event record at byte 0: truncated byte: 1 bytes needed, 0 left")
	f("version 0", []byte{0}, "unsupported event record version 0; this build reads versions 1 to 4")
	f("version 5", append([]byte{5}, valid[1:]...), "unsupported event record version 5")
	if err := DecodeRecord(&Batch{}, []byte{5}); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("version 5: got %v; want ErrUnsupportedVersion", err)
	}
	f("trailing byte", append(append([]byte{}, valid...), 0), fmt.Sprintf("at byte %d: 1 bytes after the last event", len(valid)))
	f("site too long", []byte{1, 5, 'a'}, "at byte 2: truncated string: 5 bytes needed, 1 left")
	f("varint overflow", rec([]byte{1}, bytes.Repeat([]byte{0xff}, 10), []byte{1}), "at byte 1: varint overflows 64 bits")
	f("non-minimal varint", []byte{1, 0x80, 0x00}, "at byte 1: non-minimal varint")
	f("huge count", hdr(0xff, 0xff, 0xff, 0xff, 0x0f), "count 4294967295 cannot fit in the 0 bytes left")
	f("count over the bytes", rec(hdr(2), ev(0)), "count 2 cannot fit in the 19 bytes left")
	f("unknown event bits", rec(hdr(1), ev(0x40)), "events[0]: unknown presence bits 0x40")
	f("unknown product bits", rec(hdr(1), ev(1, 0x40)), "events[0]: unknown presence bits 0x40")
	f("unknown order bits", rec(hdr(1), ev(2, 0x08)), "events[0]: unknown presence bits 0x8")
	f("empty email", rec(hdr(1), ev(4, 0)), "events[0]: empty string with its presence bit set")
	f("empty url", rec(hdr(1), ev(0x20, 0)), "events[0]: empty string with its presence bit set")
	f("empty product id", rec(hdr(1), ev(1, 1, 0)), "events[0]: empty string with its presence bit set")
	f("no traits", rec(hdr(1), ev(0x10, 0)), "events[0]: no traits with their presence bit set")
	f("no items", rec(hdr(1), ev(2, 4, 0)), "events[0]: no items with their presence bit set")
	f("too many traits", rec(hdr(1), ev(0x10, 2, 0, 0, 0)), "count 2 cannot fit in the 3 bytes left")
	f("qty 0", rec(hdr(1), ev(1, 0x20, 0)), "events[0]: qty 0 is not in 1..4294967295")
	f("qty over 32 bits", rec(hdr(1), ev(1, 0x20, 0x80, 0x80, 0x80, 0x80, 0x10)), "qty 4294967296 is not in")
	nan := []byte{0, 0, 0, 0, 0, 0, 0xf8, 0x7f}
	f("NaN price", rec(hdr(1), ev(1, 0x10), nan), "events[0]: amount NaN is not a finite number >= 0")
	f("negative total", rec(hdr(1), ev(2, 2), []byte{0, 0, 0, 0, 0, 0, 0xf0, 0xbf}), "amount -1 is not a finite number >= 0")
	f("truncated float", rec(hdr(1), ev(2, 2), nan[:7]), "truncated float: 8 bytes needed, 7 left")
	f("campaign 0", rec([]byte{4}, hdr(1)[1:], ev(0x80, 0x02, 0, 0)), "events[0]: campaign 0 or recipient 0 out of range")
	f("recipient over 32 bits", rec([]byte{4}, hdr(1)[1:], ev(0x80, 0x02, 1, 0x80, 0x80, 0x80, 0x80, 0x10)), "recipient 4294967296 out of range")
	f("truncated uuid", []byte{1, 0, 1, 2, 3}, "at byte 2: truncated UUID: 16 bytes needed, 3 left")
}

func TestRecordAllocs(t *testing.T) {
	for _, name := range fixtures {
		b := mustDecode(t, readFixture(t, name))
		buf := AppendBatch(nil, b)
		if n := testing.AllocsPerRun(100, func() { buf = AppendBatch(buf[:0], b) }); n != 0 {
			t.Errorf("%s: AppendBatch: got %v allocs per run; want 0", name, n)
		}
		var got Batch
		if n := testing.AllocsPerRun(100, func() {
			if err := DecodeRecord(&got, buf); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%s: DecodeRecord: got %v allocs per run; want 0", name, n)
		}
	}
}

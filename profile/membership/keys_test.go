package membership

import (
	"encoding/hex"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/affinityhq/affinity/internal/codec"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

var testVisitor = event.UUID{0: 0xab, 15: 0xcd}

// sample is an encoded value and its decoder.
type sample struct {
	name   string
	val    []byte
	decode func([]byte) error
}

func samples() []sample {
	d := Definition{Source: `since(cart) <= 24h`, Gen: 3, Backfilled: 2, ID: 1 << 60, Created: 1769817600000, Updated: 1769817600001}
	st := vstate{due: 1769817600000, email: "a@b.c", member: []vmember{{"mums", 7, 1769817600000}, {"carts", 9, -5}}}
	c := Change{Site: "shop", Segment: "mums", Visitor: testVisitor, Email: "a@b.c", Entered: true, At: 1769817600000, Why: "time", Facts: `{"since(cart)":86400001}`, Src: state.Source{Partition: 3, Offset: 1200, Ord: state.VisitOrdinals + 1}}
	return []sample{
		{"record version 1", recordV1(&c), func(b []byte) error { var c Change; return decodeRecord(&c, b) }},
		{"definition", appendDef(nil, &d), func(b []byte) error { var d Definition; return decodeDef(&d, b) }},
		{"visitor state", appendVState(nil, &st), func(b []byte) error { var s vstate; return decodeVState(&s, b) }},
		{"record", appendRecord(nil, &c), func(b []byte) error { var c Change; return decodeRecord(&c, b) }},
		{"outbox", appendOutbox(nil, &c), func(b []byte) error { var c Change; return decodeOutbox(&c, b) }},
		{"person record", appendRecord(nil, &Change{Visitor: testVisitor, At: 1769817600000, Why: "event", Facts: "{}", Src: state.Source{Partition: -1}, Person: "e:a@b.c"}), func(b []byte) error { var c Change; return decodeRecord(&c, b) }},
		{"member", appendMemberValue(nil, 1769817600000, "a@b.c"), func(b []byte) error { _, _, err := decodeMemberValue(b); return err }},
		{"person member", appendPersonMemberValue(nil, 1769817600000, "a@b.c", "e:a@b.c", []event.UUID{testVisitor, {1: 2}}), func(b []byte) error { var m MemberView; return decodeMemberView(&m, b) }},
		{"person definition", appendDef(nil, &Definition{Source: "identified", Gen: 1, ID: 7, Per: PerPerson}), func(b []byte) error { var d Definition; return decodeDef(&d, b) }},
		{"event mark", append(appendMarkKey(nil, 0, 42, "shop", markEvent), testVisitor[:]...), func(b []byte) error { var m mark; return parseMarkKey(&m, b) }},
		{"due mark", appendPersonMark(nil, 1769817600000, "shop", markDue, "e:a@b.c"), func(b []byte) error { var m mark; return parseMarkKey(&m, b) }},
		{"handed mark", appendHandedMark(nil, "shop", "event", whyErased, "e:a@b.c"), func(b []byte) error { var m mark; return parseMarkKey(&m, b) }},
		{"awaiting mark", codec.AppendString(codec.AppendString(codec.AppendString(appendMarkKey(nil, awaitBase+3, 0, "shop", markAwaiting), "event"), "linked"), "c:C7"), func(b []byte) error { var m mark; return parseMarkKey(&m, b) }},
		{"webhook", appendHook(nil, "https://example.com/hook", "s3cret"), func(b []byte) error { _, _, err := decodeHook(b); return err }},
		{"due key", appendDueKey(nil, 1769817600000, "shop", testVisitor), func(b []byte) error { _, _, _, err := parseDueKey(b); return err }},
		{"size", appendSizeValue(nil, 123456, nil), func(b []byte) error { _, _, err := decodeSizeValue(b, nil); return err }},
		{"size by partition", appendSizeValue(nil, 123456, []PartSize{{0, 100000}, {7, 23456}}), func(b []byte) error { _, _, err := decodeSizeValue(b, nil); return err }},
		{"size of no partition", appendSizeValue(nil, 0, []PartSize{}), func(b []byte) error { _, _, err := decodeSizeValue(b, nil); return err }},
		{"erasure mark", appendErased(nil, erasure{at: 1769817600000, partition: 3, offset: 1 << 40}), func(b []byte) error { _, err := decodeErased(b); return err }},
		{"erasure mark version 1", codec.AppendVarint([]byte{1}, 1769817600000), func(b []byte) error { _, err := decodeErased(b); return err }},
	}
}

// recordV1 is c as a version 1 change record: no source.
func recordV1(c *Change) []byte {
	v := []byte{1, 0}
	if c.Entered {
		v[1] = 1
	}
	v = codec.AppendVarint(v, c.At)
	v = append(v, c.Visitor[:]...)
	v = codec.AppendString(v, c.Email)
	v = codec.AppendString(v, c.Why)
	return codec.AppendString(v, c.Facts)
}

// A change record carries its source from version 2 on; a version 1
// record reads as one of no partition, and a bad source is an error that
// names it.
func TestChangeRecordSource(t *testing.T) {
	c := Change{Visitor: testVisitor, Entered: true, At: 1769817600000, Why: "event", Facts: "{}"}
	f := func(name string, v []byte, want state.Source, wantErr string) {
		t.Helper()
		var got Change
		err := decodeRecord(&got, v)
		switch {
		case wantErr != "":
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("%s: got error %v; want one containing %q\n%s", name, err, wantErr, hex.Dump(v))
			}
		case err != nil || got.Src != want || got.Visitor != c.Visitor || got.At != c.At:
			t.Errorf("%s: got %+v %v; want source %+v\n%s", name, got, err, want, hex.Dump(v))
		}
	}
	with := func(src state.Source) []byte { c2 := c; c2.Src = src; return appendRecord(nil, &c2) }
	f("version 1", recordV1(&c), state.Source{Partition: -1}, "")
	f("event commit", with(state.Source{Partition: 3, Offset: 1200, Ord: 2}), state.Source{Partition: 3, Offset: 1200, Ord: 2}, "")
	f("visit", with(state.Source{Partition: 0, Offset: 0, Ord: state.VisitOrdinals}), state.Source{Offset: 0, Ord: state.VisitOrdinals}, "")
	f("no partition", with(state.Source{Partition: -1}), state.Source{Partition: -1}, "")
	bad := codec.AppendVarint(recordV1(&c), -2)
	bad[0] = recordVersion
	bad = codec.AppendUvarint(codec.AppendVarint(bad, 1), 0)
	f("partition -2", bad, state.Source{}, "partition -2")
	big := codec.AppendUvarint(codec.AppendVarint(codec.AppendVarint(recordV1(&c), 1), 1), 1<<32)
	big[0] = recordVersion
	f("ordinal 2^32", big, state.Source{}, "ordinal 4294967296")
	v4 := with(state.Source{})
	v4[0] = 4
	f("version 4", v4, state.Source{}, "version 4")
	// Version 2 ends after the ordinal: no segment's created time, no
	// person key.
	c2 := c
	c2.Src, c2.Created = state.Source{Partition: 1, Offset: 9}, 5
	v2 := appendRecord(nil, &c2)
	v2, v2[0] = v2[:len(v2)-2], 2
	f("version 2", v2, state.Source{Partition: 1, Offset: 9}, "")
	for _, tc := range []struct {
		v    []byte
		want int64
	}{{v2, 0}, {appendRecord(nil, &Change{Why: "event", Created: 1769817600000}), 1769817600000}} {
		var got Change
		if err := decodeRecord(&got, tc.v); err != nil || got.Created != tc.want {
			t.Errorf("created of %x: %d, %v; want %d", tc.v, got.Created, err, tc.want)
		}
	}
	v3 := with(state.Source{Partition: -1})
	f("version 3 without its person key", v3[:len(v3)-1], state.Source{}, "change record")
	f("version 3 with a bad person key", codec.AppendString(v3[:len(v3)-1], "x:1"), state.Source{}, `person key "x:1"`)
	pc := c
	pc.Src, pc.Person = state.Source{Partition: -1}, "c:C7"
	var got Change
	if err := decodeRecord(&got, appendRecord(nil, &pc)); err != nil || got.Person != "c:C7" || got.Src != pc.Src {
		t.Errorf("person record: got %+v %v; want person c:C7 of no partition", got, err)
	}

	j := func(src state.Source, want string) {
		t.Helper()
		c2 := c
		c2.Src = src
		if got := string(c2.AppendJSON(nil)); !strings.Contains(got, want) {
			t.Errorf("JSON of source %+v: got %s; want it to contain %s", src, got, want)
		}
	}
	j(state.Source{Partition: 3, Offset: 1200, Ord: 2}, `"seq":"0","id":"3-1200-2","site"`)
	j(state.Source{Partition: -1}, `"id":null,`)
	pj := c
	pj.Src, pj.Person = state.Source{Partition: -1}, "e:a@b.c"
	if got := string(pj.AppendJSON(nil)); !strings.Contains(got, `"email":null,"person":"e:a@b.c","change"`) {
		t.Errorf("JSON of a person's record: got %s; want its person key after email", got)
	}
}

// Every value round-trips; a truncated one is an error, never a panic.
func TestValuesRoundTrip(t *testing.T) {
	d := Definition{Source: `since(cart) <= 24h`, Gen: 3, Backfilled: 2, ID: 1 << 60, Created: 1769817600000, Updated: 1769817600001, Per: PerPerson}
	var d2 Definition
	if err := decodeDef(&d2, appendDef(nil, &d)); err != nil || d2 != d {
		t.Errorf("definition: got %+v %v; want %+v", d2, err, d)
	}
	st := vstate{due: 1769817600000, email: "a@b.c", member: []vmember{{"mums", 7, 1769817600000}, {"carts", 9, -5}}}
	var st2 vstate
	if err := decodeVState(&st2, appendVState(nil, &st)); err != nil || !reflect.DeepEqual(st, st2) {
		t.Errorf("visitor state: got %+v %v; want %+v", st2, err, st)
	}
	c := Change{Site: "shop", Segment: "mums", Visitor: testVisitor, Email: "a@b.c", Entered: true, At: 1769817600000, Why: "time", Facts: `{}`}
	var c2 Change
	if err := decodeOutbox(&c2, appendOutbox(nil, &c)); err != nil || c2 != c {
		t.Errorf("outbox: got %+v %v; want %+v", c2, err, c)
	}
	var pm MemberView
	if err := decodeMemberView(&pm, appendPersonMemberValue(nil, 5, "a@b.c", "e:a@b.c", []event.UUID{testVisitor})); err != nil ||
		pm.Entered != 5 || string(pm.Email) != "a@b.c" || string(pm.Person) != "e:a@b.c" || len(pm.Visitors) != 1 || pm.Visitors[0] != testVisitor {
		t.Errorf("person member: got %+v %v", pm, err)
	}
	mk0 := erasure{at: 1769817600000, partition: 3, offset: 1 << 40}
	if got, err := decodeErased(appendErased(nil, mk0)); err != nil || got != mk0 {
		t.Errorf("erasure mark: got %+v %v; want %+v", got, err, mk0)
	}
	// A version 1 erasure mark (before offsets) reads as one of no offset.
	if got, err := decodeErased(codec.AppendVarint([]byte{1}, 5)); err != nil || got != (erasure{at: 5}) {
		t.Errorf("version 1 erasure mark: got %+v %v; want at 5, no offset", got, err)
	}
	// A version 1 definition (before per) reads as per visitor.
	v1 := appendDef(nil, &Definition{Source: "identified", Gen: 1, Per: PerPerson})
	v1[0] = 1
	if err := decodeDef(&d2, v1[:len(v1)-1]); err != nil || d2.Per != PerVisitor || d2.Source != "identified" {
		t.Errorf("version 1 definition: got %+v %v; want per visitor", d2, err)
	}
	var mk mark
	if err := parseMarkKey(&mk, appendPersonMark(nil, 9, "shop", markDue, "c:C7")); err != nil || mk.at != 9 || mk.site != "shop" || mk.kind != markDue || mk.person != "c:C7" {
		t.Errorf("due mark: got %+v %v", mk, err)
	}
	if err := parseMarkKey(&mk, appendHandedMark(nil, "shop", whyCheck, "linked", "c:C7")); err != nil || mk.at != 0 || mk.kind != markHanded || mk.why != whyCheck || mk.gone != "linked" || mk.person != "c:C7" {
		t.Errorf("handed mark: got %+v %v", mk, err)
	}
	for _, bad := range []string{"x:C7", ""} {
		if err := parseMarkKey(&mk, appendHandedMark(nil, "shop", "event", "linked", bad)); err == nil {
			t.Errorf("handed mark of person key %q decoded", bad)
		}
	}
	if err := parseMarkKey(&mk, appendHandedMark(nil, "shop", "because", "linked", "c:C7")); err == nil {
		t.Errorf("handed mark of why %q decoded", "because")
	}
	due, site, v, err := parseDueKey(appendDueKey(nil, 42, "shop", testVisitor))
	if due != 42 || site != "shop" || v != testVisitor || err != nil {
		t.Errorf("due key: got %d %q %s %v", due, site, v, err)
	}
	for _, sm := range samples() {
		if err := sm.decode(sm.val); err != nil {
			t.Errorf("%s: %v\n%s", sm.name, err, hex.Dump(sm.val))
		}
		for n := range len(sm.val) {
			if sm.decode(sm.val[:n]) == nil {
				t.Errorf("%s truncated to %d bytes decoded without error:\n%s", sm.name, n, hex.Dump(sm.val[:n]))
				break
			}
		}
		if sm.decode(append(sm.val[:len(sm.val):len(sm.val)], 0)) == nil {
			t.Errorf("%s with a trailing byte decoded without error", sm.name)
		}
	}
}

// FuzzDecodeValues: stored values are read back after crashes and
// upgrades; no input may panic a decoder, and what decodes re-encodes to
// something that decodes the same.
func FuzzDecodeValues(f *testing.F) {
	for _, sm := range samples() {
		f.Add(sm.val)
		f.Add(sm.val[:len(sm.val)/2])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var d Definition
		if decodeDef(&d, data) == nil {
			var d2 Definition
			if err := decodeDef(&d2, appendDef(nil, &d)); err != nil || d2 != d {
				t.Fatalf("definition does not round-trip: %+v / %+v %v", d, d2, err)
			}
		}
		var st vstate
		if decodeVState(&st, data) == nil {
			var st2 vstate
			if err := decodeVState(&st2, appendVState(nil, &st)); err != nil || !reflect.DeepEqual(st, st2) {
				t.Fatalf("visitor state does not round-trip: %+v / %+v %v", st, st2, err)
			}
		}
		var c Change
		if decodeOutbox(&c, data) == nil {
			var c2 Change
			if err := decodeOutbox(&c2, appendOutbox(nil, &c)); err != nil || c2 != c {
				t.Fatalf("change does not round-trip: %+v / %+v %v", c, c2, err)
			}
		}
		_ = decodeRecord(&c, data)
		_, _, _ = decodeMemberValue(data)
		_, _, _ = decodeHook(data)
		if n, parts, err := decodeSizeValue(data, nil); err == nil {
			if n2, parts2, err := decodeSizeValue(appendSizeValue(nil, n, parts), nil); err != nil || n2 != n || fmt.Sprint(parts2) != fmt.Sprint(parts) || (parts == nil) != (parts2 == nil) {
				t.Fatalf("size does not round-trip: %d %v / %d %v %v", n, parts, n2, parts2, err)
			}
		}
		_, _, _, _ = parseDueKey(data)
		if m, err := decodeErased(data); err == nil && data[0] == erasedVersion {
			if m2, err := decodeErased(appendErased(nil, m)); err != nil || m2 != m {
				t.Fatalf("erasure mark does not round-trip: %+v / %+v %v", m, m2, err)
			}
		}
	})
}

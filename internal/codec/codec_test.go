package codec

import (
	"bytes"
	"encoding/hex"
	"math"
	"strings"
	"testing"
)

// value is one of each primitive, in the order appendValue writes them.
type value struct {
	u     uint64
	v     int64
	f     float64
	s     string
	b     byte
	fixed [4]byte
}

func appendValue(dst []byte, x *value) []byte {
	dst = AppendUvarint(dst, x.u)
	dst = AppendVarint(dst, x.v)
	dst = AppendFloat64(dst, x.f)
	dst = AppendString(dst, x.s)
	dst = append(dst, x.b)
	return append(dst, x.fixed[:]...)
}

func readValue(r *Reader) (x value) {
	x.u = r.Uvarint()
	x.v = r.Varint()
	x.f = r.Float64()
	x.s = r.String()
	x.b = r.Byte()
	copy(x.fixed[:], r.Fixed("fixed", 4))
	return x
}

func TestRoundTrip(t *testing.T) {
	for _, x := range []value{
		{},
		{u: 1, v: -1, f: 1.5, s: "a", b: 1, fixed: [4]byte{1, 2, 3, 4}},
		{u: math.MaxUint64, v: math.MinInt64, f: math.Inf(-1), s: strings.Repeat("é", 100), b: 0xff},
		{u: 127, v: math.MaxInt64, f: math.NaN(), s: "\x00"},
		{u: 128, v: 64, f: math.Copysign(0, -1)},
	} {
		data := appendValue(nil, &x)
		r := NewReader("value", data, 0)
		got := readValue(&r)
		same := got.u == x.u && got.v == x.v && math.Float64bits(got.f) == math.Float64bits(x.f) &&
			got.s == x.s && got.b == x.b && got.fixed == x.fixed
		if r.Err() != nil || r.Left() != 0 || !same {
			t.Fatalf("got %+v, %v, %d left; want %+v\n%s", got, r.Err(), r.Left(), x, hex.Dump(data))
		}
		for n := range len(data) {
			r := NewReader("value", data[:n], 0)
			readValue(&r)
			if r.Err() == nil {
				t.Fatalf("%d of %d bytes read without error\n%s", n, len(data), hex.Dump(data))
			}
		}
	}
}

// The bytes of each primitive are pinned: every stored format is built of
// them (the owners' FORMAT.md).
func TestEncoding(t *testing.T) {
	f := func(got []byte, want string) {
		t.Helper()
		if hex.EncodeToString(got) != want {
			t.Fatalf("got %x; want %s", got, want)
		}
	}
	f(AppendUvarint(nil, 300), "ac02")
	f(AppendVarint(nil, -1), "01")
	f(AppendVarint(nil, 1), "02")
	f(AppendFloat64(nil, 1), "000000000000f03f")
	f(AppendString(nil, "ab"), "026162")
	f(AppendString(nil, ""), "00")
	f(AppendStrings(nil, [][]byte{[]byte("ab"), nil}), "0202616200")
	f(AppendStrings(nil, nil), "00")
}

func TestErrors(t *testing.T) {
	f := func(name string, data []byte, read func(r *Reader), want string) {
		t.Helper()
		r := NewReader("thing", data, 2)
		read(&r)
		if r.Err() == nil || r.Err().Error() != want {
			t.Fatalf("%s: got error %v; want %s", name, r.Err(), want)
		}
	}
	f("byte", nil, func(r *Reader) { r.Byte() }, "cannot decode thing at byte 2: truncated byte: 1 bytes needed, 0 left")
	f("varint", []byte{0x80}, func(r *Reader) { r.Uvarint() }, "cannot decode thing at byte 2: truncated varint")
	f("overflow", bytes.Repeat([]byte{0xff}, 11), func(r *Reader) { r.Uvarint() }, "cannot decode thing at byte 2: varint overflows 64 bits")
	f("non-minimal", []byte{0x80, 0}, func(r *Reader) { r.Varint() }, "cannot decode thing at byte 2: non-minimal varint")
	f("count", []byte{3, 0, 0}, func(r *Reader) { r.Count(1) }, "cannot decode thing at byte 3: count 3 cannot fit in the 2 bytes left")
	f("string", []byte{5, 'a'}, func(r *Reader) { _ = r.String() }, "cannot decode thing at byte 3: truncated string: 5 bytes needed, 1 left")
	f("float", []byte{1, 2}, func(r *Reader) { r.Float64() }, "cannot decode thing at byte 2: truncated float: 8 bytes needed, 2 left")
	f("item", []byte{0x80}, func(r *Reader) { r.Item("id", -1); r.Uvarint() }, "cannot decode thing at byte 2: id: truncated varint")
	f("index", []byte{0x80}, func(r *Reader) { r.Item("events", 3); r.Uvarint() }, "cannot decode thing at byte 2: events[3]: truncated varint")
	f("sticky", []byte{0x80}, func(r *Reader) { r.Uvarint(); r.Failf("later %d", 1) }, "cannot decode thing at byte 2: truncated varint")
	f("failf", []byte{1}, func(r *Reader) { r.Byte(); r.Failf("bad %q", "x") }, `cannot decode thing at byte 3: bad "x"`)
}

func TestReadAllocs(t *testing.T) {
	data := appendValue(nil, &value{u: 1 << 40, v: -5, f: 2.5, s: "hello", b: 7})
	if n := testing.AllocsPerRun(100, func() {
		r := NewReader("value", data, 0)
		readValue(&r)
		if r.Err() != nil {
			t.Fatal(r.Err())
		}
	}); n != 0 {
		t.Fatalf("got %v allocs per read; want 0", n)
	}
}

// FuzzReader reads arbitrary bytes as a value: no input panics, and what
// reads without error re-encodes to the same bytes (only canonical
// encodings are accepted).
func FuzzReader(f *testing.F) {
	f.Add(appendValue(nil, &value{u: 300, v: -2, f: 1, s: "abc", b: 9, fixed: [4]byte{1, 2, 3, 4}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader("value", data, 0)
		x := readValue(&r)
		if r.Err() != nil {
			return
		}
		if again := appendValue(nil, &x); !bytes.Equal(again, data[:r.Off()]) {
			t.Fatalf("re-encoding differs:\n%s\nwant\n%s", hex.Dump(again), hex.Dump(data[:r.Off()]))
		}
	})
}

func TestVersionEnd(t *testing.T) {
	f := func(in []byte, want string) {
		t.Helper()
		r := NewReader("value", in, 0)
		r.Version(1)
		r.Byte()
		got := ""
		if err := r.End(); err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, want) || (want == "") != (got == "") {
			t.Fatalf("%x: got error %q; want one containing %q", in, got, want)
		}
	}
	f([]byte{1, 7}, "")
	f([]byte{2, 7}, "version 2; this build reads 1")
	f([]byte{1, 7, 9}, "1 trailing bytes")
}

func TestIsBase64URL(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{"", true},
		{"AZaz09-_", true},
		{"AX00\n00", false},
		{"AX00\r00", false},
		{"AX00=", false},
		{"a+b/", false},
		{"é", false},
	} {
		if got := IsBase64URL(tc.s); got != tc.want {
			t.Errorf("IsBase64URL(%q) = %v; want %v", tc.s, got, tc.want)
		}
		if got := IsBase64URL([]byte(tc.s)); got != tc.want {
			t.Errorf("IsBase64URL([]byte(%q)) = %v; want %v", tc.s, got, tc.want)
		}
	}
}

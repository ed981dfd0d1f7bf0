package codec

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"
)

// AppendUvarint appends x as a minimal unsigned varint.
func AppendUvarint(dst []byte, x uint64) []byte { return binary.AppendUvarint(dst, x) }

// AppendVarint appends x as a zigzag varint.
func AppendVarint(dst []byte, x int64) []byte { return binary.AppendVarint(dst, x) }

// AppendFloat64 appends the IEEE 754 bits of f, little-endian.
func AppendFloat64(dst []byte, f float64) []byte {
	return binary.LittleEndian.AppendUint64(dst, math.Float64bits(f))
}

// AppendString appends s prefixed by its length as a uvarint.
func AppendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// AppendStrings appends the count of vals as a uvarint, then each as
// AppendString does.
func AppendStrings(dst []byte, vals [][]byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(vals)))
	for _, v := range vals {
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	return dst
}

// Reader reads the primitives Append* write from a buffer, with a sticky
// error: once a read fails the following ones return zero values, so a
// decoder reads a whole value and checks Err once. Errors read
// "cannot decode <name> at byte <n>: [<item>: ]<what is wrong>".
//
// Only canonical encodings are accepted (minimal varints), so a value that
// decodes re-encodes to the same bytes.
type Reader struct {
	buf  []byte
	off  int
	err  error
	name string // what is decoded, for errors
	base int    // the offset of buf in the value, for errors

	item  string // the part being read, for errors; "" when none
	index int    // item's index; < 0 when item is not a list element
}

// NewReader returns a Reader of buf. name says what buf holds ("event
// record"); base is the offset of buf[0] in the value, for errors.
func NewReader(name string, buf []byte, base int) Reader {
	return Reader{buf: buf, name: name, base: base, index: -1}
}

// Err returns the first error, or nil.
func (r *Reader) Err() error { return r.err }

// Off returns the offset of the next byte to read in buf.
func (r *Reader) Off() int { return r.off }

// Left returns the number of bytes not yet read.
func (r *Reader) Left() int { return len(r.buf) - r.off }

// Rest returns the bytes not yet read, aliasing buf.
func (r *Reader) Rest() []byte { return r.buf[r.off:] }

// Item names the part being read in later errors: "item: " or, with
// index ≥ 0, "item[index]: ". Item("", -1) names none.
func (r *Reader) Item(item string, index int) { r.item, r.index = item, index }

// Fail sets the error, unless one is set, for what is wrong at the current
// offset.
func (r *Reader) Fail(msg string) { r.FailAt(r.off, msg) }

// Failf is Fail with a format.
func (r *Reader) Failf(format string, args ...any) {
	if r.err == nil {
		r.FailAt(r.off, fmt.Sprintf(format, args...))
	}
}

// FailAt is Fail for what is wrong at offset off of buf.
func (r *Reader) FailAt(off int, msg string) {
	if r.err != nil {
		return
	}
	switch {
	case r.item == "":
		r.err = fmt.Errorf("cannot decode %s at byte %d: %s", r.name, r.base+off, msg)
	case r.index < 0:
		r.err = fmt.Errorf("cannot decode %s at byte %d: %s: %s", r.name, r.base+off, r.item, msg)
	default:
		r.err = fmt.Errorf("cannot decode %s at byte %d: %s[%d]: %s", r.name, r.base+off, r.item, r.index, msg)
	}
}

func (r *Reader) truncated(what string, n int) {
	r.Failf("truncated %s: %d bytes needed, %d left", what, n, r.Left())
}

// Version reads a value's version byte, failing r unless it is want.
func (r *Reader) Version(want byte) {
	if v := r.Byte(); r.err == nil && v != want {
		r.FailAt(r.off-1, fmt.Sprintf("version %d; this build reads %d", v, want))
	}
}

// End returns the error of r, failing it first unless every byte was read.
func (r *Reader) End() error {
	if r.err == nil && r.Left() != 0 {
		r.Failf("%d trailing bytes", r.Left())
	}
	return r.err
}

// Byte reads one byte.
func (r *Reader) Byte() byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.buf) {
		r.truncated("byte", 1)
		return 0
	}
	r.off++
	return r.buf[r.off-1]
}

// Uvarint reads a minimal unsigned varint.
func (r *Reader) Uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	x, n := binary.Uvarint(r.buf[r.off:])
	switch {
	case n == 0:
		r.Fail("truncated varint")
		return 0
	case n < 0:
		r.Fail("varint overflows 64 bits")
		return 0
	case n > 1 && r.buf[r.off+n-1] == 0:
		r.Fail("non-minimal varint")
		return 0
	}
	r.off += n
	return x
}

// Varint reads a minimal zigzag varint.
func (r *Reader) Varint() int64 {
	x := r.Uvarint()
	return int64(x>>1) ^ -int64(x&1)
}

// Count reads a count of things each at least minLen ≥ 1 bytes long,
// refusing one the bytes left cannot hold before the caller allocates.
func (r *Reader) Count(minLen int) int {
	n := r.Uvarint()
	if left := uint64(r.Left()); n > left/uint64(minLen) {
		r.Failf("count %d cannot fit in the %d bytes left", n, left)
		return 0
	}
	return int(n)
}

// Fixed reads n bytes, aliasing buf; what names them in errors ("UUID").
func (r *Reader) Fixed(what string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if r.Left() < n {
		r.truncated(what, n)
		return nil
	}
	r.off += n
	return r.buf[r.off-n : r.off : r.off]
}

// Float64 reads little-endian IEEE 754 bits, any of them: the caller
// checks the range its format allows.
func (r *Reader) Float64() float64 {
	b := r.Fixed("float", 8)
	if b == nil {
		return 0
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(b))
}

// Bytes reads a length-prefixed byte string, aliasing buf.
func (r *Reader) Bytes() []byte {
	n := r.Uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(r.Left()) {
		r.truncated("string", int(min(n, math.MaxInt32)))
		return nil
	}
	r.off += int(n)
	return r.buf[r.off-int(n) : r.off : r.off]
}

// String reads a length-prefixed string viewing buf, without copying: it
// is valid while buf is not written.
func (r *Reader) String() string {
	b := r.Bytes()
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// IsBase64URL reports whether s is made of base64url characters only
// (A–Z, a–z, 0–9, '-', '_'; no padding). Go's base64 decoders skip CR
// and LF, so a decoder of an opaque id (a cursor, a token) checks this
// first: then the id has exactly one spelling.
func IsBase64URL[T ~string | ~[]byte](s T) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

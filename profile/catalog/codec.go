package catalog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unsafe"
)

// ProductVersion is the version of the stored product format AppendProduct
// writes and DecodeProduct reads (FORMAT.md).
const ProductVersion = 1

// ErrUnsupportedVersion is wrapped by DecodeProduct's error for a value of a
// version this build cannot read.
var ErrUnsupportedVersion = errors.New("unsupported catalog product version")

// Presence bits of a stored product's optional fields, in the order the
// fields follow.
const (
	fBrand = 1 << iota
	fCategory
	fAge
	fPrice
	fAttrs
	fAll = 1<<iota - 1
)

// AppendProduct appends the stored form of p (FORMAT.md) to dst and returns
// the extended buffer. It does not allocate when dst has room.
func AppendProduct(dst []byte, p *Product) []byte {
	var flags byte
	if p.Brand != "" {
		flags |= fBrand
	}
	if p.Category != "" {
		flags |= fCategory
	}
	if p.Age != "" {
		flags |= fAge
	}
	if p.HasPrice {
		flags |= fPrice
	}
	if len(p.Attrs) > 0 {
		flags |= fAttrs
	}
	dst = append(dst, ProductVersion, flags)
	dst = appendString(dst, p.ID)
	if flags&fBrand != 0 {
		dst = appendString(dst, p.Brand)
	}
	if flags&fCategory != 0 {
		dst = appendString(dst, p.Category)
	}
	if flags&fAge != 0 {
		dst = appendString(dst, p.Age)
	}
	if flags&fPrice != 0 {
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(p.Price))
	}
	if flags&fAttrs != 0 {
		dst = binary.AppendUvarint(dst, uint64(len(p.Attrs)))
		for _, a := range p.Attrs {
			dst = appendString(dst, a.Key)
			dst = appendString(dst, a.Value)
		}
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// DecodeProduct decodes a value written by AppendProduct into p.
//
// data is copied once and p's strings view that copy, so data may be reused
// (a Badger value outside its transaction) as soon as DecodeProduct returns.
// p.Attrs reuses its capacity. A value of another version gives an error
// wrapping ErrUnsupportedVersion; a truncated or malformed one a descriptive
// error, and p must not be used.
func DecodeProduct(p *Product, data []byte) error {
	p.Reset()
	if len(data) < 2 {
		return fmt.Errorf("cannot decode catalog product: %d bytes; want at least 2", len(data))
	}
	if data[0] != ProductVersion {
		return fmt.Errorf("cannot decode catalog product: %w %d; this build reads version %d",
			ErrUnsupportedVersion, data[0], ProductVersion)
	}
	flags := data[1]
	if flags&^fAll != 0 {
		return fmt.Errorf("cannot decode catalog product: unknown flags %#02x", flags)
	}
	buf := make([]byte, len(data)-2)
	copy(buf, data[2:])
	r := reader{buf: buf}
	p.ID = r.str("id")
	if flags&fBrand != 0 {
		p.Brand = r.str("brand")
	}
	if flags&fCategory != 0 {
		p.Category = r.str("category")
	}
	if flags&fAge != 0 {
		p.Age = r.str("age")
	}
	if flags&fPrice != 0 {
		if len(r.buf)-r.off < 8 {
			r.fail("price truncated")
		} else {
			p.Price = math.Float64frombits(binary.LittleEndian.Uint64(r.buf[r.off:]))
			p.HasPrice = true
			if !(p.Price >= 0) || math.IsInf(p.Price, 0) {
				r.fail(fmt.Sprintf("price %g is not a finite number ≥ 0", p.Price))
			}
			r.off += 8
		}
	}
	if flags&fAttrs != 0 {
		n := r.uvarint("attrs count")
		// An attribute takes at least 2 bytes: refuse counts the rest of
		// the value cannot hold before allocating for them.
		if r.err == nil && (n == 0 || n > uint64(len(r.buf)-r.off)/2) {
			r.fail(fmt.Sprintf("attrs count %d for %d bytes left", n, len(r.buf)-r.off))
		}
		for i := 0; i < int(n) && r.err == nil; i++ {
			k := r.str("attr key")
			v := r.str("attr value")
			p.Attrs = append(p.Attrs, Attr{Key: k, Value: v})
		}
	}
	if r.err == nil && r.off != len(r.buf) {
		r.fail(fmt.Sprintf("%d bytes after the product", len(r.buf)-r.off))
	}
	return r.err
}

// reader reads a stored product with a sticky error.
type reader struct {
	buf []byte
	off int
	err error
}

func (r *reader) fail(msg string) {
	if r.err == nil {
		r.err = fmt.Errorf("cannot decode catalog product at byte %d: %s", r.off+2, msg)
	}
}

func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.buf[r.off:])
	if n <= 0 {
		r.fail("bad " + what + " varint")
		return 0
	}
	r.off += n
	return v
}

func (r *reader) str(what string) string {
	n := r.uvarint(what + " length")
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.buf)-r.off) {
		r.fail(fmt.Sprintf("%s of %d bytes with %d left", what, n, len(r.buf)-r.off))
		return ""
	}
	if n == 0 {
		return ""
	}
	s := unsafe.String(&r.buf[r.off], int(n)) // buf is DecodeProduct's own copy, never written again
	r.off += int(n)
	return s
}

package catalog

import (
	"errors"
	"fmt"
	"math"

	"github.com/affinityhq/affinity/internal/codec"
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
	dst = codec.AppendString(dst, p.ID)
	if flags&fBrand != 0 {
		dst = codec.AppendString(dst, p.Brand)
	}
	if flags&fCategory != 0 {
		dst = codec.AppendString(dst, p.Category)
	}
	if flags&fAge != 0 {
		dst = codec.AppendString(dst, p.Age)
	}
	if flags&fPrice != 0 {
		dst = codec.AppendFloat64(dst, p.Price)
	}
	if flags&fAttrs != 0 {
		dst = codec.AppendUvarint(dst, uint64(len(p.Attrs)))
		for _, a := range p.Attrs {
			dst = codec.AppendString(dst, a.Key)
			dst = codec.AppendString(dst, a.Value)
		}
	}
	return dst
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
	buf := make([]byte, len(data)-2) // p's strings view it; never written again
	copy(buf, data[2:])
	r := codec.NewReader("catalog product", buf, 2)
	p.ID = field(&r, "id")
	if flags&fBrand != 0 {
		p.Brand = field(&r, "brand")
	}
	if flags&fCategory != 0 {
		p.Category = field(&r, "category")
	}
	if flags&fAge != 0 {
		p.Age = field(&r, "age")
	}
	if flags&fPrice != 0 {
		r.Item("price", -1)
		at := r.Off()
		p.Price = r.Float64()
		p.HasPrice = true
		if r.Err() == nil && (!(p.Price >= 0) || math.IsInf(p.Price, 0)) {
			r.FailAt(at, fmt.Sprintf("price %g is not a finite number ≥ 0", p.Price))
		}
	}
	if flags&fAttrs != 0 {
		r.Item("", -1)
		n := r.Uvarint()
		// An attribute takes at least 2 bytes: refuse counts the rest of
		// the value cannot hold before allocating for them.
		if r.Err() == nil && (n == 0 || n > uint64(r.Left())/2) {
			r.Failf("attrs count %d for %d bytes left", n, r.Left())
		}
		for i := 0; i < int(n) && r.Err() == nil; i++ {
			k := field(&r, "attr key")
			v := field(&r, "attr value")
			p.Attrs = append(p.Attrs, Attr{Key: k, Value: v})
		}
	}
	if r.Err() == nil && r.Left() != 0 {
		r.Item("", -1)
		r.Failf("%d bytes after the product", r.Left())
	}
	return r.Err()
}

// field reads the string named what.
func field(r *codec.Reader, what string) string {
	r.Item(what, -1)
	return r.String()
}

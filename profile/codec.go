package profile

import (
	"bytes"
	"fmt"
	"math"

	"github.com/affinityhq/affinity/internal/codec"
	"github.com/affinityhq/affinity/tracker/event"
)

// FormatVersion is the first byte of an encoded profile (FORMAT.md).
const FormatVersion = 1

// AppendProfile appends the binary form of p (FORMAT.md) to dst.
func AppendProfile(dst []byte, p *Profile) []byte {
	dst = append(dst, FormatVersion)
	dst = codec.AppendVarint(dst, p.FirstSeen)
	dst = codec.AppendVarint(dst, p.LastSeen)
	dst = codec.AppendVarint(dst, p.LastRecv)
	dst = codec.AppendString(dst, p.Email)
	dst = codec.AppendVarint(dst, p.EmailTS)
	dst = codec.AppendString(dst, p.Customer)
	dst = codec.AppendVarint(dst, p.CustomerTS)

	dst = codec.AppendUvarint(dst, NumDims)
	for d := range p.Dims {
		es := p.Dims[d]
		dst = codec.AppendUvarint(dst, uint64(len(es)))
		for i := range es {
			e := &es[i]
			dst = codec.AppendString(dst, e.Value)
			var flags byte
			if e.LogP > NegInf {
				flags |= 1
			}
			if e.LogN > NegInf {
				flags |= 2
			}
			dst = append(dst, flags)
			if flags&1 != 0 {
				dst = codec.AppendFloat64(dst, e.LogP)
			}
			if flags&2 != 0 {
				dst = codec.AppendFloat64(dst, e.LogN)
			}
		}
	}

	dst = codec.AppendUvarint(dst, event.NumTypes)
	for t := range p.Events {
		s := &p.Events[t]
		dst = codec.AppendUvarint(dst, s.Count)
		if s.Count == 0 {
			continue
		}
		dst = codec.AppendVarint(dst, s.First)
		dst = codec.AppendUvarint(dst, uint64(s.Last-s.First))
		dst = codec.AppendUvarint(dst, uint64(len(s.Recent)))
		prev := s.Last
		for _, r := range s.Recent {
			dst = codec.AppendUvarint(dst, uint64(prev-r))
			prev = r
		}
	}

	dst = codec.AppendUvarint(dst, uint64(len(p.Traits)))
	for i := range p.Traits {
		tr := &p.Traits[i]
		dst = codec.AppendString(dst, tr.Key)
		dst = codec.AppendString(dst, tr.Value)
		dst = append(dst, byte(tr.Kind))
		dst = codec.AppendVarint(dst, tr.TS)
	}

	dst = codec.AppendUvarint(dst, uint64(len(p.Cart)))
	for i := range p.Cart {
		c := &p.Cart[i]
		dst = codec.AppendString(dst, c.ID)
		dst = codec.AppendUvarint(dst, uint64(c.Qty))
		dst = codec.AppendVarint(dst, c.Added)
		dst = codec.AppendVarint(dst, c.Removed)
	}

	o := &p.Orders
	dst = codec.AppendUvarint(dst, o.Count)
	if o.Count > 0 {
		dst = codec.AppendFloat64(dst, o.Revenue)
		dst = codec.AppendVarint(dst, o.First)
		dst = codec.AppendUvarint(dst, uint64(o.Last-o.First))
	}
	return dst
}

// DecodeProfile decodes data made by AppendProfile into p, reusing p's
// slices. It never panics: data that is not a valid profile (truncated,
// out of bounds, unsorted, a newer version) gives an error naming what is
// wrong and where, and leaves p Reset.
//
// p does not keep data: it copies the bytes it needs (in one allocation).
func DecodeProfile(p *Profile, data []byte) error {
	p.Reset()
	if err := decodeProfile(p, data); err != nil {
		p.Reset()
		return err
	}
	return nil
}

// decoder reads an encoded profile: the codec reader with every read named
// in errors, and the checks of the format.
type decoder struct {
	codec.Reader
}

// newDecoder returns a decoder of data, whose version byte checkVersion
// accepted; the strings it reads view data.
func newDecoder(data []byte) decoder {
	d := decoder{codec.NewReader("profile", data, 0)}
	d.Byte()
	return d
}

// fail fails for what is wrong at offset at.
func (d *decoder) fail(at int, format string, args ...any) {
	if d.Err() == nil {
		d.Item("", -1)
		d.FailAt(at, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) uvarint(what string) uint64 {
	d.Item(what, -1)
	return d.Uvarint()
}

func (d *decoder) varint(what string) int64 {
	d.Item(what, -1)
	return d.Varint()
}

// count reads a length bounded by limit.
func (d *decoder) count(what string, limit int) int {
	at := d.Off()
	n := d.uvarint(what)
	if n > uint64(limit) {
		d.fail(at, "%s: %d exceeds the limit %d", what, n, limit)
		return 0
	}
	return int(n)
}

// str reads a string of at most limit bytes.
func (d *decoder) str(what string, limit int) string {
	at := d.Off()
	d.Item(what, -1)
	s := d.String()
	if len(s) > limit {
		d.fail(at, "%s: %d bytes exceed the limit %d", what, len(s), limit)
		return ""
	}
	return s
}

func (d *decoder) byte(what string) byte {
	d.Item(what, -1)
	return d.Byte()
}

// float reads a finite float.
func (d *decoder) float(what string) float64 {
	at := d.Off()
	d.Item(what, -1)
	f := d.Float64()
	if math.IsNaN(f) || math.IsInf(f, 0) {
		d.fail(at, "%s: %v is not finite", what, f)
		return 0
	}
	return f
}

// span reads a non-negative delta added to base.
func (d *decoder) span(what string, base int64) int64 {
	at := d.Off()
	u := d.uvarint(what)
	x := base + int64(u)
	if u > math.MaxInt64 || x < base {
		d.fail(at, "%s: %d overflows", what, u)
		return base
	}
	return x
}

// skip steps over n bytes.
func (d *decoder) skip(what string, n int) { d.Fixed(what, n) }

func decodeProfile(p *Profile, data []byte) error {
	if err := checkVersion(data); err != nil {
		return err
	}
	d := newDecoder(bytes.Clone(data)) // p's strings view the copy
	return d.partial(p, PartAll)
}

// checkVersion checks the first byte of an encoded profile.
func checkVersion(data []byte) error {
	if len(data) == 0 {
		return fmt.Errorf("cannot decode profile: empty data")
	}
	if data[0] != FormatVersion {
		return fmt.Errorf("cannot decode profile: version %d; this build reads %d", data[0], FormatVersion)
	}
	return nil
}

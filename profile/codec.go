package profile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/affinityhq/affinity/tracker/event"
)

// FormatVersion is the first byte of an encoded profile (FORMAT.md).
const FormatVersion = 1

// AppendProfile appends the binary form of p (FORMAT.md) to dst.
func AppendProfile(dst []byte, p *Profile) []byte {
	dst = append(dst, FormatVersion)
	dst = binary.AppendVarint(dst, p.FirstSeen)
	dst = binary.AppendVarint(dst, p.LastSeen)
	dst = binary.AppendVarint(dst, p.LastRecv)
	dst = appendString(dst, p.Email)
	dst = binary.AppendVarint(dst, p.EmailTS)
	dst = appendString(dst, p.Customer)
	dst = binary.AppendVarint(dst, p.CustomerTS)

	dst = binary.AppendUvarint(dst, NumDims)
	for d := range p.Dims {
		es := p.Dims[d]
		dst = binary.AppendUvarint(dst, uint64(len(es)))
		for i := range es {
			e := &es[i]
			dst = appendString(dst, e.Value)
			var flags byte
			if e.LogP > NegInf {
				flags |= 1
			}
			if e.LogN > NegInf {
				flags |= 2
			}
			dst = append(dst, flags)
			if flags&1 != 0 {
				dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(e.LogP))
			}
			if flags&2 != 0 {
				dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(e.LogN))
			}
		}
	}

	dst = binary.AppendUvarint(dst, event.NumTypes)
	for t := range p.Events {
		s := &p.Events[t]
		dst = binary.AppendUvarint(dst, s.Count)
		if s.Count == 0 {
			continue
		}
		dst = binary.AppendVarint(dst, s.First)
		dst = binary.AppendUvarint(dst, uint64(s.Last-s.First))
		dst = binary.AppendUvarint(dst, uint64(len(s.Recent)))
		prev := s.Last
		for _, r := range s.Recent {
			dst = binary.AppendUvarint(dst, uint64(prev-r))
			prev = r
		}
	}

	dst = binary.AppendUvarint(dst, uint64(len(p.Traits)))
	for i := range p.Traits {
		tr := &p.Traits[i]
		dst = appendString(dst, tr.Key)
		dst = appendString(dst, tr.Value)
		dst = append(dst, byte(tr.Kind))
		dst = binary.AppendVarint(dst, tr.TS)
	}

	dst = binary.AppendUvarint(dst, uint64(len(p.Cart)))
	for i := range p.Cart {
		c := &p.Cart[i]
		dst = appendString(dst, c.ID)
		dst = binary.AppendUvarint(dst, uint64(c.Qty))
		dst = binary.AppendVarint(dst, c.Added)
		dst = binary.AppendVarint(dst, c.Removed)
	}

	o := &p.Orders
	dst = binary.AppendUvarint(dst, o.Count)
	if o.Count > 0 {
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(o.Revenue))
		dst = binary.AppendVarint(dst, o.First)
		dst = binary.AppendUvarint(dst, uint64(o.Last-o.First))
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
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

var errShort = errors.New("unexpected end of data")

type decoder struct {
	s   string
	off int
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("cannot decode profile: "+format, args...)
	}
}

func (d *decoder) uvarint(what string) uint64 {
	var x uint64
	at := d.off
	for shift := uint(0); d.err == nil; shift += 7 {
		if d.off >= len(d.s) {
			d.fail("%s at offset %d: %w", what, at, errShort)
			break
		}
		b := d.s[d.off]
		d.off++
		if shift == 63 && b > 1 {
			d.fail("%s at offset %d: varint overflows 64 bits", what, at)
			break
		}
		x |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return x
		}
	}
	return 0
}

func (d *decoder) varint(what string) int64 {
	u := d.uvarint(what)
	return int64(u>>1) ^ -int64(u&1)
}

// count reads a length bounded by limit.
func (d *decoder) count(what string, limit int) int {
	at := d.off
	n := d.uvarint(what)
	if n > uint64(limit) {
		d.fail("%s at offset %d: %d exceeds the limit %d", what, at, n, limit)
		return 0
	}
	return int(n)
}

func (d *decoder) str(what string, limit int) string {
	n := d.count(what, limit)
	if d.err != nil {
		return ""
	}
	if len(d.s)-d.off < n {
		d.fail("%s at offset %d: %w", what, d.off, errShort)
		return ""
	}
	s := d.s[d.off : d.off+n]
	d.off += n
	return s
}

func (d *decoder) byte(what string) byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.s) {
		d.fail("%s at offset %d: %w", what, d.off, errShort)
		return 0
	}
	d.off++
	return d.s[d.off-1]
}

func (d *decoder) float(what string) float64 {
	if d.err != nil {
		return 0
	}
	if len(d.s)-d.off < 8 {
		d.fail("%s at offset %d: %w", what, d.off, errShort)
		return 0
	}
	at := d.off
	var b uint64
	for i := 7; i >= 0; i-- {
		b = b<<8 | uint64(d.s[d.off+i])
	}
	d.off += 8
	f := math.Float64frombits(b)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		d.fail("%s at offset %d: %v is not finite", what, at, f)
		return 0
	}
	return f
}

// span reads a non-negative delta added to base.
func (d *decoder) span(what string, base int64) int64 {
	at := d.off
	u := d.uvarint(what)
	x := base + int64(u)
	if u > math.MaxInt64 || x < base {
		d.fail("%s at offset %d: %d overflows", what, at, u)
		return base
	}
	return x
}

func decodeProfile(p *Profile, data []byte) error {
	if err := checkVersion(data); err != nil {
		return err
	}
	d := decoder{s: string(data), off: 1}
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

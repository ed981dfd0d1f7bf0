package event

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"unsafe"
)

// RecordVersion is the version of the log record format AppendBatch writes
// and DecodeRecord reads, described in FORMAT.md.
const RecordVersion = 1

// ErrUnsupportedVersion is wrapped by the error of DecodeRecord for a record
// of a version this build cannot read (written by a newer build).
var ErrUnsupportedVersion = errors.New("unsupported event record version")

// Presence bits of an event's optional parts, in the order the parts follow.
const (
	evProduct = 1 << iota
	evOrder
	evEmail
	evCustomer
	evTraits
	evURL
	evAll = 1<<iota - 1
)

// Presence bits of a product's fields, in the order the fields follow.
const (
	prID = 1 << iota
	prBrand
	prCategory
	prAge
	prPrice
	prQty
	prAll = 1<<iota - 1
)

// Presence bits of an order's fields, in the order the fields follow.
const (
	orID = 1 << iota
	orTotal
	orItems
	orAll = 1<<iota - 1
)

// The least bytes an event, an order item and a trait take in a record:
// counts above what the remaining bytes could hold are refused before
// anything is allocated for them.
const (
	minEventLen = 16 + 1 + 1 + 1 // id, type, ts, flags
	minItemLen  = 1              // flags
	minTraitLen = 1 + 1 + 1      // kind, key length, value length
)

// AppendBatch appends the log record of b (format v1, FORMAT.md) to dst and
// returns the extended buffer. It does not allocate when dst has room.
//
// b is stored as the decoders leave it: the fields of an absent product or
// order (HasProduct, HasOrder false) and a price or total that is not
// flagged given are not stored.
func AppendBatch(dst []byte, b *Batch) []byte {
	dst = append(dst, RecordVersion)
	dst = appendString(dst, b.Site)
	dst = append(dst, b.Visitor[:]...)
	dst = binary.AppendVarint(dst, b.Recv)
	dst = binary.AppendUvarint(dst, uint64(len(b.Events)))
	for i := range b.Events {
		dst = appendEvent(dst, &b.Events[i], b.Recv)
	}
	return dst
}

func appendEvent(dst []byte, e *Event, recv int64) []byte {
	dst = append(dst, e.ID[:]...)
	dst = append(dst, byte(e.Type))
	// Wrapping arithmetic: any ts round-trips, a sane one takes 1-4 bytes.
	dst = binary.AppendVarint(dst, e.TS-recv)
	var f uint64
	if e.HasProduct {
		f |= evProduct
	}
	if e.HasOrder {
		f |= evOrder
	}
	if e.Email != "" {
		f |= evEmail
	}
	if e.Customer != "" {
		f |= evCustomer
	}
	if len(e.Traits) > 0 {
		f |= evTraits
	}
	if e.URL != "" {
		f |= evURL
	}
	dst = binary.AppendUvarint(dst, f)
	if e.HasProduct {
		dst = appendProduct(dst, &e.Product)
	}
	if e.HasOrder {
		dst = appendOrder(dst, &e.Order)
	}
	if e.Email != "" {
		dst = appendString(dst, e.Email)
	}
	if e.Customer != "" {
		dst = appendString(dst, e.Customer)
	}
	if len(e.Traits) > 0 {
		dst = binary.AppendUvarint(dst, uint64(len(e.Traits)))
		for _, t := range e.Traits {
			dst = append(dst, byte(t.Kind))
			dst = appendString(dst, t.Key)
			dst = appendString(dst, t.Value)
		}
	}
	if e.URL != "" {
		dst = appendString(dst, e.URL)
	}
	return dst
}

func appendProduct(dst []byte, p *Product) []byte {
	var f uint64
	if p.ID != "" {
		f |= prID
	}
	if p.Brand != "" {
		f |= prBrand
	}
	if p.Category != "" {
		f |= prCategory
	}
	if p.Age != "" {
		f |= prAge
	}
	if p.HasPrice {
		f |= prPrice
	}
	if p.Qty != 0 {
		f |= prQty
	}
	dst = binary.AppendUvarint(dst, f)
	if p.ID != "" {
		dst = appendString(dst, p.ID)
	}
	if p.Brand != "" {
		dst = appendString(dst, p.Brand)
	}
	if p.Category != "" {
		dst = appendString(dst, p.Category)
	}
	if p.Age != "" {
		dst = appendString(dst, p.Age)
	}
	if p.HasPrice {
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(p.Price))
	}
	if p.Qty != 0 {
		dst = binary.AppendUvarint(dst, uint64(p.Qty))
	}
	return dst
}

func appendOrder(dst []byte, o *Order) []byte {
	var f uint64
	if o.ID != "" {
		f |= orID
	}
	if o.HasTotal {
		f |= orTotal
	}
	if len(o.Items) > 0 {
		f |= orItems
	}
	dst = binary.AppendUvarint(dst, f)
	if o.ID != "" {
		dst = appendString(dst, o.ID)
	}
	if o.HasTotal {
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(o.Total))
	}
	if len(o.Items) > 0 {
		dst = binary.AppendUvarint(dst, uint64(len(o.Items)))
		for i := range o.Items {
			dst = appendProduct(dst, &o.Items[i])
		}
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// DecodeRecord decodes a log record written by AppendBatch into b.
//
// data is copied once into b.Arena and every string of b views that copy:
// data may be reused as soon as DecodeRecord returns, while b's strings stay
// valid until b is Reset. Reused with a reused Batch, DecodeRecord does not
// allocate once the Batch has grown to the largest record.
//
// Only the canonical encoding is accepted, so that a decoded record
// re-encodes to the same bytes: minimal varints, presence bits only for
// non-empty strings, items and traits, a non-zero qty. A record of another
// version gives an error wrapping ErrUnsupportedVersion; a truncated or
// otherwise malformed one a descriptive error. On error b must not be used.
// Event types and trait kinds are not checked: readers skip the ones they
// do not know.
func DecodeRecord(b *Batch, data []byte) error {
	b.Reset()
	b.Arena = append(b.Arena[:0], data...)
	r := recordReader{buf: b.Arena, ev: -1}
	if v := r.byte(); r.err == nil && v != RecordVersion {
		return fmt.Errorf("cannot decode event record: %w %d; this build reads version %d",
			ErrUnsupportedVersion, v, RecordVersion)
	}
	b.Site = r.str()
	b.Visitor = r.uuid()
	b.Recv = r.varint()
	n := r.count(minEventLen)
	if r.err != nil {
		return r.err
	}
	b.Events = slices.Grow(b.Events, n)
	for i := 0; i < n && r.err == nil; i++ {
		r.ev = i
		r.event(b.addEvent(), b.Recv)
	}
	if r.err == nil && r.off < len(r.buf) {
		r.ev = -1
		r.fail(fmt.Sprintf("%d bytes after the last event", len(r.buf)-r.off))
	}
	return r.err
}

// recordReader reads a record with a sticky error: once a read fails, the
// next ones return zero values, and the caller checks err when it must.
type recordReader struct {
	buf []byte
	off int
	ev  int // the event being read, for errors; -1 outside events
	err error
}

func (r *recordReader) fail(msg string) {
	if r.err != nil {
		return
	}
	where := ""
	if r.ev >= 0 {
		where = fmt.Sprintf("events[%d]: ", r.ev)
	}
	r.err = fmt.Errorf("cannot decode event record at byte %d: %s%s", r.off, where, msg)
}

func (r *recordReader) truncated(what string, n int) {
	r.fail(fmt.Sprintf("truncated %s: %d bytes needed, %d left", what, n, len(r.buf)-r.off))
}

func (r *recordReader) byte() byte {
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

func (r *recordReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	x, n := binary.Uvarint(r.buf[r.off:])
	switch {
	case n == 0:
		r.fail("truncated varint")
		return 0
	case n < 0:
		r.fail("varint overflows 64 bits")
		return 0
	case n > 1 && r.buf[r.off+n-1] == 0:
		r.fail("non-minimal varint")
		return 0
	}
	r.off += n
	return x
}

// varint reads a zigzag varint (binary.AppendVarint).
func (r *recordReader) varint() int64 {
	x := r.uvarint()
	return int64(x>>1) ^ -int64(x&1)
}

// flags reads a presence bitmask, refusing bits outside all: this version
// cannot know the length of a part it does not know.
func (r *recordReader) flags(all uint64) uint64 {
	f := r.uvarint()
	if f&^all != 0 {
		r.fail(fmt.Sprintf("unknown presence bits %#x", f&^all))
		return 0
	}
	return f
}

// count reads a count of things each at least minLen bytes long.
func (r *recordReader) count(minLen int) int {
	n := r.uvarint()
	if left := uint64(len(r.buf) - r.off); n > left/uint64(minLen) {
		r.fail(fmt.Sprintf("count %d cannot fit in the %d bytes left", n, left))
		return 0
	}
	return int(n)
}

func (r *recordReader) uuid() (u UUID) {
	if r.err != nil {
		return u
	}
	if len(r.buf)-r.off < len(u) {
		r.truncated("UUID", len(u))
		return u
	}
	r.off += copy(u[:], r.buf[r.off:])
	return u
}

// str reads a string, viewing r.buf.
func (r *recordReader) str() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.buf)-r.off) {
		r.truncated("string", int(min(n, math.MaxInt32)))
		return ""
	}
	if n == 0 {
		return ""
	}
	s := unsafe.String(&r.buf[r.off], int(n))
	r.off += int(n)
	return s
}

// present reads a string whose presence bit is set: it cannot be empty.
func (r *recordReader) present() string {
	s := r.str()
	if s == "" {
		r.fail("empty string with its presence bit set")
	}
	return s
}

// amount reads a price or total: finite and not negative, as the JSON
// decoder admits them.
func (r *recordReader) amount() float64 {
	if r.err != nil {
		return 0
	}
	if len(r.buf)-r.off < 8 {
		r.truncated("float", 8)
		return 0
	}
	f := math.Float64frombits(binary.LittleEndian.Uint64(r.buf[r.off:]))
	if f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		r.fail(fmt.Sprintf("amount %v is not a finite number >= 0", f))
		return 0
	}
	r.off += 8
	return f
}

func (r *recordReader) event(e *Event, recv int64) {
	e.ID = r.uuid()
	e.Type = Type(r.byte())
	e.TS = recv + r.varint()
	f := r.flags(evAll)
	if f&evProduct != 0 {
		e.HasProduct = true
		r.product(&e.Product)
	}
	if f&evOrder != 0 {
		e.HasOrder = true
		r.order(&e.Order)
	}
	if f&evEmail != 0 {
		e.Email = r.present()
	}
	if f&evCustomer != 0 {
		e.Customer = r.present()
	}
	if f&evTraits != 0 {
		n := r.count(minTraitLen)
		if n == 0 {
			r.fail("no traits with their presence bit set")
		}
		e.Traits = slices.Grow(e.Traits, n)
		for i := 0; i < n && r.err == nil; i++ {
			kind := TraitKind(r.byte())
			key := r.str()
			e.Traits = append(e.Traits, Trait{Key: key, Value: r.str(), Kind: kind})
		}
	}
	if f&evURL != 0 {
		e.URL = r.present()
	}
}

func (r *recordReader) product(p *Product) {
	f := r.flags(prAll)
	if f&prID != 0 {
		p.ID = r.present()
	}
	if f&prBrand != 0 {
		p.Brand = r.present()
	}
	if f&prCategory != 0 {
		p.Category = r.present()
	}
	if f&prAge != 0 {
		p.Age = r.present()
	}
	if f&prPrice != 0 {
		p.Price, p.HasPrice = r.amount(), true
	}
	if f&prQty != 0 {
		q := r.uvarint()
		if r.err == nil && (q == 0 || q > math.MaxUint32) {
			r.fail(fmt.Sprintf("qty %d is not in 1..4294967295", q))
		}
		p.Qty = uint32(q)
	}
}

func (r *recordReader) order(o *Order) {
	f := r.flags(orAll)
	if f&orID != 0 {
		o.ID = r.present()
	}
	if f&orTotal != 0 {
		o.Total, o.HasTotal = r.amount(), true
	}
	if f&orItems != 0 {
		n := r.count(minItemLen)
		if n == 0 {
			r.fail("no items with their presence bit set")
		}
		o.Items = slices.Grow(o.Items, n)
		for i := 0; i < n && r.err == nil; i++ {
			r.product(o.addItem())
		}
	}
}

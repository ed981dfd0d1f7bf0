package event

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/affinityhq/affinity/internal/codec"
)

// RecordVersion is the version of the log record format AppendBatch writes,
// described in FORMAT.md. DecodeRecord reads it and every older version
// (version 1 had no event name, version 2 no token, version 3 no
// campaign recipient).
const RecordVersion = 4

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
	evName     // since version 2
	evToken    // since version 3
	evCampaign // since version 4
	evAll      = 1<<iota - 1
	// evAllV3, evAllV2 and evAllV1 are the parts versions 3, 2 and 1
	// define.
	evAllV3 = evAll &^ evCampaign
	evAllV2 = evAllV3 &^ evToken
	evAllV1 = evAllV2 &^ evName
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

// AppendBatch appends the log record of b (format v4, FORMAT.md) to dst and
// returns the extended buffer. It does not allocate when dst has room.
//
// b is stored as the decoders leave it: the fields of an absent product or
// order (HasProduct, HasOrder false) and a price or total that is not
// flagged given are not stored.
func AppendBatch(dst []byte, b *Batch) []byte {
	dst = append(dst, RecordVersion)
	dst = codec.AppendString(dst, b.Site)
	dst = append(dst, b.Visitor[:]...)
	dst = codec.AppendVarint(dst, b.Recv)
	dst = codec.AppendUvarint(dst, uint64(len(b.Events)))
	for i := range b.Events {
		dst = appendEvent(dst, &b.Events[i], b.Recv)
	}
	return dst
}

func appendEvent(dst []byte, e *Event, recv int64) []byte {
	dst = append(dst, e.ID[:]...)
	dst = append(dst, byte(e.Type))
	// Wrapping arithmetic: any ts round-trips, a sane one takes 1-4 bytes.
	dst = codec.AppendVarint(dst, e.TS-recv)
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
	if e.Name != "" {
		f |= evName
	}
	if e.Token != "" {
		f |= evToken
	}
	if e.Campaign != 0 {
		f |= evCampaign
	}
	dst = codec.AppendUvarint(dst, f)
	if e.HasProduct {
		dst = appendProduct(dst, &e.Product)
	}
	if e.HasOrder {
		dst = appendOrder(dst, &e.Order)
	}
	if e.Email != "" {
		dst = codec.AppendString(dst, e.Email)
	}
	if e.Customer != "" {
		dst = codec.AppendString(dst, e.Customer)
	}
	if len(e.Traits) > 0 {
		dst = codec.AppendUvarint(dst, uint64(len(e.Traits)))
		for _, t := range e.Traits {
			dst = append(dst, byte(t.Kind))
			dst = codec.AppendString(dst, t.Key)
			dst = codec.AppendString(dst, t.Value)
		}
	}
	if e.URL != "" {
		dst = codec.AppendString(dst, e.URL)
	}
	if e.Name != "" {
		dst = codec.AppendString(dst, e.Name)
	}
	if e.Token != "" {
		dst = codec.AppendString(dst, e.Token)
	}
	if e.Campaign != 0 {
		dst = codec.AppendUvarint(codec.AppendUvarint(dst, e.Campaign), uint64(e.Recipient))
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
	dst = codec.AppendUvarint(dst, f)
	if p.ID != "" {
		dst = codec.AppendString(dst, p.ID)
	}
	if p.Brand != "" {
		dst = codec.AppendString(dst, p.Brand)
	}
	if p.Category != "" {
		dst = codec.AppendString(dst, p.Category)
	}
	if p.Age != "" {
		dst = codec.AppendString(dst, p.Age)
	}
	if p.HasPrice {
		dst = codec.AppendFloat64(dst, p.Price)
	}
	if p.Qty != 0 {
		dst = codec.AppendUvarint(dst, uint64(p.Qty))
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
	dst = codec.AppendUvarint(dst, f)
	if o.ID != "" {
		dst = codec.AppendString(dst, o.ID)
	}
	if o.HasTotal {
		dst = codec.AppendFloat64(dst, o.Total)
	}
	if len(o.Items) > 0 {
		dst = codec.AppendUvarint(dst, uint64(len(o.Items)))
		for i := range o.Items {
			dst = appendProduct(dst, &o.Items[i])
		}
	}
	return dst
}

// DecodeRecord decodes a log record written by AppendBatch into b.
//
// data is copied once into b.Arena and every string of b views that copy:
// data may be reused as soon as DecodeRecord returns, while b's strings stay
// valid until b is Reset. Reused with a reused Batch, DecodeRecord does not
// allocate once the Batch has grown to the largest record.
//
// Only the canonical encoding is accepted, so that a decoded record
// re-encodes to the same bytes (but for the version byte of a version 1,
// 2 or 3 record, which re-encodes as version 4): minimal varints, presence bits only for
// non-empty strings, items and traits, a non-zero qty. A record of another
// version gives an error wrapping ErrUnsupportedVersion; a truncated or
// otherwise malformed one a descriptive error. On error b must not be used.
// Event types and trait kinds are not checked: readers skip the ones they
// do not know.
func DecodeRecord(b *Batch, data []byte) error {
	b.Reset()
	b.Arena = append(b.Arena[:0], data...)
	r := recordReader{codec.NewReader("event record", b.Arena, 0)}
	parts := uint64(evAll)
	switch v := r.Byte(); {
	case r.Err() != nil:
	case v == 1:
		parts = evAllV1
	case v == 2:
		parts = evAllV2
	case v == 3:
		parts = evAllV3
	case v != RecordVersion:
		return fmt.Errorf("cannot decode event record: %w %d; this build reads versions 1 to %d",
			ErrUnsupportedVersion, v, RecordVersion)
	}
	b.Site = r.String()
	b.Visitor = r.uuid()
	b.Recv = r.Varint()
	n := r.Count(minEventLen)
	if r.Err() != nil {
		return r.Err()
	}
	b.Events = slices.Grow(b.Events, n)
	for i := 0; i < n && r.Err() == nil; i++ {
		r.Item("events", i)
		r.event(b.addEvent(), b.Recv, parts)
	}
	if r.Err() == nil && r.Left() > 0 {
		r.Item("", -1)
		r.Failf("%d bytes after the last event", r.Left())
	}
	return r.Err()
}

// recordReader reads the parts of a record; the strings it returns view
// the Batch's Arena.
type recordReader struct {
	codec.Reader
}

// flags reads a presence bitmask, refusing bits outside all: this version
// cannot know the length of a part it does not know.
func (r *recordReader) flags(all uint64) uint64 {
	f := r.Uvarint()
	if f&^all != 0 {
		r.Failf("unknown presence bits %#x", f&^all)
		return 0
	}
	return f
}

func (r *recordReader) uuid() (u UUID) {
	copy(u[:], r.Fixed("UUID", len(u)))
	return u
}

// present reads a string whose presence bit is set: it cannot be empty.
func (r *recordReader) present() string {
	s := r.String()
	if s == "" {
		r.Fail("empty string with its presence bit set")
	}
	return s
}

// amount reads a price or total: finite and not negative, as the JSON
// decoder admits them.
func (r *recordReader) amount() float64 {
	at := r.Off()
	f := r.Float64()
	if f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		r.FailAt(at, fmt.Sprintf("amount %v is not a finite number >= 0", f))
		return 0
	}
	return f
}

// event reads an event whose presence bits may be those of parts (the
// record's version's).
func (r *recordReader) event(e *Event, recv int64, parts uint64) {
	e.ID = r.uuid()
	e.Type = Type(r.Byte())
	e.TS = recv + r.Varint()
	f := r.flags(parts)
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
		n := r.Count(minTraitLen)
		if n == 0 {
			r.Fail("no traits with their presence bit set")
		}
		e.Traits = slices.Grow(e.Traits, n)
		for i := 0; i < n && r.Err() == nil; i++ {
			kind := TraitKind(r.Byte())
			key := r.String()
			e.Traits = append(e.Traits, Trait{Key: key, Value: r.String(), Kind: kind})
		}
	}
	if f&evURL != 0 {
		e.URL = r.present()
	}
	if f&evName != 0 {
		e.Name = r.present()
	}
	if f&evToken != 0 {
		e.Token = r.present()
	}
	if f&evCampaign != 0 {
		id, n := r.Uvarint(), r.Uvarint()
		if r.Err() == nil && (id == 0 || n > math.MaxUint32) {
			r.Failf("campaign %d or recipient %d out of range (1.., 0..4294967295)", id, n)
		}
		e.Campaign, e.Recipient = id, uint32(n)
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
		q := r.Uvarint()
		if r.Err() == nil && (q == 0 || q > math.MaxUint32) {
			r.Failf("qty %d is not in 1..4294967295", q)
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
		n := r.Count(minItemLen)
		if n == 0 {
			r.Fail("no items with their presence bit set")
		}
		o.Items = slices.Grow(o.Items, n)
		for i := 0; i < n && r.Err() == nil; i++ {
			r.product(o.addItem())
		}
	}
}

package profile

import (
	"math"

	"github.com/affinityhq/affinity/tracker/event"
)

// Parts selects parts of an encoded profile for PartialDecoder: readers of
// many profiles that need a few facts of each (an export showing a rule's
// terms per member) decode only those.
type Parts uint16

// The parts besides the dimensions (PartDim). FirstSeen, LastSeen and
// LastRecv are always decoded.
const (
	// PartIdentity is Email, EmailTS, Customer and CustomerTS.
	PartIdentity Parts = 1 << (NumDims + iota)
	// PartEvents is Events.
	PartEvents
	// PartTraits is Traits.
	PartTraits
	// PartCart is Cart.
	PartCart
	// PartOrders is Orders.
	PartOrders

	// PartAll is every part: the Profile DecodeProfile gives.
	PartAll Parts = 1<<(NumDims+5) - 1

	partDims Parts = 1<<NumDims - 1 // every PartDim
)

// PartDim is the part holding the kept values of dimension d (Dims[d]); 0
// for an invalid d.
func PartDim(d Dim) Parts {
	if int(d) >= NumDims {
		return 0
	}
	return 1 << d
}

// PartialDecoder decodes selected parts of encoded profiles into a Profile
// it reuses, without allocating once its buffers have grown. It is not safe
// for concurrent use; the zero value is ready.
type PartialDecoder struct {
	p   Profile
	buf []byte // the decoder's copy of the data; p's strings alias it
}

// Decode decodes data (made by AppendProfile) and returns the decoder's
// Profile holding the parts selected, decoded and checked as DecodeProfile
// does; the other parts are left empty. Decode reads data only up to the
// end of the last part selected (in format order: identity, the dimensions,
// events, traits, cart, orders); parts before it that are not selected are
// skipped with their framing checked (lengths, bounds, truncation) but not
// all of their contents (the order of values and keys, trait kinds). So data
// DecodeProfile refuses may decode when the fault is in a part not asked
// for, but what Decode gives is always what DecodeProfile would. With
// PartAll, Decode accepts and gives exactly what DecodeProfile does.
//
// The Profile and its strings belong to the decoder and are valid until the
// next Decode: its strings alias the decoder's own copy of data, which the
// next Decode overwrites. Copy what must outlive it.
func (pd *PartialDecoder) Decode(data []byte, parts Parts) (*Profile, error) {
	p := &pd.p
	p.Reset()
	if err := checkVersion(data); err != nil {
		return nil, err
	}
	pd.buf = append(pd.buf[:0], data...)
	d := newDecoder(pd.buf)
	if err := d.partial(p, parts); err != nil {
		p.Reset()
		return nil, err
	}
	return p, nil
}

func (d *decoder) partial(p *Profile, parts Parts) error {
	p.FirstSeen = d.varint("first seen")
	p.LastSeen = d.varint("last seen")
	p.LastRecv = d.varint("last receive time")
	email := d.str("email", MaxValueLen)
	emailTS := d.varint("email time")
	customer := d.str("customer", MaxValueLen)
	customerTS := d.varint("customer time")
	if parts&PartIdentity != 0 {
		p.Email, p.EmailTS, p.Customer, p.CustomerTS = email, emailTS, customer, customerTS
	}
	// done: the parts read so far; Decode stops when no other is selected.
	done := PartIdentity
	if d.Err() != nil || parts&^done == 0 {
		return d.Err()
	}

	nd := d.count("dimension count", NumDims)
	for dim := 0; dim < nd && d.Err() == nil; dim++ {
		n := d.count("entry count", MaxTopK)
		if parts&PartDim(Dim(dim)) == 0 {
			for i := 0; i < n && d.Err() == nil; i++ {
				d.str("value", MaxValueLen)
				flags := d.byte("entry flags")
				if flags&^3 != 0 {
					d.fail(d.Off()-1, "entry flags: unknown bits %#x", flags)
				}
				d.skip("entry sums", 8*int(flags&1+flags>>1&1))
			}
			done |= PartDim(Dim(dim))
			continue
		}
		es := p.Dims[dim][:0]
		for i := 0; i < n && d.Err() == nil; i++ {
			at := d.Off()
			e := Entry{Value: d.str("value", MaxValueLen), LogP: NegInf, LogN: NegInf}
			flags := d.byte("entry flags")
			if flags&^3 != 0 {
				d.fail(d.Off()-1, "entry flags: unknown bits %#x", flags)
			}
			if flags&1 != 0 {
				e.LogP = d.float("entry LogP")
			}
			if flags&2 != 0 {
				e.LogN = d.float("entry LogN")
			}
			if d.Err() == nil && (e.Value == "" || len(es) > 0 && es[len(es)-1].Value >= e.Value) {
				d.fail(at, "%s value %q: empty or not above the value before it", Dim(dim), e.Value)
			}
			es = append(es, e)
		}
		p.Dims[dim] = es
		done |= PartDim(Dim(dim))
		if parts&^done == 0 {
			return d.Err()
		}
	}
	done |= partDims // data of fewer dimensions has none of the others
	if d.Err() != nil || parts&^done == 0 {
		return d.Err()
	}

	keep := parts&PartEvents != 0
	nt := d.count("event type count", event.NumTypes)
	for t := 0; t < nt && d.Err() == nil; t++ {
		var s EventStats
		s.Count = d.uvarint("event count")
		if s.Count == 0 {
			continue
		}
		s.First = d.varint("first event time")
		s.Last = d.span("last event time", s.First)
		n := d.count("recent count", MaxRecent)
		if uint64(n) > s.Count {
			d.fail(d.Off(), "%s: %d recent times for %d events", event.Type(t), n, s.Count)
		}
		if !keep {
			for i := 0; i < n && d.Err() == nil; i++ {
				d.uvarint("recent time")
			}
			continue
		}
		r := p.Events[t].Recent[:0]
		prev := s.Last
		for i := 0; i < n && d.Err() == nil; i++ {
			at := d.Off()
			u := d.uvarint("recent time")
			x := prev - int64(u)
			if u > math.MaxInt64 || x > prev || x < s.First {
				d.fail(at, "%s recent time: before the first event", event.Type(t))
			}
			r = append(r, x)
			prev = x
		}
		s.Recent = r
		p.Events[t] = s
	}
	if done |= PartEvents; d.Err() != nil || parts&^done == 0 {
		return d.Err()
	}

	keep = parts&PartTraits != 0
	n := d.count("trait count", MaxTraits)
	for i := 0; i < n && d.Err() == nil; i++ {
		at := d.Off()
		tr := Trait{Key: d.str("trait key", MaxValueLen), Value: d.str("trait value", MaxValueLen)}
		tr.Kind = event.TraitKind(d.byte("trait kind"))
		tr.TS = d.varint("trait time")
		if !keep {
			continue
		}
		if d.Err() == nil && (tr.Key == "" || len(p.Traits) > 0 && p.Traits[len(p.Traits)-1].Key >= tr.Key) {
			d.fail(at, "trait key %q: empty or not above the key before it", tr.Key)
		}
		if tr.Kind > event.TraitBool {
			d.fail(at, "trait %q: unknown kind %d", tr.Key, tr.Kind)
		}
		p.Traits = append(p.Traits, tr)
	}
	if done |= PartTraits; d.Err() != nil || parts&^done == 0 {
		return d.Err()
	}

	keep = parts&PartCart != 0
	n = d.count("cart count", MaxCart)
	for i := 0; i < n && d.Err() == nil; i++ {
		at := d.Off()
		c := CartItem{ID: d.str("cart product id", MaxValueLen)}
		q := d.uvarint("cart quantity")
		if q > math.MaxUint32 {
			d.fail(at, "cart quantity %d: exceeds the limit %d", q, uint64(math.MaxUint32))
		}
		c.Qty = uint32(q)
		c.Added = d.varint("cart added time")
		c.Removed = d.varint("cart removed time")
		if !keep {
			continue
		}
		if d.Err() == nil && (c.ID == "" || len(p.Cart) > 0 && p.Cart[len(p.Cart)-1].ID >= c.ID) {
			d.fail(at, "cart product id %q: empty or not above the id before it", c.ID)
		}
		p.Cart = append(p.Cart, c)
	}
	if done |= PartCart; d.Err() != nil || parts&^done == 0 {
		return d.Err()
	}

	var o Orders
	o.Count = d.uvarint("order count")
	if o.Count > 0 {
		o.Revenue = d.float("revenue")
		o.First = d.varint("first order time")
		o.Last = d.span("last order time", o.First)
		if o.Revenue < 0 {
			d.fail(d.Off(), "revenue %v: negative", o.Revenue)
		}
	}
	if parts&PartOrders != 0 {
		p.Orders = o
	}
	if d.Err() == nil && d.Left() != 0 {
		d.fail(d.Off(), "%d trailing bytes", d.Left())
	}
	return d.Err()
}

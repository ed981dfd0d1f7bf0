package event

import (
	"slices"
	"unsafe"
)

// Type is the kind of an event, as named in the JSON contract ("t").
type Type uint8

// The event types of the contract. The numeric values are stored in the log
// record format (FORMAT.md): never renumber, only append. Readers of the log
// skip types they do not know, so that collectors may be upgraded first.
const (
	TypeInvalid  Type = 0
	TypePageview Type = 1
	TypeView     Type = 2
	TypeCart     Type = 3
	TypeUncart   Type = 4
	TypePurchase Type = 5
	TypeIdentify Type = 6
	// TypeCustom is an event the contract has no type for (a server's
	// "Newsletter Signup"): stored and counted under its Event.Name, never
	// refused for its name.
	TypeCustom Type = 7

	// NumTypes bounds the contract's Type values: every t < NumTypes,
	// t != 0, is valid in a batch and folded into profiles.
	NumTypes = 8

	// TypeOpen and TypeClick are a campaign email's open pixel and click
	// redirect, written to the log by the collector's engagement
	// endpoints only (never in a batch: ParseType does not know them).
	// They carry the recipient's token (Event.Token); the builder counts
	// them in the campaign's counters, not in a profile.
	TypeOpen  Type = 8
	TypeClick Type = 9
	// TypeConvert is a purchase that converts a campaign recipient,
	// forwarded by the builder that applied it to the recipient's own
	// visitor (campaign.EngagementVisitor) so the recipient's partition
	// counts it: never in a batch (ParseType does not know it). It carries
	// the campaign and recipient (Event.Campaign, Event.Recipient), the
	// purchase's time, its order id ("" when it had none: the event id
	// stands for it) and total.
	TypeConvert Type = 10
)

var typeNames = [...]string{"", "pageview", "view", "cart", "uncart", "purchase", "identify", "custom", "open", "click", "convert"}

// String returns the name of t, or "" for an invalid type.
func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return ""
}

// ParseType returns the Type named s in the contract, or TypeInvalid.
func ParseType(s []byte) Type {
	for i := 1; i < NumTypes; i++ {
		if string(s) == typeNames[i] {
			return Type(i)
		}
	}
	return TypeInvalid
}

// UUID is a 16-byte identifier (visitor ids, event ids) as sent by the snippet
// in canonical 8-4-4-4-12 hex form.
type UUID [16]byte

// ParseUUID parses the canonical form of a UUID, 8-4-4-4-12 hex digits of
// either case, e.g. "0b9e6c1a-3c1f-4c47-9d0e-5b6a2f1e7d3c". Any other form
// (braces, no dashes, urn:uuid:) reports false: the snippet never sends one.
func ParseUUID(s []byte) (u UUID, ok bool) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, false
	}
	j := 0
	for i := 0; i < 36; i += 2 {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			i++
		}
		hi, lo := hexVal[s[i]], hexVal[s[i+1]]
		if hi < 0 || lo < 0 {
			return UUID{}, false
		}
		u[j] = byte(hi)<<4 | byte(lo)
		j++
	}
	return u, true
}

// String returns u in canonical form, lowercase.
func (u UUID) String() string {
	var b [36]byte
	return string(u.Append(b[:0]))
}

// Append appends u in canonical form (36 bytes, lowercase) to b; the
// allocation-free String for hot paths that write into a caller's buffer.
func (u UUID) Append(b []byte) []byte {
	const digits = "0123456789abcdef"
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, digits[c>>4], digits[c&15])
	}
	return b
}

// Product is what an event says about one product. Any field may be empty:
// the builder resolves missing attributes from the catalog by ID.
type Product struct {
	ID       string
	Brand    string
	Category string // a path, levels separated by '/', e.g. "baby/food/formula"
	Age      string // a child age range, e.g. "0-3"
	Price    float64
	HasPrice bool   // Price was given (0 is a valid price)
	Qty      uint32 // quantity (cart, uncart, order items); 0 when not given
}

// Order is the order of a purchase event.
type Order struct {
	ID       string
	Total    float64
	HasTotal bool
	Items    []Product
}

// Trait is one key/value of an event's traits, in the order sent.
// Values are kept as text: a string's contents (unescaped), or the literal
// JSON text of a number ("12.50", "1e3") or boolean ("true", "false").
type Trait struct {
	Key   string
	Value string
	Kind  TraitKind
}

// TraitKind is the JSON type of a trait's value. The numeric values are
// stored in the log record format (FORMAT.md): never renumber, only append.
type TraitKind uint8

// The trait kinds.
const (
	TraitString TraitKind = 0
	TraitNumber TraitKind = 1
	TraitBool   TraitKind = 2
)

// Event is one behavioural event of a visitor.
//
// Strings of a decoded Event point into its Batch's arena (see Batch): they
// are valid until the Batch is Reset. Clone what must outlive it.
type Event struct {
	ID         UUID
	Type       Type
	TS         int64 // client time, Unix milliseconds
	Product    Product
	HasProduct bool
	Order      Order
	HasOrder   bool
	Email      string // identify: as sent, "" if not; the builder normalises it
	Customer   string // identify: the shop's customer id, "" if not sent
	Traits     []Trait
	URL        string // the page, "" if not sent
	Name       string // custom: the event's name (1..MaxNameLen bytes); "" for every other type
	Token      string // open, click: the campaign recipient's token as sent; "" for every other type
	Campaign   uint64 // convert: the campaign id (≥ 1); 0 for every other type
	Recipient  uint32 // convert: the recipient's number in the campaign
}

// Batch is one accepted request of one visitor of one site: the unit the
// collector appends to the log as a single record, so that a batch is stored
// whole or not at all.
//
// Decoders fill a pooled Batch without allocating per event: every string of
// the Batch and its Events is a view into Arena, which the Batch owns and
// reuses after Reset. Nothing may keep such a string past Reset.
type Batch struct {
	Site    string
	Visitor UUID
	Recv    int64 // server receive time, Unix milliseconds
	Events  []Event

	Arena []byte
}

// Reset empties b for reuse, keeping its allocated capacity.
func (b *Batch) Reset() {
	b.Site = ""
	b.Visitor = UUID{}
	b.Recv = 0
	for i := range b.Events {
		b.Events[i].reset()
	}
	b.Events = b.Events[:0]
	b.Arena = b.Arena[:0]
}

func (e *Event) reset() {
	items := e.Order.Items[:0]
	traits := e.Traits[:0]
	*e = Event{}
	e.Order.Items = items
	e.Traits = traits
}

// addEvent appends an empty event to b, reusing the Items and Traits
// capacity of an event of an earlier batch.
func (b *Batch) addEvent() *Event {
	if len(b.Events) < cap(b.Events) {
		b.Events = b.Events[:len(b.Events)+1]
	} else {
		b.Events = append(b.Events, Event{})
	}
	e := &b.Events[len(b.Events)-1]
	e.reset()
	return e
}

// addItem appends an empty item to o.
func (o *Order) addItem() *Product {
	o.Items = append(o.Items, Product{})
	return &o.Items[len(o.Items)-1]
}

// appendString copies s into b.Arena and returns a string viewing the copy.
// A string made before the arena grew keeps viewing the old array, which is
// never written again: it stays valid, and alive, until Reset.
func (b *Batch) appendString(s []byte) string {
	if len(s) == 0 {
		return ""
	}
	n := len(b.Arena)
	b.Arena = append(b.Arena, s...)
	return unsafe.String(&b.Arena[n], len(s))
}

// Equal reports whether b and o hold the same batch, whatever their arenas.
func (b *Batch) Equal(o *Batch) bool {
	return b.Site == o.Site && b.Visitor == o.Visitor && b.Recv == o.Recv &&
		slices.EqualFunc(b.Events, o.Events, func(x, y Event) bool { return x.Equal(&y) })
}

// Equal reports whether e and o are the same event.
func (e *Event) Equal(o *Event) bool {
	return e.ID == o.ID && e.Type == o.Type && e.TS == o.TS &&
		e.HasProduct == o.HasProduct && e.Product == o.Product &&
		e.HasOrder == o.HasOrder && e.Order.ID == o.Order.ID &&
		e.Order.Total == o.Order.Total && e.Order.HasTotal == o.Order.HasTotal &&
		slices.Equal(e.Order.Items, o.Order.Items) &&
		e.Email == o.Email && e.Customer == o.Customer && e.URL == o.URL &&
		e.Name == o.Name && e.Token == o.Token && slices.Equal(e.Traits, o.Traits) &&
		e.Campaign == o.Campaign && e.Recipient == o.Recipient
}

// Clone returns a deep copy of b with its own arena, holding only b's
// strings: what must outlive b's next Reset (a pooled Batch) is cloned.
func (b *Batch) Clone() *Batch {
	size := 0
	b.eachString(func(s *string) { size += len(*s) })
	c := &Batch{
		Site:    b.Site,
		Visitor: b.Visitor,
		Recv:    b.Recv,
		Events:  slices.Clone(b.Events),
		Arena:   make([]byte, 0, size),
	}
	for i := range c.Events {
		e := &c.Events[i]
		e.Order.Items = slices.Clone(e.Order.Items)
		e.Traits = slices.Clone(e.Traits)
	}
	c.eachString(func(s *string) {
		*s = c.appendString(unsafe.Slice(unsafe.StringData(*s), len(*s)))
	})
	return c
}

// eachString calls fn with every string field of b.
func (b *Batch) eachString(fn func(*string)) {
	fn(&b.Site)
	for i := range b.Events {
		e := &b.Events[i]
		e.Product.eachString(fn)
		fn(&e.Order.ID)
		for j := range e.Order.Items {
			e.Order.Items[j].eachString(fn)
		}
		fn(&e.Email)
		fn(&e.Customer)
		for j := range e.Traits {
			fn(&e.Traits[j].Key)
			fn(&e.Traits[j].Value)
		}
		fn(&e.URL)
		fn(&e.Name)
		fn(&e.Token)
	}
}

func (p *Product) eachString(fn func(*string)) {
	fn(&p.ID)
	fn(&p.Brand)
	fn(&p.Category)
	fn(&p.Age)
}

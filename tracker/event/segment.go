package event

import (
	"fmt"
	"slices"
	"time"
	"unsafe"

	"github.com/affinityhq/affinity/internal/quote"
)

// SegmentCall is the endpoint of the Segment HTTP Tracking API a body was
// posted to: /v1/batch takes {"batch":[message, …]}, the others one message.
type SegmentCall uint8

// The calls of the Segment HTTP Tracking API.
const (
	SegmentBatch SegmentCall = iota
	SegmentTrack
	SegmentIdentify
	SegmentPage
	SegmentScreen
	SegmentAlias
	SegmentGroup
)

var segmentCallNames = [...]string{"batch", "track", "identify", "page", "screen", "alias", "group"}

// String returns the name of c as in its path, /v1/<name>.
func (c SegmentCall) String() string { return segmentCallNames[c] }

// ParseSegmentCall returns the call named s (a message's "type", or the
// last element of the path).
func ParseSegmentCall(s []byte) (SegmentCall, bool) {
	for i, n := range segmentCallNames {
		if string(s) == n {
			return SegmentCall(i), true
		}
	}
	return 0, false
}

// Segment's own limits, which stock clients keep to.
const (
	// SegmentMaxMessage is the largest message, in bytes of JSON.
	SegmentMaxMessage = 32 << 10
	// SegmentMaxBatch is the largest body of a /v1/batch call.
	SegmentMaxBatch = 500 << 10
)

// segmentEvents maps the event names of Segment's e-commerce spec (v2 and
// the v1 names still sent by older code) to the contract's types; any other
// name is a custom event.
var segmentEvents = map[string]Type{
	"Product Viewed":  TypeView,
	"Viewed Product":  TypeView,
	"Product Added":   TypeCart,
	"Added Product":   TypeCart,
	"Product Removed": TypeUncart,
	"Removed Product": TypeUncart,
	"Order Completed": TypePurchase,
	"Completed Order": TypePurchase,
}

// SegmentDecoder decodes the bodies of the Segment HTTP Tracking API
// (what analytics-node, RudderStack and other stock server-side clients
// send) into the contract's events, validating them like DecodeBatch.
//
// One message becomes one event of the visitor Visitors names:
//
//   - track "Product Viewed" / "Product Added" / "Product Removed" →
//     view / cart / uncart of the product in properties (product_id, else
//     sku → id; brand, category, price, quantity → qty);
//   - track "Order Completed" → purchase: order_id, total (else revenue),
//     products → items as above;
//   - track of any other name → custom with that name (properties unread);
//   - page and screen → pageview, url from properties.url or
//     context.page.url;
//   - identify → identify: traits.email → email, the other traits of
//     string, number or boolean value → traits (nested ones are skipped);
//   - alias → identify linking previousId's visitor to userId;
//   - group → nothing (acknowledged, counted in Dropped).
//
// Every message: userId → customer id (so a track carrying a userId links
// the visitor as an identify does), context.traits.email → email;
// anonymousId → visitor (else previousId for alias, else a visitor made
// of userId); messageId → event id, so retries dedup; timestamp (else
// originalTimestamp, else the receive time) → ts, within
// Options.AcceptWindow and MaxFuture. Ids that are not canonical UUIDs are
// mapped by NameUUID: a userId alone gives the visitor an import of that
// customer id gives (NameCustomer).
//
// A SegmentDecoder is not safe for concurrent use; reused, it decodes
// without allocating once grown.
type SegmentDecoder struct {
	d Decoder
	// Visitors holds the visitor of each event of the last decoded body,
	// index for index.
	Visitors []UUID
	// Dropped counts the messages of the last body acknowledged without
	// an event (group calls).
	Dropped int

	site    string
	scratch []byte
}

// NewSegmentDecoder returns a SegmentDecoder enforcing opts (MaxEvents does
// not apply: SegmentMaxBatch bounds a batch).
func NewSegmentDecoder(opts Options) *SegmentDecoder {
	s := &SegmentDecoder{}
	s.d.setOptions(opts)
	return s
}

// Decode decodes data, the body of a call to the Segment API of site,
// received at now (Unix ms), into b (Site, Recv and the events; b.Visitor
// is not set: each event's is in s.Visitors). Ownership and refusals are as
// for Decoder.DecodeBatch: the body is accepted or refused whole, with a
// *ValidationError whose Field is the JSON path, e.g.
// batch[2].properties.products[0].price.
func (s *SegmentDecoder) Decode(b *Batch, call SegmentCall, site string, data []byte, now int64) error {
	d := &s.d
	if !d.ready {
		d.setOptions(Options{})
	}
	b.Reset()
	b.Arena = slices.Grow(b.Arena, len(data))
	b.Site, b.Recv = site, now
	s.Visitors, s.Dropped, s.site = s.Visitors[:0], 0, site
	d.data, d.b, d.pos, d.list, d.ev, d.obj = data, b, 0, "batch", -1, ""
	var err error
	if call == SegmentBatch {
		err = s.batch(b, now)
	} else {
		if d.peek() != '{' {
			err = d.syntaxErr("the body must be a JSON object")
		} else {
			err = s.message(b, call, now)
		}
		if err == nil {
			if d.ws(); d.pos < len(d.data) {
				err = d.syntaxErr("unexpected data after the JSON object")
			}
		}
	}
	d.data, d.b = nil, nil
	return err
}

func (s *SegmentDecoder) batch(b *Batch, now int64) error {
	d := &s.d
	if d.peek() != '{' {
		return d.syntaxErr("the body must be a JSON object")
	}
	var seen uint
	more, err := d.openObject()
	for more && err == nil {
		var key []byte
		if key, err = d.key(); err != nil {
			break
		}
		if string(key) == "batch" {
			if err = d.once(&seen, 1, "batch"); err == nil {
				err = s.messages(b, now)
			}
		} else {
			err = d.skip(0) // writeKey, sentAt, context, metadata …
		}
		if err == nil {
			more, err = d.nextMember()
		}
	}
	if err != nil {
		return err
	}
	if d.ws(); d.pos < len(d.data) {
		return d.syntaxErr("unexpected data after the JSON object")
	}
	if seen == 0 {
		return d.fail(ReasonMissingEvents, "batch", "missing: a batch call needs {\"batch\":[message, …]}")
	}
	return nil
}

func (s *SegmentDecoder) messages(b *Batch, now int64) error {
	d := &s.d
	if d.null() {
		return nil
	}
	if d.peek() != '[' {
		return d.typeErr(ReasonBadEvent, "batch", "an array of message objects")
	}
	more, err := d.openArray()
	for i := 0; more && err == nil; i++ {
		d.ev = i
		if d.peek() != '{' {
			return d.typeErr(ReasonBadEvent, "", "a message object")
		}
		if err = s.message(b, SegmentBatch, now); err == nil {
			d.ev = -1
			more, err = d.nextElement()
		}
	}
	return err
}

// segMessage is what the first pass over a message keeps: its scalars, and
// where the objects read once the message's type is known begin.
type segMessage struct {
	call                  SegmentCall
	hasType               bool
	name                  string // track: the event name
	user                  string // userId, as the customer id
	visitor, id           UUID
	hasVisitor, hasID     bool
	prevVisitor           UUID // alias: previousId
	hasPrev               bool
	ts, origTS            int64
	hasTS, hasOrigTS      bool
	props, traits, ctxPos int // offsets of the values in data, -1 if absent or null
}

// Keys of a message object, for the "seen" mask.
const (
	segKeyType = 1 << iota
	segKeyEvent
	segKeyMessageID
	segKeyAnonymousID
	segKeyUserID
	segKeyPreviousID
	segKeyTimestamp
	segKeyOrigTimestamp
	segKeyProperties
	segKeyTraits
	segKeyContext
)

// message decodes the message at d.pos, posted to call (SegmentBatch: its
// "type" says which), appending its event to b.
func (s *SegmentDecoder) message(b *Batch, call SegmentCall, now int64) error {
	d := &s.d
	start := d.pos
	m := segMessage{call: call, props: -1, traits: -1, ctxPos: -1}
	var seen uint
	more, err := d.openObject()
	for more && err == nil {
		var key []byte
		if key, err = d.key(); err != nil {
			break
		}
		switch string(key) {
		case "type":
			if err = d.once(&seen, segKeyType, "type"); err == nil {
				err = s.msgType(&m)
			}
		case "event":
			if err = d.once(&seen, segKeyEvent, "event"); err == nil {
				m.name, err = s.d.eventName(ReasonBadType, "event")
			}
		case "messageId":
			if err = d.once(&seen, segKeyMessageID, "messageId"); err == nil {
				m.id, m.hasID, err = s.id(ReasonBadEventID, "messageId", NameMessage)
			}
		case "anonymousId":
			if err = d.once(&seen, segKeyAnonymousID, "anonymousId"); err == nil {
				m.visitor, m.hasVisitor, err = s.id(ReasonBadVisitor, "anonymousId", NameAnonymous)
			}
		case "previousId":
			if err = d.once(&seen, segKeyPreviousID, "previousId"); err == nil {
				m.prevVisitor, m.hasPrev, err = s.id(ReasonBadVisitor, "previousId", NameAnonymous)
			}
		case "userId":
			if err = d.once(&seen, segKeyUserID, "userId"); err == nil {
				m.user, err = s.idText("userId")
			}
		case "timestamp":
			if err = d.once(&seen, segKeyTimestamp, "timestamp"); err == nil {
				m.ts, m.hasTS, err = s.timestamp("timestamp")
			}
		case "originalTimestamp":
			if err = d.once(&seen, segKeyOrigTimestamp, "originalTimestamp"); err == nil {
				m.origTS, m.hasOrigTS, err = s.timestamp("originalTimestamp")
			}
		case "properties":
			if err = d.once(&seen, segKeyProperties, "properties"); err == nil {
				m.props, err = s.objectAt("properties")
			}
		case "traits":
			if err = d.once(&seen, segKeyTraits, "traits"); err == nil {
				m.traits, err = s.objectAt("traits")
			}
		case "context":
			if err = d.once(&seen, segKeyContext, "context"); err == nil {
				m.ctxPos, err = s.objectAt("context")
			}
		default:
			err = d.skip(0) // integrations, sentAt, receivedAt, name, groupId …
		}
		if err == nil {
			more, err = d.nextMember()
		}
	}
	if err != nil {
		return err
	}
	end := d.pos
	if n := end - start; n > SegmentMaxMessage {
		return d.fail(ReasonBadEvent, "", fmt.Sprintf("message is %d bytes long; the limit is %d (Segment's, per message)", n, SegmentMaxMessage))
	}
	if call == SegmentBatch && !m.hasType {
		return d.fail(ReasonBadType, "type", "missing: a message of a batch needs its type: track, identify, page, screen, alias or group")
	}
	if m.call == SegmentGroup {
		s.Dropped++
		d.pos = end
		return nil
	}
	if err := s.event(b, &m, d.data[start:end], now); err != nil {
		return err
	}
	d.pos = end
	return nil
}

// event makes the event of message m (raw its JSON text) and appends it.
func (s *SegmentDecoder) event(b *Batch, m *segMessage, raw []byte, now int64) error {
	d := &s.d
	visitor := m.visitor
	switch {
	case m.hasVisitor:
	case m.call == SegmentAlias && m.hasPrev:
		visitor = m.prevVisitor
	case m.user != "":
		visitor, s.scratch = NameUUID(s.scratch, NameCustomer, s.site, m.user)
	default:
		return d.fail(ReasonBadVisitor, "", "needs an anonymousId or a userId")
	}
	if m.call == SegmentAlias && m.user == "" {
		return d.fail(ReasonBadField, "userId", "missing: an alias call needs the userId to link")
	}
	id := m.id
	if !m.hasID {
		id, s.scratch = NameUUID(s.scratch, NameRawJSON, s.site, unsafe.String(unsafe.SliceData(raw), len(raw)))
	}
	ts := now
	switch {
	case m.hasTS:
		ts = m.ts
	case m.hasOrigTS:
		ts = m.origTS
	}
	if err := s.checkTS(ts, now, m.hasTS); err != nil {
		return err
	}

	e := b.addEvent()
	s.Visitors = append(s.Visitors, visitor)
	e.ID, e.TS, e.Customer = id, ts, m.user
	var err error
	switch m.call {
	case SegmentTrack:
		if m.name == "" {
			return d.fail(ReasonBadType, "event", "missing: a track call needs its event name")
		}
		var ok bool
		if e.Type, ok = segmentEvents[m.name]; !ok {
			e.Type, e.Name = TypeCustom, m.name
		}
		switch e.Type {
		case TypeView, TypeCart, TypeUncart:
			if m.props >= 0 {
				d.pos, d.obj = m.props, "properties"
				e.HasProduct, err = s.product(&e.Product)
			}
		case TypePurchase:
			if m.props >= 0 {
				d.pos = m.props
				err = s.order(e)
			}
		}
	case SegmentPage, SegmentScreen:
		e.Type = TypePageview
		if m.props >= 0 {
			d.pos = m.props
			err = s.pageURL(e, "properties")
		}
	case SegmentIdentify, SegmentAlias:
		e.Type = TypeIdentify
		if m.traits >= 0 && m.call == SegmentIdentify {
			d.pos = m.traits
			err = s.traits(e, "traits", true)
		}
	}
	if err == nil && m.ctxPos >= 0 {
		d.pos = m.ctxPos
		err = s.context(e)
	}
	d.obj = ""
	return err
}

func (s *SegmentDecoder) msgType(m *segMessage) error {
	d := &s.d
	t, null, err := d.stringValue(ReasonBadType, "type")
	if err != nil || null {
		return err
	}
	c, ok := ParseSegmentCall(t)
	if !ok || c == SegmentBatch {
		return d.fail(ReasonBadType, "type", "unknown message type "+quote.Value(t)+": want track, identify, page, screen, alias or group")
	}
	m.hasType = true
	if m.call == SegmentBatch {
		m.call = c
	}
	return nil
}

// id reads an id that stands for a UUID: a canonical UUID as is, any other
// string or number mapped by NameUUID.
func (s *SegmentDecoder) id(reason, field string, kind byte) (UUID, bool, error) {
	d := &s.d
	raw, null, err := s.idValue(reason, field)
	if err != nil || null || len(raw) == 0 {
		return UUID{}, false, err
	}
	if u, ok := ParseUUID(raw); ok {
		return u, true, nil
	}
	if len(raw) > d.opts.MaxString {
		return UUID{}, false, d.tooLong(field, raw)
	}
	var u UUID
	u, s.scratch = NameUUID(s.scratch, kind, s.site, unsafe.String(unsafe.SliceData(raw), len(raw)))
	return u, true, nil
}

// idText reads an id kept as text (userId): a string or a number, "" for
// null or "".
func (s *SegmentDecoder) idText(field string) (string, error) {
	d := &s.d
	raw, null, err := s.idValue(ReasonBadField, field)
	if err != nil || null {
		return "", err
	}
	if len(raw) > d.opts.MaxString {
		return "", d.tooLong(field, raw)
	}
	return d.b.appendString(raw), nil
}

// idValue reads the text of an id: clients send strings, some numbers.
func (s *SegmentDecoder) idValue(reason, field string) ([]byte, bool, error) {
	d := &s.d
	if c := d.peek(); c == '-' || c >= '0' && c <= '9' {
		raw, err := d.number()
		return raw, false, err
	}
	if d.peek() != '"' && d.peek() != 'n' {
		return nil, false, d.typeErr(reason, field, "a string or a number")
	}
	return d.stringValue(reason, field)
}

// timestamp reads an ISO-8601 time (RFC 3339, as JavaScript's
// Date.toISOString writes it) as Unix ms.
func (s *SegmentDecoder) timestamp(field string) (int64, bool, error) {
	d := &s.d
	raw, null, err := d.stringValue(ReasonBadTS, field)
	if err != nil || null {
		return 0, false, err
	}
	t, perr := time.Parse(time.RFC3339Nano, unsafe.String(unsafe.SliceData(raw), len(raw)))
	if perr != nil {
		return 0, false, d.fail(ReasonBadTS, field, "invalid ISO-8601 time "+quote.Value(raw)+": want e.g. 2026-01-02T15:04:05.000Z")
	}
	return t.UnixMilli(), true, nil
}

func (s *SegmentDecoder) checkTS(ts, now int64, given bool) error {
	d := &s.d
	field := "timestamp"
	if !given {
		field = "originalTimestamp"
	}
	switch {
	case ts > now+d.future:
		return d.fail(ReasonTSFuture, field, fmt.Sprintf("%s is more than %s (--max-future) after the receive time %s",
			time.UnixMilli(ts).UTC().Format(time.RFC3339Nano), d.opts.MaxFuture, time.UnixMilli(now).UTC().Format(time.RFC3339Nano)))
	case ts < now-d.window:
		return d.fail(ReasonTSTooOld, field, fmt.Sprintf("%s is more than %s (--accept-window) before the receive time %s",
			time.UnixMilli(ts).UTC().Format(time.RFC3339Nano), d.opts.AcceptWindow, time.UnixMilli(now).UTC().Format(time.RFC3339Nano)))
	}
	return nil
}

// objectAt checks that the value at d.pos is an object (or null, -1) and
// skips it, returning where it starts: it is read once the message's type
// says how.
func (s *SegmentDecoder) objectAt(field string) (int, error) {
	d := &s.d
	if d.null() {
		return -1, nil
	}
	if d.peek() != '{' {
		return -1, d.typeErr(ReasonBadField, field, "an object")
	}
	at := d.pos
	return at, d.skip(0)
}

// Keys of a Segment product object, for the "seen" mask.
const (
	segKeyProductID = 1 << iota
	segKeySKU
	segKeyBrand
	segKeyCategory
	segKeyPrice
	segKeyQuantity
	segKeyOrderID
	segKeyTotal
	segKeyRevenue
	segKeyProducts
	segKeyURL
)

// product reads the product object at d.pos (properties, or an element of
// properties.products) into p; d.obj names it.
func (s *SegmentDecoder) product(p *Product) (bool, error) {
	d := &s.d
	var seen uint
	var sku string
	more, err := d.openObject()
	for more && err == nil {
		var key []byte
		if key, err = d.key(); err != nil {
			break
		}
		switch string(key) {
		case "product_id":
			if err = d.once(&seen, segKeyProductID, "product_id"); err == nil {
				p.ID, err = s.idText("product_id")
			}
		case "sku":
			if err = d.once(&seen, segKeySKU, "sku"); err == nil {
				sku, err = s.idText("sku")
			}
		case "brand":
			if err = d.once(&seen, segKeyBrand, "brand"); err == nil {
				p.Brand, err = d.optString("brand")
			}
		case "category":
			if err = d.once(&seen, segKeyCategory, "category"); err == nil {
				p.Category, err = d.optString("category")
			}
		case "price":
			if err = d.once(&seen, segKeyPrice, "price"); err == nil {
				p.Price, p.HasPrice, err = d.optAmount("price")
			}
		case "quantity":
			if err = d.once(&seen, segKeyQuantity, "quantity"); err == nil {
				err = d.qty(p, "quantity")
			}
		default:
			err = d.skip(0) // name, variant, url, image_url, coupon …
		}
		if err == nil {
			more, err = d.nextMember()
		}
	}
	if p.ID == "" {
		p.ID = sku
	}
	return err == nil, err
}

// order reads the properties of an Order Completed at d.pos into e.
func (s *SegmentDecoder) order(e *Event) error {
	d := &s.d
	d.obj = "properties"
	e.HasOrder = true
	o := &e.Order
	var seen uint
	var revenue float64
	var hasRevenue bool
	more, err := d.openObject()
	for more && err == nil {
		var key []byte
		if key, err = d.key(); err != nil {
			break
		}
		switch string(key) {
		case "order_id":
			if err = d.once(&seen, segKeyOrderID, "order_id"); err == nil {
				o.ID, err = s.idText("order_id")
			}
		case "total":
			if err = d.once(&seen, segKeyTotal, "total"); err == nil {
				o.Total, o.HasTotal, err = d.optAmount("total")
			}
		case "revenue":
			if err = d.once(&seen, segKeyRevenue, "revenue"); err == nil {
				revenue, hasRevenue, err = d.optAmount("revenue")
			}
		case "products":
			if err = d.once(&seen, segKeyProducts, "products"); err == nil {
				err = s.products(o)
			}
		default:
			err = d.skip(0) // checkout_id, shipping, tax, discount, currency …
		}
		if err == nil {
			more, err = d.nextMember()
		}
	}
	if !o.HasTotal && hasRevenue {
		o.Total, o.HasTotal = revenue, true
	}
	return err
}

func (s *SegmentDecoder) products(o *Order) error {
	d := &s.d
	if d.null() {
		return nil
	}
	if d.peek() != '[' {
		return d.typeErr(ReasonBadField, "products", "an array of product objects")
	}
	more, err := d.openArray()
	for more && err == nil {
		if len(o.Items) == d.opts.MaxItems {
			return d.fail(ReasonTooManyItems, "products",
				fmt.Sprintf("more than %d products; the limit is Options.MaxItems", d.opts.MaxItems))
		}
		d.item = len(o.Items)
		if d.peek() != '{' {
			return d.typeErr(ReasonBadField, fmt.Sprintf("products[%d]", d.item), "an object")
		}
		d.obj = "properties.products"
		if _, err = s.product(o.addItem()); err == nil {
			d.obj = "properties"
			more, err = d.nextElement()
		}
	}
	return err
}

// pageURL reads the object at d.pos (properties, or context.page), named
// obj, taking its url into e.URL unless e has one.
func (s *SegmentDecoder) pageURL(e *Event, obj string) error {
	d := &s.d
	d.obj = obj
	var seen uint
	more, err := d.openObject()
	for more && err == nil {
		var key []byte
		if key, err = d.key(); err != nil {
			break
		}
		if string(key) == "url" {
			var url string
			if err = d.once(&seen, segKeyURL, "url"); err == nil {
				if url, err = d.optString("url"); e.URL == "" {
					e.URL = url
				}
			}
		} else {
			err = d.skip(0)
		}
		if err == nil {
			more, err = d.nextMember()
		}
	}
	return err
}

// traits reads the traits object at d.pos, named obj: email → e.Email
// (unless e has one); with all, the other traits of scalar value too, in
// the order sent (nested and null values are skipped: the profile keeps
// flat traits).
func (s *SegmentDecoder) traits(e *Event, obj string, all bool) error {
	d := &s.d
	d.obj = obj
	more, err := d.openObject()
	for more && err == nil {
		var key []byte
		if key, err = d.key(); err != nil {
			break
		}
		c := d.peek()
		switch {
		case string(key) == "email" && c == '"':
			var email string
			if email, err = d.optString("email"); e.Email == "" {
				e.Email = email
			}
		case !all || c == '{' || c == '[' || c == 'n':
			err = d.skip(0)
		default:
			t := Trait{}
			if t.Key, err = d.traitKey(e, key); err == nil {
				if err = d.traitValue(&t); err == nil {
					e.Traits = append(e.Traits, t)
				}
			}
		}
		if err == nil {
			more, err = d.nextMember()
		}
	}
	return err
}

// context reads the message's context at d.pos: page.url for a page
// without one, traits.email for any event without one.
func (s *SegmentDecoder) context(e *Event) error {
	d := &s.d
	d.obj = "context"
	more, err := d.openObject()
	for more && err == nil {
		var key []byte
		if key, err = d.key(); err != nil {
			break
		}
		switch {
		case string(key) == "page" && e.Type == TypePageview && d.peek() == '{':
			err = s.pageURL(e, "context.page")
		case string(key) == "traits" && d.peek() == '{':
			err = s.traits(e, "context.traits", false)
		default:
			err = d.skip(0) // library, ip, userAgent, locale …
		}
		d.obj = "context"
		if err == nil {
			more, err = d.nextMember()
		}
	}
	return err
}

package event

import (
	"encoding/base64"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
	"unsafe"

	"github.com/affinityhq/affinity/internal/quote"
)

// Limits fixed by the contract rather than by configuration.
const (
	// MaxSiteLen is the longest site key, in bytes.
	MaxSiteLen = 64
	// MaxTraitKeyLen is the longest traits key, in bytes.
	MaxTraitKeyLen = 64
	// MaxNameLen is the longest name of a custom event, in bytes: an
	// event name is a label ("Newsletter Signup"), not a payload.
	MaxNameLen = 200
	// maxSkipDepth bounds the nesting of the unknown values DecodeBatch
	// skips, so that a hostile body cannot exhaust the stack.
	maxSkipDepth = 32
)

// Options limit what a Decoder accepts. A zero or negative field takes its
// default (DefaultOptions).
type Options struct {
	// MaxEvents is the most events one batch may hold. Default 100.
	MaxEvents int
	// MaxItems is the most items one order may hold. Default 100.
	MaxItems int
	// MaxTraits is the most keys one event's traits may hold. Default 32.
	MaxTraits int
	// MaxString is the longest string value (email, url, product fields,
	// trait values …), in bytes after unescaping. Default 2048.
	MaxString int
	// AcceptWindow is how long before the receive time an event's ts may
	// be: older events are refused (offline queues are replayed late, but
	// not forever). Default 7 days.
	AcceptWindow time.Duration
	// MaxFuture is how long after the receive time an event's ts may be,
	// for clients whose clock runs ahead. Default 5 minutes.
	MaxFuture time.Duration
}

// DefaultOptions returns the limits of the contract.
func DefaultOptions() Options {
	return Options{
		MaxEvents:    100,
		MaxItems:     100,
		MaxTraits:    32,
		MaxString:    2048,
		AcceptWindow: 7 * 24 * time.Hour,
		MaxFuture:    5 * time.Minute,
	}
}

func (o Options) withDefaults() Options {
	def := DefaultOptions()
	if o.MaxEvents <= 0 {
		o.MaxEvents = def.MaxEvents
	}
	if o.MaxItems <= 0 {
		o.MaxItems = def.MaxItems
	}
	if o.MaxTraits <= 0 {
		o.MaxTraits = def.MaxTraits
	}
	if o.MaxString <= 0 {
		o.MaxString = def.MaxString
	}
	if o.AcceptWindow <= 0 {
		o.AcceptWindow = def.AcceptWindow
	}
	if o.MaxFuture <= 0 {
		o.MaxFuture = def.MaxFuture
	}
	return o
}

// Decoder decodes the JSON batches browsers send (see the package doc for the
// shape) into a Batch, validating them against the contract.
//
// A Decoder is not safe for concurrent use: keep one per worker or in a
// sync.Pool. Reused with a reused Batch, it decodes without allocating once
// its buffers have grown to the largest batch seen; only a refused batch
// allocates, for its error.
type Decoder struct {
	opts           Options
	window, future int64 // opts.AcceptWindow and opts.MaxFuture in ms
	ready          bool

	data []byte // the body being decoded; nil between calls
	b    *Batch // the batch being filled; nil between calls
	pos  int    // the next byte of data to read
	tmp  []byte // unescaped strings that are not kept: keys, ids, types
	b64  []byte // the decoded pixel parameter

	// Where the decoder is, for error messages: the name of the array of
	// events ("events", or "batch" for a Segment batch), the event index
	// (-1 outside it), the object within it ("product", "order",
	// "order.items", "traits" or "") and the item index.
	list string
	ev   int
	obj  string
	item int

	ids idSet
}

// NewDecoder returns a Decoder enforcing opts.
func NewDecoder(opts Options) *Decoder {
	d := &Decoder{}
	d.setOptions(opts)
	return d
}

func (d *Decoder) setOptions(opts Options) {
	d.opts = opts.withDefaults()
	d.window = d.opts.AcceptWindow.Milliseconds()
	d.future = d.opts.MaxFuture.Milliseconds()
	d.ready = true
}

// DecodeBatch decodes the JSON batch data into b, received at now (Unix
// milliseconds, stored as b.Recv and bounding every event's ts).
//
// A batch is accepted or refused whole: on error, which is always a
// *ValidationError, b holds a partial batch that must not be used.
//
// b is Reset first. Every string of b is copied into b.Arena, so data may be
// reused as soon as DecodeBatch returns (e.g. a fasthttp request body), while
// b's strings stay valid until b is Reset.
func (d *Decoder) DecodeBatch(b *Batch, data []byte, now int64) error {
	if !d.ready {
		d.setOptions(Options{})
	}
	b.Reset()
	// Unescaped strings are never longer than their JSON text, so the
	// arena never grows while decoding: one allocation at most per call,
	// none once the arena has reached the largest body.
	b.Arena = slices.Grow(b.Arena, len(data))
	b.Recv = now
	d.data, d.b, d.pos, d.list, d.ev, d.obj = data, b, 0, "events", -1, ""
	err := d.batch(b, now)
	d.data, d.b = nil, nil // do not keep the caller's bytes alive
	return err
}

// DecodeBase64Batch decodes the image-pixel fallback: param is the value of
// the d query parameter, the base64url text (padded or not) of the JSON
// batch DecodeBatch takes. Ownership is as for DecodeBatch.
func (d *Decoder) DecodeBase64Batch(b *Batch, param []byte, now int64) error {
	src := param
	for i := 0; i < 2 && len(src) > 0 && src[len(src)-1] == '='; i++ {
		src = src[:len(src)-1]
	}
	d.b64 = slices.Grow(d.b64[:0], base64.RawURLEncoding.DecodedLen(len(src)))
	n, err := base64.RawURLEncoding.Decode(d.b64[:cap(d.b64)], src)
	if err != nil {
		b.Reset()
		return &ValidationError{Reason: ReasonBadBase64, Event: -1, Field: "d",
			Msg: fmt.Sprintf("invalid base64url: %s in %s", err, quote.Value(param))}
	}
	return d.DecodeBatch(b, d.b64[:n], now)
}

// Keys of the body object, each a bit of a "seen" mask to refuse duplicates:
// a body meaning one thing here and another to a JSON library that keeps
// the last duplicate would be a trap.
const (
	keySite = 1 << iota
	keyVisitor
	keyEvents
)

func (d *Decoder) batch(b *Batch, now int64) error {
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
		switch string(key) {
		case "site":
			if err = d.once(&seen, keySite, "site"); err == nil {
				err = d.site(b)
			}
		case "v":
			if err = d.once(&seen, keyVisitor, "v"); err == nil {
				err = d.visitor(b)
			}
		case "events":
			if err = d.once(&seen, keyEvents, "events"); err == nil {
				err = d.events(b, now)
			}
		default:
			err = d.skip(0)
		}
		if err == nil {
			more, err = d.nextMember()
		}
	}
	if err != nil {
		return err
	}
	d.ws()
	if d.pos < len(d.data) {
		return d.syntaxErr("unexpected data after the JSON object")
	}
	if b.Site == "" {
		return d.fail(ReasonMissingSite, "site", "missing")
	}
	if seen&keyVisitor == 0 {
		return d.fail(ReasonBadVisitor, "v", "missing")
	}
	if len(b.Events) == 0 {
		return d.fail(ReasonMissingEvents, "events", "missing")
	}
	return nil
}

func (d *Decoder) site(b *Batch) error {
	s, null, err := d.stringValue(ReasonBadSite, "site")
	if err != nil || null {
		return err
	}
	if len(s) > MaxSiteLen {
		return d.fail(ReasonBadSite, "site", fmt.Sprintf("%s is %d bytes long; the limit is %d", quote.Value(s), len(s), MaxSiteLen))
	}
	b.Site = b.appendString(s)
	return nil
}

func (d *Decoder) visitor(b *Batch) error {
	s, null, err := d.stringValue(ReasonBadVisitor, "v")
	if err != nil {
		return err
	}
	if null {
		return d.fail(ReasonBadVisitor, "v", "must be a UUID string, got null")
	}
	var ok bool
	if b.Visitor, ok = ParseUUID(s); !ok {
		return d.fail(ReasonBadVisitor, "v", "invalid UUID "+quote.Value(s))
	}
	return nil
}

func (d *Decoder) events(b *Batch, now int64) error {
	if d.null() {
		return nil // reported as missing by batch
	}
	if d.peek() != '[' {
		return d.typeErr(ReasonBadEvent, "events", "an array of event objects")
	}
	d.ids.reset(d.opts.MaxEvents)
	lo, hi := now-d.window, now+d.future
	more, err := d.openArray()
	for more && err == nil {
		if len(b.Events) == d.opts.MaxEvents {
			return d.fail(ReasonTooManyEvents, "events",
				fmt.Sprintf("more than %d events; the limit is Options.MaxEvents", d.opts.MaxEvents))
		}
		d.ev = len(b.Events)
		if err = d.event(b.addEvent(), lo, hi); err != nil {
			return err
		}
		if prev := d.ids.add(b.Events, d.ev); prev >= 0 {
			return d.fail(ReasonDupEventID, "id", fmt.Sprintf("duplicate of events[%d].id %q", prev, b.Events[d.ev].ID.String()))
		}
		d.ev = -1
		more, err = d.nextElement()
	}
	return err
}

// Keys of an event object, for the "seen" mask.
const (
	keyID = 1 << iota
	keyType
	keyTS
	keyProduct
	keyOrder
	keyEmail
	keyCustomer
	keyTraits
	keyURL
	keyName
	keyToken
)

func (d *Decoder) event(e *Event, lo, hi int64) error {
	if d.peek() != '{' {
		return d.typeErr(ReasonBadEvent, "", "an object")
	}
	var seen uint
	more, err := d.openObject()
	for more && err == nil {
		var key []byte
		if key, err = d.key(); err != nil {
			break
		}
		switch string(key) {
		case "id":
			if err = d.once(&seen, keyID, "id"); err == nil {
				err = d.eventID(e)
			}
		case "t":
			if err = d.once(&seen, keyType, "t"); err == nil {
				err = d.eventType(e)
			}
		case "ts":
			if err = d.once(&seen, keyTS, "ts"); err == nil {
				err = d.eventTS(e, lo, hi)
			}
		case "product":
			if err = d.once(&seen, keyProduct, "product"); err == nil {
				e.HasProduct, err = d.product(&e.Product, "product")
			}
		case "order":
			if err = d.once(&seen, keyOrder, "order"); err == nil {
				e.HasOrder, err = d.order(&e.Order)
			}
		case "email":
			if err = d.once(&seen, keyEmail, "email"); err == nil {
				e.Email, err = d.optString("email")
			}
		case "customer_id":
			if err = d.once(&seen, keyCustomer, "customer_id"); err == nil {
				e.Customer, err = d.optString("customer_id")
			}
		case "traits":
			if err = d.once(&seen, keyTraits, "traits"); err == nil {
				err = d.traits(e)
			}
		case "url":
			if err = d.once(&seen, keyURL, "url"); err == nil {
				e.URL, err = d.optString("url")
			}
		case "name":
			if err = d.once(&seen, keyName, "name"); err == nil {
				e.Name, err = d.eventName(ReasonBadField, "name")
			}
		case "token":
			if err = d.once(&seen, keyToken, "token"); err == nil {
				e.Token, err = d.token()
			}
		default:
			err = d.skip(0)
		}
		if err == nil {
			more, err = d.nextMember()
		}
	}
	switch {
	case err != nil:
		return err
	case seen&keyID == 0:
		return d.fail(ReasonBadEventID, "id", "missing")
	case seen&keyType == 0:
		return d.fail(ReasonBadType, "t", "missing")
	case seen&keyTS == 0:
		return d.fail(ReasonBadTS, "ts", "missing")
	}
	if err := d.checkName(e); err != nil {
		return err
	}
	if e.Token != "" && e.Type != TypeIdentify {
		return d.fail(ReasonBadField, "token", fmt.Sprintf("%s given for a %s event: only an identify carries a campaign token",
			quote.Value(e.Token), e.Type))
	}
	return nil
}

// MaxTokenLen bounds an identify's campaign token ("token": the aff_t a
// campaign click added to the landing URL), checked by the builder.
const MaxTokenLen = 64

// token decodes an identify's campaign token: 1..MaxTokenLen base64url
// characters, null or absent being "".
func (d *Decoder) token() (string, error) {
	s, null, err := d.stringValue(ReasonBadField, "token")
	if err != nil || null {
		return "", err
	}
	bad := len(s) == 0 || len(s) > MaxTokenLen
	for i := 0; i < len(s) && !bad; i++ {
		c := s[i]
		bad = !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_')
	}
	if bad {
		return "", d.fail(ReasonBadField, "token", fmt.Sprintf("%s is not a campaign token: want 1..%d base64url characters",
			quote.Value(s), MaxTokenLen))
	}
	return d.b.appendString(s), nil
}

// eventName decodes the name of an event at field: a string of at most
// MaxNameLen bytes, null or absent being "". A bad one is refused with
// reason.
func (d *Decoder) eventName(reason, field string) (string, error) {
	s, null, err := d.stringValue(reason, field)
	if err != nil || null {
		return "", err
	}
	if len(s) > MaxNameLen {
		return "", d.fail(reason, field, fmt.Sprintf("%s is %d bytes long; the limit is %d (event.MaxNameLen)",
			quote.Value(s), len(s), MaxNameLen))
	}
	return d.b.appendString(s), nil
}

// checkName checks that a custom event has a name and no other event has
// one: the name is what a custom event is, and a name on a view would be
// stored for nothing.
func (d *Decoder) checkName(e *Event) error {
	switch {
	case e.Type == TypeCustom && e.Name == "":
		return d.fail(ReasonBadField, "name", "missing: a custom event needs its name")
	case e.Type != TypeCustom && e.Name != "":
		return d.fail(ReasonBadField, "name", fmt.Sprintf("%s given for a %s event: only a custom event has a name",
			quote.Value(e.Name), e.Type))
	}
	return nil
}

func (d *Decoder) eventID(e *Event) error {
	s, null, err := d.stringValue(ReasonBadEventID, "id")
	if err != nil {
		return err
	}
	if null {
		return d.fail(ReasonBadEventID, "id", "must be a UUID string, got null")
	}
	var ok bool
	if e.ID, ok = ParseUUID(s); !ok {
		return d.fail(ReasonBadEventID, "id", "invalid UUID "+quote.Value(s))
	}
	return nil
}

func (d *Decoder) eventType(e *Event) error {
	s, null, err := d.stringValue(ReasonBadType, "t")
	if err != nil {
		return err
	}
	if null {
		return d.fail(ReasonBadType, "t", "must be an event type string, got null")
	}
	if e.Type = ParseType(s); e.Type == TypeInvalid {
		return d.fail(ReasonBadType, "t", "unknown event type "+quote.Value(s))
	}
	return nil
}

func (d *Decoder) eventTS(e *Event, lo, hi int64) error {
	raw, null, err := d.numberValue(ReasonBadTS, "ts")
	if err != nil {
		return err
	}
	if null {
		return d.fail(ReasonBadTS, "ts", "must be an integer of Unix milliseconds, got null")
	}
	ts, ok := parseInt(raw)
	switch {
	case !ok:
		return d.fail(ReasonBadTS, "ts", "must be an integer of Unix milliseconds, got "+snippet(raw))
	case ts > hi:
		return d.fail(ReasonTSFuture, "ts", fmt.Sprintf("%d is more than %s (Options.MaxFuture) after the receive time %d",
			ts, d.opts.MaxFuture, hi-d.future))
	case ts < lo:
		return d.fail(ReasonTSTooOld, "ts", fmt.Sprintf("%d is more than %s (Options.AcceptWindow) before the receive time %d",
			ts, d.opts.AcceptWindow, lo+d.window))
	}
	e.TS = ts
	return nil
}

// Keys of product and order objects, for the "seen" mask.
const (
	keyPID = 1 << iota
	keyBrand
	keyCategory
	keyAge
	keyPrice
	keyQty
	keyTotal
	keyItems
)

// product decodes a product object (or null, which reports false) into p.
// obj names it in errors: "product" or "order.items".
func (d *Decoder) product(p *Product, obj string) (bool, error) {
	if d.null() {
		return false, nil
	}
	if d.peek() != '{' {
		field := obj
		if obj == "order.items" {
			field = fmt.Sprintf("items[%d]", d.item)
		}
		return false, d.typeErr(ReasonBadField, field, "an object")
	}
	outer := d.obj
	d.obj = obj
	var seen uint
	more, err := d.openObject()
	for more && err == nil {
		var key []byte
		if key, err = d.key(); err != nil {
			break
		}
		switch string(key) {
		case "id":
			if err = d.once(&seen, keyPID, "id"); err == nil {
				p.ID, err = d.optString("id")
			}
		case "brand":
			if err = d.once(&seen, keyBrand, "brand"); err == nil {
				p.Brand, err = d.optString("brand")
			}
		case "category":
			if err = d.once(&seen, keyCategory, "category"); err == nil {
				p.Category, err = d.optString("category")
			}
		case "age":
			if err = d.once(&seen, keyAge, "age"); err == nil {
				p.Age, err = d.optString("age")
			}
		case "price":
			if err = d.once(&seen, keyPrice, "price"); err == nil {
				p.Price, p.HasPrice, err = d.optAmount("price")
			}
		case "qty":
			if err = d.once(&seen, keyQty, "qty"); err == nil {
				err = d.qty(p, "qty")
			}
		default:
			err = d.skip(0)
		}
		if err == nil {
			more, err = d.nextMember()
		}
	}
	d.obj = outer
	return err == nil, err
}

func (d *Decoder) qty(p *Product, field string) error {
	raw, null, err := d.numberValue(ReasonBadField, field)
	if err != nil || null {
		return err
	}
	q, ok := parseInt(raw)
	if !ok || q < 0 || q > math.MaxUint32 {
		return d.fail(ReasonBadField, field, "must be an integer from 0 to 4294967295, got "+snippet(raw))
	}
	p.Qty = uint32(q)
	return nil
}

// order decodes an order object (or null, which reports false) into o.
func (d *Decoder) order(o *Order) (bool, error) {
	if d.null() {
		return false, nil
	}
	if d.peek() != '{' {
		return false, d.typeErr(ReasonBadField, "order", "an object")
	}
	d.obj = "order"
	var seen uint
	more, err := d.openObject()
	for more && err == nil {
		var key []byte
		if key, err = d.key(); err != nil {
			break
		}
		switch string(key) {
		case "id":
			if err = d.once(&seen, keyPID, "id"); err == nil {
				o.ID, err = d.optString("id")
			}
		case "total":
			if err = d.once(&seen, keyTotal, "total"); err == nil {
				o.Total, o.HasTotal, err = d.optAmount("total")
			}
		case "items":
			if err = d.once(&seen, keyItems, "items"); err == nil {
				err = d.items(o)
			}
		default:
			err = d.skip(0)
		}
		if err == nil {
			more, err = d.nextMember()
		}
	}
	d.obj = ""
	return err == nil, err
}

func (d *Decoder) items(o *Order) error {
	if d.null() {
		return nil
	}
	if d.peek() != '[' {
		return d.typeErr(ReasonBadField, "items", "an array of product objects")
	}
	more, err := d.openArray()
	for more && err == nil {
		if len(o.Items) == d.opts.MaxItems {
			return d.fail(ReasonTooManyItems, "items",
				fmt.Sprintf("more than %d items; the limit is Options.MaxItems", d.opts.MaxItems))
		}
		d.item = len(o.Items)
		p := o.addItem()
		if d.peek() == 'n' {
			// null is "no product" for event.product, but an item must be one.
			return d.typeErr(ReasonBadField, fmt.Sprintf("items[%d]", d.item), "an object")
		}
		if _, err = d.product(p, "order.items"); err == nil {
			more, err = d.nextElement()
		}
	}
	return err
}

func (d *Decoder) traits(e *Event) error {
	if d.null() {
		return nil
	}
	if d.peek() != '{' {
		return d.typeErr(ReasonBadField, "traits", "an object of strings, numbers and booleans")
	}
	d.obj = "traits"
	more, err := d.openObject()
	for more && err == nil {
		var key []byte
		if key, err = d.key(); err != nil {
			break
		}
		t := Trait{}
		if t.Key, err = d.traitKey(e, key); err != nil {
			break
		}
		if err = d.traitValue(&t); err == nil {
			e.Traits = append(e.Traits, t)
			more, err = d.nextMember()
		}
	}
	d.obj = ""
	return err
}

// traitValue decodes the value of trait t: a string, number or boolean.
func (d *Decoder) traitValue(t *Trait) error {
	var err error
	switch c := d.peek(); {
	case c == '"':
		var s []byte
		if s, err = d.str(); err == nil && len(s) > d.opts.MaxString {
			err = d.tooLong(t.Key, s)
		}
		t.Value, t.Kind = d.b.appendString(s), TraitString
	case c == 't' || c == 'f':
		start := d.pos
		err = d.skip(0)
		t.Value, t.Kind = d.b.appendString(d.data[start:d.pos]), TraitBool
	case c == '-' || c >= '0' && c <= '9':
		var raw []byte
		raw, err = d.number()
		t.Value, t.Kind = d.b.appendString(raw), TraitNumber
	default:
		err = d.typeErr(ReasonBadField, t.Key, "a string, number or boolean")
	}
	return err
}

// traitKey checks the key of a new trait of e and returns it, in the arena.
func (d *Decoder) traitKey(e *Event, key []byte) (string, error) {
	switch {
	case len(e.Traits) == d.opts.MaxTraits:
		return "", d.fail(ReasonTooManyTraits, "",
			fmt.Sprintf("more than %d keys; the limit is Options.MaxTraits", d.opts.MaxTraits))
	case len(key) == 0:
		return "", d.fail(ReasonBadField, "", "empty key")
	case len(key) > MaxTraitKeyLen:
		return "", d.fail(ReasonBadField, "", fmt.Sprintf("key %s is %d bytes long; the limit is %d",
			quote.Value(key), len(key), MaxTraitKeyLen))
	}
	for i := range e.Traits {
		if e.Traits[i].Key == string(key) {
			return "", d.fail(ReasonBadField, "", "duplicate key "+quote.Value(key))
		}
	}
	return d.b.appendString(key), nil
}

// optString decodes an optional string field: null or absent is "".
func (d *Decoder) optString(field string) (string, error) {
	s, null, err := d.stringValue(ReasonBadField, field)
	if err != nil || null {
		return "", err
	}
	if len(s) > d.opts.MaxString {
		return "", d.tooLong(field, s)
	}
	return d.b.appendString(s), nil
}

func (d *Decoder) tooLong(field string, s []byte) error {
	return d.fail(ReasonBadField, field, fmt.Sprintf("%s is %d bytes long; the limit is %d (Options.MaxString)",
		quote.Value(s), len(s), d.opts.MaxString))
}

// optAmount decodes an optional money amount: a finite number ≥ 0.
func (d *Decoder) optAmount(field string) (float64, bool, error) {
	raw, null, err := d.numberValue(ReasonBadField, field)
	if err != nil || null {
		return 0, false, err
	}
	f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(raw), len(raw)), 64)
	switch {
	case err != nil || math.IsInf(f, 0):
		return 0, false, d.fail(ReasonBadField, field, "must be a finite number, got "+snippet(raw))
	case f < 0:
		return 0, false, d.fail(ReasonBadField, field, "must not be negative, got "+snippet(raw))
	case f == 0:
		f = 0 // not -0: one zero, whatever the text
	}
	return f, true, nil
}

package importer

import (
	"bytes"
	"fmt"
	"math"
	"mime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/tracker/event"
)

// Limits of one order.
const (
	// MaxItems is the most items (CSV rows) one order may hold.
	MaxItems = 1000
	// MaxString is the longest order id, email, customer id, store or item
	// id, in bytes: the longest value a profile keeps.
	MaxString = profile.MaxValueLen
	// minTS is 2000-01-01T00:00:00Z in Unix ms: an earlier ts is taken for
	// seconds sent as milliseconds, the usual mistake of an export.
	minTS = 946684800000
)

// Format is the syntax of an upload.
type Format uint8

// The upload formats.
const (
	FormatNDJSON Format = iota + 1 // one JSON object per order and line
	FormatCSV                      // a header row, then one row per order item
)

// String returns the name of f, as ?format= takes it.
func (f Format) String() string {
	switch f {
	case FormatNDJSON:
		return "ndjson"
	case FormatCSV:
		return "csv"
	}
	return "format(" + strconv.Itoa(int(f)) + ")"
}

// FormatOf returns the Format named by ?format= (ndjson, csv) when it is
// set, else by the Content-Type: application/x-ndjson (or
// application/jsonl, application/json) or text/csv.
func FormatOf(param, contentType string) (Format, error) {
	switch param {
	case "":
	case "ndjson", "jsonl", "json":
		return FormatNDJSON, nil
	case "csv":
		return FormatCSV, nil
	default:
		return 0, invalid.Errorf("invalid format=%s: want ndjson or csv", quote.Value(param))
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return 0, invalid.Errorf("invalid Content-Type %s: want application/x-ndjson or text/csv, or set ?format=ndjson|csv", quote.Value(contentType))
	}
	switch mt {
	case "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines", "application/json":
		return FormatNDJSON, nil
	case "text/csv", "application/csv":
		return FormatCSV, nil
	}
	return 0, invalid.Errorf("invalid Content-Type %s: want application/x-ndjson or text/csv, or set ?format=ndjson|csv", quote.Value(mt))
}

// Order is one order of an upload. Its strings view its Orders' arena.
type Order struct {
	Line     int    // the line the order starts on, 1-based
	ID       string // order_id
	Email    string // trimmed, lower-cased; "" if not given
	Customer string // customer_id, trimmed; "" if not given
	TS       int64  // Unix ms
	Total    float64
	HasTotal bool
	Store    string
	Items    []event.Product // ID, Qty ≥ 1, Price when HasPrice
}

// Orders is a parsed upload. Reset it to parse another one into the same
// space.
type Orders struct {
	List  []Order
	arena []byte
	items []event.Product
	byID  map[string]int // order id → index in List
}

// Reset empties o, keeping its capacity.
func (o *Orders) Reset() {
	clear(o.List)
	o.List = o.List[:0]
	o.arena = o.arena[:0]
	o.items = o.items[:0]
	clear(o.byID)
}

// keep copies s into the arena and returns a string viewing the copy. When
// the arena is full a new one is started: strings made so far keep viewing
// the old array, which is never written again.
func (o *Orders) keep(s []byte) string {
	if len(s) == 0 {
		return ""
	}
	if cap(o.arena)-len(o.arena) < len(s) {
		o.arena = make([]byte, 0, max(2*cap(o.arena), len(s), 64<<10))
	}
	n := len(o.arena)
	o.arena = append(o.arena, s...)
	return unsafe.String(&o.arena[n], len(s))
}

var newline = []byte{'\n'}

// Parse parses a whole upload of format f into dst (reset first), checking
// every order; now (Unix ms) bounds ts from above, as the collector does
// (event.Options.MaxFuture). A bad row is an *invalid.Error reading
// `line N: invalid <field> <value>: <reason>`; then dst holds no order.
func Parse(body []byte, f Format, now int64, dst *Orders) error {
	dst.Reset()
	hint := 0
	if f == FormatNDJSON {
		// One order a line: sized at once, List and byID are not copied
		// and rehashed as they fill (a tenth of a large upload's parse).
		// CSV rows are items, so its lines would oversize them.
		hint = bytes.Count(body, newline) + 1
		dst.List = slices.Grow(dst.List, hint)
	}
	if dst.byID == nil {
		dst.byID = make(map[string]int, hint)
	}
	p := rowParser{o: dst, maxTS: now + event.DefaultOptions().MaxFuture.Milliseconds()}
	var err error
	switch f {
	case FormatNDJSON:
		err = p.parseNDJSON(body)
	case FormatCSV:
		err = p.parseCSV(body)
	default:
		err = fmt.Errorf("BUG: importer.Parse called with unknown format %d", f)
	}
	if err != nil {
		dst.Reset()
	}
	return err
}

// rowParser fills the orders of one upload, checking each field.
type rowParser struct {
	o     *Orders
	maxTS int64
	line  int
	cur   *Order
	seen  uint // fields given in the current order or item
	lower []byte
}

// Fields of a row, whatever its syntax.
const (
	fieldNone = iota
	fieldOrder
	fieldEmail
	fieldCustomer
	fieldTS
	fieldTotal
	fieldStore
	fieldItems
	fieldItemID
	fieldQty
	fieldPrice
)

var fieldName = [...]string{fieldOrder: "order_id", fieldEmail: "email", fieldCustomer: "customer_id", fieldTS: "ts",
	fieldTotal: "total", fieldStore: "store", fieldItems: "items", fieldItemID: "item id", fieldQty: "qty", fieldPrice: "price"}

// fieldOf returns the field of an order (NDJSON member or CSV column)
// named name, lower-cased; fieldNone for a name it ignores. CSV item
// columns are item_id, qty and price (orderItem: within "items" the
// members are id, qty, price).
func fieldOf(name string, item bool) int {
	if item {
		switch name {
		case "id", "item_id", "product_id", "sku":
			return fieldItemID
		case "qty", "quantity":
			return fieldQty
		case "price", "unit_price", "item_price":
			return fieldPrice
		}
		return fieldNone
	}
	switch name {
	case "order_id", "orderid", "order", "order_number":
		return fieldOrder
	case "email", "e-mail", "mail":
		return fieldEmail
	case "customer_id", "customerid", "customer", "client_id", "loyalty_id":
		return fieldCustomer
	case "ts", "timestamp", "time", "date", "created_at", "order_date":
		return fieldTS
	case "total", "order_total", "amount", "revenue":
		return fieldTotal
	case "store", "store_id", "shop":
		return fieldStore
	case "items":
		return fieldItems
	case "item_id", "product_id", "sku":
		return fieldItemID
	case "qty", "quantity":
		return fieldQty
	case "price", "unit_price", "item_price":
		return fieldPrice
	}
	return fieldNone
}

// bad returns the error of field's value on the current line.
func (p *rowParser) bad(field int, value []byte, format string, args ...any) error {
	return invalid.Errorf("line %d: invalid %s %s: %s", p.line, fieldName[field], quote.Value(value), fmt.Sprintf(format, args...))
}

// lineErr returns an error of the current line that names no value.
func (p *rowParser) lineErr(format string, args ...any) error {
	return invalid.Errorf("line %d: %s", p.line, fmt.Sprintf(format, args...))
}

// begin starts a new order on the current line.
func (p *rowParser) begin() {
	p.o.List = append(p.o.List, Order{Line: p.line})
	p.cur = &p.o.List[len(p.o.List)-1]
	p.seen = 0
}

// once refuses a field given twice in one order or item.
func (p *rowParser) once(field int, value []byte) error {
	if p.seen&(1<<field) != 0 {
		return p.bad(field, value, "%s given twice", fieldName[field])
	}
	p.seen |= 1 << field
	return nil
}

// set sets an order-level field to its text (a JSON string's contents or
// a number's literal text); empty text leaves it unset.
func (p *rowParser) set(field int, value []byte) error {
	value = trimSpace(value)
	if len(value) == 0 || field == fieldNone {
		return nil
	}
	if err := p.once(field, value); err != nil {
		return err
	}
	o := p.cur
	switch field {
	case fieldOrder, fieldCustomer, fieldStore:
		if err := checkString(value); err != "" {
			return p.bad(field, value, "%s", err)
		}
		switch field {
		case fieldOrder:
			o.ID = p.o.keep(value)
		case fieldCustomer:
			o.Customer = p.o.keep(value)
		default:
			o.Store = p.o.keep(value)
		}
	case fieldEmail:
		if err := checkString(value); err != "" {
			return p.bad(field, value, "%s", err)
		}
		at := strings.IndexByte(unsafeString(value), '@')
		if at <= 0 || at == len(value)-1 || strings.ContainsAny(unsafeString(value), " \t,;<>") {
			return p.bad(field, value, "want an address such as ann@example.com")
		}
		o.Email = p.o.keep(p.lowerCase(value))
	case fieldTS:
		ts, err := parseTS(value)
		if err != "" {
			return p.bad(field, value, "%s", err)
		}
		if ts < minTS {
			return p.bad(field, value, "before 2000-01-01: want milliseconds since the epoch (seconds times 1000) or an RFC 3339 time")
		}
		if ts > p.maxTS {
			return p.bad(field, value, "in the future")
		}
		o.TS = ts
	case fieldTotal:
		f, err := parseAmount(value)
		if err != "" {
			return p.bad(field, value, "%s", err)
		}
		o.Total, o.HasTotal = f, true
	default:
		return fmt.Errorf("BUG: importer: set of field %d", field)
	}
	return nil
}

// lowerCase returns value lower-cased in scratch space, as profiles keep
// emails.
func (p *rowParser) lowerCase(value []byte) []byte {
	for _, c := range value {
		if c >= utf8.RuneSelf {
			return []byte(strings.ToLower(string(value)))
		}
	}
	p.lower = p.lower[:0]
	for _, c := range value {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		p.lower = append(p.lower, c)
	}
	return p.lower
}

// addItem starts a new item of the current order.
func (p *rowParser) addItem() (*event.Product, error) {
	o := p.cur
	if len(o.Items) >= MaxItems {
		return nil, p.lineErr("order %s has more than %d items", quote.Value(o.ID), MaxItems)
	}
	// Items of one order are contiguous in o.items: a new array (when full)
	// copies the order's items made so far.
	n := len(o.Items)
	if len(p.o.items) == cap(p.o.items) {
		grown := make([]event.Product, len(p.o.items), max(2*cap(p.o.items), 1024))
		copy(grown, p.o.items)
		p.o.items = grown
	}
	p.o.items = append(p.o.items, event.Product{Qty: 1})
	o.Items = p.o.items[len(p.o.items)-n-1 : len(p.o.items) : len(p.o.items)]
	return &o.Items[n], nil
}

// setItem sets an item field; empty text leaves it unset (qty 1).
func (p *rowParser) setItem(it *event.Product, field int, value []byte) error {
	value = trimSpace(value)
	if len(value) == 0 {
		return nil
	}
	switch field {
	case fieldItemID:
		if err := checkString(value); err != "" {
			return p.bad(field, value, "%s", err)
		}
		it.ID = p.o.keep(value)
	case fieldQty:
		q, err := strconv.ParseUint(unsafeString(value), 10, 32)
		if err != nil || q == 0 {
			return p.bad(field, value, "want a whole number from 1 to %d", uint32(math.MaxUint32))
		}
		it.Qty = uint32(q)
	case fieldPrice:
		f, err := parseAmount(value)
		if err != "" {
			return p.bad(field, value, "%s", err)
		}
		it.Price, it.HasPrice = f, true
	}
	return nil
}

// finish checks the current order as a whole and indexes its id.
func (p *rowParser) finish() error {
	o := p.cur
	switch {
	case o.ID == "":
		return p.lineErr("no order_id")
	case o.Email == "" && o.Customer == "":
		return p.lineErr("order %s has neither email nor customer_id: one names the person", quote.Value(o.ID))
	case o.TS == 0:
		return p.lineErr("order %s has no ts", quote.Value(o.ID))
	}
	for i := range o.Items {
		if o.Items[i].ID == "" {
			return p.lineErr("an item of order %s has no id", quote.Value(o.ID))
		}
	}
	if prev, ok := p.o.byID[o.ID]; ok {
		return p.bad(fieldOrder, []byte(o.ID), "the order of line %d has the same id (in CSV the rows of one order are consecutive)", p.o.List[prev].Line)
	}
	p.o.byID[o.ID] = len(p.o.List) - 1
	return nil
}

// parseTS parses Unix milliseconds (digits) or an RFC 3339 time.
func parseTS(value []byte) (int64, string) {
	if value[0] >= '0' && value[0] <= '9' && !strings.ContainsAny(unsafeString(value), "-:T") {
		ms, err := strconv.ParseInt(unsafeString(value), 10, 64)
		if err != nil {
			return 0, "want whole milliseconds since the epoch or an RFC 3339 time such as 2026-03-01T10:00:00Z"
		}
		return ms, ""
	}
	t, err := time.Parse(time.RFC3339Nano, unsafeString(value))
	if err != nil {
		return 0, "want milliseconds since the epoch or an RFC 3339 time such as 2026-03-01T10:00:00Z"
	}
	return t.UnixMilli(), ""
}

// parseAmount parses a finite amount ≥ 0 with '.' as the decimal point
// ("12,50" is refused rather than guessed).
func parseAmount(value []byte) (float64, string) {
	f, err := strconv.ParseFloat(unsafeString(value), 64)
	switch {
	case err != nil || math.IsInf(f, 0) || math.IsNaN(f):
		return 0, "want a finite number with '.' as the decimal point"
	case f < 0:
		return 0, "must not be negative"
	case f == 0:
		f = 0 // not -0
	}
	return f, ""
}

// checkString checks an id-like value: valid UTF-8 and not too long.
func checkString(value []byte) string {
	if len(value) > MaxString {
		return fmt.Sprintf("%d bytes long; the limit is %d", len(value), MaxString)
	}
	if !utf8.Valid(value) {
		return "not valid UTF-8"
	}
	return ""
}

func trimSpace(s []byte) []byte {
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// unsafeString views s as a string; s must not change while it is used.
func unsafeString(s []byte) string {
	if len(s) == 0 {
		return ""
	}
	return unsafe.String(&s[0], len(s))
}

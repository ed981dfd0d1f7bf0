package catalog

import (
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile/invalid"
)

// Options limit what Parse accepts. A zero or negative field takes its
// default (DefaultOptions).
type Options struct {
	// MaxString is the longest id, brand, category, age or attribute value,
	// in bytes. Default 2048, the event contract's limit.
	MaxString int
	// MaxAttrs is the most extra attributes one product may have. Default 64.
	MaxAttrs int
	// MaxLine is the longest NDJSON line or CSV record, in bytes. Default 1 MiB.
	MaxLine int
}

// DefaultOptions returns the default limits.
func DefaultOptions() Options {
	return Options{MaxString: 2048, MaxAttrs: 64, MaxLine: 1 << 20}
}

func (o Options) withDefaults() Options {
	def := DefaultOptions()
	if o.MaxString <= 0 {
		o.MaxString = def.MaxString
	}
	if o.MaxAttrs <= 0 {
		o.MaxAttrs = def.MaxAttrs
	}
	if o.MaxLine <= 0 {
		o.MaxLine = def.MaxLine
	}
	return o
}

// MaxKeyLen is the longest attribute key (column name, JSON member name,
// param name), in bytes.
const MaxKeyLen = 64

// Format is the syntax of an uploaded catalog.
type Format uint8

// The catalog formats.
const (
	FormatNDJSON Format = iota + 1 // one JSON object per line
	FormatCSV                      // a header row naming the columns, then one product per row
	FormatYML                      // a yml_catalog XML feed (shop/categories, shop/offers/offer)
)

// String returns the name of f.
func (f Format) String() string {
	switch f {
	case FormatNDJSON:
		return "ndjson"
	case FormatCSV:
		return "csv"
	case FormatYML:
		return "yml"
	}
	return "format(" + strconv.Itoa(int(f)) + ")"
}

// FormatOf returns the Format of a Content-Type header value:
// application/x-ndjson (or application/jsonl, application/json), text/csv,
// application/xml or text/xml (YML).
func FormatOf(contentType string) (Format, error) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return 0, fmt.Errorf("cannot parse Content-Type %q: want application/x-ndjson, text/csv or application/xml", contentType)
	}
	switch mt {
	case "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines", "application/json":
		return FormatNDJSON, nil
	case "text/csv", "application/csv":
		return FormatCSV, nil
	case "application/xml", "text/xml", "application/yml", "application/x-yml":
		return FormatYML, nil
	}
	return 0, fmt.Errorf("unsupported Content-Type %q: want application/x-ndjson, text/csv or application/xml", mt)
}

// LineError is the error of a bad catalog row: its 1-based line and why.
type LineError struct {
	Line   int
	Reason string
}

func (e *LineError) Error() string {
	return "line " + strconv.Itoa(e.Line) + ": " + e.Reason
}

// Parse reads a catalog of format f from r and calls fn with each product,
// in order, with the line it starts on. It stops at the first bad row with
// an *invalid.Error, "invalid <format> catalog: " and a *LineError (errors.As
// finds both), or at the first error of fn, which it returns as is.
//
// p and its strings are valid only during the call: fn copies (Clone,
// AppendProduct) what it keeps. Memory is bounded by the longest row, not by
// the catalog (a YML feed also keeps its category tree).
func Parse(r io.Reader, f Format, opts Options, fn func(line int, p *Product) error) error {
	opts = opts.withDefaults()
	var err error
	switch f {
	case FormatNDJSON:
		err = parseNDJSON(r, opts, fn)
	case FormatCSV:
		err = parseCSV(r, opts, fn)
	case FormatYML:
		err = parseYML(r, opts, fn)
	default:
		return fmt.Errorf("BUG: catalog.Parse called with unknown format %d", f)
	}
	if le := (*LineError)(nil); errors.As(err, &le) {
		return invalid.Errorf("invalid %s catalog: %w", f, err)
	}
	return err
}

// Fields a row names, whatever its syntax. A field has a few accepted names
// (lowercase): what feeds commonly call it.
const (
	fieldAttr = iota
	fieldID
	fieldBrand
	fieldCategory
	fieldAge
	fieldPrice
)

func fieldOf(name string) int {
	switch name {
	case "id", "product_id", "productid":
		return fieldID
	case "brand", "vendor":
		return fieldBrand
	case "category", "category_path", "categorypath":
		return fieldCategory
	case "age", "age_range", "agerange":
		return fieldAge
	case "price":
		return fieldPrice
	}
	return fieldAttr
}

// fieldName returns the canonical name of a field for errors.
var fieldName = [...]string{fieldID: "id", fieldBrand: "brand", fieldCategory: "category", fieldAge: "age", fieldPrice: "price"}

// rowBuilder fills a Product from the fields of one row, checking each.
// Strings are copied into arena, which is reset per row.
type rowBuilder struct {
	opts  Options
	p     Product
	seen  uint
	arena []byte
	cat   []byte // the category path being built
}

func (b *rowBuilder) reset() {
	b.p.Reset()
	b.seen = 0
	b.arena = b.arena[:0]
	b.cat = b.cat[:0]
}

// keep copies s into the arena and returns a string viewing the copy; like
// event.Batch, a string made before the arena grew views the old array,
// which is never written again.
func (b *rowBuilder) keep(s []byte) string {
	if len(s) == 0 {
		return ""
	}
	if cap(b.arena)-len(b.arena) < len(s) {
		// A new array: strings made so far keep viewing the old one.
		b.arena = make([]byte, 0, max(2*cap(b.arena), len(s), 256))
	}
	n := len(b.arena)
	b.arena = append(b.arena, s...)
	return unsafeString(b.arena[n:])
}

// set sets the field name (as the row names it) to the text value.
// A known field may be given once; an empty value leaves it unset.
func (b *rowBuilder) set(name []byte, value []byte) error {
	field := fieldOf(lowerASCII(name))
	if field != fieldAttr {
		if err := b.markSeen(field); err != nil {
			return err
		}
	}
	value = trimSpace(value)
	if field != fieldPrice && field != fieldAttr && len(value) > b.opts.MaxString {
		return fmt.Errorf("%s is %d bytes long; the limit is %d", fieldName[field], len(value), b.opts.MaxString)
	}
	if !utf8.Valid(value) {
		return fmt.Errorf("%s is not valid UTF-8", fieldNameOr(field, name))
	}
	switch field {
	case fieldID:
		b.p.ID = b.keep(value)
	case fieldBrand:
		b.p.Brand = b.keep(value)
	case fieldAge:
		b.p.Age = b.keep(value)
	case fieldCategory:
		return b.setCategory(value)
	case fieldPrice:
		return b.setPrice(value)
	default:
		return b.addAttr(name, value)
	}
	return nil
}

func fieldNameOr(field int, name []byte) string {
	if field != fieldAttr {
		return fieldName[field]
	}
	return "attribute " + quote.Value(name)
}

// setCategory normalises a category path: levels split on '/', each trimmed,
// empty ones dropped ("Baby / Food/" is "Baby/Food").
func (b *rowBuilder) setCategory(value []byte) error {
	for len(value) > 0 {
		level := value
		if i := indexByte(value, '/'); i >= 0 {
			level, value = value[:i], value[i+1:]
		} else {
			value = nil
		}
		b.addLevel(trimSpace(level))
	}
	return nil
}

// addCategoryLevel appends one level of a category given as a list
// (["Baby","Food"]).
func (b *rowBuilder) addCategoryLevel(level []byte) error {
	level = trimSpace(level)
	if indexByte(level, '/') >= 0 {
		return fmt.Errorf("category level %s contains '/'", quote.Value(level))
	}
	if !utf8.Valid(level) {
		return fmt.Errorf("category is not valid UTF-8")
	}
	b.addLevel(level)
	return nil
}

func (b *rowBuilder) addLevel(level []byte) {
	if len(level) == 0 {
		return
	}
	if len(b.cat) > 0 {
		b.cat = append(b.cat, '/')
	}
	b.cat = append(b.cat, level...)
}

// markSeen records that the row gave field, refusing a second time.
func (b *rowBuilder) markSeen(field int) error {
	if b.seen&(1<<field) != 0 {
		return fmt.Errorf("%s given twice", fieldName[field])
	}
	b.seen |= 1 << field
	return nil
}

// setPrice parses a price: a finite number ≥ 0, '.' as the decimal
// separator ("12.50"; "12,50" is refused rather than guessed).
func (b *rowBuilder) setPrice(value []byte) error {
	if len(value) == 0 {
		return nil
	}
	f, err := strconv.ParseFloat(unsafeString(value), 64)
	switch {
	case err != nil || math.IsInf(f, 0) || math.IsNaN(f):
		return fmt.Errorf("price must be a finite number, got %s", quote.Value(value))
	case f < 0:
		return fmt.Errorf("price must not be negative, got %s", quote.Value(value))
	case f == 0:
		f = 0 // not -0
	}
	b.p.Price, b.p.HasPrice = f, true
	return nil
}

// addAttr adds an extra attribute; an empty value is left out.
func (b *rowBuilder) addAttr(key, value []byte) error {
	key = trimSpace(key)
	switch {
	case len(key) == 0:
		return fmt.Errorf("empty attribute name")
	case len(key) > MaxKeyLen:
		return fmt.Errorf("attribute name %s is %d bytes long; the limit is %d", quote.Value(key), len(key), MaxKeyLen)
	case !utf8.Valid(key):
		return fmt.Errorf("attribute name is not valid UTF-8")
	case len(value) > b.opts.MaxString:
		return fmt.Errorf("attribute %s is %d bytes long; the limit is %d", quote.Value(key), len(value), b.opts.MaxString)
	case len(value) == 0:
		return nil
	case !utf8.Valid(value):
		return fmt.Errorf("attribute %s is not valid UTF-8", quote.Value(key))
	}
	for _, a := range b.p.Attrs {
		if a.Key == string(key) {
			return fmt.Errorf("attribute %s given twice", quote.Value(key))
		}
	}
	if len(b.p.Attrs) >= b.opts.MaxAttrs {
		return fmt.Errorf("more than %d attributes", b.opts.MaxAttrs)
	}
	b.p.Attrs = append(b.p.Attrs, Attr{Key: b.keep(key), Value: b.keep(value)})
	return nil
}

// finish checks the row as a whole.
func (b *rowBuilder) finish() error {
	if b.p.ID == "" {
		return fmt.Errorf("no product id")
	}
	if len(b.cat) > b.opts.MaxString {
		return fmt.Errorf("category is %d bytes long; the limit is %d", len(b.cat), b.opts.MaxString)
	}
	b.p.Category = b.keep(b.cat)
	return nil
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

// unsafeString views s as a string; s must not change while it is used.
func unsafeString(s []byte) string {
	if len(s) == 0 {
		return ""
	}
	return unsafe.String(&s[0], len(s))
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func indexByte(s []byte, c byte) int {
	for i, x := range s {
		if x == c {
			return i
		}
	}
	return -1
}

// lowerASCII returns name lowercased for matching field names; it allocates
// only for a name with uppercase letters.
func lowerASCII(name []byte) string {
	name = trimSpace(name)
	for _, c := range name {
		if 'A' <= c && c <= 'Z' {
			return strings.ToLower(string(name))
		}
	}
	return unsafeString(name)
}

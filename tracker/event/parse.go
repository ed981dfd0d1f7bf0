package event

import (
	"encoding/binary"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/affinityhq/affinity/internal/quote"
)

// The JSON scanner under DecodeBatch: strict RFC 8259 (UTF-8 checked, no
// trailing commas, no NaN), reading d.data from d.pos. Strings are returned
// unescaped, viewing d.data when they hold no escape and d.tmp otherwise;
// either view is valid until the next string is read.

// plain marks the bytes a string may hold as is: printable ASCII but '"'
// and '\\'. Everything else takes the slow path of str.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// ws skips JSON whitespace.
func (d *Decoder) ws() {
	if d.pos < len(d.data) && d.data[d.pos] > ' ' {
		return // the common case: browsers send compact JSON
	}
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// peek skips whitespace and returns the next byte, or 0 at the end.
func (d *Decoder) peek() byte {
	d.ws()
	if d.pos < len(d.data) {
		return d.data[d.pos]
	}
	return 0
}

// null consumes a null literal if one comes next.
func (d *Decoder) null() bool {
	if d.peek() == 'n' && len(d.data)-d.pos >= 4 && string(d.data[d.pos:d.pos+4]) == "null" {
		d.pos += 4
		return true
	}
	return false
}

// openObject consumes the '{' at d.pos and reports whether members follow.
func (d *Decoder) openObject() (bool, error) {
	d.pos++
	if d.peek() == '}' {
		d.pos++
		return false, nil
	}
	return true, nil
}

// key reads a member's key and the ':' after it.
func (d *Decoder) key() ([]byte, error) {
	if d.peek() != '"' {
		return nil, d.syntaxErr("expected a string key")
	}
	k, err := d.str()
	if err != nil {
		return nil, err
	}
	if d.peek() != ':' {
		return nil, d.syntaxErr("expected ':' after an object key")
	}
	d.pos++
	return k, nil
}

// nextMember consumes what follows a member's value and reports whether
// another member follows.
func (d *Decoder) nextMember() (bool, error) {
	switch d.peek() {
	case ',':
		d.pos++
		return true, nil
	case '}':
		d.pos++
		return false, nil
	}
	return false, d.syntaxErr("expected ',' or '}' after an object member")
}

// openArray consumes the '[' at d.pos and reports whether elements follow.
func (d *Decoder) openArray() (bool, error) {
	d.pos++
	if d.peek() == ']' {
		d.pos++
		return false, nil
	}
	return true, nil
}

// nextElement consumes what follows an array element and reports whether
// another element follows.
func (d *Decoder) nextElement() (bool, error) {
	switch d.peek() {
	case ',':
		d.pos++
		return true, nil
	case ']':
		d.pos++
		return false, nil
	}
	return false, d.syntaxErr("expected ',' or ']' after an array element")
}

// once records in seen that the key with bit was read, refusing a second
// time.
func (d *Decoder) once(seen *uint, bit uint, key string) error {
	if *seen&bit != 0 {
		return d.fail(ReasonBadJSON, key, "duplicate key")
	}
	*seen |= bit
	return nil
}

// stringValue reads a string or null (reporting true); any other value is a
// type error with reason.
func (d *Decoder) stringValue(reason, field string) ([]byte, bool, error) {
	if d.peek() == '"' {
		s, err := d.str()
		return s, false, err
	}
	if d.null() {
		return nil, true, nil
	}
	return nil, false, d.typeErr(reason, field, "a string")
}

// numberValue reads the text of a number or null (reporting true); any
// other value is a type error with reason.
func (d *Decoder) numberValue(reason, field string) ([]byte, bool, error) {
	if c := d.peek(); c == '-' || c >= '0' && c <= '9' {
		raw, err := d.number()
		return raw, false, err
	}
	if d.null() {
		return nil, true, nil
	}
	return nil, false, d.typeErr(reason, field, "a number")
}

// str reads the string starting at the '"' at d.pos and returns it
// unescaped.
func (d *Decoder) str() ([]byte, error) {
	data := d.data
	start := d.pos + 1
	i := start
	for i < len(data) && plain[data[i]] {
		i++
	}
	if i < len(data) && data[i] == '"' {
		d.pos = i + 1
		return data[start:i], nil
	}
	return d.strSlow(start, i)
}

// strSlow is str for strings holding escapes or non-ASCII bytes from i on.
func (d *Decoder) strSlow(start, i int) ([]byte, error) {
	data := d.data
	tmp := d.tmp[:0]
	escaped := false
	run := start // the start of the bytes not yet copied to tmp
	for i < len(data) {
		c := data[i]
		switch {
		case plain[c]:
			i++
		case c == '"':
			d.pos = i + 1
			if !escaped {
				return data[start:i], nil
			}
			tmp = append(tmp, data[run:i]...)
			d.tmp = tmp
			return tmp, nil
		case c == '\\':
			tmp = append(tmp, data[run:i]...)
			escaped = true
			n, r := unescape(data[i:])
			if n == 0 {
				d.pos = i
				return nil, d.syntaxErr("invalid escape in a string")
			}
			if r < utf8.RuneSelf {
				tmp = append(tmp, byte(r))
			} else {
				tmp = utf8.AppendRune(tmp, r)
			}
			i += n
			run = i
		case c < 0x20:
			d.pos = i
			return nil, d.syntaxErr("control character in a string")
		default:
			r, n := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && n == 1 {
				d.pos = i
				return nil, d.syntaxErr("invalid UTF-8 in a string")
			}
			i += n
		}
	}
	d.pos = len(data)
	return nil, d.syntaxErr("unterminated string")
}

// unescape decodes the escape sequence s starts with, returning its length
// (0 if invalid) and the rune it stands for. Like encoding/json, it joins
// UTF-16 surrogate pairs and turns a lone surrogate into U+FFFD.
func unescape(s []byte) (int, rune) {
	if len(s) < 2 {
		return 0, 0
	}
	switch s[1] {
	case '"', '\\', '/':
		return 2, rune(s[1])
	case 'b':
		return 2, '\b'
	case 'f':
		return 2, '\f'
	case 'n':
		return 2, '\n'
	case 'r':
		return 2, '\r'
	case 't':
		return 2, '\t'
	case 'u':
		r := hex4(s[2:])
		if r < 0 {
			return 0, 0
		}
		if !utf16.IsSurrogate(r) {
			return 6, r
		}
		if len(s) >= 12 && s[6] == '\\' && s[7] == 'u' {
			if r2 := hex4(s[8:]); r2 >= 0 {
				if pair := utf16.DecodeRune(r, r2); pair != utf8.RuneError {
					return 12, pair
				}
			}
		}
		return 6, utf8.RuneError
	}
	return 0, 0
}

// hex4 returns the value of the 4 hex digits s starts with, or -1.
func hex4(s []byte) rune {
	if len(s) < 4 {
		return -1
	}
	var r rune
	for _, c := range s[:4] {
		v := hexVal[c]
		if v < 0 {
			return -1
		}
		r = r<<4 | rune(v)
	}
	return r
}

var hexVal = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = int8(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = int8(c - 'a' + 10)
		t[c-'a'+'A'] = int8(c - 'a' + 10)
	}
	return t
}()

// number reads a number and returns its text:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *Decoder) number() ([]byte, error) {
	data := d.data
	start, i := d.pos, d.pos
	if i < len(data) && data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && data[i] >= '1' && data[i] <= '9':
		i = digits(data, i)
	default:
		d.pos = i
		return nil, d.syntaxErr("expected a value")
	}
	if i < len(data) && data[i] == '.' {
		if i++; i == len(data) || data[i] < '0' || data[i] > '9' {
			d.pos = i
			return nil, d.syntaxErr("expected a digit after the decimal point")
		}
		i = digits(data, i)
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		if i++; i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i == len(data) || data[i] < '0' || data[i] > '9' {
			d.pos = i
			return nil, d.syntaxErr("expected a digit in the exponent")
		}
		i = digits(data, i)
	}
	d.pos = i
	return data[start:i], nil
}

func digits(data []byte, i int) int {
	for i < len(data) && data[i] >= '0' && data[i] <= '9' {
		i++
	}
	return i
}

// skip reads and checks a value the contract does not define (forward
// compatibility) at nesting depth.
func (d *Decoder) skip(depth int) error {
	switch d.peek() {
	case '{':
		if depth == maxSkipDepth {
			return d.syntaxErr(fmt.Sprintf("values nested deeper than %d levels", maxSkipDepth))
		}
		more, err := d.openObject()
		for more && err == nil {
			if _, err = d.key(); err == nil {
				if err = d.skip(depth + 1); err == nil {
					more, err = d.nextMember()
				}
			}
		}
		return err
	case '[':
		if depth == maxSkipDepth {
			return d.syntaxErr(fmt.Sprintf("values nested deeper than %d levels", maxSkipDepth))
		}
		more, err := d.openArray()
		for more && err == nil {
			if err = d.skip(depth + 1); err == nil {
				more, err = d.nextElement()
			}
		}
		return err
	case '"':
		_, err := d.str()
		return err
	case 't':
		return d.literal("true")
	case 'f':
		return d.literal("false")
	case 'n':
		return d.literal("null")
	}
	_, err := d.number()
	return err
}

func (d *Decoder) literal(lit string) error {
	if len(d.data)-d.pos < len(lit) || string(d.data[d.pos:d.pos+len(lit)]) != lit {
		return d.syntaxErr("expected a value")
	}
	d.pos += len(lit)
	return nil
}

// parseInt parses the text of a JSON number as an int64, reporting false
// for fractions, exponents and overflow.
func parseInt(raw []byte) (int64, bool) {
	neg := raw[0] == '-'
	if neg {
		raw = raw[1:]
	}
	if len(raw) > 19 {
		return 0, false
	}
	var u uint64
	for _, c := range raw {
		if c < '0' || c > '9' {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
	}
	switch {
	case neg && u <= 1<<63:
		return -int64(u), true
	case !neg && u < 1<<63:
		return int64(u), true
	}
	return 0, false
}

// syntaxErr reports JSON that is not well-formed at d.pos.
func (d *Decoder) syntaxErr(msg string) error {
	if d.pos >= len(d.data) {
		msg += ", found the end of the body"
	} else {
		msg += ", found " + quote.Value(d.data[d.pos:])
	}
	field := ""
	if d.ev >= 0 {
		field = fmt.Sprintf("%s[%d]", d.list, d.ev)
	}
	return &ValidationError{Reason: ReasonBadJSON, Event: d.ev, Field: field,
		Msg: fmt.Sprintf("invalid JSON at byte %d: %s", d.pos, msg)}
}

// typeErr reports that the value at d.pos, well-formed but of the wrong
// type, is not what field must be.
func (d *Decoder) typeErr(reason, field, want string) error {
	start := d.pos
	if err := d.skip(0); err != nil {
		return err
	}
	return d.fail(reason, field, "must be "+want+", got "+snippet(d.data[start:d.pos]))
}

// fail reports a well-formed body breaking the contract at field of the
// current object.
func (d *Decoder) fail(reason, field, msg string) error {
	return &ValidationError{Reason: reason, Event: d.ev, Field: d.path(field), Msg: msg}
}

// path returns the JSON path of field in the current object, e.g.
// events[3].order.items[1].price or events[0].traits["birthday"].
func (d *Decoder) path(field string) string {
	var p []byte
	if d.ev >= 0 {
		p = fmt.Appendf(p, "%s[%d]", d.list, d.ev)
	}
	if d.obj != "" {
		if len(p) > 0 {
			p = append(p, '.')
		}
		p = append(p, d.obj...)
		if d.obj == "order.items" || d.obj == "properties.products" {
			p = fmt.Appendf(p, "[%d]", d.item)
		}
	}
	switch {
	case field == "":
	case d.obj == "traits":
		p = fmt.Appendf(p, "[%s]", quote.Value(field))
	default:
		if len(p) > 0 {
			p = append(p, '.')
		}
		p = append(p, field...)
	}
	return string(p)
}

// idSet finds duplicate event ids in a batch in O(n): an open-addressing
// table of event indexes, emptied in O(1) per batch by a generation stamp.
type idSet struct {
	gen   uint32
	slots []idSlot
}

type idSlot struct {
	gen uint32
	idx int32
}

// reset empties s for a batch of at most n events.
func (s *idSet) reset(n int) {
	size := 16
	for size < 2*n {
		size *= 2
	}
	if len(s.slots) < size {
		s.slots = make([]idSlot, size)
		s.gen = 0
	}
	if s.gen++; s.gen == 0 { // wrapped: stamps of 4 billion batches ago would match
		clear(s.slots)
		s.gen = 1
	}
}

// add adds the id of events[i], returning the index of an earlier event
// with the same id, or -1.
func (s *idSet) add(events []Event, i int) int {
	id := &events[i].ID
	// Ids are client-made, so a hostile batch may collide on purpose: at
	// worst that is O(n²) over at most Options.MaxEvents events.
	h := (binary.LittleEndian.Uint64(id[:8]) ^ binary.LittleEndian.Uint64(id[8:])) * 0x9e3779b97f4a7c15
	mask := uint64(len(s.slots) - 1)
	for j := h >> 32 & mask; ; j = (j + 1) & mask {
		slot := &s.slots[j]
		if slot.gen != s.gen {
			*slot = idSlot{gen: s.gen, idx: int32(i)}
			return -1
		}
		if events[slot.idx].ID == *id {
			return int(slot.idx)
		}
	}
}

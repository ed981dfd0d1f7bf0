package lists

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"unicode/utf8"

	"github.com/valyala/fastjson"

	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/storage/state"
)

// Format is the syntax of an upload.
type Format uint8

// The upload formats.
const (
	FormatCSV    Format = iota + 1 // a header row, then one row per person
	FormatNDJSON                   // one JSON object per line
)

// FormatOf returns the Format of a Content-Type header value: text/csv
// (or application/csv), application/x-ndjson (or application/ndjson,
// application/jsonl, application/json).
func FormatOf(contentType string) (Format, error) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return 0, fmt.Errorf("cannot parse Content-Type %s: want text/csv or application/x-ndjson", quote.Value(contentType))
	}
	switch mt {
	case "text/csv", "application/csv":
		return FormatCSV, nil
	case "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines", "application/json":
		return FormatNDJSON, nil
	}
	return 0, fmt.Errorf("unsupported Content-Type %s: want text/csv or application/x-ndjson", quote.Value(mt))
}

// Limits of a row.
const (
	// MaxEmailLen is the longest email (RFC 5321's path limit).
	MaxEmailLen = 254
	// MaxCustomerLen is the longest customer id, the profile's limit.
	MaxCustomerLen = profile.MaxValueLen
	// MaxLine is the longest line of an upload, in bytes.
	MaxLine = 64 << 10
)

// Parse reads an upload of format f from r and calls fn with each row's
// normalised email and customer id (empty when the row has none; never
// both), in order, with its 1-based line. It stops at the first bad row
// with an *invalid.Error "line N: invalid <field> <value>: reason", or at
// the first error of fn, which it returns as is. email and customer are
// valid only during the call. An upload of no rows is valid (an empty
// list).
func Parse(r io.Reader, f Format, fn func(line int, email, customer []byte) error) error {
	p := parser{r: bufio.NewReaderSize(r, 64<<10), fn: fn}
	switch f {
	case FormatCSV:
		return p.csv()
	case FormatNDJSON:
		return p.ndjson()
	}
	return fmt.Errorf("BUG: lists.Parse of format %d", f)
}

type parser struct {
	r    *bufio.Reader
	fn   func(line int, email, customer []byte) error
	line int
	long []byte
	bufs [][]byte // the unquoted cells of a line, one buffer per quoted cell
	em   []byte   // the normalised email
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// lineError returns the error of a bad row.
func (p *parser) lineError(format string, args ...any) error {
	return invalid.Errorf("line %d: %s", p.line, fmt.Sprintf(format, args...))
}

// next returns the next line without its "\n" or "\r\n", valid until the
// next call, or io.EOF after the last one.
func (p *parser) next() ([]byte, error) {
	b, err := p.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		p.long = append(p.long[:0], b...)
		for errors.Is(err, bufio.ErrBufferFull) && len(p.long) <= MaxLine {
			b, err = p.r.ReadSlice('\n')
			p.long = append(p.long, b...)
		}
		b = p.long
	}
	if len(b) == 0 && errors.Is(err, io.EOF) {
		return nil, io.EOF
	}
	p.line++
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, fmt.Errorf("cannot read line %d of the list: %w", p.line, err)
	}
	b = bytes.TrimSuffix(b, []byte{'\n'})
	b = bytes.TrimSuffix(b, []byte{'\r'})
	if len(b) > MaxLine {
		return nil, p.lineError("longer than %d bytes", MaxLine)
	}
	if p.line == 1 {
		b = bytes.TrimPrefix(b, utf8BOM)
	}
	return b, nil
}

// nextRow returns the next line that is not blank. Blank lines are bad
// rows, except after the last row.
func (p *parser) nextRow() ([]byte, error) {
	blank := 0 // the first blank line not yet followed by a row
	for {
		line, err := p.next()
		if err != nil {
			return nil, err
		}
		if len(trimSpace(line)) == 0 {
			if blank == 0 {
				blank = p.line
			}
			continue
		}
		if blank != 0 {
			p.line = blank
			return nil, p.lineError("invalid row: empty")
		}
		return line, nil
	}
}

// rows calls fn with each row (nextRow) until the end or an error.
func (p *parser) rows(fn func(line []byte) error) error {
	for {
		line, err := p.nextRow()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err == nil {
			err = fn(line)
		}
		if err != nil {
			return err
		}
	}
}

// emit checks and normalises a row's values and passes them to fn.
func (p *parser) emit(email, customer []byte) error {
	email, customer = trimSpace(email), trimSpace(customer)
	if len(email) == 0 && len(customer) == 0 {
		return p.lineError("invalid row: neither an email nor a customer_id")
	}
	if len(email) > 0 {
		var err error
		if p.em, err = normaliseEmail(p.em[:0], email); err != nil {
			return p.lineError("%s", err)
		}
		if err := p.fn(p.line, p.em, nil); err != nil {
			return err
		}
	}
	if len(customer) > 0 {
		if len(customer) > MaxCustomerLen {
			return p.lineError("invalid customer_id %s: longer than %d bytes", quote.Value(customer), MaxCustomerLen)
		}
		if i := bytes.IndexFunc(customer, isControl); i >= 0 {
			return p.lineError("invalid customer_id %s: a control character at byte %d", quote.Value(customer), i+1)
		}
		return p.fn(p.line, nil, customer)
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// normaliseEmail appends email as identify stores it (state.NormalizeEmail:
// trimmed, lower-cased) to dst, refusing what is not local@domain.
func normaliseEmail(dst, email []byte) ([]byte, error) {
	if len(email) > MaxEmailLen {
		return dst, fmt.Errorf("invalid email %s: longer than %d bytes", quote.Value(email), MaxEmailLen)
	}
	at := bytes.IndexByte(email, '@')
	switch {
	case at <= 0 || at == len(email)-1 || bytes.IndexByte(email[at+1:], '@') >= 0:
		return dst, fmt.Errorf("invalid email %s: want one @ between a local part and a domain", quote.Value(email))
	case !utf8.Valid(email):
		// strings.ToLower would turn each bad byte into U+FFFD's three
		return dst, fmt.Errorf("invalid email %s: not UTF-8", quote.Value(email))
	case bytes.IndexFunc(email, func(r rune) bool { return r <= ' ' || r == 0x7f || r == ',' || r == ';' || r == '"' }) >= 0:
		return dst, fmt.Errorf("invalid email %s: spaces, control characters, commas, semicolons and quotes are not allowed", quote.Value(email))
	}
	for _, c := range email {
		if c >= 0x80 {
			return append(dst, state.NormalizeEmail(string(email))...), nil
		}
	}
	for _, c := range email {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// csv parses a header row naming the columns (email and/or customer_id,
// case-insensitive; others are ignored), then one row per line with the
// header's number of cells. The delimiter is ',' unless the header holds
// ';' or a tab and no ','. Cells may be quoted ("a ""b"""); a quoted cell
// does not span lines.
func (p *parser) csv() error {
	header, err := p.next()
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		return err
	}
	delim := byte(',')
	if bytes.IndexByte(header, ',') < 0 {
		if bytes.IndexByte(header, ';') >= 0 {
			delim = ';'
		} else if bytes.IndexByte(header, '\t') >= 0 {
			delim = '\t'
		}
	}
	emailCol, custCol, cols := -1, -1, 0
	err = p.cells(header, delim, func(i int, cell []byte) error {
		cols++
		name := string(bytes.ToLower(trimSpace(cell)))
		var col *int
		switch name {
		case "email":
			col = &emailCol
		case "customer_id":
			col = &custCol
		default:
			return nil
		}
		if *col >= 0 {
			return p.lineError("invalid header: two %s columns", name)
		}
		*col = i
		return nil
	})
	if err != nil {
		return err
	}
	if emailCol < 0 && custCol < 0 {
		return p.lineError("invalid header %s: want an email and/or a customer_id column", quote.Value(header))
	}
	return p.rows(func(line []byte) error {
		var email, customer []byte
		n := 0
		err = p.cells(line, delim, func(i int, cell []byte) error {
			n++
			switch i {
			case emailCol:
				email = cell
			case custCol:
				customer = cell
			}
			return nil
		})
		if err != nil {
			return err
		}
		if n != cols {
			return p.lineError("invalid row: %d cells; the header has %d", n, cols)
		}
		return p.emit(email, customer)
	})
}

// cells calls fn with each cell of a CSV line, unquoted. The cells stay
// valid until the next call of cells: a quoted cell is unquoted into a
// buffer of its own.
func (p *parser) cells(line []byte, delim byte, fn func(i int, cell []byte) error) error {
	quoted := 0
	for i := 0; ; i++ {
		var cell []byte
		if len(line) > 0 && line[0] == '"' {
			if quoted == len(p.bufs) {
				p.bufs = append(p.bufs, nil)
			}
			buf := p.bufs[quoted][:0]
			j := 1
			for {
				k := bytes.IndexByte(line[j:], '"')
				if k < 0 {
					return p.lineError("invalid cell %d: an opening quote without its closing one", i+1)
				}
				buf = append(buf, line[j:j+k]...)
				j += k + 1
				if j < len(line) && line[j] == '"' {
					buf = append(buf, '"')
					j++
					continue
				}
				break
			}
			p.bufs[quoted] = buf
			quoted++
			cell, line = buf, line[j:]
			if len(line) > 0 && line[0] != delim {
				return p.lineError("invalid cell %d: text after its closing quote", i+1)
			}
		} else {
			k := bytes.IndexByte(line, delim)
			if k < 0 {
				k = len(line)
			}
			cell, line = line[:k], line[k:]
		}
		if err := fn(i, cell); err != nil {
			return err
		}
		if len(line) == 0 {
			return nil
		}
		line = line[1:] // the delimiter
	}
}

// ndjson parses one JSON object per line with a string member email and/or
// customer_id (a number is taken as its text); other members are ignored,
// null is absent.
func (p *parser) ndjson() error {
	var jp fastjson.Parser
	return p.rows(func(line []byte) error {
		v, err := jp.ParseBytes(line)
		if err != nil {
			return p.lineError("invalid JSON %s: %s", quote.Value(line), err)
		}
		o, err := v.Object()
		if err != nil {
			return p.lineError("invalid row %s: want a JSON object", quote.Value(line))
		}
		var email, customer []byte
		var ferr error
		o.Visit(func(k []byte, v *fastjson.Value) {
			if ferr != nil {
				return
			}
			var dst *[]byte
			switch string(k) {
			case "email":
				dst = &email
			case "customer_id":
				dst = &customer
			default:
				return
			}
			switch v.Type() {
			case fastjson.TypeNull:
			case fastjson.TypeString:
				*dst, _ = v.StringBytes()
			case fastjson.TypeNumber:
				if string(k) == "customer_id" {
					*dst = v.MarshalTo(nil)
					return
				}
				fallthrough
			default:
				ferr = p.lineError("invalid %s %s: want a string", k, quote.Value(v.MarshalTo(nil)))
			}
		})
		if ferr != nil {
			return ferr
		}
		return p.emit(email, customer)
	})
}

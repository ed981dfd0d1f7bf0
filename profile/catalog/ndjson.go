package catalog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/valyala/fastjson"

	"github.com/affinityhq/affinity/internal/quote"
)

// lineReader reads lines of at most max bytes, without their "\n" or
// "\r\n", from a bufio.Reader: a line longer than the buffer is gathered in
// long, so memory is bounded by max.
type lineReader struct {
	r    *bufio.Reader
	max  int
	line int // the number of the line last returned, 1-based
	long []byte
}

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// next returns the next line, valid until the next call, or io.EOF.
func (lr *lineReader) next() ([]byte, error) {
	lr.line++
	b, err := lr.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		lr.long = append(lr.long[:0], b...)
		for errors.Is(err, bufio.ErrBufferFull) {
			if len(lr.long) > lr.max {
				return nil, &LineError{Line: lr.line, Reason: fmt.Sprintf("longer than %d bytes (Options.MaxLine)", lr.max)}
			}
			b, err = lr.r.ReadSlice('\n')
			lr.long = append(lr.long, b...)
		}
		b = lr.long
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("cannot read catalog line %d: %w", lr.line, err)
	}
	if len(b) == 0 && err != nil {
		return nil, io.EOF
	}
	if len(bytes.TrimRight(b, "\r\n")) > lr.max {
		return nil, &LineError{Line: lr.line, Reason: fmt.Sprintf("longer than %d bytes (Options.MaxLine)", lr.max)}
	}
	b = bytes.TrimSuffix(b, []byte{'\n'})
	b = bytes.TrimSuffix(b, []byte{'\r'})
	if lr.line == 1 {
		b = bytes.TrimPrefix(b, utf8BOM)
	}
	return b, nil
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// parseNDJSON parses one JSON object per line; blank lines are skipped.
// Members: id (string or number, required), brand, category (a path string
// or a list of levels), age, price (number or numeric string); any other
// member is an attribute, a string kept as is and another value as its
// JSON text. null is the same as absent.
func parseNDJSON(r io.Reader, opts Options, fn func(int, *Product) error) error {
	lr := newLineReader(r, opts.MaxLine)
	var jp fastjson.Parser
	b := rowBuilder{opts: opts}
	var text []byte
	for {
		line, err := lr.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if len(trimSpace(line)) == 0 {
			continue
		}
		v, err := jp.ParseBytes(line)
		if err != nil {
			return &LineError{Line: lr.line, Reason: "invalid JSON: " + quote.OneLine(err.Error())}
		}
		obj, err := v.Object()
		if err != nil {
			return &LineError{Line: lr.line, Reason: "want a JSON object, got " + v.Type().String()}
		}
		b.reset()
		var ferr error
		obj.Visit(func(key []byte, v *fastjson.Value) {
			if ferr == nil {
				text, ferr = b.setJSON(key, v, text)
			}
		})
		if ferr == nil {
			ferr = b.finish()
		}
		if ferr != nil {
			return &LineError{Line: lr.line, Reason: ferr.Error()}
		}
		if err := fn(lr.line, &b.p); err != nil {
			return err
		}
	}
}

// setJSON sets the member key to the JSON value v; text is scratch space.
func (b *rowBuilder) setJSON(key []byte, v *fastjson.Value, text []byte) ([]byte, error) {
	field := fieldOf(lowerASCII(key))
	switch v.Type() {
	case fastjson.TypeNull:
		return text, nil
	case fastjson.TypeString:
		s, _ := v.StringBytes()
		return text, b.set(key, s)
	case fastjson.TypeNumber, fastjson.TypeTrue, fastjson.TypeFalse:
		if field == fieldBrand || field == fieldCategory {
			return text, fmt.Errorf("%s must be a string, got %s", fieldName[field], v.Type())
		}
		if field == fieldPrice || field == fieldID || field == fieldAge {
			if v.Type() != fastjson.TypeNumber {
				return text, fmt.Errorf("%s must be a string or number, got %s", fieldName[field], v.Type())
			}
		}
		text = v.MarshalTo(text[:0])
		return text, b.set(key, text)
	case fastjson.TypeArray:
		if field == fieldCategory {
			if err := b.markSeen(fieldCategory); err != nil {
				return text, err
			}
			levels, _ := v.Array()
			for _, l := range levels {
				s, err := l.StringBytes()
				if err != nil {
					return text, fmt.Errorf("category levels must be strings, got %s", l.Type())
				}
				if err := b.addCategoryLevel(s); err != nil {
					return text, err
				}
			}
			return text, nil
		}
	}
	if field != fieldAttr {
		return text, fmt.Errorf("%s must be a string, got %s", fieldName[field], v.Type())
	}
	text = v.MarshalTo(text[:0])
	return text, b.addAttr(key, text)
}

package catalog

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"

	"github.com/affinityhq/affinity/internal/quote"
)

// parseCSV parses a header row naming the columns, then one product per
// row. Columns id (required), brand, category (a path "Baby/Food"), age and
// price are the product's fields (other accepted names: see fieldOf); any
// other column is an attribute, left out where the row's cell is empty.
// The delimiter is ',' unless the header holds more ';' or tabs; a UTF-8
// BOM before the header is skipped. Every row must have the header's number
// of cells.
func parseCSV(r io.Reader, opts Options, fn func(int, *Product) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	if bom, err := br.Peek(3); err == nil && bytes.Equal(bom, utf8BOM) {
		_, _ = br.Discard(3)
	}
	cr := csv.NewReader(br)
	cr.Comma = SniffDelimiter(br)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil // an empty catalog
	}
	if err != nil {
		return csvError(err)
	}
	names := make([][]byte, len(header))
	var seen uint
	hasID := false
	for i, h := range header {
		name := trimSpace([]byte(h))
		if i == 0 {
			name = bytes.TrimPrefix(name, utf8BOM)
		}
		names[i] = name
		switch f := fieldOf(lowerASCII(name)); {
		case len(name) == 0:
			return &LineError{Line: 1, Reason: fmt.Sprintf("column %d has no name", i+1)}
		case len(name) > MaxKeyLen:
			return &LineError{Line: 1, Reason: fmt.Sprintf("column name %s is %d bytes long; the limit is %d", quote.Value(name), len(name), MaxKeyLen)}
		case f != fieldAttr && seen&(1<<f) != 0:
			return &LineError{Line: 1, Reason: fmt.Sprintf("two columns name the %s (%s)", fieldName[f], quote.Value(name))}
		case f != fieldAttr:
			seen |= 1 << f
			hasID = hasID || f == fieldID
		}
		for _, prev := range names[:i] {
			if bytes.EqualFold(prev, name) {
				return &LineError{Line: 1, Reason: fmt.Sprintf("two columns named %s", quote.Value(name))}
			}
		}
	}
	if !hasID {
		return &LineError{Line: 1, Reason: "no id column in the header"}
	}
	if extra := len(header) - popcount(seen); extra > opts.MaxAttrs {
		return &LineError{Line: 1, Reason: fmt.Sprintf("%d attribute columns; the limit is %d (Options.MaxAttrs)", extra, opts.MaxAttrs)}
	}
	cr.FieldsPerRecord = len(header)
	b := rowBuilder{opts: opts}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return csvError(err)
		}
		line, _ := cr.FieldPos(0)
		size := 0
		for _, c := range rec {
			size += len(c)
		}
		if size > opts.MaxLine {
			return &LineError{Line: line, Reason: fmt.Sprintf("longer than %d bytes (Options.MaxLine)", opts.MaxLine)}
		}
		b.reset()
		for i, cell := range rec {
			if err := b.set(names[i], []byte(cell)); err != nil {
				return &LineError{Line: line, Reason: err.Error()}
			}
		}
		if err := b.finish(); err != nil {
			return &LineError{Line: line, Reason: err.Error()}
		}
		if err := fn(line, &b.p); err != nil {
			return err
		}
	}
}

func popcount(x uint) int {
	n := 0
	for ; x != 0; x &= x - 1 {
		n++
	}
	return n
}

// csvError turns an encoding/csv error into a *LineError.
func csvError(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		reason := pe.Err.Error()
		if errors.Is(pe.Err, csv.ErrFieldCount) {
			reason = "wrong number of cells: the header has a different number of columns"
		}
		return &LineError{Line: pe.Line, Reason: reason}
	}
	return fmt.Errorf("cannot read catalog: %w", err)
}

// SniffDelimiter picks ',' ';' or '\t', whichever the header line (outside
// quotes) holds most of; ',' on a tie.
// The order importer (profile/importer) reads its CSV with it too.
func SniffDelimiter(br *bufio.Reader) rune {
	head, _ := br.Peek(br.Size())
	if i := bytes.IndexByte(head, '\n'); i >= 0 {
		head = head[:i]
	}
	var comma, semi, tab int
	quoted := false
	for _, c := range head {
		switch {
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == ',':
			comma++
		case c == ';':
			semi++
		case c == '\t':
			tab++
		}
	}
	switch {
	case semi > comma && semi >= tab:
		return ';'
	case tab > comma && tab > semi:
		return '\t'
	}
	return ','
}

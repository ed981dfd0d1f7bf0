package importer

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"unsafe"

	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile/catalog"
	"github.com/affinityhq/affinity/tracker/event"
)

// parseCSV parses a header row naming the columns, then one row per order
// item, as CRM and ERP exports write order lines: consecutive rows with the
// same order_id are one order, each row adding its item (item_id, qty,
// price; a row with an empty item_id adds none). The order's columns
// (email, customer_id, ts, total, store) are read from its first row; a
// later row of the order leaves them empty or repeats them. Other accepted
// column names: see fieldOf; unknown columns are ignored. The delimiter is
// ',' unless the header holds more ';' or tabs (catalog.SniffDelimiter); a
// UTF-8 BOM is skipped; every row has the header's number of cells.
func (p *rowParser) parseCSV(body []byte) error {
	body = bytes.TrimPrefix(body, utf8BOM)
	br := bufio.NewReaderSize(bytes.NewReader(body), 64<<10)
	cr := csv.NewReader(br)
	cr.Comma = catalog.SniffDelimiter(br)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		return p.csvError(err)
	}
	p.line = 1
	cols := make([]int, len(header))
	var given uint
	for i, h := range header {
		f := fieldOf(p.lowerName(h), false)
		if f == fieldItems {
			f = fieldNone // a JSON list has no place in a cell
		}
		if f != fieldNone && given&(1<<f) != 0 {
			return p.lineErr("two columns give the %s (%s)", fieldName[f], quote.Value(h))
		}
		given |= 1 << f
		cols[i] = f
	}
	switch {
	case given&(1<<fieldOrder) == 0:
		return p.lineErr("no order_id column in the header")
	case given&(1<<fieldEmail|1<<fieldCustomer) == 0:
		return p.lineErr("no email or customer_id column in the header")
	case given&(1<<fieldTS) == 0:
		return p.lineErr("no ts column in the header")
	}
	cr.FieldsPerRecord = len(header)
	// first holds the order's cells of its first row, to compare the next
	// rows of the order with.
	first := make([][]byte, len(header))
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return p.csvError(err)
		}
		p.line, _ = cr.FieldPos(0)
		var id []byte
		for i, f := range cols {
			if f == fieldOrder {
				id = trimSpace(viewBytes(rec[i]))
			}
		}
		if p.cur == nil || len(id) == 0 || string(id) != p.cur.ID {
			if err := p.finishCSV(); err != nil {
				return err
			}
			p.begin()
			for i, f := range cols {
				if f < fieldItemID {
					first[i] = append(first[i][:0], rec[i]...)
					if err := p.set(f, viewBytes(rec[i])); err != nil {
						return err
					}
				}
			}
		} else {
			for i, f := range cols {
				if cell := trimSpace(viewBytes(rec[i])); f < fieldItemID && len(cell) > 0 && string(cell) != string(trimSpace(first[i])) {
					return p.bad(f, cell, "order %s has %s %s on line %d", quote.Value(p.cur.ID), fieldName[f], quote.Value(trimSpace(first[i])), p.cur.Line)
				}
			}
		}
		if err := p.csvItem(cols, rec); err != nil {
			return err
		}
	}
	return p.finishCSV()
}

// csvItem adds the item of a row, if its item_id cell is not empty.
func (p *rowParser) csvItem(cols []int, rec []string) error {
	var it *event.Product
	for i, f := range cols {
		if f == fieldItemID && len(trimSpace(viewBytes(rec[i]))) > 0 {
			var err error
			if it, err = p.addItem(); err != nil {
				return err
			}
		}
	}
	if it == nil {
		for i, f := range cols {
			if (f == fieldQty || f == fieldPrice) && len(trimSpace(viewBytes(rec[i]))) > 0 {
				return p.bad(f, viewBytes(rec[i]), "the row has no item_id")
			}
		}
		return nil
	}
	for i, f := range cols {
		if f >= fieldItemID {
			if err := p.setItem(it, f, viewBytes(rec[i])); err != nil {
				return err
			}
		}
	}
	return nil
}

// finishCSV finishes the current order, if any, naming its first line.
func (p *rowParser) finishCSV() error {
	if p.cur == nil {
		return nil
	}
	line := p.line
	p.line = p.cur.Line
	err := p.finish()
	p.line = line
	return err
}

// viewBytes views s as bytes, which are only read.
func viewBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// lowerName returns a header cell trimmed and lower-cased.
func (p *rowParser) lowerName(h string) string {
	return string(p.lowerCase(trimSpace([]byte(h))))
}

// csvError turns an encoding/csv error into a line's error.
func (p *rowParser) csvError(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		p.line = pe.Line
		if errors.Is(pe.Err, csv.ErrFieldCount) {
			return p.lineErr("wrong number of cells: the header has a different number of columns")
		}
		return p.lineErr("%s", pe.Err)
	}
	return err
}

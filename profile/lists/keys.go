package lists

import (
	"encoding/binary"
	"fmt"

	"github.com/affinityhq/affinity/internal/codec"
)

// Extension key prefixes of the state DB this package owns (layouts in
// storage/state/FORMAT.md, section "Lists").
const (
	prefixHead = 'L' // a list's head: site, name → generation, sizes
	prefixRow  = 'R' // a row: site, name, generation, kind, value
)

// The kinds of a row.
const (
	kindEmail    = 'e'
	kindCustomer = 'i'
)

const valueVersion = 1

// Meta is a list's head.
type Meta struct {
	Site, Name string
	// Gen is the generation readers see; 0 when the list was deleted and
	// its rows are not yet dropped.
	Gen uint64
	// Pending is the previous generation, still stored until Settle; 0
	// when none (the list was new).
	Pending uint64
	// Unsettled is true from a Put or Delete until its Settle: the
	// re-evaluation of what depends on the change is not finished.
	Unsettled bool
	// Emails and Customers count the distinct emails and customer ids;
	// Rows the rows of the upload.
	Emails, Customers, Rows uint64
	// Created and Updated are Unix ms.
	Created, Updated int64
}

func appendHeadKey(dst []byte, site, name string) []byte {
	dst = codec.AppendString(append(dst, prefixHead), site)
	return codec.AppendString(dst, name)
}

// appendGenKey appends 'R' | site str | name str | gen u64.
func appendGenKey(dst []byte, site, name string, gen uint64) []byte {
	dst = codec.AppendString(append(dst, prefixRow), site)
	dst = codec.AppendString(dst, name)
	return binary.BigEndian.AppendUint64(dst, gen)
}

// head value: version | gen uvarint | pending uvarint | emails uvarint |
// customers uvarint | rows uvarint | created varint | updated varint |
// unsettled byte (0 or 1).
func appendHead(dst []byte, m *Meta) []byte {
	dst = append(dst, valueVersion)
	dst = codec.AppendUvarint(dst, m.Gen)
	dst = codec.AppendUvarint(dst, m.Pending)
	dst = codec.AppendUvarint(dst, m.Emails)
	dst = codec.AppendUvarint(dst, m.Customers)
	dst = codec.AppendUvarint(dst, m.Rows)
	dst = codec.AppendVarint(dst, m.Created)
	dst = codec.AppendVarint(dst, m.Updated)
	if m.Unsettled {
		return append(dst, 1)
	}
	return append(dst, 0)
}

func decodeHead(m *Meta, v []byte) error {
	r := codec.NewReader("list head", v, 0)
	r.Version(valueVersion)
	m.Gen = r.Uvarint()
	m.Pending = r.Uvarint()
	m.Emails = r.Uvarint()
	m.Customers = r.Uvarint()
	m.Rows = r.Uvarint()
	m.Created = r.Varint()
	m.Updated = r.Varint()
	switch u := r.Byte(); {
	case r.Err() == nil && u > 1:
		r.Failf("unsettled flag %d; want 0 or 1", u)
	default:
		m.Unsettled = u == 1
	}
	return r.End()
}

// decodeHeadKey returns the site and name of a head key.
func decodeHeadKey(k []byte) (site, name string, err error) {
	r := codec.NewReader("list head key", k, 0)
	if r.Byte() != prefixHead {
		return "", "", fmt.Errorf("cannot decode list head key %x", k)
	}
	site = string(r.Bytes())
	name = string(r.Bytes())
	return site, name, r.End()
}

// A generation's rows of one kind are stored sorted, in blocks of up to
// blockMax values or about blockBytes bytes, each keyed by its last
// value: 'R' | site str | name str | gen u64 | kind | last value. A
// lookup seeks the first block key ≥ its value and searches that block.
const (
	blockMax   = 256
	blockBytes = 8 << 10
)

// block value: version | n uvarint | n × value str, values ascending.
func appendBlock(dst []byte, vals [][]byte) []byte {
	return codec.AppendStrings(append(dst, valueVersion), vals)
}

// eachInBlock calls fn with each value of a block, in order, until fn
// returns false; it returns whether fn stopped it.
func eachInBlock(v []byte, fn func(val []byte) bool) (stopped bool, err error) {
	r := codec.NewReader("list block", v, 0)
	r.Version(valueVersion)
	n := r.Count(1)
	for i := 0; i < n && r.Err() == nil; i++ {
		if b := r.Bytes(); r.Err() == nil && !fn(b) {
			return true, nil
		}
	}
	return false, r.End()
}

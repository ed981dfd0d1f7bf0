package campaign

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/affinityhq/affinity/internal/codec"
)

// A campaign of a build group is frozen once, on the node asked, and
// applied by every node from the definitions topic (DESIGN "Campaigns in
// a build group"): ReserveID gives every node the same id in the
// topic's order, Freeze makes the campaign's record, Apply writes it as
// Create would. The report sums every owner's counter rows
// (AppendCounterRows, SumCounterRows).

// recordVersion is the version byte of a campaign's record (FORMAT.md).
const recordVersion = 1

// ReserveID gives the next campaign id of the sequence, counting the
// reservation read at offset of the definitions topic: every node
// applies the same reservations in the same order, so all give the same
// id. A reservation at an offset already counted (a consumer that
// restarted before it stored its offset) gives nothing: id 0.
func (s *Store) ReserveID(offset int64) (uint64, error) {
	s.create.Lock()
	defer s.create.Unlock()
	id, after, err := s.readSeq()
	if err != nil {
		return 0, err
	}
	if offset < after {
		return 0, nil
	}
	id++
	v := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, id), uint64(offset+1))
	b := s.db.NewBatch()
	if err := b.ExtSet([]byte{prefixSeq}, v); err != nil {
		return 0, err
	}
	if err := b.Commit(); err != nil {
		return 0, fmt.Errorf("cannot store the campaign sequence: %w", err)
	}
	return id, nil
}

// Freeze freezes the audience of campaign c (from ParseSpec) now as
// campaign id (ReserveID's), reading its segment arms through members
// (nil: this node's own members),
// and returns the campaign's record for Apply: its head, the site's
// token secret its recipients are signed with, and the recipients. It
// fills in c as Create does and stores nothing.
func (s *Store) Freeze(c *Campaign, id uint64, members Members) ([]byte, error) {
	hint, err := s.checkArms(c)
	if err != nil {
		return nil, err
	}
	if members == nil {
		members = s.exportMembers
	}
	gen, secret, err := s.signingSecret(c.Site, id)
	if err != nil {
		return nil, err
	}
	c.ID, c.SecretGen, c.Sent = id, gen, s.now().UnixMilli()
	var recips, v []byte
	f := s.newFreeze(c, secret, hint, members, func(r *Recipient) error {
		v = appendRecipient(v[:0], r)
		recips = append(codec.AppendUvarint(recips, uint64(len(v))), v...)
		return nil
	})
	for i := range c.Arms {
		if err := f.arm(i); err != nil {
			return nil, err
		}
	}
	return appendRecord(make([]byte, 0, 256+len(recips)), c, secret, f.n, recips), nil
}

// signingSecret returns the site's token secret a new campaign id of a
// build group is signed with: the first generation this node holds, else
// a new one whose generation is id — ids are unique in the group, so
// two nodes making a site's first secret at once never give one
// generation two secrets. Apply stores it on every node.
func (s *Store) signingSecret(site string, id uint64) (uint32, []byte, error) {
	prefix := appendSecretKey(nil, site, 0)
	prefix = prefix[:len(prefix)-4]
	var (
		gen   uint32
		found bool
	)
	err := s.db.ScanExtKeys(prefix, func(k []byte) bool {
		if len(k) == len(prefix)+4 {
			gen, found = binary.BigEndian.Uint32(k[len(prefix):]), true
			return false
		}
		return true
	})
	if err != nil {
		return 0, nil, fmt.Errorf("cannot read the campaign secrets of site %q: %w", site, err)
	}
	if found {
		ss, err := s.secret(site, gen, false)
		if err != nil {
			return 0, nil, err
		}
		return gen, ss.key, nil
	}
	if id > math.MaxUint32 {
		return 0, nil, fmt.Errorf("cannot make a campaign secret of generation %d: past 2^32-1", id)
	}
	secret := make([]byte, secretLen)
	if _, err := rand.Read(secret); err != nil {
		return 0, nil, fmt.Errorf("cannot make a campaign secret: %w", err)
	}
	return uint32(id), secret, nil
}

// Apply stores campaign id from its record (Freeze's) as Create does: its
// recipients, then its head, with the site's secret the record carries
// when this node does not hold it. The record is checked whole before
// anything is written. A campaign already stored is returned as it is
// (the record applied again).
func (s *Store) Apply(id uint64, rec []byte) (*Campaign, error) {
	s.create.Lock()
	defer s.create.Unlock()
	if c, err := s.head(id); !errors.Is(err, ErrNotFound) {
		return c, err
	}
	c, secret, recips, err := decodeRecord(id, rec)
	if err != nil {
		return nil, err
	}
	sv, held, err := s.db.Ext(appendSecretKey(nil, c.Site, c.SecretGen), nil)
	if err != nil {
		return nil, fmt.Errorf("cannot read the campaign secret of site %q: %w", c.Site, err)
	}
	if held {
		have, err := decodeSecret(sv)
		if err != nil {
			return nil, fmt.Errorf("campaign secret of site %q: %w", c.Site, err)
		}
		if !bytes.Equal(have, secret) {
			return nil, fmt.Errorf("campaign %d: its record's secret of generation %d of site %q differs from the one this node holds", id, c.SecretGen, c.Site)
		}
		secret = nil
	} else {
		secret = bytes.Clone(secret)
	}
	if err := s.dropKeys(id); err != nil {
		return nil, err
	}
	w, err := s.newRecipientWriter(id)
	if err != nil {
		return nil, err
	}
	var r Recipient
	for i, v := range recips {
		if err = decodeRecipient(&r, v); err != nil {
			break // checked by decodeRecord
		}
		r.Number = uint32(i)
		if err = w.put(&r); err != nil {
			break
		}
	}
	return c, s.commit(c, w, secret, err)
}

// appendRecord appends the record of campaign c (FORMAT.md): version |
// secret <32b> | head str | n uvarint | recips, which holds n recipient
// values (str each) in number order.
func appendRecord(dst []byte, c *Campaign, secret []byte, n uint32, recips []byte) []byte {
	dst = append(dst, recordVersion)
	dst = append(dst, secret...)
	dst = codec.AppendString(dst, string(appendHead(nil, c)))
	dst = codec.AppendUvarint(dst, uint64(n))
	return append(dst, recips...)
}

// decodeRecord decodes and checks a campaign's record (appendRecord's)
// as campaign id: its head, secret and recipient values (viewing rec).
func decodeRecord(id uint64, rec []byte) (c *Campaign, secret []byte, recips [][]byte, err error) {
	d := codec.NewReader("campaign record", rec, 0)
	c, secret, err = decodeRecordHead(&d, id)
	if err != nil {
		return nil, nil, nil, err
	}
	n := d.Count(1 + 1 + 1 + 1 + 1 + macLen) // the shortest recipient value, with its length
	if err := d.Err(); err != nil {
		return nil, nil, nil, fmt.Errorf("campaign %d: %w", id, err)
	}
	if uint64(n) != c.Recipients() {
		return nil, nil, nil, fmt.Errorf("campaign %d: %d recipients in its record; its head counts %d", id, n, c.Recipients())
	}
	recips = make([][]byte, 0, n)
	var r Recipient
	for i := 0; i < n && d.Err() == nil; i++ {
		d.Item("recipient", i)
		v := d.Bytes()
		if d.Err() != nil {
			break
		}
		if err := decodeRecipient(&r, v); err != nil {
			return nil, nil, nil, fmt.Errorf("recipient %d of campaign %d: %w", i, id, err)
		}
		if err := checkCell(c, r.Cell); err != nil {
			return nil, nil, nil, fmt.Errorf("recipient %d of campaign %d: %w", i, id, err)
		}
		recips = append(recips, v)
	}
	if err := d.End(); err != nil {
		return nil, nil, nil, fmt.Errorf("campaign %d: %w", id, err)
	}
	return c, secret, recips, nil
}

// decodeRecordHead decodes the part of a campaign's record before its
// recipients (version, secret, head) from d as campaign id, viewing d's
// bytes.
func decodeRecordHead(d *codec.Reader, id uint64) (c *Campaign, secret []byte, err error) {
	d.Version(recordVersion)
	secret = d.Fixed("secret", secretLen)
	hv := d.Bytes()
	if err := d.Err(); err != nil {
		return nil, nil, fmt.Errorf("campaign %d: %w", id, err)
	}
	c = &Campaign{ID: id}
	if err := decodeHead(c, hv); err != nil {
		return nil, nil, fmt.Errorf("campaign %d: %w", id, err)
	}
	return c, secret, nil
}

// RecordHeadIn reports whether prefix, the first bytes of a campaign's
// record, holds the record's head (decodeRecordHead's part), or is
// malformed before its end, so that more bytes would not help: what a
// reader of heads only keeps of a record (defs.Options.Enough).
func RecordHeadIn(prefix []byte) bool {
	const fixed = 1 + secretLen
	if len(prefix) > 0 && prefix[0] != recordVersion {
		return true
	}
	if len(prefix) <= fixed {
		return false
	}
	n, k := binary.Uvarint(prefix[fixed:])
	switch {
	case k < 0:
		return true
	case k == 0:
		return false
	}
	return uint64(len(prefix)-fixed-k) >= n
}

// checkCell checks that cell names a group of campaign c.
func checkCell(c *Campaign, cell Cell) error {
	if int(cell.Arm) >= len(c.Arms) {
		return fmt.Errorf("arm %d of %d", cell.Arm, len(c.Arms))
	}
	if v := len(c.Arms[cell.Arm].Variants); int(cell.Variant) > v || cell.Control && cell.Variant != 0 || !cell.Control && v > 0 && cell.Variant == 0 {
		return fmt.Errorf("variant %d (control %t) of an arm of %d variants", cell.Variant, cell.Control, v)
	}
	return nil
}

// counterRowsVersion is the version byte of AppendCounterRows's rows.
const counterRowsVersion = 1

// AppendCounterRows appends the counter keys of campaign c written by
// the partitions in parts (a set by partition; nil: every partition),
// with their values, in key order: version 1 | n × (key str | value
// str). An owner sends its partitions' rows for a report of a build
// group; SumCounterRows adds them up.
func (s *Store) AppendCounterRows(dst []byte, c *Campaign, parts []bool) ([]byte, error) {
	dst = append(dst, counterRowsVersion)
	err := s.db.ScanExt(prefixOf(prefixCounter, c.ID), func(k, v []byte) bool {
		if len(k) >= 4 && parts != nil {
			if p := binary.BigEndian.Uint32(k[len(k)-4:]); int(p) >= len(parts) || !parts[p] {
				return true
			}
		}
		dst = codec.AppendString(codec.AppendString(dst, string(k)), string(v))
		return true
	})
	if err != nil {
		return dst, fmt.Errorf("cannot read the counters of campaign %d: %w", c.ID, err)
	}
	return dst, nil
}

// counterRow is one decoded row of AppendCounterRows.
type counterRow struct {
	key  []byte
	cell Cell
	x    Counters
}

// SumCounterRows sums the counter rows of campaign c in bodies (each
// AppendCounterRows's, of disjoint partitions) per cell, adding the
// partitions in key order as one node's scan of all of them does (so
// even the revenue's float sums are that node's).
func SumCounterRows(c *Campaign, bodies ...[]byte) (map[Cell]Counters, error) {
	var rows []counterRow
	for i, b := range bodies {
		d := codec.NewReader("campaign counter rows", b, 0)
		d.Version(counterRowsVersion)
		for d.Err() == nil && d.Left() > 0 {
			d.Item("row", len(rows))
			k, v := d.Bytes(), d.Bytes()
			if d.Err() != nil {
				break
			}
			cell, err := decodeCounterKey(k, c.ID)
			if err != nil {
				return nil, fmt.Errorf("counter rows %d of campaign %d: %w", i, c.ID, err)
			}
			r := counterRow{key: k, cell: cell}
			if err := DecodeCounters(&r.x, v); err != nil {
				return nil, fmt.Errorf("counters %x of campaign %d: %w", k, c.ID, err)
			}
			rows = append(rows, r)
		}
		if err := d.End(); err != nil {
			return nil, fmt.Errorf("counter rows %d of campaign %d: %w", i, c.ID, err)
		}
	}
	slices.SortFunc(rows, func(a, b counterRow) int { return bytes.Compare(a.key, b.key) })
	out := map[Cell]Counters{}
	for i := range rows {
		if i > 0 && bytes.Equal(rows[i].key, rows[i-1].key) {
			return nil, fmt.Errorf("counters %x of campaign %d given twice: two owners sent one partition", rows[i].key, c.ID)
		}
		sum := out[rows[i].cell]
		sum.Add(&rows[i].x)
		out[rows[i].cell] = sum
	}
	return out, nil
}

package campaign

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/affinityhq/affinity/internal/codec"
	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// EngagementVisitor is the visitor the collector logs recipient n of
// campaign id's opens and clicks under: a fixed one per recipient, so all
// of a recipient's engagement lands in one log partition, whose builder
// alone reads and writes the recipient's engagement key ('E') — unique
// counting without a cross-partition race. Its first byte is 0xff and
// its version nibble 0, so no snippet's random (version 4) UUID is one.
func EngagementVisitor(id uint64, n uint32) event.UUID {
	var u event.UUID
	u[0] = 0xff
	binary.BigEndian.PutUint64(u[4:], id)
	binary.BigEndian.PutUint32(u[12:], n)
	return u
}

// EngagementSite checks tok as the collector's engagement endpoints do —
// its form and MAC, one point read — and returns the site its campaign
// is of and the visitor to log its open or click under
// (EngagementVisitor). ok is false for a malformed, forged or altered
// token or one of a deleted campaign: the endpoints answer 404 and log
// nothing. err is a failure to read state.
func (s *Store) EngagementSite(tok []byte) (site string, visitor event.UUID, ok bool, err error) {
	c, r, ok, err := s.check(tok, "")
	if !ok {
		return "", visitor, false, err
	}
	return c.Site, EngagementVisitor(c.ID, r.Number), true, nil
}

// check resolves tok (Resolve); ok is false, with a nil error, for a
// token that does not check or, when site is not "", is of another
// site's campaign.
func (s *Store) check(tok []byte, site string) (*Campaign, Recipient, bool, error) {
	c, r, err := s.Resolve(tok)
	if err != nil {
		var ie *invalid.Error
		if errors.As(err, &ie) {
			err = nil
		}
		return nil, r, false, err
	}
	return c, r, site == "" || c.Site == site, nil
}

// appendEngagementKey appends 'E' | id u64 | number u32.
func appendEngagementKey(dst []byte, id uint64, n uint32) []byte {
	dst = binary.BigEndian.AppendUint64(append(dst, prefixEngagement), id)
	return binary.BigEndian.AppendUint32(dst, n)
}

// engagement is a recipient's first open and first click (Unix ms; 0:
// none yet).
type engagement struct {
	opened, clicked int64
}

// engagement value: version | opened varint ms | clicked varint ms.
func appendEngagement(dst []byte, e engagement) []byte {
	dst = codec.AppendVarint(append(dst, valueVersion), e.opened)
	return codec.AppendVarint(dst, e.clicked)
}

func decodeEngagement(v []byte) (e engagement, err error) {
	d := codec.NewReader("campaign engagement", v, 0)
	d.Version(valueVersion)
	e.opened, e.clicked = d.Varint(), d.Varint()
	return e, d.End()
}

// recipientKey names a recipient across campaigns.
type recipientKey struct {
	id uint64
	n  uint32
}

// cellKey names a cell across campaigns.
type cellKey struct {
	id uint64
	Cell
}

// Counter counts one builder partition's opens and clicks into the
// campaigns' counters, in the partition's own state batch: Engage for
// each event, Flush into the batch before its commit, Reset after the
// commit or when it is dropped. The counts of the uncommitted records
// are kept here, so a batch's several events of one recipient count
// once; the committed ones are read from state. Not safe for concurrent
// use: one per partition.
type Counter struct {
	s         *Store
	partition uint32
	recips    map[recipientKey]engagement // changed since the last commit
	cells     map[cellKey]Counters        // deltas since the last commit
	key, val  []byte
}

// NewCounter returns the Counter of builder partition p.
func (s *Store) NewCounter(p int) *Counter {
	return &Counter{s: s, partition: uint32(p), recips: map[recipientKey]engagement{}, cells: map[cellKey]Counters{}}
}

// Engage counts an open or click event e logged for site: once per
// recipient each (a replayed open counts nothing), with its first time.
// A click counts as an open too when none came first (images blocked):
// so opened ≥ clicked, as email tools report. A token that does not
// resolve, or of another site's campaign, counts nothing.
func (c *Counter) Engage(site string, e *event.Event) error {
	if e.Type != event.TypeOpen && e.Type != event.TypeClick {
		return nil
	}
	camp, r, ok, err := c.s.check([]byte(e.Token), site)
	if !ok {
		return err
	}
	rk := recipientKey{camp.ID, r.Number}
	eng, ok := c.recips[rk]
	if !ok {
		c.key = appendEngagementKey(c.key[:0], rk.id, rk.n)
		v, found, err := c.s.db.Ext(c.key, c.val[:0])
		if err != nil {
			return fmt.Errorf("cannot read the engagement of recipient %d of campaign %d: %w", rk.n, rk.id, err)
		}
		c.val = v
		if found {
			if eng, err = decodeEngagement(v); err != nil {
				return fmt.Errorf("recipient %d of campaign %d: %w", rk.n, rk.id, err)
			}
		}
	}
	ck := cellKey{camp.ID, r.Cell}
	delta := c.cells[ck]
	changed := false
	if eng.opened == 0 {
		eng.opened, changed = e.TS, true
		delta.Opened++
	}
	if e.Type == event.TypeClick && eng.clicked == 0 {
		eng.clicked, changed = e.TS, true
		delta.Clicked++
	}
	if changed {
		c.recips[rk] = eng
		c.cells[ck] = delta
	}
	return nil
}

// Email returns the email of the recipient whose token an identify
// carries (from a click's landing URL: see builder.Counter); ok is false
// for a token that does not check or is of another site's campaign.
func (c *Counter) Email(site, token string) (string, bool, error) {
	_, r, ok, err := c.s.check([]byte(token), site)
	if !ok {
		return "", false, err
	}
	return string(r.Email), true, nil
}

// Pending reports how many keys Flush would write.
func (c *Counter) Pending() int { return len(c.recips) + len(c.cells) }

// Flush adds to b the engagement keys changed and this partition's
// counter keys of the cells counted since the last commit: the committed
// value plus the delta. Only this partition writes its counter keys, and
// its commits are serialised, so the read is not stale.
func (c *Counter) Flush(b *state.Batch) error {
	for rk, eng := range c.recips {
		c.key = appendEngagementKey(c.key[:0], rk.id, rk.n)
		c.val = appendEngagement(c.val[:0], eng)
		if err := b.ExtSet(c.key, c.val); err != nil {
			return err
		}
	}
	for ck, delta := range c.cells {
		c.key = appendCounterKey(c.key[:0], ck.id, ck.Cell, c.partition)
		v, found, err := c.s.db.Ext(c.key, c.val[:0])
		if err != nil {
			return fmt.Errorf("cannot read the counters of campaign %d: %w", ck.id, err)
		}
		var sum Counters
		if found {
			if err := DecodeCounters(&sum, v); err != nil {
				return fmt.Errorf("counters %x of campaign %d: %w", c.key, ck.id, err)
			}
		}
		sum.Add(&delta)
		c.val = AppendCounters(v[:0], &sum)
		if err := b.ExtSet(c.key, c.val); err != nil {
			return err
		}
	}
	return nil
}

// Reset forgets the counts since the last commit: call it after the
// commit (they are in state now) or when the builder drops the batch
// (its records are applied again).
func (c *Counter) Reset() {
	clear(c.recips)
	clear(c.cells)
}

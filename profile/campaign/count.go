package campaign

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/affinityhq/affinity/internal/codec"
	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/storage"
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

// engagement is a recipient's first open, click and conversion (Unix ms;
// 0: none yet) and the keys of the orders counted (event.OrderKey), at
// most maxRecipientOrders.
type engagement struct {
	opened, clicked, converted int64
	orders                     event.OrderSet
}

// maxRecipientOrders bounds the order keys an engagement keeps: a
// recipient's orders past it are counted but not remembered, so a replay
// of one of them (a builder crash between forwarding and committing the
// purchase) would count it again. 64 orders in one window is far more
// than any mailing sees.
const maxRecipientOrders = 64

// engagementVersion is the version of the engagement value written:
// version 1 had no conversion.
const engagementVersion = 2

// engagement value: version | opened varint ms | clicked varint ms, and
// since version 2: | converted varint ms | n uvarint | n × order key u64,
// ascending.
func appendEngagement(dst []byte, e *engagement) []byte {
	dst = codec.AppendVarint(append(dst, engagementVersion), e.opened)
	dst = codec.AppendVarint(dst, e.clicked)
	dst = codec.AppendVarint(dst, e.converted)
	dst = codec.AppendUvarint(dst, uint64(len(e.orders)))
	for _, k := range e.orders {
		dst = binary.BigEndian.AppendUint64(dst, k)
	}
	return dst
}

// decodeEngagement decodes an engagement value of version 1 or 2 into e,
// reusing its order keys' capacity.
func decodeEngagement(e *engagement, v []byte) error {
	d := codec.NewReader("campaign engagement", v, 0)
	ver := d.Byte()
	if d.Err() == nil && ver != 1 && ver != engagementVersion {
		d.FailAt(0, fmt.Sprintf("version %d; this build reads 1 and %d", ver, engagementVersion))
	}
	e.opened, e.clicked = d.Varint(), d.Varint()
	e.converted, e.orders = 0, e.orders[:0]
	if ver == engagementVersion {
		e.converted = d.Varint()
		n := d.Count(8)
		if d.Err() == nil && n > maxRecipientOrders {
			d.Failf("%d order keys; at most %d", n, maxRecipientOrders)
		}
		for i := 0; i < n && d.Err() == nil; i++ {
			k := binary.BigEndian.Uint64(d.Fixed("order key", 8))
			if i > 0 && k <= e.orders[i-1] {
				d.Failf("order key %#x after %#x: not ascending", k, e.orders[i-1])
			}
			e.orders = append(e.orders, k)
		}
	}
	return d.End()
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

// Counter counts one builder partition's opens, clicks and conversions
// into the campaigns' counters, in the partition's own state batch:
// Engage for each event, Flush into the batch before its commit, Reset
// after the commit or when it is dropped. The counts of the uncommitted
// records are kept here, so a batch's several events of one recipient
// count once; the committed ones are read from state. It also finds the
// recipients a purchase converts (Convert). Not safe for concurrent use:
// one per partition.
type Counter struct {
	s         *Store
	partition uint32
	recips    map[recipientKey]*engagement // changed since the last commit
	cells     map[cellKey]Counters         // deltas since the last commit
	key, val  []byte
	r         Recipient
	conv      event.Batch // Convert's record, one event
}

// NewCounter returns the Counter of builder partition p.
func (s *Store) NewCounter(p int) *Counter {
	c := &Counter{s: s, partition: uint32(p), recips: map[recipientKey]*engagement{}, cells: map[cellKey]Counters{}}
	c.conv.Events = make([]event.Event, 1)
	return c
}

// Engage counts an open, click or convert event e logged for site under
// a recipient's visitor. Opens and clicks count once per recipient each
// (a replayed open counts nothing), with their first time; a click
// counts as an open too when none came first (images blocked): so
// opened ≥ clicked, as email tools report. A token that does not
// resolve, or of another site's campaign, counts nothing. A convert
// counts its order once per recipient (by order key: a purchase
// forwarded again after a builder crash counts nothing), adding 1 to
// orders and its total to revenue, and the recipient's first conversion
// adds 1 to converted; a convert outside the campaign's window, or of a
// deleted campaign, counts nothing.
func (c *Counter) Engage(site string, e *event.Event) error {
	switch e.Type {
	case event.TypeOpen, event.TypeClick:
		camp, r, ok, err := c.s.check([]byte(e.Token), site)
		if !ok {
			return err
		}
		rk := recipientKey{camp.ID, r.Number}
		eng, err := c.engagement(rk)
		if err != nil {
			return err
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
			c.recips[rk], c.cells[ck] = eng, delta
		}
	case event.TypeConvert:
		camp, err := c.s.head(e.Campaign)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if camp.Site != site || !camp.inWindow(e.TS) {
			return nil
		}
		rk := recipientKey{camp.ID, e.Recipient}
		c.key = appendRecipientKey(c.key[:0], rk.id, rk.n)
		v, found, err := c.s.db.Ext(c.key, c.val[:0])
		if err != nil {
			return fmt.Errorf("cannot read recipient %d of campaign %d: %w", rk.n, rk.id, err)
		}
		c.val = v
		if !found {
			return nil // not a recipient of the campaign: counts nothing
		}
		if err := decodeRecipient(&c.r, v); err != nil {
			return fmt.Errorf("recipient %d of campaign %d: %w", rk.n, rk.id, err)
		}
		eng, err := c.engagement(rk)
		if err != nil {
			return err
		}
		var order uint64
		if e.HasOrder && e.Order.ID != "" {
			order = event.OrderKey(e.Order.ID)
		} else {
			order = event.OrderKey(e.ID[:])
		}
		if eng.orders.Has(order) {
			return nil
		}
		if len(eng.orders) < maxRecipientOrders {
			eng.orders = eng.orders.Add(order)
		}
		ck := cellKey{camp.ID, c.r.Cell}
		delta := c.cells[ck]
		delta.Orders++
		if e.HasOrder && e.Order.HasTotal {
			delta.Revenue += e.Order.Total
		}
		switch {
		case eng.converted == 0:
			eng.converted = e.TS
			delta.Converted++
		case e.TS < eng.converted:
			eng.converted = e.TS // a purchase logged late: the first is kept
		}
		c.recips[rk], c.cells[ck] = eng, delta
	}
	return nil
}

// engagement returns the engagement of rk: the one counted since the
// last commit, else the committed one (or a new one), which the caller
// puts in c.recips when it changes it.
func (c *Counter) engagement(rk recipientKey) (*engagement, error) {
	if eng := c.recips[rk]; eng != nil {
		return eng, nil
	}
	eng := &engagement{}
	c.key = appendEngagementKey(c.key[:0], rk.id, rk.n)
	v, found, err := c.s.db.Ext(c.key, c.val[:0])
	if err != nil {
		return nil, fmt.Errorf("cannot read the engagement of recipient %d of campaign %d: %w", rk.n, rk.id, err)
	}
	c.val = v
	if found {
		if err := decodeEngagement(eng, v); err != nil {
			return nil, fmt.Errorf("recipient %d of campaign %d: %w", rk.n, rk.id, err)
		}
	}
	return eng, nil
}

// Convert appends to dst the log messages that forward purchase e of a
// visitor of site whose email (normalised) is email, received at recv,
// to the recipients it converts: one convert event (event.TypeConvert)
// per campaign of site whose window holds e's time and of which email is
// a recipient (one point read per such campaign), keyed by the
// recipient's visitor (EngagementVisitor), so the recipient's partition
// counts it with Engage. A site without campaigns costs a map lookup and
// allocates nothing. The builder appends the messages to the log before
// it commits the purchase: forwarded at least once, counted once.
func (c *Counter) Convert(dst []storage.Message, site, email string, recv int64, e *event.Event) ([]storage.Message, error) {
	if e.Type != event.TypePurchase || email == "" {
		return dst, nil
	}
	for _, camp := range c.s.siteCampaigns(site) {
		if !camp.inWindow(e.TS) {
			continue
		}
		c.key = appendEmailKey(c.key[:0], camp.ID, email)
		v, found, err := c.s.db.Ext(c.key, c.val[:0])
		if err != nil {
			return dst, fmt.Errorf("cannot read recipient %s of campaign %d: %w", quote.Value(email), camp.ID, err)
		}
		c.val = v
		if !found {
			continue
		}
		n, _, err := decodeEmailValue(v)
		if err != nil {
			return dst, fmt.Errorf("recipient %s of campaign %d: %w", quote.Value(email), camp.ID, err)
		}
		b := &c.conv
		b.Site, b.Visitor, b.Recv = site, EngagementVisitor(camp.ID, n), recv
		b.Events[0] = event.Event{ID: e.ID, Type: event.TypeConvert, TS: e.TS, Campaign: camp.ID, Recipient: n,
			HasOrder: true, Order: event.Order{Total: profile.OrderTotal(e), HasTotal: true}}
		if e.HasOrder {
			b.Events[0].Order.ID = e.Order.ID
		}
		dst = append(dst, storage.Message{Key: event.AppendLogKey(nil, site, b.Visitor), Value: event.AppendBatch(nil, b)})
	}
	return dst, nil
}

// InWindow reports whether a campaign of site has its conversion window
// open at ts (Unix ms): Convert forwards purchases of such instants only.
func (c *Counter) InWindow(site string, ts int64) bool {
	for _, camp := range c.s.siteCampaigns(site) {
		if camp.inWindow(ts) {
			return true
		}
	}
	return false
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

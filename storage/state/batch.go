package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/affinityhq/affinity/internal/quote"
	"github.com/dgraph-io/badger/v4"
)

// Batch collects the writes of one applied log batch; Commit stores all of
// them in one Badger transaction. Keys and values are copied into the
// Batch, so callers may reuse their buffers at once.
type Batch struct {
	db    *DB
	arena []byte
	ops   []op
	// iops are the interest index's puts and deletes, applied to the
	// in-memory index after the Badger transaction committed.
	iops []interestOp

	// size and count estimate the transaction as Badger measures it.
	size, count int64

	// src names the change records the batch's writers number
	// (NextSource): the partition, the offset its state covers, and the
	// next ordinal at that offset. It outlives Reset and Commit, so
	// writes outside the event stream (Visit) number on after the last
	// event commit.
	src    Source
	srcSet bool

	// resets counts Reset calls, which end every Commit (Generation).
	resets atomic.Uint64
	// offset is the partition's offset (SetOffset, ResumeAt) and
	// offsetOrd the next ordinal there while src is at another offset
	// (SourceAt).
	offset    int64
	offsetOrd uint32
}

// Source is where a change record comes from, the same on every node that
// applies the same events: the events partition, the offset after the
// last record of the visitor's that the commit writing the record applied
// (SourceAt), and the record's ordinal among the visitor's records at that
// offset — so it does not depend on where a node's commits end, only on
// which of the visitor's records each commit holds. Records written
// outside an event commit (a due re-evaluation, a backfill) take the
// partition's current offset and ordinals from VisitOrdinals on.
type Source struct {
	Partition int32
	Offset    int64
	Ord       uint32
}

// VisitOrdinals is the first ordinal of records written at an offset
// before any event commit at it in this process (after a start or a
// move): above any event commit's count, so the two never share one.
const VisitOrdinals = 1 << 31

type op struct {
	kStart, vStart, vEnd int
	del                  bool
}

// NewBatch returns an empty Batch of db.
func (db *DB) NewBatch() *Batch { return &Batch{db: db} }

// Reset drops every collected write.
func (b *Batch) Reset() {
	b.arena = b.arena[:0]
	b.ops = b.ops[:0]
	b.iops = b.iops[:0]
	b.size, b.count = 0, 0
	b.resets.Add(1)
}

// Generation returns how many times b's writes were committed or dropped
// (every Commit ends with a Reset). Any goroutine may call it: once it
// differs from the value its writer saw when it added a write, that write
// is stored or never will be, and a read begun after the call sees it if
// it is. The membership sequencer uses it to know which change records
// may still appear in the outbox.
func (b *Batch) Generation() uint64 { return b.resets.Load() }

// Len returns the number of collected Badger writes (interest index
// entries are not stored: see interestIndex).
func (b *Batch) Len() int { return len(b.ops) }

// Full reports whether the batch holds half of what one Badger transaction
// may: the builder commits then, before applying more records, so a commit
// never fails for its size.
func (b *Batch) Full() bool {
	return b.size >= b.db.maxBatchSize/2 || b.count >= b.db.maxBatchCount/2
}

// add records a write whose key (and value) the caller has just appended to
// b.arena from kStart on, the value from vStart on.
func (b *Batch) add(kStart, vStart int, del bool) {
	b.ops = append(b.ops, op{kStart: kStart, vStart: vStart, vEnd: len(b.arena), del: del})
	// Badger's estimate: key + value + 2 meta bytes + 10 for the version.
	b.size += int64(len(b.arena)-kStart) + 12
	b.count++
}

// PutVisitor stores the profile and dedup bytes of (site, visitor).
func (b *Batch) PutVisitor(site string, visitor [16]byte, prof, seen []byte) error {
	if err := checkSite(site); err != nil {
		return err
	}
	k := len(b.arena)
	b.arena = appendVisitorKey(b.arena, site, visitor)
	v := len(b.arena)
	b.arena = appendVisitorValue(b.arena, prof, seen)
	b.add(k, v, false)
	return nil
}

// DeleteVisitor deletes the profile and dedup bytes of (site, visitor). The
// visitor's interest and email entries are the caller's to delete: it knows
// them from the profile.
func (b *Batch) DeleteVisitor(site string, visitor [16]byte) error {
	if err := checkSite(site); err != nil {
		return err
	}
	k := len(b.arena)
	b.arena = appendVisitorKey(b.arena, site, visitor)
	b.add(k, len(b.arena), true)
	return nil
}

// PutInterest adds the interest index entry (site, dim, value, orderKey,
// visitor).
func (b *Batch) PutInterest(site, dim, value string, orderKey uint64, visitor [16]byte) error {
	return b.interest(site, dim, value, orderKey, visitor, false)
}

// DeleteInterest removes the interest index entry (site, dim, value,
// orderKey, visitor); orderKey must be the one it was put with.
func (b *Batch) DeleteInterest(site, dim, value string, orderKey uint64, visitor [16]byte) error {
	return b.interest(site, dim, value, orderKey, visitor, true)
}

func (b *Batch) interest(site, dim, value string, orderKey uint64, visitor [16]byte, del bool) error {
	if err := checkInterest(site, dim, value); err != nil {
		return err
	}
	k := len(b.arena)
	b.arena = appendInterestPrefix(b.arena, site, dim, value)
	b.iops = append(b.iops, interestOp{kStart: k, kEnd: len(b.arena), pos: InterestPos{Key: orderKey, Visitor: visitor}, del: del})
	return nil
}

// PutEmail links email (normalised by the caller, NormalizeEmail) to
// visitor in site's identity index.
func (b *Batch) PutEmail(site, email string, visitor [16]byte) error {
	return b.link(prefixEmail, "email", site, email, visitor, false)
}

// DeleteEmail removes the link of email to visitor.
func (b *Batch) DeleteEmail(site, email string, visitor [16]byte) error {
	return b.link(prefixEmail, "email", site, email, visitor, true)
}

// PutCustomer links the shop's customer id (trimmed by the caller, as
// profile.Profile.Customer is) to visitor in site's identity index.
func (b *Batch) PutCustomer(site, customer string, visitor [16]byte) error {
	return b.link(prefixCustomer, "customer id", site, customer, visitor, false)
}

// DeleteCustomer removes the link of customer to visitor.
func (b *Batch) DeleteCustomer(site, customer string, visitor [16]byte) error {
	return b.link(prefixCustomer, "customer id", site, customer, visitor, true)
}

func (b *Batch) link(prefix byte, what, site, id string, visitor [16]byte, del bool) error {
	if err := errors.Join(checkSite(site), checkStr(what, id)); err != nil {
		return err
	}
	if id == "" {
		return fmt.Errorf("invalid %s: empty", what)
	}
	k := len(b.arena)
	b.arena = appendLinkPrefix(b.arena, prefix, site, id)
	b.arena = append(b.arena, visitor[:]...)
	b.add(k, len(b.arena), del)
	return nil
}

// PutIdle adds visitor to the retention index under day, the day (Unix
// days) of its last event.
func (b *Batch) PutIdle(day uint32, site string, visitor [16]byte) error {
	return b.idle(day, site, visitor, false)
}

// DeleteIdle removes the retention index entry of visitor under day.
func (b *Batch) DeleteIdle(day uint32, site string, visitor [16]byte) error {
	return b.idle(day, site, visitor, true)
}

func (b *Batch) idle(day uint32, site string, visitor [16]byte, del bool) error {
	if err := checkSite(site); err != nil {
		return err
	}
	k := len(b.arena)
	b.arena = appendIdleKey(b.arena, day, site, visitor)
	b.add(k, len(b.arena), del)
	return nil
}

// SetOffset records next as the next offset of partition p to consume.
// The change records numbered after it (NextSource) come from offset
// next of p.
func (b *Batch) SetOffset(p int, next int64) {
	if !b.srcSet || b.src.Partition != int32(p) || b.offset != next {
		b.src = Source{Partition: int32(p), Offset: next}
		b.srcSet, b.offset, b.offsetOrd = true, next, 0
	}
	k := len(b.arena)
	b.arena = appendOffsetKey(b.arena, p)
	v := len(b.arena)
	b.arena = binary.BigEndian.AppendUint64(b.arena, uint64(next))
	b.add(k, v, false)
}

// SourceAt makes the change records numbered next (NextSource) come from
// offset at of the batch's partition, ordinals from 0: the builder calls
// it, after SetOffset, before it evaluates each visitor of an event
// commit, with the offset after the visitor's last record in the commit
// (a log record is one visitor's, so no two visitors share one), then
// with the commit's offset for what the partition writes until its next
// commit.
//
// At the partition's own offset the ordinals go on from those given there
// before, so SourceAt of that offset after the visitors makes a due
// re-evaluation or backfill number on after the event records.
func (b *Batch) SourceAt(at int64) {
	if b.src.Offset == b.offset {
		b.offsetOrd = b.src.Ord
	}
	b.src.Offset, b.src.Ord = at, 0
	if at == b.offset {
		b.src.Ord = b.offsetOrd
	}
}

// ResumeAt says that the batch's next writes follow partition p's state
// at offset next (its owner opened it there), without writing the offset:
// records numbered before the next SetOffset take ordinals from
// VisitOrdinals on.
func (b *Batch) ResumeAt(p int, next int64) {
	b.src = Source{Partition: int32(p), Offset: next, Ord: VisitOrdinals}
	b.srcSet, b.offset, b.offsetOrd = true, next, VisitOrdinals
}

// RaiseOrdinal makes the change records numbered next (NextSource) take
// ordinals from ord on, if they would take lower ones, and returns the
// Source the next one gets. At the partition's offset the raised ordinals
// outlive the next SourceAt there, as the counted ones do: a partition's
// reconcile at its emission mark (profile/membership) numbers its own
// records, and every later write of the partition at the mark, above the
// ordinals emitted there before.
func (b *Batch) RaiseOrdinal(ord uint32) Source {
	b.src.Ord = max(b.src.Ord, ord)
	return b.src
}

// NextSource returns the Source of the next change record written in the
// batch and counts it; ok is false for a batch of no partition (one a
// caller made with NewBatch).
func (b *Batch) NextSource() (src Source, ok bool) {
	if !b.srcSet {
		return Source{Partition: -1}, false
	}
	src = b.src
	b.src.Ord++
	return src, true
}

// ExtSet sets an extension key: a key starting with a byte in 'A'..'Z',
// whose layout the calling package (segments) owns and documents in
// FORMAT.md. It commits with the rest of the batch.
func (b *Batch) ExtSet(key, value []byte) error {
	if err := checkExtKey(key); err != nil {
		return err
	}
	k := len(b.arena)
	b.arena = append(b.arena, key...)
	v := len(b.arena)
	b.arena = append(b.arena, value...)
	b.add(k, v, false)
	return nil
}

// ExtDelete deletes an extension key.
func (b *Batch) ExtDelete(key []byte) error {
	if err := checkExtKey(key); err != nil {
		return err
	}
	k := len(b.arena)
	b.arena = append(b.arena, key...)
	b.add(k, len(b.arena), true)
	return nil
}

// Commit writes every collected write in one transaction, in the order they
// were added (a later write of a key wins), then applies the interest
// index's puts and deletes to the in-memory index, in their order, and
// resets b. On error nothing of the batch is stored or applied.
//
// The index follows the transaction: a reader may see the transaction's
// keys and, until Commit returns, the index of before it (the builder and
// the backfill rely only on what a commit that returned made visible:
// DESIGN.md, "Scoring"). Before it, a failed commit would leave entries
// that no stored profile holds, which no later delete would remove.
func (b *Batch) Commit() error {
	defer b.Reset()
	if len(b.ops) == 0 && len(b.iops) == 0 {
		return nil
	}
	if b.db.closed.Load() {
		return ErrClosed
	}
	if len(b.ops) == 0 {
		b.db.interests.apply(b.arena, b.iops)
		return nil
	}
	vc := b.db.visitors
	if vc != nil {
		// Before the commit, the cache forgets the visitors it writes:
		// until it holds their new values, readers go to Badger, which
		// answers the old value until the commit and the new one after.
		// Left in place, the old value would be served after the commit
		// made the rest of the write visible — a person evaluator that
		// read a visitor's mark then saw the visitor's profile of before
		// the identify that wrote the mark.
		for _, o := range b.ops {
			if key := b.arena[o.kStart:o.vStart]; key[0] == prefixVisitor {
				vc.set(key, nil, true)
			}
		}
	}
	txn := b.db.db.NewTransaction(true)
	defer txn.Discard()
	for _, o := range b.ops {
		key := b.arena[o.kStart:o.vStart:o.vStart]
		var err error
		if o.del {
			err = txn.Delete(key)
		} else {
			err = txn.Set(key, b.arena[o.vStart:o.vEnd:o.vEnd])
		}
		if err != nil {
			return fmt.Errorf("cannot write %d keys (%d bytes) to state %q: %w", len(b.ops), b.size, b.db.opts.Dir, err)
		}
	}
	if err := txn.Commit(); err != nil {
		return fmt.Errorf("cannot commit %d keys (%d bytes) to state %q: %w", len(b.ops), b.size, b.db.opts.Dir, err)
	}
	if vc != nil {
		// After the commit: the cache holds only committed values. Ops
		// are in write order, so the last write of a key wins here too.
		for _, o := range b.ops {
			if key := b.arena[o.kStart:o.vStart]; key[0] == prefixVisitor {
				vc.set(key, b.arena[o.vStart:o.vEnd], o.del)
			}
		}
	}
	b.db.interests.apply(b.arena, b.iops)
	return nil
}

// NormalizeEmail returns the form of an email address the identity index
// keys on: trimmed of white space and lower-cased.
func NormalizeEmail(email string) string {
	email = strings.TrimSpace(email)
	for i := 0; i < len(email); i++ {
		if c := email[i]; c >= 'A' && c <= 'Z' || c >= 0x80 {
			return strings.ToLower(email)
		}
	}
	return email
}

// ProductWriter stores many products of one site (a catalog upload). Its
// writes are batched in as many Badger transactions as they need: a crash
// may leave part of an upload stored, which a repeated upload repairs.
type ProductWriter struct {
	db   *DB
	site string
	wb   *badger.WriteBatch
	n    int
	err  error
}

// NewProductWriter returns a writer of site's catalog.
func (db *DB) NewProductWriter(site string) (*ProductWriter, error) {
	if err := checkSite(site); err != nil {
		return nil, err
	}
	if db.closed.Load() {
		return nil, ErrClosed
	}
	return &ProductWriter{db: db, site: site, wb: db.db.NewWriteBatch()}, nil
}

// Put stores the encoded product val under id. val and id are copied.
func (w *ProductWriter) Put(id string, val []byte) error {
	if w.err != nil {
		return w.err
	}
	if id == "" || len(id) > MaxStringLen {
		return fmt.Errorf("invalid product id %s: want 1..%d bytes", quote.Value(id), MaxStringLen)
	}
	key := appendCatalogKey(nil, w.site, id)
	if err := w.wb.Set(key, append([]byte(nil), val...)); err != nil {
		w.err = fmt.Errorf("cannot store product %q of site %q: %w", id, w.site, err)
		return w.err
	}
	w.n++
	return nil
}

// Delete removes product id.
func (w *ProductWriter) Delete(id string) error {
	if w.err != nil {
		return w.err
	}
	if err := w.wb.Delete(appendCatalogKey(nil, w.site, id)); err != nil {
		w.err = fmt.Errorf("cannot delete product %q of site %q: %w", id, w.site, err)
		return w.err
	}
	w.n++
	return nil
}

// Flush writes what is left and waits for every write; the builder sees the
// new products from then on. The writer cannot be used after Flush.
func (w *ProductWriter) Flush() error {
	if w.err != nil {
		w.wb.Cancel()
		return w.err
	}
	err := w.wb.Flush()
	w.db.catalogGen.Add(1)
	if err != nil {
		return fmt.Errorf("cannot store %d products of site %q: %w", w.n, w.site, err)
	}
	return nil
}

// Cancel drops the writes not yet flushed.
func (w *ProductWriter) Cancel() {
	w.wb.Cancel()
	w.db.catalogGen.Add(1)
}

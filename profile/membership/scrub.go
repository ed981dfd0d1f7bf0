package membership

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/affinityhq/affinity/tracker/event"
)

// scrubBatch is how many records one scrubbing transaction deletes.
const scrubBatch = 1024

// Scrub deletes from the change feeds of site, and from the outbox not yet
// sequenced, every change record naming one of visitors or one of emails,
// or the person keyed by one of emails or customers (customer ids): the
// history erasure forgets. A person with no email is keyed by a customer
// id, and its records name it by that key's PersonID alone, so without
// customers they would stay. It returns how many it deleted. It waits for
// a webhook delivery in flight to be answered, so that once it returns no
// delivery carries a deleted record, and holds the sequencer meanwhile, so
// no record moves from the outbox past it. The feeds keep their numbers: a
// cursor skips the gaps.
//
// It reads every record of the site's feeds — erasure is rare, and a
// per-visitor index of the feeds would cost a write per change record.
// Records already published to a Sink (the Kafka changes topic) stay there
// until the topic's retention.
func (e *Engine) Scrub(site string, visitors []event.UUID, emails, customers []string) (int, error) {
	if err := checkSite(site); err != nil {
		return 0, err
	}
	// The erased visitors' marks first: the person evaluator then writes
	// nothing more naming them, and what it wrote until now is scrubbed.
	if _, err := e.RunPersons(context.Background()); err != nil {
		return 0, err
	}
	e.scrubMu.Lock()
	defer e.scrubMu.Unlock()
	e.seqMu.Lock()
	defer e.seqMu.Unlock()
	// The persons keyed by the emails or customer ids are erased with
	// them: their ids go too, with the record of the leave their last
	// visitor's erasure made (erasedPersonKey), which names them by id
	// alone.
	ids := slices.Clone(visitors)
	for _, em := range emails {
		ids = append(ids, PersonID(site, "e:"+em))
	}
	for _, c := range customers {
		ids = append(ids, PersonID(site, "c:"+c))
	}
	names := func(c *Change) bool {
		return slices.Contains(ids, c.Visitor) || c.Email != "" && slices.Contains(emails, c.Email)
	}
	var keys [][]byte
	records := 0 // keys holds their copies in the feed by source too
	var c Change
	err := e.db.ScanExt([]byte{prefixOutbox}, func(key, val []byte) bool {
		if decodeOutbox(&c, val) == nil && c.Site == site && names(&c) {
			keys = append(keys, append([]byte(nil), key...))
			records++
		}
		return true
	})
	if err != nil {
		return 0, fmt.Errorf("cannot scrub the change outbox of site %q: %w", site, err)
	}
	err = e.db.ScanExt(appendSiteKey(nil, prefixFeed, site), func(key, val []byte) bool {
		if decodeRecord(&c, val) == nil && names(&c) {
			keys = append(keys, append([]byte(nil), key...))
			records++
		}
		return true
	})
	if err == nil { // the feed by source: the same records, and the Gate's
		err = e.db.ScanExt(appendSiteKey(nil, prefixFeedBy, site), func(key, val []byte) bool {
			if len(val) > 8 && decodeRecord(&c, val[8:]) == nil && names(&c) {
				keys = append(keys, append([]byte(nil), key...))
				if binary.BigEndian.Uint64(val) == 0 { // in no 'F' feed
					records++
				}
			}
			return true
		})
	}
	if err != nil {
		return 0, fmt.Errorf("cannot scrub the change feeds of site %q: %w", site, err)
	}
	for chunk := range slices.Chunk(keys, scrubBatch) {
		b := e.db.NewBatch()
		for _, k := range chunk {
			if err := b.ExtDelete(k); err != nil {
				return 0, err
			}
		}
		if err := b.Commit(); err != nil {
			return 0, fmt.Errorf("cannot scrub %d change records of site %q: %w", len(chunk), site, err)
		}
	}
	e.m.scrubbed.Add(records)
	return records, nil
}

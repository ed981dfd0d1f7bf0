package membership

import (
	"encoding/binary"
	"fmt"

	"github.com/affinityhq/affinity/storage/state"
)

// The feed by source: beside each sequenced record of a partition ('F'),
// the sequencer writes it again under its source ('B' | site | segment |
// partition | offset | ordinal → seq, record; storage/state/FORMAT.md),
// so a reader resumes a partition's records after a source position —
// what a cursor of a build group carries, valid on any node — with one
// seek instead of a scan of the node's whole feed. A record another node
// emitted before a move is in no 'F' feed of this node (webhooks read
// those) but is in the feed by source, with seq 0, as the changes topic
// holds it (TakeOver; without a topic, this node's re-application that the
// Gate dropped): the new owner's feed by source holds the partition's
// records from its start.

// sourceChunk is how many records of a partition SourceChanges reads at
// a time.
const sourceChunk = 64

// SourceChanges calls fn with the change records of a segment of the
// partitions of from, each partition's after its position, until fn
// returns false. A partition's records come in source order (offset, then
// ordinal); the partitions' records interleave by At, then partition: of
// the partitions' next records the least goes first. That order depends
// only on each partition's records, so the merge of several nodes' answers
// by the same rule (each for its partitions) is this answer for all of
// them. from[i].Offset < 0 reads partition from[i].Partition from its
// start; else after (Offset, Ord). Records of no partition (per-person
// segments') have no source order and are not read. A record's Seq is 0
// when it is in no feed of this node (another node emitted it). A
// partition whose copy of that history is not done answers
// *HistoryPendingError, before fn is called.
func (e *Engine) SourceChanges(site, name string, from []state.Source, fn func(c *Change) bool) error {
	if err := checkSite(site); err != nil {
		return err
	}
	for _, f := range from {
		if !e.HistoryReady(int(f.Partition)) {
			return &HistoryPendingError{Partition: int(f.Partition)}
		}
	}
	streams := make([]*sourceStream, len(from))
	for i, f := range from {
		s := &sourceStream{prefix: binary.BigEndian.AppendUint32(appendSegKey(nil, prefixFeedBy, site, name), uint32(f.Partition))}
		if f.Offset >= 0 {
			s.after = appendFeedByKey(nil, site, name, f)
		}
		if err := e.advance(s, site, name); err != nil {
			return err
		}
		streams[i] = s
	}
	for {
		var least *sourceStream
		for _, s := range streams {
			if s.next < len(s.chunk) && (least == nil || s.head().At < least.head().At ||
				s.head().At == least.head().At && s.head().Src.Partition < least.head().Src.Partition) {
				least = s
			}
		}
		if least == nil || !fn(least.head()) {
			return nil
		}
		least.next++
		if err := e.advance(least, site, name); err != nil {
			return err
		}
	}
}

// sourceStream is one partition's records of SourceChanges.
type sourceStream struct {
	prefix []byte // 'B' | site | name | partition
	after  []byte // the last key read (exclusive); nil: none yet
	last   []byte
	chunk  []Change // read from the feed by source
	next   int      // chunk[next] is the next record
	done   bool     // nothing after chunk
}

func (s *sourceStream) head() *Change { return &s.chunk[s.next] }

// advance reads s's next chunk when its records are used up.
func (e *Engine) advance(s *sourceStream, site, name string) error {
	if s.next < len(s.chunk) || s.done {
		return nil
	}
	s.chunk, s.next = s.chunk[:0], 0
	var derr error
	err := e.db.ScanExtFrom(s.prefix, s.after, func(key, val []byte) bool {
		c := Change{Site: site, Segment: name}
		var err error
		if c.Seq, err = parseU64(val[:min(8, len(val))]); err == nil {
			err = decodeRecord(&c, val[8:])
		}
		if err != nil {
			derr = fmt.Errorf("feed entry %x: %w", key, err)
			return false
		}
		s.chunk = append(s.chunk, c)
		s.last = append(s.last[:0], key...)
		return len(s.chunk) < sourceChunk
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return fmt.Errorf("cannot read the feed of segment %q of site %q by source: %w", name, site, err)
	}
	s.after = append(s.after[:0], s.last...)
	s.done = len(s.chunk) < sourceChunk
	return nil
}

// feedCopy writes into the feed by source the records other nodes
// emitted (TakeOver's copy and a person's restore), leaving out the
// records of erased visitors (erase.go).
type feedCopy struct {
	e        *Engine
	pending  []copied
	key, val []byte
	erased   map[string]erasure // the erasure marks as of gen
	gen      uint64
}

func (e *Engine) newFeedCopy() (*feedCopy, error) {
	f := &feedCopy{e: e, gen: e.erasures.Load()}
	var err error
	f.erased, err = e.erasedVisitors()
	return f, err
}

// put adds c's entry as produced (seq 0), unless this node emitted c
// itself (its entry keeps its seq) or c's visitor was erased after it.
func (f *feedCopy) put(c *Change) error {
	var gone bool
	if f.key, gone = erased(f.erased, c, f.key); gone {
		return nil
	}
	f.key = appendFeedByKey(f.key[:0], c.Site, c.Segment, c.Src)
	old, found, err := f.e.db.Ext(f.key, f.val[:0])
	if err != nil {
		return err
	}
	f.val = old
	if found && len(old) >= 8 && binary.BigEndian.Uint64(old) > 0 {
		return nil // this node emitted it: keep its seq
	}
	f.val = appendRecord(appendU64(f.val[:0], 0), c)
	f.pending = append(f.pending, copied{c: Change{Site: c.Site, Visitor: c.Visitor, At: c.At, Src: c.Src},
		key: append([]byte(nil), f.key...), val: append([]byte(nil), f.val...)})
	if len(f.pending) >= importBatch {
		return f.flush()
	}
	return nil
}

// flush commits what put added under scrubMu, leaving out the records of
// visitors erased meanwhile: an Erase commits its marks before it counts,
// and scrubs after, so a record is either left out here or scrubbed there.
func (f *feedCopy) flush() error {
	if len(f.pending) == 0 {
		return nil
	}
	f.e.scrubMu.RLock()
	defer f.e.scrubMu.RUnlock()
	if g := f.e.erasures.Load(); g != f.gen {
		var err error
		if f.erased, err = f.e.erasedVisitors(); err != nil {
			return err
		}
		f.gen = g
	}
	b := f.e.db.NewBatch()
	for i := range f.pending {
		r := &f.pending[i]
		var gone bool
		if f.key, gone = erased(f.erased, &r.c, f.key); gone {
			continue
		}
		if err := b.ExtSet(r.key, r.val); err != nil {
			return err
		}
	}
	f.pending = f.pending[:0]
	return b.Commit()
}

package membership

import (
	"encoding/binary"
	"fmt"

	"github.com/affinityhq/affinity/storage/state"
)

// The feed by source: beside each sequenced record of a partition ('F'),
// the sequencer writes its entry under the record's source ('B' | site |
// segment | partition | offset | ordinal → seq, storage/state/FORMAT.md),
// so a reader resumes a partition's records after a source position —
// what a cursor of a build group carries, valid on any node — with one
// seek instead of a scan of the node's whole feed.

// sourceChunk is how many entries of a partition SourceChanges reads from
// the index at a time.
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
// segments') have no source order and are not read.
func (e *Engine) SourceChanges(site, name string, from []state.Source, fn func(c *Change) bool) error {
	if err := checkSite(site); err != nil {
		return err
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
			if s.ok && (least == nil || s.head.At < least.head.At ||
				s.head.At == least.head.At && s.head.Src.Partition < least.head.Src.Partition) {
				least = s
			}
		}
		if least == nil || !fn(&least.head) {
			return nil
		}
		if err := e.advance(least, site, name); err != nil {
			return err
		}
	}
}

// sourceStream is one partition's records of SourceChanges.
type sourceStream struct {
	prefix []byte // 'B' | site | name | partition
	after  []byte // the last index key read (exclusive); nil: none yet
	last   []byte
	seqs   []uint64 // the chunk read from the index
	next   int      // seqs[next] is the next record's
	done   bool     // the index has no entries after seqs
	head   Change   // the next record, when ok
	ok     bool
	key    []byte
}

// advance reads s's next record into s.head; s.ok is false at the end. A
// feed record its index entry names may be gone (Scrub): it is skipped.
func (e *Engine) advance(s *sourceStream, site, name string) error {
	s.ok = false
	for !s.ok {
		if s.next == len(s.seqs) {
			if s.done {
				return nil
			}
			s.seqs, s.next = s.seqs[:0], 0
			var derr error
			err := e.db.ScanExtFrom(s.prefix, s.after, func(key, val []byte) bool {
				seq, err := parseU64(val)
				if err != nil {
					derr = fmt.Errorf("feed entry %x: %w", key, err)
					return false
				}
				s.seqs = append(s.seqs, seq)
				s.last = append(s.last[:0], key...)
				return len(s.seqs) < sourceChunk
			})
			if err == nil {
				err = derr
			}
			if err != nil {
				return fmt.Errorf("cannot read the feed of segment %q of site %q by source: %w", name, site, err)
			}
			s.after = append(s.after[:0], s.last...)
			s.done = len(s.seqs) < sourceChunk
			if len(s.seqs) == 0 {
				return nil
			}
		}
		seq := s.seqs[s.next]
		s.next++
		s.key = appendFeedKey(s.key[:0], site, name, seq)
		val, found, err := e.db.Ext(s.key, nil)
		if err != nil {
			return fmt.Errorf("cannot read change record %d of segment %q of site %q: %w", seq, name, site, err)
		}
		if !found {
			continue
		}
		s.head = Change{Seq: seq, Site: site, Segment: name}
		if err := decodeRecord(&s.head, val); err != nil {
			return fmt.Errorf("change record %d of segment %q of site %q: %w", seq, name, site, err)
		}
		s.ok = true
	}
	return nil
}

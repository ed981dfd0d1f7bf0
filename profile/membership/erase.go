package membership

import (
	"fmt"
	"math"

	"github.com/affinityhq/affinity/internal/codec"
	"github.com/affinityhq/affinity/profile/defs"
	"github.com/affinityhq/affinity/tracker/event"
)

// Erasure in a build group. Scrub deletes what this node holds naming an
// erased visitor, but the changes topic keeps the records emitted before
// (it cannot be scrubbed), and a partition's new owner copies them into
// its feed by source (TakeOver). So an erasure leaves a durable trace: in
// a build group the query API writes it to the definitions topic, and
// every node's apply (Erase) stores, per visitor, when it was erased ('U'
// | site | visitor → at) and scrubs its own feeds — the records a node
// held before the erasure too, even of partitions it no longer owns. A
// copy leaves out every record of an erased visitor made at or before its
// erasure — by its source where the mark has the partition's offset
// (erased) — and a later record is of the visitor's new profile (events
// sent after an erasure start one). A fresh node applies the topic from its
// start before it serves, so it holds every trace before it copies. The
// mark also keeps where the visitor's partition's log was at the erasure
// (the erasing owner's next offset): the builder skips the visitor's
// records below it (EachErased gives it the marks at its start), so a
// partition rebuilt from offset 0 does not bring the profile back.

// erasedVersion is the version of a 'U' mark with a partition and offset
// (version 1 held the instant alone).
const erasedVersion = 2

// erasure is what a 'U' mark holds.
type erasure struct {
	at        int64 // Unix ms, the latest erasure's writer's clock
	partition int
	offset    int64 // the partition's next offset at the latest erasure its owner knew; 0: none
}

// Erase records visitors of site as erased at (Unix ms, the erasure's
// writer's clock) — with where their partitions' logs were, when the
// erasing owner knew — then scrubs this node's feeds of them and of
// emails (Scrub). It returns how many records it scrubbed. Repeating it
// changes nothing but a later at or offset.
func (e *Engine) Erase(site string, visitors []defs.Erased, emails []string, at int64) (int, error) {
	if err := checkSite(site); err != nil {
		return 0, err
	}
	b := e.db.NewBatch()
	ids := make([]event.UUID, len(visitors))
	for i, v := range visitors {
		ids[i] = v.Visitor
		key := appendErasedKey(nil, site, v.Visitor)
		old, _, err := e.erasedAt(key)
		if err != nil {
			return 0, err
		}
		m := old
		m.at = max(m.at, at)
		if v.Offset > m.offset {
			m.partition, m.offset = v.Partition, v.Offset
		}
		// The person this node evaluated the visitor in: its evaluation
		// must see the visitor gone, wherever the visitor's profile was
		// deleted (its owner's builder marks only the persons it
		// evaluates itself).
		_, evaluated, err := e.db.Ext(appendPersonOfKey(nil, site, v.Visitor), nil)
		if err != nil {
			return 0, fmt.Errorf("cannot read the person of erased visitor %s: %w", v.Visitor, err)
		}
		if evaluated {
			if err := e.putVisitorMark(b, site, v.Visitor, markErased); err != nil {
				return 0, err
			}
		}
		if m == old {
			continue
		}
		if err := b.ExtSet(key, appendErased(nil, m)); err != nil {
			return 0, err
		}
	}
	if err := b.Commit(); err != nil {
		return 0, fmt.Errorf("cannot record the erasure of %d visitors of site %q: %w", len(visitors), site, err)
	}
	// After the commit: a copy that read the marks before reads them again
	// before its next write, and one that wrote before is scrubbed below.
	e.erasures.Add(1)
	return e.Scrub(site, ids, emails, nil)
}

// erasedKey: 'U' | site str | visitor <16b>.
func appendErasedKey(dst []byte, site string, visitor event.UUID) []byte {
	return append(appendSiteKey(dst, prefixErased, site), visitor[:]...)
}

// appendErased appends a 'U' mark's value: version 2 | at varint ms |
// partition uvarint | offset uvarint.
func appendErased(dst []byte, m erasure) []byte {
	dst = codec.AppendVarint(append(dst, erasedVersion), m.at)
	dst = codec.AppendUvarint(dst, uint64(m.partition))
	return codec.AppendUvarint(dst, uint64(m.offset))
}

// decodeErased decodes a 'U' mark's value; one of version 1 has no
// offset.
func decodeErased(v []byte) (erasure, error) {
	var m erasure
	r := newReader("erasure mark", v)
	ver := r.Byte()
	if r.Err() == nil && ver != valueVersion && ver != erasedVersion {
		r.FailAt(0, fmt.Sprintf("version %d; this build reads %d and %d", ver, valueVersion, erasedVersion))
	}
	m.at = r.Varint()
	if ver == erasedVersion {
		p, off := r.Uvarint(), r.Uvarint()
		if r.Err() == nil && (p > math.MaxInt32 || off > math.MaxInt64) {
			r.Failf("partition %d offset %d: out of range", p, off)
		}
		m.partition, m.offset = int(p), int64(off)
	}
	return m, end(&r)
}

// erasedAt returns the mark under key (the zero erasure when none).
func (e *Engine) erasedAt(key []byte) (erasure, bool, error) {
	v, found, err := e.db.Ext(key, nil)
	if err != nil || !found {
		return erasure{}, false, err
	}
	m, err := decodeErased(v)
	if err != nil {
		return erasure{}, false, fmt.Errorf("cannot read erasure mark %x: %w", key, err)
	}
	return m, true, nil
}

// EachErased calls fn with every erased visitor whose mark has an offset,
// with its partition and that offset: the builder's Options.Erasures.
func (e *Engine) EachErased(fn func(site string, visitor event.UUID, partition int, offset int64)) error {
	var derr error
	err := e.db.ScanExt([]byte{prefixErased}, func(key, val []byte) bool {
		m, err := decodeErased(val)
		r := newReader("erasure mark key", key[1:])
		site := r.String()
		var visitor event.UUID
		copy(visitor[:], r.Fixed("visitor", 16))
		if err == nil {
			err = end(&r)
		}
		if err != nil {
			derr = fmt.Errorf("cannot read erasure mark %x: %w", key, err)
			return false
		}
		if m.offset > 0 {
			fn(site, visitor, m.partition, m.offset)
		}
		return true
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return fmt.Errorf("cannot read the erasure marks: %w", err)
	}
	return nil
}

// erasedVisitors returns every erasure mark by 'U' key without its prefix
// (site str | visitor). Erasures are rare, so a copy holds them all rather
// than reading a key per record.
func (e *Engine) erasedVisitors() (map[string]erasure, error) {
	m := map[string]erasure{}
	var derr error
	err := e.db.ScanExt([]byte{prefixErased}, func(key, val []byte) bool {
		mark, err := decodeErased(val)
		if err != nil {
			derr = fmt.Errorf("cannot read erasure mark %x: %w", key, err)
			return false
		}
		m[string(key[1:])] = mark
		return true
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read the erasure marks: %w", err)
	}
	return m, nil
}

// erased reports whether c is a record of an erased visitor's profile of
// before its erasure, by marks of erasedVisitors; key is scratch space.
// When the mark has the partition's offset and c is of that partition, by
// c's source (the offset after the last record of the visitor's its
// commit applied, state.Source): at or below the mark's it derives from
// records the builder now skips, above it from the new profile's —
// whichever node's clock made it: the erasing owner's and the next
// owner's need not agree, nor tell two records of one millisecond apart.
// Else (a mark of version 1, an erasure whose owner had not applied the
// visitor) by instant: made at or before the erasure.
func erased(marks map[string]erasure, c *Change, key []byte) ([]byte, bool) {
	if len(marks) == 0 {
		return key, false
	}
	key = append(codec.AppendString(key[:0], c.Site), c.Visitor[:]...)
	m, ok := marks[string(key)]
	if !ok {
		return key, false
	}
	if m.offset > 0 && int(c.Src.Partition) == m.partition {
		return key, c.Src.Offset <= m.offset
	}
	return key, c.At <= m.at
}

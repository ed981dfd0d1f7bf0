package membership

import (
	"fmt"

	"github.com/affinityhq/affinity/internal/codec"
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
// erasure; a later record is of the visitor's new profile (events sent
// after an erasure start one). A fresh node applies the topic from its
// start before it serves, so it holds every trace before it copies.

// Erase records visitors of site as erased at (Unix ms, the erasure's
// writer's clock), then scrubs this node's feeds of them and of emails
// (Scrub). It returns how many records it scrubbed. Repeating it changes
// nothing but a later at.
func (e *Engine) Erase(site string, visitors []event.UUID, emails []string, at int64) (int, error) {
	if err := checkSite(site); err != nil {
		return 0, err
	}
	b := e.db.NewBatch()
	for _, v := range visitors {
		key := appendErasedKey(nil, site, v)
		if old, found, err := e.erasedAt(key); err != nil {
			return 0, err
		} else if found && old >= at {
			continue
		}
		if err := b.ExtSet(key, codec.AppendVarint([]byte{valueVersion}, at)); err != nil {
			return 0, err
		}
	}
	if err := b.Commit(); err != nil {
		return 0, fmt.Errorf("cannot record the erasure of %d visitors of site %q: %w", len(visitors), site, err)
	}
	// After the commit: a copy that read the marks before reads them again
	// before its next write, and one that wrote before is scrubbed below.
	e.erasures.Add(1)
	return e.Scrub(site, visitors, emails)
}

// erasedKey: 'U' | site str | visitor <16b>.
func appendErasedKey(dst []byte, site string, visitor event.UUID) []byte {
	return append(appendSiteKey(dst, prefixErased, site), visitor[:]...)
}

func decodeErased(v []byte) (int64, error) {
	r := newReader("erasure mark", v)
	version(&r)
	at := r.Varint()
	return at, end(&r)
}

func (e *Engine) erasedAt(key []byte) (int64, bool, error) {
	v, found, err := e.db.Ext(key, nil)
	if err != nil || !found {
		return 0, false, err
	}
	at, err := decodeErased(v)
	if err != nil {
		return 0, false, fmt.Errorf("cannot read erasure mark %x: %w", key, err)
	}
	return at, true, nil
}

// erasedVisitors returns every erasure mark: erased at by 'U' key without
// its prefix (site str | visitor). Erasures are rare, so a copy holds them
// all rather than reading a key per record.
func (e *Engine) erasedVisitors() (map[string]int64, error) {
	m := map[string]int64{}
	var derr error
	err := e.db.ScanExt([]byte{prefixErased}, func(key, val []byte) bool {
		at, err := decodeErased(val)
		if err != nil {
			derr = fmt.Errorf("cannot read erasure mark %x: %w", key, err)
			return false
		}
		m[string(key[1:])] = at
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

// erased reports whether c is a record of a visitor erased at or after it
// was made, by marks of erasedVisitors; key is scratch space.
func erased(marks map[string]int64, c *Change, key []byte) ([]byte, bool) {
	if len(marks) == 0 {
		return key, false
	}
	key = append(codec.AppendString(key[:0], c.Site), c.Visitor[:]...)
	at, ok := marks[string(key)]
	return key, ok && c.At <= at
}

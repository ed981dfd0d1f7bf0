package builder

import (
	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/tracker/event"
)

// entry is one visitor's profile as the builder holds it: decoded, with its
// dedup list and what it has stored in the indexes.
type entry struct {
	key     string // site|visitor, the log key
	site    string // a substring of key
	visitor event.UUID

	prof   profile.Profile
	seen   seenList
	orders orderSet

	stored          bool   // a profile is stored in state
	indexedEmail    string // the email the identity index links to the visitor
	indexedCustomer string // the customer id it links to the visitor
	// idleDay is the day of the retention index entry (Options.Retention)
	// when idleIndexed.
	idleDay     uint32
	idleIndexed bool

	// dirty entries were changed by records not yet committed; changes
	// are their interest-index changes since the last commit.
	dirty   bool
	changes []profile.ScoreChange
	// lastRec is the offset of the last log record applied to it since
	// the last commit: its change records come from the offset after it
	// (state.Batch.SourceAt).
	lastRec int64

	size       int64 // estimated memory, for the cache budget
	prev, next *entry
}

// cache is a partition's LRU of entries, bounded by estimated bytes. Dirty
// entries are never evicted: eviction runs after a commit.
type cache struct {
	m     map[string]*entry
	head  entry // sentinel: head.next is the most recently used
	bytes int64
	max   int64
	free  []*entry // evicted entries kept for reuse, a few
}

func newCache(maxBytes int64) *cache {
	c := &cache{m: make(map[string]*entry), max: maxBytes}
	c.head.prev, c.head.next = &c.head, &c.head
	return c
}

func (c *cache) get(key []byte) *entry {
	e := c.m[string(key)]
	if e != nil {
		c.unlink(e)
		c.pushFront(e)
	}
	return e
}

// add returns a new entry for key, most recently used.
func (c *cache) add(key []byte, siteLen int, visitor event.UUID) *entry {
	var e *entry
	if n := len(c.free); n > 0 {
		e = c.free[n-1]
		c.free = c.free[:n-1]
	} else {
		e = &entry{}
	}
	e.key = string(key)
	e.site = e.key[:siteLen]
	e.visitor = visitor
	e.size = entryOverhead + int64(len(e.key))
	c.m[e.key] = e
	c.bytes += e.size
	c.pushFront(e)
	return e
}

// entryOverhead estimates the memory of an empty entry with its map slot.
const entryOverhead = 512

// resize sets e's estimated size from its encoded profile length.
func (c *cache) resize(e *entry, encoded int) {
	n := entryOverhead + int64(len(e.key)) + 3*int64(encoded) + 16*int64(cap(e.seen)) + 8*int64(cap(e.orders))
	c.bytes += n - e.size
	e.size = n
}

// remove drops e from the cache.
func (c *cache) remove(e *entry) {
	if c.m[e.key] != e {
		return
	}
	delete(c.m, e.key)
	c.unlink(e)
	c.bytes -= e.size
	e.prof.Reset()
	e.seen, e.orders = e.seen[:0], e.orders[:0]
	clear(e.changes)
	*e = entry{prof: e.prof, seen: e.seen, orders: e.orders, changes: e.changes[:0]}
	if len(c.free) < 64 {
		c.free = append(c.free, e)
	}
}

// evict drops least recently used clean entries until the cache fits.
func (c *cache) evict() int {
	n := 0
	for c.bytes > c.max {
		e := c.head.prev
		if e == &c.head || e.dirty {
			break
		}
		c.remove(e)
		n++
	}
	return n
}

// clear drops every entry.
func (c *cache) clear() {
	for _, e := range c.m {
		c.remove(e)
	}
}

func (c *cache) len() int { return len(c.m) }

func (c *cache) unlink(e *entry) {
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev, e.next = nil, nil
}

func (c *cache) pushFront(e *entry) {
	e.prev = &c.head
	e.next = c.head.next
	c.head.next.prev = e
	c.head.next = e
}

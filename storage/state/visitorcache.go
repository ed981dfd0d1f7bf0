package state

import "github.com/VictoriaMetrics/fastcache"

// visitorCache keeps the visitor values (key and value as stored) that
// commits of this process stored, off the Go heap (fastcache: memory the
// GC does not scan), so that a lookup (Visitor, Profile) and the
// builder's read of a profile answer without Badger. A Badger read takes
// the DB's lock, which a memtable rotation holds while it allocates and
// zeroes the next memtable (measured under ingest: 574 ms, every lookup
// waiting), and first waits for the commits in flight to be applied.
//
// Only Batch.Commit writes it, after the transaction committed: the value
// is then the stored one, a failed commit leaves the previous one (still
// the stored one), a deleted visitor leaves the cache. Reads never fill
// it: a read that raced a commit could put back the value the commit
// replaced. A visitor's values are committed by one goroutine at a time
// (the partition that owns it), so two sets of one key never race. A
// reader that gets the value just before a commit's set reads what it
// would have read just before the commit. Values too large for fastcache
// (64 KiB less its header) are read from Badger.
type visitorCache struct {
	c *fastcache.Cache
}

// maxCachedValue bounds a cached key and value together.
const maxCachedValue = 64<<10 - 64

func newVisitorCache(maxBytes int64) *visitorCache {
	return &visitorCache{c: fastcache.New(int(maxBytes))}
}

// get appends the cached value of key to dst; ok is false when it has none.
func (vc *visitorCache) get(dst, key []byte) ([]byte, bool) {
	return vc.c.HasGet(dst, key)
}

// set records the commit of key: its new value, or its deletion.
func (vc *visitorCache) set(key, val []byte, del bool) {
	if del || len(key)+len(val) > maxCachedValue {
		vc.c.Del(key)
		return
	}
	vc.c.Set(key, val)
}

// reset frees the cached values.
func (vc *visitorCache) reset() { vc.c.Reset() }

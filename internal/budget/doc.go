// Package budget splits the one memory budget of a node (`--memory`) among
// the things that hold memory in proportion to what they are given: the
// state database's Badger memtables and block cache, the embedded log's
// memtables and block cache (serve only), the builder's hot-profile cache
// and the Go heap limit (debug.SetMemoryLimit, i.e. GOMEMLIMIT). That is its
// one job; [New] is the split, and the Apply methods copy it into the
// Options of the packages it configures.
//
// What each part costs, as counted here (Badger v4 without jemalloc):
//
//   - A memtable is a skiplist arena on the Go heap of 1.3x its size (the
//     size plus room for one transaction) and a write-ahead file of its
//     size, mmapped, whose written pages stay resident until the memtable
//     is flushed: 2.3x its size in all, 1.3x of it on the Go heap.
//   - A block cache holds decompressed blocks on the Go heap.
//   - The profile cache is the builder's encoded tier, off the Go heap
//     (fastcache), so it is counted outside the Go heap limit; the builder's
//     small decoded tier (its default 32 MiB) is counted in the heap.
//   - A reserve, outside the Go heap limit, covers what is neither: the
//     mmapped pages of the tables being read, goroutine stacks, the binary.
//
// The Go heap limit is the budget less everything counted outside it; the
// heap the node works in (batches being applied, compactions, queries) is
// that limit less the arenas and block caches. Badger's table indexes and
// bloom filters are read from the mmapped tables (its index cache serves
// only encrypted tables), so they are file pages, not a part of the split.
//
// The limit bounds the heap; when the GC runs below it is paced here too
// (gcpace.go): after each cycle GOGC is set so that the next starts when
// the heap reaches 0.7 of the limit, never sooner than GOGC=100 would
// start it, so a node whose live heap is small against its budget
// collects rarely, and one whose live heap is large collects as before.
// GOGC in the environment turns the pacing off.
//
// A Split is a plain value: safe to copy and to share.
package budget

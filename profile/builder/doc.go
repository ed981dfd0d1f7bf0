// Package builder turns the event log into profiles: it consumes every owned
// partition of a storage.Log, decodes each record (event.DecodeRecord),
// drops events already applied, joins catalog attributes, folds the events
// into the visitors' profiles (profile.Apply) and commits the profiles, the
// interest and identity index changes and the partition's consumed offset in
// one state transaction per fetched batch of records.
//
// # Exactly-once
//
// A partition's consumed offset is stored in the same Badger transaction as
// everything the records below it changed (storage/state). On start the
// builder reads from the stored offset, so after a crash at any instant —
// before, during or after a commit — each record is applied exactly once.
// Client retries, which append the same events again under new offsets, are
// dropped by event id: each visitor's value keeps the ids of its events
// applied within DedupWindow (at most DedupMax, the newest), next to the
// profile, so dedup costs no extra read or write. Order ids are kept
// forever in the same value: a purchase whose order id its visitor has
// applied is dropped (imported orders sent again, an order sent by the
// browser and the backend). The log is trimmed only below an offset that a
// state fsync covered.
//
// A batch whose writes would pass a quarter of Badger's transaction limits
// is committed in a few transactions, each with the offset after its last
// record: still exactly-once.
//
// # Cache
//
// Two tiers. Each partition keeps its visitors' decoded profiles in an LRU
// bounded by estimated bytes (Options.CacheBytes split across partitions):
// small, as decoded profiles are pointer-rich and every byte of them is GC
// marking work. Behind it, the state's visitor cache (off the Go heap,
// fastcache, state.Options.VisitorCacheBytes) keeps the values this
// process committed, so a returning visitor costs a decode, not an LSM
// lookup, and the audience it holds costs the GC nothing. The state sets
// it after each commit, so it never serves a value older or newer than
// the stored one; a failed commit drops the decoded entries and the
// partition re-reads from its consumed offset.
//
// # Concurrency
//
// One goroutine per owned partition (partitions hold disjoint visitors, as
// the log key is site|visitor). DeleteVisitor takes the partition's lock,
// which apply holds for a whole fetched batch, so a delete lands between two
// commits. Close lets each partition finish and commit the batch it is
// applying. Hook runs in the partition's goroutine, inside the commit; a
// Reconciler Hook's Reconcile runs there too, under the partition's lock,
// when the partition's state is at exactly its emission mark.
//
// The owned set can change while the builder runs (Own, called by a
// consumer group member for each generation): a revoked partition's
// goroutine finishes its batch, then the partition is fenced under its
// lock, so a Visit or delete that found it before cannot commit after;
// the set itself is an immutable snapshot swapped whole, read without a
// lock. Calls about a visitor of a partition not owned fail with
// ErrNotOwner.
package builder

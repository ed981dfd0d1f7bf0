// Package state is the profile builder's Badger database (<data>/state): the
// key layout, and the one write path that makes the builder exactly-once.
//
// It keeps, per site: each visitor's encoded profile together with the ids of
// the visitor's recently applied events (dedup); the identity index
// email → visitors; the catalog's products. Per log partition it keeps the
// offset the builder consumed up to. Byte layouts: FORMAT.md beside this file.
// In memory, not in Badger, it keeps the sorted interest index (dimension,
// value, order key of the stored log-space score, visitor) that answers
// "who is at or above θ now" with one ordered scan: derived from the stored
// profiles, rebuilt from them at the builder's start (interest.go).
//
// Values are opaque here: a profile, a dedup list and a product are bytes
// that their owners (profile, profile/builder, profile/catalog) encode. The
// interest order key is a uint64 that sorts best first: ScoreKey of the
// log-space score.
//
// # Writes
//
// Everything one applied log batch changes — profiles, identity links,
// extension keys (segments) and the partition's new offset — goes into one
// [Batch] committed as one Badger transaction: after a crash either all of
// it is stored or none of it, so the builder resumes from the stored offset
// with state that matches it. The batch's interest index deletes and puts
// are applied to the in-memory index once the transaction committed.
// Writes are not fsynced per commit (a killed process loses nothing Badger
// has accepted; a power loss rolls state and offset back together); [DB.Sync]
// makes them durable, and the builder trims the log only below an offset
// that a Sync covered.
//
// # Concurrency and ownership
//
// A DB is safe for concurrent use; reads see a consistent snapshot per call.
// A Batch is used by one goroutine and may be reused after Commit or Reset.
// Every read appends into a caller buffer or hands the callback bytes valid
// only during the call.
package state

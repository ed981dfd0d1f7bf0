// Package diskwatch tells a node whether it may write to its data
// directory, so that a full disk is a state the node reports and leaves by
// itself, not a crash (VictoriaMetrics' -storage.minFreeDiskSpaceBytes is
// the model).
//
// A [Watcher] checks, every second (one statfs and one stat per directory):
// that the free space of the data directory's filesystem is at or above
// the floor (--min-free-disk), that the directories it watches are still
// the ones the databases opened (a directory removed under a running node
// leaves Badger writing into unlinked files), and whether a storage error
// was reported with [Watcher.Fault] lately (Badger's failed flushes, which
// it only logs). [Watcher.Err] gives the verdict in one atomic load: the
// collector refuses batches with 503 while it fails, the builder waits
// before its next commit, /healthz answers 503 with its text. When the
// condition clears, the next check clears Err and everything resumes.
//
// The floor must leave room for what Badger writes after writes stop:
// [Headroom] computes it from a database's options, and the node's default
// floor is the sum over its databases.
//
// All methods are safe for concurrent use.
package diskwatch

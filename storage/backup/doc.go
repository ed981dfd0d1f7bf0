// Package backup writes and reads affinity's backup files: a versioned
// header, then sections, each the key-value records of one Badger database
// (the state, then the embedded log) copied at one read timestamp, then a
// trailer with the checksum of the whole file. FORMAT.md in this directory
// draws the bytes.
//
// What goes in a file, and in which order, is the node's business (cmd/affinity
// backup.go): the state first, with the builder's log trimming held off,
// then the log, so that the log copied holds every record from the state's
// offsets on.
//
// Concurrency and ownership: a Writer is used by one goroutine. Dump reads
// a database in one read-only transaction while others write it. Load and
// Restore write into new databases nothing else has open.
package backup

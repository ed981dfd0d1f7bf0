// Package codec reads and appends the binary primitives every stored and
// logged format of the module is built from (FORMAT.md of each owner):
// minimal varints, zigzag varints, little-endian float64 bits and
// uvarint-length-prefixed strings. The owners (tracker/event,
// profile, profile/catalog, profile/membership) keep their layouts; this
// package only keeps the bytes of a primitive, and the wording of a decode
// error, the same in all of them.
//
// A Reader is used by one goroutine. The strings and slices it returns
// alias the buffer it reads: the caller decides who owns that buffer (a
// copy made once per value, or a buffer valid until the next decode) and
// copies what must outlive it.
package codec

// Package quote quotes the offending value an error message repeats, one
// way for the whole module: Go-quoted, cut to Max bytes on a rune boundary
// and marked "…" after the closing quote when cut, so a message stays
// short and printable whatever a client sent.
//
// The functions are pure and safe for concurrent use; the results do not
// alias their arguments.
package quote

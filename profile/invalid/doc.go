// Package invalid holds the one error type for input a caller got wrong: a
// rule that does not parse (profile/segment), a catalog row that does not
// validate (profile/catalog), a segment name, site or webhook out of range
// (profile/membership), a query parameter (profile/query). The query API
// answers an error that holds an *Error with 400 and its text, and any
// other error with 500; it never reads an error's text to decide.
//
// It imports nothing of this module, so that every package that validates
// input can use it without an import cycle: catalog, which stands apart from
// the profile model, included.
//
// Messages read `invalid <thing> <value>: <what is wanted or wrong>`, e.g.
// `invalid limit="0": want 1..1000`.
package invalid

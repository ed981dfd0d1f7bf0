// Package segment is the rule language of segments: it compiles rule text
// such as
//
//	top(age) == "0-3" and (interest(brand, "Nutrilon") >= 1 or interest(brand, "Merries") >= 1)
//	since(cart) <= 24h and since(purchase) > since(cart)
//
// once into a Rule (a tree of closures, no syntax tree walked per
// evaluation), and evaluates it over a Subject — the facts of one visitor's
// profile — at an instant. Besides membership, Eval returns the next instant
// the answer can change with no new event (an interest decaying below its
// threshold, a window edge, a birthday coming), which the due-time index of
// the builder schedules. The grammar and the meaning of every term are in
// GRAMMAR.md.
//
// *profile.Profile is a Subject through ProfileSubject. Rule.Refs and
// Rule.AppendFacts list the terms a rule reads and their values (for the
// members export); Rule.Necessary gives the interest thresholds a backfill
// can take candidates from the interest index by.
//
// Parse and type errors are *Error values carrying the 1-based byte column
// and what was expected there; the API returns them as 400.
//
// # Concurrency
//
// A Rule is immutable once compiled: any number of goroutines may call Eval
// on it at once. Eval does not allocate; it only reads the Subject.
package segment

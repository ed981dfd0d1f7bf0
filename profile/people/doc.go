// Package people finds a person — the visitors of a site connected by a
// shared email or customer id, transitively — and builds the person's
// profile by merging theirs (profile.Profile.Merge: exact, so a person's
// scores, counts and windows are those of one visitor with all the
// events). It also erases a person: every linked visitor through the
// builder's delete, then the history that names them (the change feeds).
//
// Resolution walks the identity links of the state DB (storage/state:
// email → visitors, customer id → visitors) from the id asked for, reading
// each visitor's profile for its own email and customer id, breadth first.
// It stops at Options.MaxVisitors visitors and says so (Person.Truncated):
// a shared address such as a shop's test account must not turn one read
// into a scan of the audience.
//
// A person is computed when asked, from committed state; nothing is stored
// per person. The reads are not one snapshot: a person read while an
// identify commits may or may not include the visitor it links.
//
// Functions here are safe for concurrent use; a Person belongs to its
// caller.
package people

// Package lists keeps static lists: a site's named sets of emails and
// customer ids uploaded by the shop (its CRM's own selection), read by
// segment rules through in_list("name") and, later, by campaigns as an arm.
//
// # Upload
//
// Parse reads a CSV (a header row naming an email and/or a customer_id
// column; other columns are ignored and not stored) or NDJSON ({"email":…}
// and/or {"customer_id":…} per line) upload whole; a bad row refuses the
// upload with its line number and changes nothing. Emails are normalised as
// identify normalises them (state.NormalizeEmail), so an uploaded email
// matches the profile's.
//
// # Generations
//
// A list's rows live under a generation number. Put writes the new rows
// under a fresh generation, then flips the list's head key to it in one
// commit: a reader sees the old list or the new one, never a mix. The old
// generation stays stored (the head names it as pending and the list as
// unsettled) until the caller (profile/membership) has re-evaluated the
// visitors whose rows differ between the two (Diff) and calls Settle,
// which drops it; a restart finds the unsettled list and finishes the job.
// Delete is a Put of nothing.
//
// # Reads
//
// Contains is one point read per (list, email or customer id), with the
// heads cached in memory; Scan streams a list's emails, then its customer
// ids, each in byte order (one prefix scan of keys, no values).
//
// # Concurrency
//
// A Store is safe for concurrent use. Writes of one list are serialised by
// the caller holding the list's lock (Lock), from Put until Settle. Key
// layouts: storage/state/FORMAT.md, section "Lists".
package lists

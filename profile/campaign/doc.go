// Package campaign keeps campaigns: a mailing's audiences frozen at send
// time, split into treated and control recipients (and the treated into
// variants), their signed tokens, and the counters and arithmetic of the
// campaign's report.
//
// # Freeze
//
// Create reads each arm's audience once — a segment's members
// (membership.Engine.Export) or a static list's emails (lists.Store.Scan)
// — and writes one recipient per email: a member without an email is no
// recipient (counted as no_email), an email already taken by an earlier
// arm stays there (counted as duplicates). Each recipient falls in the
// control group by membership.InHoldout of the campaign's salt and the
// email, so a mailing tool can recompute the split; the treated of an
// arm with variants are dealt round-robin in freeze order, so the
// variants' sizes differ by at most one. Recipients are written by a
// Badger WriteBatch and made visible by committing the campaign's head
// afterwards: a crash mid-freeze leaves keys no head names, dropped by
// the next Create of that id (ids are never reused). Later membership
// changes never touch a frozen audience.
//
// # Tokens
//
// A recipient's token (FORMAT.md) names the campaign and the recipient's
// number and carries an HMAC-SHA256 under the site's secret, kept in
// state (so backed up with it). Resolve checks a token and reads its
// recipient with one point read: the function the engagement endpoints
// call.
//
// # Counters and report
//
// The collector's open pixel and click redirect check a token with
// EngagementSite and log an open or click event (event.TypeOpen,
// TypeClick, with the token) under the recipient's own visitor
// (EngagementVisitor), so all of a recipient's engagement is applied by
// one builder partition. Its Counter counts each recipient's first open
// and first click (a click without an open counts as opened), keeping
// the recipient's first times in an engagement key and the partition's
// counts in counter keys per (arm, group, variant, partition), all
// written in the partition's own commit with its offset: exactly-once,
// as profiles.
//
// Conversions take the same way. The builder partition that applies a
// purchase asks its Counter (Convert) which recipients it converts: the
// site's campaigns are held in memory, and for each whose window holds
// the purchase one point read of the email's recipient key answers. It
// logs a convert event (event.TypeConvert) under each recipient's
// visitor before its commit; the recipient's partition counts it
// (Engage): once per order key, so a purchase forwarded again after a
// crash, or one order bought from two devices, counts once.
//
// Report sums the counters with the frozen sizes: O(arms × variants ×
// partitions), never a scan of recipients. Stats holds the report's
// arithmetic.
//
// # Build group
//
// On the nodes of a definitions topic a campaign is frozen once and
// applied everywhere (shared.go): ReserveID counts the topic's id
// reservations into the sequence, so every node gives the same id;
// Freeze reads the audience (a segment arm through the caller's Members:
// every owner's, merged) and returns the campaign's record — head, the
// site secret it is signed with, recipients — without storing it; Apply
// writes that record as Create writes a campaign. A report of the group
// adds every owner's AppendCounterRows with SumCounterRows, in the order
// one node's scan adds them.
//
// A collector without state checks tokens with Heads: the campaigns'
// heads and site secrets, applied from the definitions topic's campaign
// records (the record's head only; its recipients are never held),
// with the MAC check Resolve makes (heads.go).
//
// # Concurrency
//
// A Store is safe for concurrent use; Create is serialised per Store.
// Key layouts: storage/state/FORMAT.md, section "Campaigns"; the token:
// FORMAT.md here.
package campaign

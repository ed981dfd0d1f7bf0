// Package membership keeps segment membership live: per site it stores the
// segments' definitions, evaluates their compiled rules (profile/segment)
// for every profile the builder commits, re-evaluates a profile at the
// exact instant time alone changes its answer, and records every entry and
// exit as a change record in a numbered feed that the changes API, the
// webhooks and (in Kafka mode) a changes topic read.
//
// # Live evaluation
//
// An Engine is the builder's Hook: for each changed profile it evaluates
// the site's rules at the clock's now and adds to the builder's
// state.Batch — so atomically with the profile and the consumed offset —
// the membership keys (site, segment, visitor → entered at, email), the
// visitor's own list of segments and its due time, the due-index entry
// (due, site, visitor) of the earliest instant any rule can flip with no
// new event, and a change record per entry or exit. A deleted profile
// leaves every segment.
//
// # Time
//
// The due scheduler sleeps until the earliest due time and re-evaluates
// each due profile through Visitor (the builder's Visit: under the
// partition's lock, so serialised with the apply of the same visitor) at
// its due instant: a change caused by time is recorded at that instant, not
// when it was processed, and flips already past are caught up one by one.
// Nothing is ever recomputed periodically.
//
// # The feed
//
// Partitions commit concurrently, so change records are first written to
// an outbox under unique ids; one sequencer moves them into per-segment
// feeds keyed by a global, gap-free sequence number, in order of its own
// commits. A reader that has seen sequence n has seen every record ≤ n:
// the cursor of the changes API and of each webhook. The sequence is the
// node's own; a record's cluster-wide identity is its source
// (state.Source: events partition, offset, ordinal), which the builder's
// batch gives it in the commit that writes it. In a cluster a Gate
// (profile/cluster.Marks) decides which node's sequencer moves a record:
// the owner of its partition, only above the partition's mark, which the
// sequencer advances after each pass and Flush when ownership ends — so
// each record enters one node's feed, changes topic and webhooks. A
// partition's feed by source at or below its mark is what the old owners
// emitted, copied from the changes topic at the assignment (TakeOver,
// takeover.go), not this node's re-application; it is refused until then.
// The copy leaves out the records of visitors erased since (Erase, which
// a build group applies on every node from the definitions topic:
// erase.go) and of an earlier segment of the name (a record carries its
// segment's created time). What a new owner's catch-up below the mark
// wrote is its own evaluation, not what went out: when the partition's
// state is at exactly its mark it sets the memberships that differ to
// what was emitted and records the differences (Reconcile, reconcile.go).
//
// # Backfill
//
// PUT of a new or changed rule re-evaluates the site's existing profiles
// in the background, through the same serialised path: the candidates come
// from the interest index when the rule names necessary interests
// (segment.Rule.Necessary), else from every profile, plus the current
// members. Progress is per process; a restart resumes an unfinished one.
//
// # Static lists
//
// Rules read the site's static lists (profile/lists) with in_list, looked
// up once per list per evaluation. PutList and DeleteList flip a list to
// its new generation, then re-evaluate in the background, through Visitor,
// the visitors linked to an email or customer id in one generation but not
// the other (change records with why "list"), and settle the list; a
// restart resumes an unsettled one.
//
// # Preview and history
//
// Preview evaluates rule text over the site's profiles without storing
// it, with the backfill's candidates (Engine.candidates), bounded by a
// count of profiles and a deadline, and says whether its count is exact.
// RecordSizes samples every segment's size each minute into a history
// thinned as it ages (history.go); History reads it back.
//
// # Persons
//
// A per-person segment (PerPerson) is evaluated on the merged profile of
// the visitors linked by email or customer id, not in the builder's
// commit (a person spans partitions) but by one person evaluator
// (RunPersons, person.go): the commit leaves a durable mark, the
// evaluator reads committed profiles, evaluates and deletes the marks in
// one write. DESIGN.md, "Identity", has the exactness argument. In a
// build group (Options.Persons) each person is evaluated by the owner of
// its evaluating partition, which at an assignment restores the
// partition's persons from the changes topic first (RestorePersons,
// person_move.go).
//
// # Concurrency
//
// An Engine is safe for concurrent use. Changed runs in the builder's
// partition goroutines; Start runs the scheduler, the sequencer, the
// webhook deliveries and backfills in their own goroutines until Close.
// Key layouts: storage/state/FORMAT.md, section "Segments".
package membership

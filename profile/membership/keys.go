package membership

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/affinityhq/affinity/internal/codec"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// Extension key prefixes of the state DB this package owns (layouts in
// storage/state/FORMAT.md, section "Segments").
const (
	prefixDef      = 'D' // segment definition
	prefixMember   = 'M' // membership: site, segment, visitor
	prefixVisitor  = 'V' // a visitor's memberships, email and due time
	prefixDue      = 'T' // due-time index: due, site, visitor
	prefixOutbox   = 'O' // change records not yet sequenced
	prefixFeed     = 'F' // sequenced change records: site, segment, seq
	prefixFeedBy   = 'B' // the feed by source: site, segment, partition, offset, ordinal → seq
	prefixSeq      = 'Q' // the last sequence number given
	prefixHistory  = 'A' // up to where a partition's feed by source is the changes topic's (takeover.go)
	prefixHook     = 'W' // webhook of a segment
	prefixHookPos  = 'X' // the webhook's delivered-up-to sequence number
	prefixSizes    = 'S' // size history: site, segment, at
	prefixMark     = 'P' // a person to evaluate: at, id, site, what (person.go)
	prefixPersonOf = 'N' // the person a visitor was last evaluated in: site, visitor
	prefixErased   = 'U' // an erased visitor: site, visitor → erased at (erase.go)
	// prefixPersonAt, a 'Q' key with a partition (the letters are all
	// taken): the last per-person record position of an evaluating
	// partition (person_move.go).
	prefixPersonAt = prefixSeq
)

const valueVersion = 1

// newReader returns a reader of a value of this package named what.
func newReader(what string, v []byte) codec.Reader { return codec.NewReader(what, v, 0) }

// str reads a string, copying it out of the value.
func str(r *codec.Reader) string { return string(r.Bytes()) }

// version reads the version byte of a value.
func version(r *codec.Reader) { r.Version(valueVersion) }

// end returns the error of r, failing it unless every byte was read.
func end(r *codec.Reader) error { return r.End() }

// segPrefix: prefix | site str | name str.
func appendSegKey(dst []byte, prefix byte, site, name string) []byte {
	dst = append(dst, prefix)
	dst = codec.AppendString(dst, site)
	return codec.AppendString(dst, name)
}

// siteKey: prefix | site str.
func appendSiteKey(dst []byte, prefix byte, site string) []byte {
	return codec.AppendString(append(dst, prefix), site)
}

func appendMemberKey(dst []byte, site, name string, visitor event.UUID) []byte {
	return append(appendSegKey(dst, prefixMember, site, name), visitor[:]...)
}

func appendVisitorKey(dst []byte, site string, visitor event.UUID) []byte {
	return append(appendSiteKey(dst, prefixVisitor, site), visitor[:]...)
}

// dueKey: 'T' | due u64 | site str | visitor. Dues are ≥ 0 (ms since 1970).
func appendDueKey(dst []byte, due int64, site string, visitor event.UUID) []byte {
	dst = append(dst, prefixDue)
	dst = binary.BigEndian.AppendUint64(dst, uint64(max(due, 0)))
	dst = codec.AppendString(dst, site)
	return append(dst, visitor[:]...)
}

func parseDueKey(k []byte) (due int64, site string, visitor event.UUID, err error) {
	r := newReader("due key", k)
	if r.Byte() != prefixDue {
		return 0, "", visitor, fmt.Errorf("cannot decode due key %x", k)
	}
	d := r.Fixed("due", 8)
	site = str(&r)
	v := r.Fixed("visitor", 16)
	if end(&r) != nil {
		return 0, "", visitor, fmt.Errorf("cannot decode due key %x", k)
	}
	return int64(binary.BigEndian.Uint64(d)), site, event.UUID(v), nil
}

func appendFeedKey(dst []byte, site, name string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(appendSegKey(dst, prefixFeed, site, name), seq)
}

// appendFeedByKey appends the key of a record's entry in the feed by
// source: 'B' | site str | name str | partition u32 | offset u64 | ordinal u32.
func appendFeedByKey(dst []byte, site, name string, src state.Source) []byte {
	dst = binary.BigEndian.AppendUint32(appendSegKey(dst, prefixFeedBy, site, name), uint32(src.Partition))
	dst = binary.BigEndian.AppendUint64(dst, uint64(src.Offset))
	return binary.BigEndian.AppendUint32(dst, src.Ord)
}

func appendOutboxKey(dst []byte, id uint64) []byte {
	return binary.BigEndian.AppendUint64(append(dst, prefixOutbox), id)
}

// Definition is a stored segment.
type Definition struct {
	Site, Name string
	// Source is the rule text as given.
	Source string
	// Gen counts the PUTs of the segment, from 1; Backfilled is the
	// generation whose backfill completed (Gen when membership is whole).
	Gen, Backfilled uint64
	// ID tells this segment from an earlier one of the same name that was
	// deleted: memberships remember it.
	ID uint64
	// Created and Updated are Unix ms.
	Created, Updated int64
	// Per says what a member is: a visitor, or a person (person.go).
	Per Per
}

// defVersion 2 adds the per byte; version 1 definitions are per visitor.
const defVersion = 2

func appendDef(dst []byte, d *Definition) []byte {
	dst = append(dst, defVersion)
	dst = codec.AppendUvarint(dst, d.Gen)
	dst = codec.AppendUvarint(dst, d.Backfilled)
	dst = codec.AppendUvarint(dst, d.ID)
	dst = codec.AppendVarint(dst, d.Created)
	dst = codec.AppendVarint(dst, d.Updated)
	dst = codec.AppendString(dst, d.Source)
	return append(dst, byte(d.Per))
}

func decodeDef(d *Definition, v []byte) error {
	r := newReader("segment definition", v)
	ver := r.Byte()
	if r.Err() == nil && ver != 1 && ver != defVersion {
		r.FailAt(0, fmt.Sprintf("version %d; this build reads 1 and %d", ver, defVersion))
	}
	d.Gen = r.Uvarint()
	d.Backfilled = r.Uvarint()
	d.ID = r.Uvarint()
	d.Created = r.Varint()
	d.Updated = r.Varint()
	d.Source = str(&r)
	d.Per = PerVisitor
	if ver == defVersion {
		if d.Per = Per(r.Byte()); r.Err() == nil && d.Per > PerPerson {
			r.Failf("per %d; want 0 (visitor) or 1 (person)", d.Per)
		}
	}
	return end(&r)
}

// member value: version 1 | entered varint | email str, of a visitor;
// version 2 | entered varint | email str | person key str | n uvarint |
// n × visitor <16b>, of a person (its key and visitors at its last
// evaluation).
const personMemberVersion = 2

func appendMemberValue(dst []byte, entered int64, email string) []byte {
	dst = append(dst, valueVersion)
	dst = codec.AppendVarint(dst, entered)
	return codec.AppendString(dst, email)
}

func appendPersonMemberValue(dst []byte, entered int64, email, key string, visitors []event.UUID) []byte {
	dst = append(dst, personMemberVersion)
	dst = codec.AppendVarint(dst, entered)
	dst = codec.AppendString(dst, email)
	dst = codec.AppendString(dst, key)
	dst = codec.AppendUvarint(dst, uint64(len(visitors)))
	for _, v := range visitors {
		dst = append(dst, v[:]...)
	}
	return dst
}

func decodeMemberValue(v []byte) (entered int64, email string, err error) {
	var m MemberView
	err = decodeMemberView(&m, v)
	return m.Entered, string(m.Email), err
}

// decodeMemberView decodes a member value of either version into m: Email
// and Person alias v; Visitors is m's own (empty for a visitor's).
func decodeMemberView(m *MemberView, v []byte) error {
	r := newReader("membership", v)
	ver := r.Byte()
	if r.Err() == nil && ver != valueVersion && ver != personMemberVersion {
		r.FailAt(0, fmt.Sprintf("version %d; this build reads %d and %d", ver, valueVersion, personMemberVersion))
	}
	m.Entered = r.Varint()
	m.Email = r.Bytes()
	m.Person = nil
	m.Visitors = m.Visitors[:0]
	if ver == personMemberVersion {
		m.Person = r.Bytes()
		n := r.Count(16)
		for i := 0; i < n && r.Err() == nil; i++ {
			var v event.UUID
			copy(v[:], r.Fixed("visitor", 16))
			m.Visitors = append(m.Visitors, v)
		}
	}
	return end(&r)
}

// vstate is what a visitor's 'V' key holds: the segments it is in, its
// email as the membership keys carry it, and its due time.
type vstate struct {
	due    int64 // 0: none
	email  string
	member []vmember
}

type vmember struct {
	name    string
	id      uint64 // Definition.ID
	entered int64
}

func (s *vstate) find(name string) int {
	for i := range s.member {
		if s.member[i].name == name {
			return i
		}
	}
	return -1
}

func (s *vstate) reset() {
	s.due, s.email = 0, ""
	clear(s.member)
	s.member = s.member[:0]
}

func appendVState(dst []byte, s *vstate) []byte {
	dst = append(dst, valueVersion)
	dst = codec.AppendVarint(dst, s.due)
	dst = codec.AppendString(dst, s.email)
	dst = codec.AppendUvarint(dst, uint64(len(s.member)))
	for _, m := range s.member {
		dst = codec.AppendString(dst, m.name)
		dst = codec.AppendUvarint(dst, m.id)
		dst = codec.AppendVarint(dst, m.entered)
	}
	return dst
}

func decodeVState(s *vstate, v []byte) error {
	s.reset()
	r := newReader("visitor memberships", v)
	version(&r)
	s.due = r.Varint()
	s.email = str(&r)
	n := r.Count(3) // name, id, entered: a byte at least each
	for i := 0; i < n && r.Err() == nil; i++ {
		name := str(&r)
		id := r.Uvarint()
		s.member = append(s.member, vmember{name: name, id: id, entered: r.Varint()})
	}
	return end(&r)
}

// Change is one entry or exit of a visitor into or out of a segment.
type Change struct {
	Seq     uint64 // position in the feed; 0 before sequencing
	Site    string
	Segment string
	Visitor event.UUID
	Email   string // "" when not identified
	Entered bool   // false: left
	At      int64  // Unix ms: the event's evaluation, or the exact due instant
	// Why is "event", "time", "backfill", "segment changed", "list" (a
	// static list the rule reads changed) or "expired" (deleted for the
	// builder's retention); "deleted" in records written before erasure
	// recorded nothing.
	Why string
	// Facts is the JSON object of the rule's terms and their values at At
	// (segment.Rule.AppendFacts), "{}" when there is no profile.
	Facts string
	// Src is the record's cluster-wide identity, the same whichever node
	// applied the events (state.Source); Partition -1 for a record of no
	// partition (a per-person segment's, or one stored before version 2).
	Src state.Source
	// Created is the segment's created time (Unix ms, Definition.Created,
	// the same on every node of a build group): it tells a record of the
	// segment from one of an earlier segment of the same name, deleted
	// since. 0 in a record stored before version 3.
	Created int64
	// Person is the person key ("e:" email or "c:" customer id) of a
	// per-person segment's record, whose Visitor is PersonID(Site, Person);
	// "" for a visitor's. A new evaluator of the person's partition
	// restores its memberships from it (person_move.go).
	Person string
}

// recordVersion is the change record's layout: 2 added the source, 3 the
// segment's created time and the person key.
const recordVersion = 3

// record value (feed and outbox tail): version | entered byte | at varint |
// visitor 16 | email str | why str | facts str | partition varint | offset
// varint | ord uvarint | created varint | person key str ("" for a
// visitor's record); version 1 ends after facts, version 2 after ord.
func appendRecord(dst []byte, c *Change) []byte {
	dst = append(dst, recordVersion)
	if c.Entered {
		dst = append(dst, 1)
	} else {
		dst = append(dst, 0)
	}
	dst = codec.AppendVarint(dst, c.At)
	dst = append(dst, c.Visitor[:]...)
	dst = codec.AppendString(dst, c.Email)
	dst = codec.AppendString(dst, c.Why)
	dst = codec.AppendString(dst, c.Facts)
	dst = codec.AppendVarint(dst, int64(c.Src.Partition))
	dst = codec.AppendVarint(dst, c.Src.Offset)
	dst = codec.AppendUvarint(dst, uint64(c.Src.Ord))
	dst = codec.AppendVarint(dst, c.Created)
	return codec.AppendString(dst, c.Person)
}

func decodeRecord(c *Change, v []byte) error {
	r := newReader("change record", v)
	ver := r.Byte()
	if r.Err() == nil && (ver < valueVersion || ver > recordVersion) {
		r.FailAt(0, fmt.Sprintf("version %d; this build reads %d to %d", ver, valueVersion, recordVersion))
	}
	e := r.Byte()
	if r.Err() == nil && e > 1 {
		r.Failf("entered flag %d; want 0 or 1", e)
	}
	c.Entered = e == 1
	c.At = r.Varint()
	copy(c.Visitor[:], r.Fixed("visitor", 16))
	c.Email = str(&r)
	c.Why = str(&r)
	c.Facts = str(&r)
	c.Src, c.Created, c.Person = state.Source{Partition: -1}, 0, ""
	if ver >= 2 {
		p := r.Varint()
		if r.Err() == nil && (p < -1 || p > math.MaxInt32) {
			r.Failf("partition %d; want -1 to %d", p, math.MaxInt32)
		}
		c.Src.Partition = int32(p)
		c.Src.Offset = r.Varint()
		o := r.Uvarint()
		if r.Err() == nil && o > math.MaxUint32 {
			r.Failf("ordinal %d; want at most %d", o, uint64(math.MaxUint32))
		}
		c.Src.Ord = uint32(o)
	}
	if ver >= 3 {
		c.Created = r.Varint()
		if c.Person = str(&r); r.Err() == nil && c.Person != "" {
			if _, ok := keyID(c.Person); !ok && !validErasedKey(c.Person, c.Visitor) {
				r.Failf("person key %q", c.Person)
			}
		}
	}
	return end(&r)
}

// outbox value: site str | name str | record.
func appendOutbox(dst []byte, c *Change) []byte {
	dst = codec.AppendString(dst, c.Site)
	dst = codec.AppendString(dst, c.Segment)
	return appendRecord(dst, c)
}

func decodeOutbox(c *Change, v []byte) error {
	r := newReader("outbox record", v)
	c.Site = str(&r)
	c.Segment = str(&r)
	if r.Err() != nil {
		return r.Err()
	}
	return decodeRecord(c, r.Rest())
}

// webhook value: version | url str | secret str.
func appendHook(dst []byte, url, secret string) []byte {
	dst = append(dst, valueVersion)
	dst = codec.AppendString(dst, url)
	return codec.AppendString(dst, secret)
}

func decodeHook(v []byte) (url, secret string, err error) {
	r := newReader("webhook", v)
	version(&r)
	url = str(&r)
	secret = str(&r)
	return url, secret, end(&r)
}

func appendU64(dst []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(dst, v) }

func parseU64(v []byte) (uint64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("cannot decode counter %x", v)
	}
	return binary.BigEndian.Uint64(v), nil
}

// never is segment.Never, the due of nothing.
const never = math.MaxInt64

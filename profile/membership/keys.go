package membership

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/affinityhq/affinity/tracker/event"
)

// Extension key prefixes of the state DB this package owns (layouts in
// storage/state/FORMAT.md, section "Segments").
const (
	prefixDef     = 'D' // segment definition
	prefixMember  = 'M' // membership: site, segment, visitor
	prefixVisitor = 'V' // a visitor's memberships, email and due time
	prefixDue     = 'T' // due-time index: due, site, visitor
	prefixOutbox  = 'O' // change records not yet sequenced
	prefixFeed    = 'F' // sequenced change records: site, segment, seq
	prefixSeq     = 'Q' // the last sequence number given
	prefixHook    = 'W' // webhook of a segment
	prefixHookPos = 'X' // the webhook's delivered-up-to sequence number
)

const valueVersion = 1

func appendStr(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// reader decodes the values of this package; the first error sticks.
type reader struct {
	b   []byte
	err error
}

var errShort = errors.New("truncated")

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("malformed %s: %w", what, errShort)
	}
}

func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint(what string) int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) str(what string) string {
	n := r.uvarint(what)
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) {
		r.fail(what)
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *reader) bytes(what string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b) {
		r.fail(what)
		return nil
	}
	b := r.b[:n]
	r.b = r.b[n:]
	return b
}

func (r *reader) byte(what string) byte {
	b := r.bytes(what, 1)
	if b == nil {
		return 0
	}
	return b[0]
}

// end fails unless every byte was read.
func (r *reader) end(what string) error {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("malformed %s: %d trailing bytes", what, len(r.b))
	}
	return r.err
}

func (r *reader) version(what string) {
	if r.err != nil {
		return
	}
	if len(r.b) == 0 {
		r.fail(what + " version") // concatenated only here: exports decode a value per row
		return
	}
	if v := r.b[0]; v != valueVersion {
		r.err = fmt.Errorf("malformed %s: version %d, this build reads %d", what, v, valueVersion)
		return
	}
	r.b = r.b[1:]
}

// segPrefix: prefix | site str | name str.
func appendSegKey(dst []byte, prefix byte, site, name string) []byte {
	dst = append(dst, prefix)
	dst = appendStr(dst, site)
	return appendStr(dst, name)
}

// siteKey: prefix | site str.
func appendSiteKey(dst []byte, prefix byte, site string) []byte {
	return appendStr(append(dst, prefix), site)
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
	dst = appendStr(dst, site)
	return append(dst, visitor[:]...)
}

func parseDueKey(k []byte) (due int64, site string, visitor event.UUID, err error) {
	r := reader{b: k}
	if r.byte("due key") != prefixDue {
		return 0, "", visitor, fmt.Errorf("malformed due key %x", k)
	}
	d := r.bytes("due key", 8)
	site = r.str("due key")
	v := r.bytes("due key", 16)
	if r.err != nil || len(r.b) != 0 {
		return 0, "", visitor, fmt.Errorf("malformed due key %x", k)
	}
	return int64(binary.BigEndian.Uint64(d)), site, event.UUID(v), nil
}

func appendFeedKey(dst []byte, site, name string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(appendSegKey(dst, prefixFeed, site, name), seq)
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
}

func appendDef(dst []byte, d *Definition) []byte {
	dst = append(dst, valueVersion)
	dst = binary.AppendUvarint(dst, d.Gen)
	dst = binary.AppendUvarint(dst, d.Backfilled)
	dst = binary.AppendUvarint(dst, d.ID)
	dst = binary.AppendVarint(dst, d.Created)
	dst = binary.AppendVarint(dst, d.Updated)
	return appendStr(dst, d.Source)
}

func decodeDef(d *Definition, v []byte) error {
	r := reader{b: v}
	r.version("segment definition")
	d.Gen = r.uvarint("segment definition")
	d.Backfilled = r.uvarint("segment definition")
	d.ID = r.uvarint("segment definition")
	d.Created = r.varint("segment definition")
	d.Updated = r.varint("segment definition")
	d.Source = r.str("segment definition")
	return r.end("segment definition")
}

// member value: version | entered varint | email str.
func appendMemberValue(dst []byte, entered int64, email string) []byte {
	dst = append(dst, valueVersion)
	dst = binary.AppendVarint(dst, entered)
	return appendStr(dst, email)
}

func decodeMemberValue(v []byte) (entered int64, email string, err error) {
	entered, b, err := decodeMemberView(v)
	return entered, string(b), err
}

// decodeMemberView is decodeMemberValue with the email aliasing v.
func decodeMemberView(v []byte) (entered int64, email []byte, err error) {
	r := reader{b: v}
	r.version("membership")
	entered = r.varint("membership")
	n := r.uvarint("membership")
	if r.err == nil && n > uint64(len(r.b)) {
		r.fail("membership")
	}
	if r.err == nil {
		email = r.bytes("membership", int(n))
	}
	return entered, email, r.end("membership")
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
	dst = binary.AppendVarint(dst, s.due)
	dst = appendStr(dst, s.email)
	dst = binary.AppendUvarint(dst, uint64(len(s.member)))
	for _, m := range s.member {
		dst = appendStr(dst, m.name)
		dst = binary.AppendUvarint(dst, m.id)
		dst = binary.AppendVarint(dst, m.entered)
	}
	return dst
}

func decodeVState(s *vstate, v []byte) error {
	s.reset()
	r := reader{b: v}
	r.version("visitor memberships")
	s.due = r.varint("visitor memberships")
	s.email = r.str("visitor memberships")
	n := r.uvarint("visitor memberships")
	if n > uint64(len(r.b)) {
		r.fail("visitor memberships")
	}
	for i := uint64(0); i < n && r.err == nil; i++ {
		name := r.str("visitor memberships")
		id := r.uvarint("visitor memberships")
		s.member = append(s.member, vmember{name: name, id: id, entered: r.varint("visitor memberships")})
	}
	return r.end("visitor memberships")
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
	// Why is "event", "time", "backfill", "deleted" (the visitor was
	// forgotten) or "segment changed".
	Why string
	// Facts is the JSON object of the rule's terms and their values at At
	// (segment.Rule.AppendFacts), "{}" when there is no profile.
	Facts string
}

// record value (feed and outbox tail): version | entered byte | at varint |
// visitor 16 | email str | why str | facts str.
func appendRecord(dst []byte, c *Change) []byte {
	dst = append(dst, valueVersion)
	if c.Entered {
		dst = append(dst, 1)
	} else {
		dst = append(dst, 0)
	}
	dst = binary.AppendVarint(dst, c.At)
	dst = append(dst, c.Visitor[:]...)
	dst = appendStr(dst, c.Email)
	dst = appendStr(dst, c.Why)
	return appendStr(dst, c.Facts)
}

func decodeRecord(c *Change, v []byte) error {
	r := reader{b: v}
	r.version("change record")
	e := r.byte("change record")
	c.Entered = e == 1
	c.At = r.varint("change record")
	copy(c.Visitor[:], r.bytes("change record", 16))
	c.Email = r.str("change record")
	c.Why = r.str("change record")
	c.Facts = r.str("change record")
	if r.err == nil && (e > 1 || len(r.b) != 0) {
		return errors.New("malformed change record: bad flag or trailing bytes")
	}
	return r.err
}

// outbox value: site str | name str | record.
func appendOutbox(dst []byte, c *Change) []byte {
	dst = appendStr(dst, c.Site)
	dst = appendStr(dst, c.Segment)
	return appendRecord(dst, c)
}

func decodeOutbox(c *Change, v []byte) error {
	r := reader{b: v}
	c.Site = r.str("outbox record")
	c.Segment = r.str("outbox record")
	if r.err != nil {
		return r.err
	}
	return decodeRecord(c, r.b)
}

// webhook value: version | url str | secret str.
func appendHook(dst []byte, url, secret string) []byte {
	dst = append(dst, valueVersion)
	dst = appendStr(dst, url)
	return appendStr(dst, secret)
}

func decodeHook(v []byte) (url, secret string, err error) {
	r := reader{b: v}
	r.version("webhook")
	url = r.str("webhook")
	secret = r.str("webhook")
	return url, secret, r.end("webhook")
}

func appendU64(dst []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(dst, v) }

func parseU64(v []byte) (uint64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("malformed counter %x", v)
	}
	return binary.BigEndian.Uint64(v), nil
}

// never is segment.Never, the due of nothing.
const never = math.MaxInt64

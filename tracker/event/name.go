package event

import "crypto/sha1"

// nameSpace is the namespace of every name-based UUID affinity makes
// (RFC 9562 version 5): a visitor or event id for an id that is not one.
var nameSpace = UUID{0x5c, 0x1e, 0x0a, 0x7b, 0x62, 0x1f, 0x4d, 0x2e, 0x9a, 0x44, 0x1b, 0x8f, 0x30, 0xd2, 0x6e, 0x51}

// Kinds of the ids NameUUID maps: the same text as two kinds gives two
// UUIDs. Never change one: stored visitors and event ids depend on them.
const (
	NameCustomer  = 'c' // a person's customer id → the person's visitor (imports, Segment's userId)
	NameEmail     = 'e' // a person's email (trimmed, lower-cased) → the person's visitor
	NameOrder     = 'o' // an imported order's id → its purchase's event id
	NameAnonymous = 'a' // Segment's anonymousId or previousId → a visitor
	NameMessage   = 'm' // Segment's messageId → an event id
	NameRawJSON   = 'r' // a Segment message without messageId, its JSON text → an event id
	NamePerson    = 'p' // a person's key (profile/membership) → the person's id in per-person segments
)

// NameUUID returns the name-based UUID (RFC 9562 version 5) of id of kind
// on site: SHA-1 of the namespace 5c1e0a7b-621f-4d2e-9a44-1b8f30d26e51,
// then kind, 0, site, 0, id. The same input always gives the same UUID,
// so a shop can compute, say, the visitor of a customer id. scratch is
// reused and returned, so that a caller's loop does not allocate.
func NameUUID(scratch []byte, kind byte, site, id string) (UUID, []byte) {
	scratch = append(scratch[:0], nameSpace[:]...)
	scratch = append(scratch, kind, 0)
	scratch = append(scratch, site...)
	scratch = append(scratch, 0)
	scratch = append(scratch, id...)
	h := sha1.Sum(scratch)
	var u UUID
	copy(u[:], h[:16])
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	return u, scratch
}

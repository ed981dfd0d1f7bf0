package membership

import (
	"fmt"

	"github.com/affinityhq/affinity/tracker/event"
)

// Member is one visitor in a segment, or one person in a per-person
// segment (Visitor is then the person's id, PersonID of Person).
type Member struct {
	Visitor event.UUID
	Entered int64  // Unix ms
	Email   string // "" when not identified
	// Person is the key of a person member ("" for a visitor) and Visitors
	// its visitors, both as of its last evaluation.
	Person   string
	Visitors []event.UUID
}

// Members calls fn with the members of a segment in visitor byte order,
// starting after visitor *after when it is not nil, until fn returns
// false. It reads one snapshot and holds one member at a time.
func (e *Engine) Members(site, name string, after *event.UUID, fn func(m *Member) bool) error {
	var m Member
	return e.ScanMembers(site, name, after, false, func(v *MemberView) bool {
		m.Visitor, m.Entered, m.Email, m.Person = v.Visitor, v.Entered, string(v.Email), string(v.Person)
		m.Visitors = append(m.Visitors[:0], v.Visitors...)
		return fn(&m)
	})
}

// MemberView is a member as ScanMembers passes it: its byte slices alias
// the state DB's buffers and are valid only during the call.
type MemberView struct {
	Visitor event.UUID
	Entered int64  // Unix ms
	Email   []byte // empty when not identified
	// Person is the key of a person member, empty for a visitor; Visitors
	// are the person's visitors (PersonKey, person.go).
	Person   []byte
	Visitors []event.UUID
	// Profile is the visitor's stored profile (profile.AppendProfile), nil
	// when it has none or profiles were not asked for.
	Profile []byte
}

// ScanMembers is Members for exports: it copies nothing (m and its slices
// are reused for the next member), and with profiles it also passes each
// member's stored profile, read in the same snapshot by one cursor moving
// with the members (state.DB.ScanExtVisitors) rather than a point read per
// member.
func (e *Engine) ScanMembers(site, name string, after *event.UUID, profiles bool, fn func(m *MemberView) bool) error {
	if err := checkSite(site); err != nil {
		return err
	}
	prefix := appendSegKey(nil, prefixMember, site, name)
	var from []byte
	if after != nil {
		from = appendMemberKey(nil, site, name, *after)
	}
	var (
		m    MemberView
		derr error
	)
	each := func(key, val, prof []byte) bool {
		if len(key) != len(prefix)+16 {
			derr = fmt.Errorf("BUG: membership key %x has a bad length", key)
			return false
		}
		m.Visitor = event.UUID(key[len(prefix):])
		if err := decodeMemberView(&m, val); err != nil {
			derr = fmt.Errorf("membership of visitor %s in segment %q of site %q: %w", m.Visitor, name, site, err)
			return false
		}
		m.Profile = prof
		return fn(&m)
	}
	var err error
	if profiles {
		err = e.db.ScanExtVisitors(prefix, from, site, each)
	} else {
		err = e.db.ScanExtFrom(prefix, from, func(key, val []byte) bool { return each(key, val, nil) })
	}
	if err == nil {
		err = derr
	}
	return err
}

// IsMember reports whether visitor is in the segment, and since when.
func (e *Engine) IsMember(site, name string, visitor event.UUID) (m Member, ok bool, err error) {
	v, ok, err := e.db.Ext(appendMemberKey(nil, site, name, visitor), nil)
	if err != nil || !ok {
		return m, false, err
	}
	m.Visitor = visitor
	m.Entered, m.Email, err = decodeMemberValue(v)
	return m, err == nil, err
}

// Size returns the number of members of a segment (a key-only count).
func (e *Engine) Size(site, name string) (int, error) {
	return e.db.CountExt(appendSegKey(nil, prefixMember, site, name))
}

// SizeOf returns the number of members of a segment for which keep
// (given the member's visitor, or person id) is true: a key-only scan, a
// node of a build group's share of the size (the members of its
// partitions).
func (e *Engine) SizeOf(site, name string, keep func(member event.UUID) bool) (int, error) {
	prefix := appendSegKey(nil, prefixMember, site, name)
	n := 0
	err := e.db.ScanExtKeys(prefix, func(key []byte) bool {
		if len(key) == len(prefix)+16 && keep(event.UUID(key[len(prefix):])) {
			n++
		}
		return true
	})
	return n, err
}

// Membership is one segment a visitor is in.
type Membership struct {
	Segment string
	Entered int64 // Unix ms
}

// VisitorSegments returns the segments visitor is in, and the instant its
// membership can next change with no new event (0: never).
func (e *Engine) VisitorSegments(site string, visitor event.UUID) (ms []Membership, due int64, err error) {
	if err := checkSite(site); err != nil {
		return nil, 0, err
	}
	v, ok, err := e.db.Ext(appendVisitorKey(nil, site, visitor), nil)
	if err != nil || !ok {
		return nil, 0, err
	}
	var st vstate
	if err := decodeVState(&st, v); err != nil {
		return nil, 0, err
	}
	ss, err := e.siteSegments(site)
	if err != nil {
		return nil, 0, err
	}
	for _, m := range st.member {
		if s := ss.find(m.name); s != nil && s.id == m.id {
			ms = append(ms, Membership{Segment: m.name, Entered: m.entered})
		}
	}
	return ms, st.due, nil
}

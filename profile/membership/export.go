package membership

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"unsafe"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/tracker/event"
)

// ExportOptions selects the rows of Export.
type ExportOptions struct {
	// After resumes after the row whose (first) visitor it is; nil: from
	// the start.
	After *event.UUID
	// ByEmail gives one row per person: the members sharing an email, the
	// row coming at the first of them. Members without an email are left
	// out.
	ByEmail bool
	// Holdout, a percentage in (0, 100), leaves out the deterministic
	// control group InHoldout(Salt, key, Holdout) of the visitor ids (the
	// emails with ByEmail); 0: no holdout.
	Holdout float64
	// Salt seeds the holdout split: the same salt gives the same split.
	Salt string
	// Control lists the control group instead of leaving it out.
	Control bool
	// Profiles passes each row's stored profile in MemberView.Profile.
	Profiles bool
	// Store, if set, reads the profiles a person's row merges: on a node
	// of a build group, the group's (a person's visitors are on other
	// nodes too). Nil: this node's state.
	Store ProfileReader
	// Unjoined, with ByEmail, gives a row at every member with an email,
	// its visitors just that member: the candidates an owner of some
	// partitions streams to a node of a build group, which joins each
	// email's members across every owner (EmailMembers, JoinEmail) as
	// Export joins them here.
	Unjoined bool
}

// Export calls fn with the rows of an export of a segment, in visitor
// order, until fn returns false: m is the row's (first) member, visitors
// the row's members in visitor order, m.Visitor first (more than one only
// with ByEmail). A per-person segment has one row per person whatever
// ByEmail says: m.Visitor is its PersonID, visitors its visitors, its
// holdout key its email (its person key when it has none), and with
// Profiles m.Profile is the merge of its visitors' profiles. Like
// ScanMembers it copies nothing: m, its slices and visitors are valid only
// during the call.
func (e *Engine) Export(site, name string, opts *ExportOptions, fn func(m *MemberView, visitors []event.UUID) bool) error {
	var (
		vis, linked []event.UUID
		key         []byte // holdout hash input
		rerr        error
	)
	var pm personMerge
	// JoinEmail needs no membership read of the row's own visitor.
	var self event.UUID
	notSelf := func(v event.UUID) bool { return v != self }
	err := e.ScanMembers(site, name, opts.After, opts.Profiles, func(m *MemberView) bool {
		if len(m.Person) > 0 {
			vis = append(vis[:0], m.Visitors...)
			if opts.Profiles {
				var store ProfileReader = e.db
				if opts.Store != nil {
					store = opts.Store
				}
				if m.Profile, rerr = pm.merge(e, store, site, vis); rerr != nil {
					return false
				}
			}
			if opts.Holdout > 0 {
				key = append(append(key[:0], opts.Salt...), ':')
				if len(m.Email) > 0 {
					key = append(key, m.Email...)
				} else {
					key = append(key, m.Person...)
				}
				if inHoldout(key, opts.Holdout) != opts.Control {
					return true
				}
			}
			return fn(m, vis)
		}
		vis = append(vis[:0], m.Visitor)
		if opts.ByEmail && len(m.Email) == 0 {
			return true
		}
		if opts.ByEmail && !opts.Unjoined {
			// The email aliases the stored value: VisitorsByEmail copies it.
			email := unsafe.String(unsafe.SliceData(m.Email), len(m.Email))
			self = m.Visitor
			if linked, rerr = e.EmailMembers(site, name, email, notSelf, linked[:0]); rerr != nil {
				return false
			}
			var first bool
			if vis, first = JoinEmail(m.Visitor, linked, vis); !first {
				return true // the person's row came at an earlier visitor
			}
		}
		if opts.Holdout > 0 {
			key = append(append(key[:0], opts.Salt...), ':')
			if opts.ByEmail {
				key = append(key, m.Email...)
			} else {
				key = m.Visitor.Append(key)
			}
			if inHoldout(key, opts.Holdout) != opts.Control {
				return true
			}
		}
		return fn(m, vis)
	})
	if err == nil {
		err = rerr
	}
	return err
}

// EmailMembers appends to dst the members of the segment linked to email
// (state.DB.VisitorsByEmail) for which keep is true (nil: all), in
// visitor order.
func (e *Engine) EmailMembers(site, name, email string, keep func(event.UUID) bool, dst []event.UUID) ([]event.UUID, error) {
	var err error
	serr := e.db.VisitorsByEmail(site, email, func(v [16]byte) bool {
		var ok bool
		if ok, err = e.keptMember(site, name, v, keep); ok {
			dst = append(dst, v)
		}
		return err == nil
	})
	if err == nil {
		err = serr
	}
	return dst, err
}

// EmailsMembers is EmailMembers of each of emails, in their order, in one
// read of the links (state.DB.VisitorsByEmails): fn gets each member with
// its email's index.
func (e *Engine) EmailsMembers(site, name string, emails []string, keep func(event.UUID) bool, fn func(i int, visitor event.UUID)) error {
	var err error
	serr := e.db.VisitorsByEmails(site, emails, func(i int, v [16]byte) bool {
		var ok bool
		if ok, err = e.keptMember(site, name, v, keep); ok {
			fn(i, v)
		}
		return err == nil
	})
	if err == nil {
		err = serr
	}
	return err
}

// keptMember reports whether visitor is one keep keeps (nil: all) and a
// member of the segment.
func (e *Engine) keptMember(site, name string, visitor event.UUID, keep func(event.UUID) bool) (bool, error) {
	if keep != nil && !keep(visitor) {
		return false, nil
	}
	_, ok, err := e.IsMember(site, name, visitor)
	return ok && err == nil, err
}

// JoinEmail is the by=email row of member m of an email whose members are
// linked (EmailMembers, in visitor order, m among them or not): vis[:1]
// is m, and first reports whether the row comes at m, which is when no
// other of linked sorts before m; the row then lists m and the others of
// linked, appended to vis[:1] in visitor order. One rule for Export on one
// node and for the join across the owners of a build group.
func JoinEmail(m event.UUID, linked, vis []event.UUID) (_ []event.UUID, first bool) {
	vis = append(vis[:0], m)
	for _, v := range linked {
		switch c := bytes.Compare(v[:], m[:]); {
		case c < 0:
			return vis, false
		case c > 0:
			vis = append(vis, v)
		}
	}
	return vis, true
}

// InHoldout reports whether key (a visitor id in canonical form, or with
// by=email the email) falls in the P% control group of salt: the first 8
// bytes of SHA-256(salt + ":" + key), big-endian, modulo 1 000 000, are
// below P × 10 000. A mailing tool can recompute it.
func InHoldout(salt, key string, percent float64) bool {
	if percent <= 0 {
		return false
	}
	var buf [128]byte // a freeze asks once per recipient: no allocation
	return inHoldout(append(append(append(buf[:0], salt...), ':'), key...), percent)
}

// inHoldout is InHoldout of salt + ":" + key in b.
func inHoldout(b []byte, percent float64) bool {
	sum := sha256.Sum256(b)
	x := binary.BigEndian.Uint64(sum[:8])
	return float64(x%1_000_000) < percent*10_000
}

// ProfileReader reads a visitor's stored profile into dst: *state.DB,
// or a build group's people.Store.
type ProfileReader interface {
	Profile(site string, visitor [16]byte, dst []byte) ([]byte, bool, error)
}

// personMerge is the space of the merged profiles of an export's persons.
type personMerge struct {
	buf, out  []byte
	prof, sum profile.Profile
}

// merge returns the merge of the profiles of visitors in store, encoded
// (profile.AppendProfile) in pm's buffer; nil when none has a profile.
func (pm *personMerge) merge(e *Engine, store ProfileReader, site string, visitors []event.UUID) ([]byte, error) {
	pm.sum.Reset()
	n := 0
	for _, v := range visitors {
		var (
			ok  bool
			err error
		)
		if pm.buf, ok, err = store.Profile(site, v, pm.buf); err != nil {
			return nil, fmt.Errorf("cannot read the profile of visitor %s of site %q: %w", v, site, err)
		}
		if !ok {
			continue
		}
		if err := profile.DecodeProfile(&pm.prof, pm.buf); err != nil {
			return nil, fmt.Errorf("cannot decode the profile of visitor %s of site %q: %w", v, site, err)
		}
		pm.sum.Merge(&pm.prof, e.cfg)
		n++
	}
	if n == 0 {
		return nil, nil
	}
	pm.out = profile.AppendProfile(pm.out[:0], &pm.sum)
	return pm.out, nil
}

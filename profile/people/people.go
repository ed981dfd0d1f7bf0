package people

import (
	"fmt"
	"slices"
	"strings"

	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// DefaultMaxVisitors bounds the visitors of one person: a person past it is
// merged from the first DefaultMaxVisitors found and reported truncated.
const DefaultMaxVisitors = 1000

// ID names a person: an email (normalised as identify stores it) or the
// shop's customer id (trimmed).
type ID struct {
	Email    bool
	Value    string
	Original string // as given, for messages
}

// ParseID reads the id of a person as the API takes it: one containing '@'
// is an email, anything else a customer id. An empty or overlong id is an
// *invalid.Error.
func ParseID(s string) (ID, error) {
	id := ID{Email: strings.Contains(s, "@"), Original: s}
	if id.Email {
		id.Value = state.NormalizeEmail(s)
	} else {
		id.Value = strings.TrimSpace(s)
	}
	switch {
	case id.Value == "":
		return id, invalid.Errorf("invalid person id %s: want an email or a customer id", quote.Value(s))
	case len(id.Value) > profile.MaxValueLen:
		return id, invalid.Errorf("invalid person id %s: longer than %d bytes", quote.Value(s), profile.MaxValueLen)
	}
	return id, nil
}

func (id ID) String() string {
	if id.Email {
		return "email " + quote.Value(id.Value)
	}
	return "customer id " + quote.Value(id.Value)
}

// Person is a resolved person of a site.
type Person struct {
	// Visitors are the linked visitors found, in the order found.
	Visitors []event.UUID
	// Emails and Customers are the ids that link them (each visitor's
	// latest), the one asked for first.
	Emails, Customers []string
	// Truncated is true when more visitors were linked than the bound:
	// Visitors and Profile hold the first MaxVisitors found.
	Truncated bool
	// Profile is the merge of the visitors' profiles.
	Profile profile.Profile

	buf  []byte
	prof profile.Profile
}

// Reset empties p for reuse.
func (p *Person) Reset() {
	p.Visitors = p.Visitors[:0]
	p.Emails, p.Customers = p.Emails[:0], p.Customers[:0]
	p.Truncated = false
	p.Profile.Reset()
}

// Store is what Find reads: the identity links and the stored profiles.
// A *state.DB holds them all on one node; in a build group the query API
// reads them from the owners of their partitions.
type Store interface {
	// Profile returns the stored profile of site's visitor in dst's space.
	Profile(site string, visitor [16]byte, dst []byte) (prof []byte, ok bool, err error)
	// VisitorsByEmail and VisitorsByCustomer call fn with the visitors of
	// site linked to the id, in visitor order, until fn returns false.
	VisitorsByEmail(site, email string, fn func(visitor [16]byte) bool) error
	VisitorsByCustomer(site, customer string, fn func(visitor [16]byte) bool) error
}

var _ Store = (*state.DB)(nil)

// Find resolves id on site into p (reset first) and merges the profiles of
// its visitors, at most maxVisitors of them (≤ 0: DefaultMaxVisitors).
// found is false when no visitor links to id.
func Find(db Store, cfg *profile.Config, site string, id ID, maxVisitors int, p *Person) (found bool, err error) {
	if maxVisitors <= 0 {
		maxVisitors = DefaultMaxVisitors
	}
	p.Reset()
	if id.Email {
		p.Emails = append(p.Emails, id.Value)
	} else {
		p.Customers = append(p.Customers, id.Value)
	}
	// The ids to walk are Emails[ei:] and Customers[ci:]; each is walked once.
	ei, ci := 0, 0
	var visit func(v [16]byte) bool
	var visitErr error
	visit = func(v [16]byte) bool {
		if slices.Contains(p.Visitors, v) {
			return true
		}
		if len(p.Visitors) >= maxVisitors {
			p.Truncated = true
			return false
		}
		var ok bool
		p.buf, ok, visitErr = db.Profile(site, v, p.buf)
		if visitErr != nil {
			return false
		}
		if !ok {
			return true // deleted since the link was read
		}
		if visitErr = profile.DecodeProfile(&p.prof, p.buf); visitErr != nil {
			visitErr = fmt.Errorf("cannot decode the profile of visitor %s of site %q: %w", event.UUID(v), site, visitErr)
			return false
		}
		p.Visitors = append(p.Visitors, v)
		p.Profile.Merge(&p.prof, cfg)
		if e := p.prof.Email; e != "" && !slices.Contains(p.Emails, e) {
			p.Emails = append(p.Emails, strings.Clone(e))
		}
		if c := p.prof.Customer; c != "" && !slices.Contains(p.Customers, c) {
			p.Customers = append(p.Customers, strings.Clone(c))
		}
		return true
	}
	for !p.Truncated && (ei < len(p.Emails) || ci < len(p.Customers)) {
		var err error
		if ei < len(p.Emails) {
			err = db.VisitorsByEmail(site, p.Emails[ei], visit)
			ei++
		} else {
			err = db.VisitorsByCustomer(site, p.Customers[ci], visit)
			ci++
		}
		if err == nil {
			err = visitErr
		}
		if err != nil {
			return false, fmt.Errorf("cannot resolve person %s of site %q: %w", id, site, err)
		}
	}
	return len(p.Visitors) > 0, nil
}

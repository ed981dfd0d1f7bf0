package people

import (
	"fmt"

	"github.com/affinityhq/affinity/tracker/event"
)

// Forgetter deletes one visitor everywhere the builder keeps it — profile,
// interest and identity index entries, and through its Hook the segment
// memberships and due time — in one commit: profile/builder.Builder.
type Forgetter interface {
	DeleteVisitor(site string, visitor event.UUID) (found bool, err error)
}

// Scrubber deletes the change records naming visitors or emails, or the
// person keyed by one of emails or customers (customer ids):
// profile/membership.Engine.
type Scrubber interface {
	Scrub(site string, visitors []event.UUID, emails, customers []string) (int, error)
}

// Erase forgets visitors of site through f, then scrubs the history that
// names them, emails or the persons keyed by emails or customers through s
// (nil: no segments). A person with no email is keyed by a customer id, so
// its records go only by customers. It is the one erasure
// path, of one visitor and of a person. It returns how many visitors had a
// profile and how many change records it removed.
//
// The scrub runs after the deletes commit, so that no record naming a
// visitor can be written after it (a new event of the visitor starts a new
// profile, which is new data). A crash between the two leaves records; the
// same DELETE again finishes the scrub, which is why it runs even when no
// visitor was found.
func Erase(f Forgetter, s Scrubber, site string, visitors []event.UUID, emails, customers []string) (deleted, scrubbed int, err error) {
	for _, v := range visitors {
		found, err := f.DeleteVisitor(site, v)
		if err != nil {
			return deleted, 0, err
		}
		if found {
			deleted++
		}
	}
	if s != nil {
		if scrubbed, err = s.Scrub(site, visitors, emails, customers); err != nil {
			return deleted, 0, fmt.Errorf("cannot scrub the change records of %d erased visitors of site %q: %w", len(visitors), site, err)
		}
	}
	return deleted, scrubbed, nil
}

package segment

import (
	"math"

	"github.com/affinityhq/affinity/tracker/event"
)

// Subject is what a rule reads of one visitor: the facts of a profile, plus
// the scoring configuration's threshold transform. *profile.Profile
// satisfies it through ProfileSubject (adapter.go). Times are Unix ms.
//
// A Subject is read, never changed, by Eval; its methods must not allocate
// for Eval to stay allocation-free.
type Subject interface {
	// LogG returns log2 G, the landmark form of the interest in value of dim
	// (DESIGN.md "Scoring: forward decay"), or −Inf when there is none (no
	// such value kept, or its signed sum is ≤ 0: score 0).
	LogG(dim, value string) float64
	// LogThreshold returns the LogG a value of dim needs at instant at to
	// score at least theta > 0: log2 θ + (at − L)/H. It must be
	// non-decreasing in at. Eval decides "score ≥ θ" as
	// LogG ≥ LogThreshold, the same test the interest index answers.
	LogThreshold(dim string, theta float64, at int64) float64
	// HalfLife returns the half-life of dim in ms (> 0); Eval uses it only
	// to estimate a crossing instant before checking it with LogThreshold.
	HalfLife(dim string) float64
	// Share returns the score of value divided by the sum of dim's scores,
	// in [0, 1]; it does not change with time.
	Share(dim, value string) float64
	// Top returns dim's value with the highest score, "" when none.
	Top(dim string) string
	// Events returns how many events of type t the visitor made and the
	// times of the first and the last; first and last are undefined when
	// count is 0.
	Events(t event.Type) (count int, first, last int64)
	// Recent returns the times of the most recent events of type t, in any
	// order; windowed counts see only these (a bounded number).
	Recent(t event.Type) []int64
	// Orders returns the number of orders, their total revenue and the time
	// of the last one (undefined when count is 0).
	Orders() (count int, revenue float64, last int64)
	// Identified reports whether the visitor is known by email.
	Identified() bool
	// Trait returns the latest value of an identify trait.
	Trait(key string) (string, bool)
	// InList reports whether the visitor's email or customer id is in the
	// site's static list name (profile/lists); false for a list that does
	// not exist.
	InList(name string) bool
	// Campaign reports whether the visitor's email is a treated recipient
	// of the site's campaign id (profile/campaign) or, with converted, a
	// recipient (treated or control) that converted; false for a
	// campaign that does not exist.
	Campaign(id string, converted bool) bool
}

// Never is the next-flip instant of a rule whose value cannot change
// without a new event.
const Never int64 = math.MaxInt64

// inf is an infinite duration: since(E) of an event type never seen.
const inf int64 = math.MaxInt64

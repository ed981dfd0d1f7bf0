package segment

import (
	"math"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/tracker/event"
)

// ProfileSubject presents a *profile.Profile, scored by Cfg, as a Subject.
//
// Eval passes its Subject on through function values, so a ProfileSubject
// made per call escapes to the heap: keep one per worker and point P at
// the profile to evaluate.
type ProfileSubject struct {
	P   *profile.Profile
	Cfg *profile.Config
	// Lists answers in_list for P; nil: every list is empty.
	Lists Lists
	// Campaigns answers received and converted for P; nil: none.
	Campaigns Campaigns
}

// Campaigns answers received and converted: whether email is a treated
// recipient of the site's campaign id, or a converted recipient. The site
// is the implementation's: one per site evaluated.
type Campaigns interface {
	InCampaign(id, email string, converted bool) bool
}

// Lists answers in_list: whether a visitor with this email and customer id
// (either may be "") is in the site's static list name. The site is the
// implementation's: one per site evaluated.
type Lists interface {
	InList(name, email, customer string) bool
}

var _ Subject = (*ProfileSubject)(nil)

// LogG implements Subject.
func (ps *ProfileSubject) LogG(dim, value string) float64 {
	d, ok := profile.ParseDim(dim)
	if !ok {
		return profile.NegInf
	}
	return ps.P.LogG(d, value)
}

// LogThreshold implements Subject with profile.Config.LogThreshold, the
// transform the interest index uses.
func (ps *ProfileSubject) LogThreshold(dim string, theta float64, at int64) float64 {
	d, ok := profile.ParseDim(dim)
	if !ok {
		return math.Inf(1)
	}
	return ps.Cfg.LogThreshold(d, theta, at)
}

// HalfLife implements Subject.
func (ps *ProfileSubject) HalfLife(dim string) float64 {
	d, _ := profile.ParseDim(dim)
	return float64(ps.Cfg.HalfLife(d).Milliseconds())
}

// Share implements Subject.
func (ps *ProfileSubject) Share(dim, value string) float64 {
	d, ok := profile.ParseDim(dim)
	if !ok {
		return 0
	}
	return ps.P.Share(ps.Cfg, d, value)
}

// Top implements Subject.
func (ps *ProfileSubject) Top(dim string) string {
	d, ok := profile.ParseDim(dim)
	if !ok {
		return ""
	}
	v, _ := ps.P.Top(ps.Cfg, d)
	return v
}

// Events implements Subject.
func (ps *ProfileSubject) Events(t event.Type) (count int, first, last int64) {
	if int(t) >= event.NumTypes {
		return 0, 0, 0
	}
	s := &ps.P.Events[t]
	return int(min(s.Count, math.MaxInt32)), s.First, s.Last
}

// Recent implements Subject: the profile keeps the newest
// profile.MaxRecent times per type.
func (ps *ProfileSubject) Recent(t event.Type) []int64 {
	if int(t) >= event.NumTypes {
		return nil
	}
	return ps.P.Events[t].Recent
}

// Orders implements Subject.
func (ps *ProfileSubject) Orders() (count int, revenue float64, last int64) {
	o := &ps.P.Orders
	return int(min(o.Count, math.MaxInt32)), o.Revenue, o.Last
}

// Identified implements Subject: the visitor has given an email.
func (ps *ProfileSubject) Identified() bool { return ps.P.Email != "" }

// Trait implements Subject.
func (ps *ProfileSubject) Trait(key string) (string, bool) {
	if t := ps.P.Trait(key); t != nil {
		return t.Value, true
	}
	return "", false
}

// Campaign implements Subject through ps.Campaigns, with the profile's
// email.
func (ps *ProfileSubject) Campaign(id string, converted bool) bool {
	if ps.Campaigns == nil || ps.P.Email == "" {
		return false
	}
	return ps.Campaigns.InCampaign(id, ps.P.Email, converted)
}

// InList implements Subject through ps.Lists, with the profile's email and
// customer id.
func (ps *ProfileSubject) InList(name string) bool {
	if ps.Lists == nil || ps.P.Email == "" && ps.P.Customer == "" {
		return false
	}
	return ps.Lists.InList(name, ps.P.Email, ps.P.Customer)
}

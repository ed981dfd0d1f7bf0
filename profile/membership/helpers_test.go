package membership_test

import (
	"context"
	"slices"
	"testing"

	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/tracker/event"
)

const (
	hour = profiletest.Hour
	day  = profiletest.Day
	t0   = profiletest.T0
)

// env is the profile side with segment membership as the builder's Hook.
type env struct{ *profiletest.Env }

// openEnv starts an env in dir on clk, with membership's options adjusted
// by tune if not nil.
func openEnv(t testing.TB, dir string, clk *profiletest.Clock, tune func(*membership.Options)) *env {
	t.Helper()
	return &env{profiletest.Open(t, profiletest.Options{Dir: dir, Clock: clk, Membership: tune})}
}

func (e *env) put(t testing.TB, site, name, rule string) {
	t.Helper()
	if _, _, err := e.Segments.Put(site, name, rule); err != nil {
		t.Fatalf("Put %s: %s", name, err)
	}
	if bf := e.Segments.BackfillOf(site, name); bf != nil {
		bf.Wait()
	}
	if _, err := e.Segments.Sequence(context.Background()); err != nil {
		t.Fatalf("Sequence: %s", err)
	}
}

func (e *env) members(t testing.TB, site, name string) map[event.UUID]membership.Member {
	t.Helper()
	got := map[event.UUID]membership.Member{}
	if err := e.Segments.Members(site, name, nil, func(m *membership.Member) bool {
		mm := *m
		mm.Visitors = slices.Clone(m.Visitors) // m's buffer is reused
		got[m.Visitor] = mm
		return true
	}); err != nil {
		t.Fatalf("Members: %s", err)
	}
	return got
}

func (e *env) changes(t testing.TB, site, name string) []membership.Change {
	t.Helper()
	var cs []membership.Change
	if err := e.Segments.Changes(site, name, 0, func(c *membership.Change) bool {
		cs = append(cs, *c)
		return true
	}); err != nil {
		t.Fatalf("Changes: %s", err)
	}
	return cs
}

package builder_test

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// openEnv starts the builder on a log of parts partitions in dir, with
// hook (nil: none).
func openEnv(t testing.TB, dir string, parts int, hook builder.Hook) *profiletest.Env {
	t.Helper()
	if hook == nil {
		hook = profiletest.NoHook
	}
	return profiletest.Open(t, profiletest.Options{Dir: dir, Partitions: parts, Hook: hook})
}

func counter(set *metrics.Set, name string) uint64 {
	return set.GetOrCreateCounter(name).Get()
}

const t0 = profiletest.T0

// view returns a view with event id n: tests resend it by n.
func view(n int, ts int64, p event.Product) event.Event {
	e := profiletest.View(ts, p)
	e.ID = profiletest.EventID(n)
	return e
}

func withType(e event.Event, t event.Type) event.Event { e.Type = t; return e }

// splitLogKey returns the site and visitor of a log key (event.AppendLogKey).
func splitLogKey(t testing.TB, key string) (string, event.UUID) {
	t.Helper()
	i := len(key) - 37
	if i < 0 || key[i] != '|' {
		t.Fatalf("log key %q: not site|<uuid>", key)
	}
	v, ok := event.ParseUUID([]byte(key[i+1:]))
	if !ok {
		t.Fatalf("log key %q: not site|<uuid>", key)
	}
	return key[:i], v
}

// reference applies batches to fresh profiles in order, each event id once
// per visitor, as the builder must.
func reference(cfg *profile.Config, batches []*event.Batch) map[string]*profile.Profile {
	ref := map[string]*profile.Profile{}
	seen := map[string]bool{}
	for _, b := range batches {
		key := string(event.AppendLogKey(nil, b.Site, b.Visitor))
		p := ref[key]
		if p == nil {
			p = &profile.Profile{}
			ref[key] = p
		}
		for i := range b.Events {
			e := &b.Events[i]
			if seen[key+string(e.ID[:])] {
				continue
			}
			seen[key+string(e.ID[:])] = true
			p.Apply(e, cfg, b.Recv, nil)
		}
	}
	for k, p := range ref {
		if p.Empty() {
			delete(ref, k)
		}
	}
	return ref
}

// checkState compares every stored profile with ref, byte for byte, and
// checks that the interest index holds exactly the entries the profiles
// imply for the dimensions cfg indexes.
func checkState(t testing.TB, db *state.DB, cfg *profile.Config, ref map[string]*profile.Profile) {
	t.Helper()
	type ientry struct {
		site, dim, value string
		pos              state.InterestPos
	}
	indexed := cfg.IndexDims()
	var want []ientry
	values := map[[3]string]bool{}
	for key, p := range ref {
		site, v := splitLogKey(t, key)
		got, ok, err := db.Profile(site, v, nil)
		if err != nil || !ok {
			t.Fatalf("profile of %s/%s: ok=%v err=%v; want it stored", site, v, ok, err)
		}
		if exp := profile.AppendProfile(nil, p); !slices.Equal(got, exp) {
			var gp profile.Profile
			_ = profile.DecodeProfile(&gp, got)
			t.Fatalf("profile of %s/%s differs from the reference:\ngot  %+v\nwant %+v", site, v, gp, *p)
		}
		for d := range profile.Dim(profile.NumDims) {
			for _, en := range p.Dims[d] {
				if g := en.LogG(); !math.IsInf(g, -1) && slices.Contains(indexed, d.String()) {
					k := state.ScoreKey(g)
					want = append(want, ientry{site, d.String(), en.Value, state.InterestPos{Key: k, Visitor: v}})
				}
				values[[3]string{site, d.String(), en.Value}] = true
			}
		}
	}
	var got []ientry
	for sdv := range values {
		err := db.ScanInterests(sdv[0], sdv[1], sdv[2], math.MaxUint64, nil, func(pos state.InterestPos) bool {
			got = append(got, ientry{sdv[0], sdv[1], sdv[2], pos})
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	cmp := func(a, b ientry) int {
		return cmpStrings(a.site+"\x00"+a.dim+"\x00"+a.value, b.site+"\x00"+b.dim+"\x00"+b.value, a.pos, b.pos)
	}
	slices.SortFunc(got, cmp)
	slices.SortFunc(want, cmp)
	if !slices.Equal(got, want) {
		t.Fatalf("interest index: %d entries; want %d (first difference at %s)", len(got), len(want), firstDiff(got, want))
	}
	if n := db.InterestEntries(); n != int64(len(want)) {
		t.Fatalf("InterestEntries = %d; want the %d entries the profiles imply", n, len(want))
	}
}

func cmpStrings(a, b string, pa, pb state.InterestPos) int {
	if a != b {
		if a < b {
			return -1
		}
		return 1
	}
	if pa.Key != pb.Key {
		if pa.Key < pb.Key {
			return -1
		}
		return 1
	}
	return slices.Compare(pa.Visitor[:], pb.Visitor[:])
}

func firstDiff[T comparable](a, b []T) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("%d: got %+v; want %+v", i, a[i], b[i])
		}
	}
	return fmt.Sprintf("%d (lengths)", min(len(a), len(b)))
}

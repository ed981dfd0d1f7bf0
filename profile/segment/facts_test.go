package segment

import (
	"math"
	"slices"
	"strings"

	"github.com/affinityhq/affinity/tracker/event"
)

// testLandmark is profile.Landmark, 2026-01-01T00:00:00Z.
const testLandmark int64 = 1767225600000

// facts is a Subject held as plain values: a visitor described by its facts
// rather than built from events, so tests can state exactly the situation
// they check.
type facts struct {
	halfLife float64                       // ms, every dimension
	logG     map[string]map[string]float64 // dim → value → LogG
	events   [event.NumTypes][]int64       // every event time per type
	recent   int                           // if > 0, Recent returns only the newest this many
	orders   int
	revenue  float64
	lastBuy  int64
	email    bool
	traits   map[string]string
	lists    map[string]bool // the lists the visitor is in
	campaign map[string]bool // campaign id → converted, for those it received
}

func newFacts() *facts {
	return &facts{halfLife: float64(14 * day), logG: map[string]map[string]float64{}, traits: map[string]string{}}
}

// setScore makes value of dim score sc at instant at.
func (f *facts) setScore(dim, value string, sc float64, at int64) *facts {
	if f.logG[dim] == nil {
		f.logG[dim] = map[string]float64{}
	}
	f.logG[dim][value] = math.Log2(sc) + float64(at-testLandmark)/f.halfLife
	return f
}

func (f *facts) add(t event.Type, ts ...int64) *facts {
	f.events[t] = append(f.events[t], ts...)
	slices.Sort(f.events[t])
	return f
}

func (f *facts) LogG(dim, value string) float64 {
	if g, ok := f.logG[dim][value]; ok {
		return g
	}
	return math.Inf(-1)
}

func (f *facts) LogThreshold(_ string, theta float64, at int64) float64 {
	return math.Log2(theta) + float64(at-testLandmark)/f.halfLife
}

func (f *facts) HalfLife(string) float64 { return f.halfLife }

func (f *facts) Share(dim, value string) float64 {
	g, ok := f.logG[dim][value]
	if !ok {
		return 0
	}
	var sum float64
	for _, x := range f.logG[dim] {
		sum += math.Exp2(x - g)
	}
	return 1 / sum
}

func (f *facts) Top(dim string) string {
	best, bg := "", math.Inf(-1)
	for v, g := range f.logG[dim] {
		if g > bg || g == bg && strings.Compare(v, best) < 0 {
			best, bg = v, g
		}
	}
	return best
}

func (f *facts) Events(t event.Type) (int, int64, int64) {
	ts := f.events[t]
	if len(ts) == 0 {
		return 0, 0, 0
	}
	return len(ts), ts[0], ts[len(ts)-1]
}

func (f *facts) Recent(t event.Type) []int64 {
	ts := f.events[t]
	if f.recent > 0 && len(ts) > f.recent {
		return ts[len(ts)-f.recent:]
	}
	return ts
}

func (f *facts) Orders() (int, float64, int64) { return f.orders, f.revenue, f.lastBuy }
func (f *facts) Identified() bool              { return f.email }
func (f *facts) InList(name string) bool       { return f.lists[name] }
func (f *facts) Campaign(id string, converted bool) bool {
	conv, ok := f.campaign[id]
	return ok && (!converted || conv)
}
func (f *facts) Trait(key string) (string, bool) {
	v, ok := f.traits[key]
	return v, ok
}

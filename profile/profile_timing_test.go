package profile

import (
	"math/rand/v2"
	"testing"

	"github.com/affinityhq/affinity/tracker/event"
)

// warmProfile returns a profile that has seen 300 random events.
func warmProfile() (*Profile, []event.Event) {
	cfg := DefaultConfig()
	r := rand.New(rand.NewPCG(42, 42))
	evs := genEvents(r, 300)
	p := &Profile{}
	for i := range evs {
		p.Apply(&evs[i], cfg, evs[i].TS, nil)
	}
	return p, evs
}

func BenchmarkApply(b *testing.B) {
	cfg := DefaultConfig()
	p, _ := warmProfile()
	e := view(t0, event.Product{ID: "p3", Brand: "acme", Category: "baby/food/formula", Age: "0-3", Price: 12.5, HasPrice: true})
	changes := make([]ScoreChange, 0, 16)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		e.TS = t0 + int64(i%1000)*1000
		changes = p.Apply(&e, cfg, e.TS, changes[:0])
	}
}

func BenchmarkAppendProfile(b *testing.B) {
	p, _ := warmProfile()
	buf := AppendProfile(nil, p)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendProfile(buf[:0], p)
	}
}

func BenchmarkDecodeProfile(b *testing.B) {
	p, _ := warmProfile()
	data := AppendProfile(nil, p)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var q Profile
	for b.Loop() {
		if err := DecodeProfile(&q, data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	cfg := DefaultConfig()
	p, _ := warmProfile()
	buf := p.AppendJSON(nil, cfg, t0)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = p.AppendJSON(buf[:0], cfg, t0)
	}
}

// BenchmarkMerge merges one warm profile into another holding the same
// values: the people API's work per extra visitor of a person.
func BenchmarkMerge(b *testing.B) {
	cfg := DefaultConfig()
	src, _ := warmProfile()
	dst, _ := warmProfile()
	b.SetBytes(int64(len(AppendProfile(nil, src))))
	b.ReportAllocs()
	for b.Loop() {
		dst.Merge(src, cfg)
	}
}

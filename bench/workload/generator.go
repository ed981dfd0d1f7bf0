package workload

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/affinityhq/affinity/tracker/event"
)

// Options describe a workload. Start from DefaultOptions.
type Options struct {
	// Seed makes the workload reproducible: the same Options give the same
	// batches.
	Seed uint64
	// VisitorSeed, when not 0, names the visitors instead of Seed
	// (VisitorID(VisitorSeed, i)): traffic with its own Seed then returns
	// to the visitors of another workload, without repeating its events.
	VisitorSeed uint64
	// Site is the site key every batch names.
	Site string
	// Visitors is the number of distinct visitors of the whole workload (all
	// shards together).
	Visitors int
	// Events is the number of events of the whole workload; 0 means
	// unbounded (Next never runs out, as for time-bounded load).
	Events int64
	// Products and Brands size the catalog.
	Products, Brands int
	// ZipfS is the Zipf exponent of product popularity (> 1).
	ZipfS float64
	// MaxBatch is the most events per batch (the snippet flushes 1–20).
	MaxBatch int
	// SessionEvents is the mean number of events of a session.
	SessionEvents int
	// OpenSessions is how many sessions a generator interleaves.
	OpenSessions int
	// ReturnRate is the chance that a new session belongs to a visitor seen
	// before, when Events is unbounded (with Events set, new visitors are
	// spread so that all of them appear).
	ReturnRate float64
	// Start and Span place the events in simulated time: event k of n is at
	// about Start + Span·k/n (Unix ms). Ignored when Now is set.
	Start int64
	Span  time.Duration
	// Now, when set, dates every batch at Now() (Unix ms), as live traffic
	// must be for a collector's accept window. Not encoded: a process
	// that is sent Options sets its own.
	Now func() int64 `json:"-"`
	// Shard and Shards split the workload: this generator makes the
	// visitors whose index ≡ Shard (mod Shards) and 1/Shards of the events.
	Shard, Shards int
}

// DefaultOptions returns a small workload: 100k visitors, 1M events over
// 30 simulated days on a 10k-product catalog.
func DefaultOptions() Options {
	return Options{
		Seed:          1,
		Site:          "demo",
		Visitors:      100_000,
		Events:        1_000_000,
		Products:      10_000,
		Brands:        300,
		ZipfS:         1.1,
		MaxBatch:      20,
		SessionEvents: 10,
		OpenSessions:  256,
		ReturnRate:    0.3,
		Start:         time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli(),
		Span:          30 * 24 * time.Hour,
		Shards:        1,
	}
}

// Generator makes the batches of one shard of a workload.
type Generator struct {
	opts    Options
	cat     *Catalog
	r       *rand.Rand
	zipf    *rand.Zipf
	zipfTop []*rand.Zipf

	events    int64 // this shard's budget; 0 = unbounded
	made      int64 // events made
	perShard  int   // visitors of this shard
	seen      int   // visitors of this shard introduced so far
	sessions  []*session
	pageviews []string // landing and category page URLs
	urls      []string // product page URLs, by product index
}

type session struct {
	visitor    int // global visitor index
	id         event.UUID
	left       int
	t          int64 // simulated time of the session's last event
	prefTop    int
	cart       []int
	lastViewed int
	identified bool
}

// New returns the generator of opts' shard, with the catalog cat (nil: one
// is built from opts, which costs ~1 ms per thousand products; share one
// Catalog between the shards of a workload).
func New(opts Options, cat *Catalog) (*Generator, error) {
	def := DefaultOptions()
	if opts.Shards <= 0 {
		opts.Shards = 1
	}
	if opts.Shard < 0 || opts.Shard >= opts.Shards {
		return nil, fmt.Errorf("cannot create workload: shard %d not in [0, %d)", opts.Shard, opts.Shards)
	}
	if opts.Visitors < opts.Shards {
		return nil, fmt.Errorf("cannot create workload: %d visitors for %d shards: need at least one each", opts.Visitors, opts.Shards)
	}
	if opts.Site == "" {
		opts.Site = def.Site
	}
	if opts.ZipfS <= 1 {
		opts.ZipfS = def.ZipfS
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = def.MaxBatch
	}
	if opts.SessionEvents <= 0 {
		opts.SessionEvents = def.SessionEvents
	}
	if opts.OpenSessions <= 0 {
		opts.OpenSessions = def.OpenSessions
	}
	if opts.Span <= 0 {
		opts.Span = def.Span
	}
	if cat == nil {
		cat = NewCatalog(opts.Seed, opts.Products, opts.Brands)
	}
	g := &Generator{
		opts:     opts,
		cat:      cat,
		r:        rand.New(rand.NewPCG(opts.Seed, uint64(opts.Shard)+1)),
		perShard: (opts.Visitors - opts.Shard + opts.Shards - 1) / opts.Shards,
		sessions: make([]*session, opts.OpenSessions),
	}
	if opts.Events > 0 {
		g.events = opts.Events / int64(opts.Shards)
		if int64(opts.Shard) < opts.Events%int64(opts.Shards) {
			g.events++
		}
		if g.events == 0 {
			g.events = -1 // nothing for this shard
		}
	}
	n := len(cat.Products)
	g.zipf = rand.NewZipf(g.r, opts.ZipfS, 1, uint64(n-1))
	g.zipfTop = make([]*rand.Zipf, len(cat.ByTop))
	for i, l := range cat.ByTop {
		if len(l) > 0 {
			g.zipfTop[i] = rand.NewZipf(g.r, opts.ZipfS, 1, uint64(len(l)-1))
		}
	}
	g.pageviews = append(g.pageviews, "https://shop.example/")
	for _, t := range cat.Tops {
		g.pageviews = append(g.pageviews, "https://shop.example/c/"+t)
	}
	g.urls = make([]string, n)
	for i := range cat.Products {
		g.urls[i] = "https://shop.example/p/" + cat.Products[i].ID
	}
	return g, nil
}

// Catalog returns the generator's catalog.
func (g *Generator) Catalog() *Catalog { return g.cat }

// Made returns the number of events made so far.
func (g *Generator) Made() int64 { return g.made }

// Visitors returns the number of distinct visitors made so far.
func (g *Generator) Visitors() int { return g.seen }

// VisitorID returns the UUID of the global visitor index i of a workload
// with seed seed.
func VisitorID(seed uint64, i int) event.UUID {
	var u event.UUID
	binary.BigEndian.PutUint64(u[:8], splitmix(seed^uint64(i)*0x9e3779b97f4a7c15))
	binary.BigEndian.PutUint64(u[8:], splitmix(seed+uint64(i)+0x632be59bd9b4e019))
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	return u
}

// visitorSeed is the seed of the visitors' ids.
func (g *Generator) visitorSeed() uint64 {
	if g.opts.VisitorSeed != 0 {
		return g.opts.VisitorSeed
	}
	return g.opts.Seed
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// Next fills b with the next batch (b is Reset first) and reports whether
// there was one. The strings of b point into the catalog and the
// generator: b may be encoded, not kept past the next call.
func (g *Generator) Next(b *event.Batch) bool {
	b.Reset()
	if g.events < 0 || g.events > 0 && g.made >= g.events {
		return false
	}
	slot := g.r.IntN(len(g.sessions))
	s := g.sessions[slot]
	if s == nil || s.left == 0 {
		s = g.newSession(s)
		g.sessions[slot] = s
	}
	n := 1 + g.r.IntN(g.opts.MaxBatch)
	if g.r.IntN(2) == 0 { // half the batches are small: one page's events
		n = 1 + g.r.IntN(3)
	}
	n = min(n, s.left)
	if g.events > 0 {
		n = int(min(int64(n), g.events-g.made))
	}
	b.Site = g.opts.Site
	b.Visitor = s.id
	var now int64
	if g.opts.Now != nil {
		now = g.opts.Now()
		s.t = now - int64(n)*1500
	}
	for range n {
		g.event(b, s)
	}
	s.left -= n
	g.made += int64(n)
	if g.opts.Now != nil {
		b.Recv = now
	} else {
		b.Recv = s.t + 20 + int64(g.r.IntN(200))
	}
	return true
}

// simNow returns the simulated time of the shard's progress.
func (g *Generator) simNow() int64 {
	span := g.opts.Span.Milliseconds()
	if g.events > 0 {
		return g.opts.Start + int64(float64(span)*float64(g.made)/float64(g.events))
	}
	return g.opts.Start + g.made*1000/int64(g.opts.OpenSessions) // ~1 event/s per open session
}

func (g *Generator) newSession(s *session) *session {
	if s == nil {
		s = &session{}
	}
	var local int
	switch {
	case g.seen == 0:
		local = g.seen
		g.seen++
	case g.seen >= g.perShard:
		local = g.r.IntN(g.seen)
	default:
		pNew := 1 - g.opts.ReturnRate
		if g.events > 0 {
			left := float64(g.events - g.made)
			pNew = float64(g.perShard-g.seen) * float64(g.opts.SessionEvents) / max(left, 1)
		}
		if g.r.Float64() < pNew {
			local = g.seen
			g.seen++
		} else {
			local = g.r.IntN(g.seen)
		}
	}
	vi := local*g.opts.Shards + g.opts.Shard
	*s = session{
		visitor:    vi,
		id:         VisitorID(g.visitorSeed(), vi),
		left:       1 + int(g.r.ExpFloat64()*float64(g.opts.SessionEvents-1)),
		t:          g.simNow(),
		prefTop:    int(splitmix(uint64(vi)^g.visitorSeed()) % uint64(len(g.cat.Tops))),
		cart:       s.cart[:0],
		lastViewed: -1,
	}
	return s
}

func (g *Generator) product(s *session) int {
	if z := g.zipfTop[s.prefTop]; z != nil && g.r.IntN(10) < 7 {
		return g.cat.ByTop[s.prefTop][z.Uint64()]
	}
	return int(g.zipf.Uint64())
}

func (g *Generator) event(b *event.Batch, s *session) {
	if len(b.Events) < cap(b.Events) {
		b.Events = b.Events[:len(b.Events)+1]
	} else {
		b.Events = append(b.Events, event.Event{})
	}
	e := &b.Events[len(b.Events)-1]
	items, traits := e.Order.Items[:0], e.Traits[:0]
	*e = event.Event{}
	e.Order.Items, e.Traits = items, traits

	binary.BigEndian.PutUint64(e.ID[:8], g.r.Uint64())
	binary.BigEndian.PutUint64(e.ID[8:], g.r.Uint64())
	e.ID[6] = e.ID[6]&0x0f | 0x40
	e.ID[8] = e.ID[8]&0x3f | 0x80
	if g.opts.Now != nil {
		s.t += 1000 + int64(g.r.IntN(500)) // live: within the batch's flush window, never ahead of now
	} else {
		s.t += 2000 + int64(g.r.IntN(30000))
	}
	e.TS = s.t

	first := s.lastViewed == -1
	x := g.r.IntN(100)
	switch {
	case first || x < 22:
		e.Type = event.TypePageview
		e.URL = g.pageviews[g.r.IntN(len(g.pageviews))]
		if first {
			s.lastViewed = -2 // past the landing page
		}
	case x < 80 || s.lastViewed < 0 && x < 90:
		g.view(e, s)
	case x < 90:
		e.Type = event.TypeCart
		g.setProduct(&e.Product, s.lastViewed)
		e.Product.Qty = 1
		e.HasProduct = true
		if len(s.cart) < 16 {
			s.cart = append(s.cart, s.lastViewed)
		}
	case x < 93 && len(s.cart) > 0:
		e.Type = event.TypeUncart
		i := g.r.IntN(len(s.cart))
		g.setProduct(&e.Product, s.cart[i])
		e.Product.Qty = 1
		e.HasProduct = true
		s.cart = append(s.cart[:i], s.cart[i+1:]...)
	case x < 97 && len(s.cart) > 0:
		e.Type = event.TypePurchase
		e.HasOrder = true
		e.Order.ID = "o" + strconv.FormatUint(g.r.Uint64()>>20, 36)
		total := 0.0
		for _, pi := range s.cart {
			e.Order.Items = append(e.Order.Items, event.Product{})
			it := &e.Order.Items[len(e.Order.Items)-1]
			g.setProduct(it, pi)
			it.Qty = 1
			total += it.Price
		}
		e.Order.Total = float64(int64(total*100+0.5)) / 100
		e.Order.HasTotal = true
		s.cart = s.cart[:0]
	case x >= 97 && !s.identified:
		e.Type = event.TypeIdentify
		s.identified = true
		idx := strconv.Itoa(s.visitor)
		e.Email = "v" + idx + "@example.com"
		e.Customer = "c" + idx
		h := splitmix(uint64(s.visitor) + 7)
		e.Traits = append(e.Traits,
			event.Trait{Key: "birthday", Kind: event.TraitString, Value: birthdays[h%uint64(len(birthdays))]},
			event.Trait{Key: "children", Kind: event.TraitNumber, Value: strconv.Itoa(int(h>>8%4) + 1)},
			event.Trait{Key: "newsletter", Kind: event.TraitBool, Value: strconv.FormatBool(h>>16&1 == 1)},
		)
	default:
		g.view(e, s)
	}
}

// birthdays are the traits identifies send: a few dozen distinct dates.
var birthdays = func() []string {
	var out []string
	for y := 1975; y < 2000; y += 3 {
		for m := 1; m <= 12; m += 4 {
			out = append(out, time.Date(y, time.Month(m), 1+y%28, 0, 0, 0, 0, time.UTC).Format(time.DateOnly))
		}
	}
	return out
}()

func (g *Generator) view(e *event.Event, s *session) {
	e.Type = event.TypeView
	p := g.product(s)
	s.lastViewed = p
	g.setProduct(&e.Product, p)
	e.HasProduct = true
	e.URL = g.urls[p]
}

func (g *Generator) setProduct(dst *event.Product, i int) {
	p := &g.cat.Products[i]
	*dst = event.Product{ID: p.ID, Brand: p.Brand, Category: p.Category, Age: p.Age, Price: p.Price, HasPrice: true}
}

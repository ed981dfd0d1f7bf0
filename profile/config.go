package profile

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/affinityhq/affinity/internal/duration"
	"github.com/affinityhq/affinity/tracker/event"
)

// Dim is a scoring dimension: an attribute of a product whose values collect
// interest. The numeric values are stored in the profile format (FORMAT.md):
// never renumber, only append.
type Dim uint8

// The dimensions.
const (
	DimBrand    Dim = 0 // the product's brand
	DimCategory Dim = 1 // every level of the category path: "baby", "baby/food", …
	DimAge      Dim = 2 // the child age range, e.g. "0-3"
	DimPrice    Dim = 3 // the price band (Config.PriceBand), e.g. "10-25"
	DimProduct  Dim = 4 // the product id

	// NumDims bounds the valid Dim values.
	NumDims = 5
)

var dimNames = [NumDims]string{"brand", "category", "age", "price", "product"}

// String returns the name of d ("brand", "category", "age", "price",
// "product"), or "" for an invalid Dim.
func (d Dim) String() string {
	if int(d) < NumDims {
		return dimNames[d]
	}
	return ""
}

// ParseDim returns the dimension named s.
func ParseDim(s string) (Dim, bool) {
	for i, n := range dimNames {
		if s == n {
			return Dim(i), true
		}
	}
	return 0, false
}

// Limits of the configuration.
const (
	// MinHalfLife and MaxHalfLife bound a dimension's half-life. The lower
	// bound keeps the stored form exact for about a year past the landmark
	// (see Landmark and DESIGN.md "Scoring: forward decay").
	MinHalfLife = time.Hour
	MaxHalfLife = 100 * 365 * 24 * time.Hour
	// MaxTopK bounds the values kept per dimension (and the profile format).
	MaxTopK = 255
	// MaxWeight bounds the magnitude of an event weight.
	MaxWeight = 1e6
	// MaxPriceBands bounds the number of price band edges.
	MaxPriceBands = 32
)

// Config says how events turn into scores: per event type and dimension a
// weight, per dimension a half-life and how many values a profile keeps.
//
// Build one with DefaultConfig and the Set* methods before use; a Config is
// then read-only and safe for concurrent use by any number of goroutines.
// The zero Config scores nothing.
type Config struct {
	weights  [event.NumTypes][NumDims]float64
	logW     [event.NumTypes][NumDims]float64 // log2 |weight|
	halfLife [NumDims]time.Duration
	hMs      [NumDims]float64 // halfLife in ms
	topK     [NumDims]int
	// unindexed has bit d set when dimension d is left out of the
	// interest index (SetIndexDims).
	unindexed uint8

	bands      []float64 // ascending upper edges of the price bands
	bandLabels []string  // len(bands)+1 labels
}

// DefaultConfig returns the default scoring:
//
//   - weights: pageview 0, view 1, cart 3, purchase 5, identify 0, on every
//     dimension; uncart −3 on the product dimension only (see below);
//   - half-life 14 days on every dimension;
//   - top 32 values kept per dimension;
//   - price bands 0-10, 10-25, 25-50, 50-100, 100-250, 250+;
//   - every dimension but product in the interest index (SetIndexDims).
//
// Uncart: taking an item out of the cart says the visitor does not want
// that product (now), but they still looked at its brand and category. So
// by default an uncart takes back a cart's weight on the product only: a
// cart at t₁ and an uncart at t₂ leave 3·(2^((t₁−L)/H) − 2^((t₂−L)/H)), a
// small residue (zero when t₁ = t₂, slightly negative when t₂ > t₁) rather
// than the product staying "hot" for weeks. A value whose sum is ≤ 0 has
// score 0 and is not in the interest index.
func DefaultConfig() *Config {
	c := &Config{}
	for d := range NumDims {
		c.setWeight(event.TypeView, Dim(d), 1)
		c.setWeight(event.TypeCart, Dim(d), 3)
		c.setWeight(event.TypePurchase, Dim(d), 5)
		c.setHalfLife(Dim(d), 14*24*time.Hour)
		c.topK[d] = 32
	}
	c.setWeight(event.TypeUncart, DimProduct, -3)
	c.unindexed = 1 << DimProduct
	if err := c.SetPriceBands("10,25,50,100,250"); err != nil {
		panic("BUG: default price bands: " + err.Error())
	}
	return c
}

func (c *Config) setWeight(t event.Type, d Dim, w float64) {
	c.weights[t][d] = w
	c.logW[t][d] = math.Log2(math.Abs(w))
}

func (c *Config) setHalfLife(d Dim, h time.Duration) {
	c.halfLife[d] = h
	c.hMs[d] = float64(h.Milliseconds())
}

// SetIndexDims sets the dimensions the interest index holds, from spec
// "all", "none" or a comma-separated list of dimension names, e.g.
// "brand,category,age,price" (the default). Every score change of an
// indexed dimension costs the builder a delete and a put in the index;
// the index serves /v1/interests and the backfill of a rule that names an
// interest. A dimension left out still scores and rules still read it:
// its backfills scan every profile and /v1/interests refuses it.
func (c *Config) SetIndexDims(spec string) error {
	var unindexed uint8 = 1<<NumDims - 1
	switch spec = strings.TrimSpace(spec); spec {
	case "all":
		unindexed = 0
	case "none", "":
	default:
		for _, name := range strings.Split(spec, ",") {
			d, ok := ParseDim(strings.TrimSpace(name))
			if !ok {
				return fmt.Errorf("cannot set the indexed dimensions %q: unknown dimension %q; want brand, category, age, price or product", spec, name)
			}
			unindexed &^= 1 << d
		}
	}
	c.unindexed = unindexed
	return nil
}

// Indexed reports whether the interest index holds dimension d.
func (c *Config) Indexed(d Dim) bool { return int(d) < NumDims && c.unindexed&(1<<d) == 0 }

// IndexDims returns the names of the indexed dimensions, in Dim order.
func (c *Config) IndexDims() []string {
	var names []string
	for d := range Dim(NumDims) {
		if c.Indexed(d) {
			names = append(names, d.String())
		}
	}
	return names
}

// HalfLife returns the half-life of d.
func (c *Config) HalfLife(d Dim) time.Duration {
	if int(d) >= NumDims {
		return 0
	}
	return c.halfLife[d]
}

// Weight returns the weight of an event of type t on dimension d.
func (c *Config) Weight(t event.Type, d Dim) float64 {
	if int(t) >= event.NumTypes || int(d) >= NumDims {
		return 0
	}
	return c.weights[t][d]
}

// TopK returns how many values of d a profile keeps; 0 means d is off.
func (c *Config) TopK(d Dim) int {
	if int(d) >= NumDims {
		return 0
	}
	return c.topK[d]
}

// SetHalfLife sets a half-life from spec "DUR" (every dimension) or
// "DIM=DUR" (one dimension), e.g. "14d", "brand=7d", "price=36h". DUR takes
// the units s, m, h, d and w (internal/duration) and lies within
// [MinHalfLife, MaxHalfLife].
func (c *Config) SetHalfLife(spec string) error {
	dims, val, err := splitDimSpec(spec)
	if err != nil {
		return fmt.Errorf("cannot set half-life %q: %w", spec, err)
	}
	h, err := duration.Parse(val)
	if err != nil {
		return fmt.Errorf("cannot set half-life %q: %w", spec, err)
	}
	if h < MinHalfLife || h > MaxHalfLife {
		return fmt.Errorf("cannot set half-life %q: %s is outside [%s, %s]", spec, val, MinHalfLife, duration.Format(MaxHalfLife))
	}
	for d := range NumDims {
		if dims&(1<<d) != 0 {
			c.setHalfLife(Dim(d), h)
		}
	}
	return nil
}

// SetTopK sets how many values per dimension a profile keeps, from spec "K"
// (every dimension) or "DIM=K", e.g. "64", "product=16". K = 0 turns the
// dimension off.
func (c *Config) SetTopK(spec string) error {
	dims, val, err := splitDimSpec(spec)
	if err != nil {
		return fmt.Errorf("cannot set top-k %q: %w", spec, err)
	}
	k, err := strconv.Atoi(val)
	if err != nil || k < 0 || k > MaxTopK {
		return fmt.Errorf("cannot set top-k %q: %q is not an integer in [0, %d]", spec, val, MaxTopK)
	}
	for d := range NumDims {
		if dims&(1<<d) != 0 {
			c.topK[d] = k
		}
	}
	return nil
}

// SetWeight sets an event weight from spec "EVENT=W" (that event type on
// every dimension) or "EVENT.DIM=W" (one dimension), e.g. "cart=3",
// "uncart.product=-3", "view.price=0.5". W is a finite number with
// |W| ≤ MaxWeight; negative weights subtract interest.
func (c *Config) SetWeight(spec string) error {
	name, val, ok := strings.Cut(spec, "=")
	if !ok {
		return fmt.Errorf("cannot set weight %q: want EVENT=W or EVENT.DIM=W, e.g. cart=3", spec)
	}
	name = strings.TrimSpace(name)
	dims := uint8(1<<NumDims - 1)
	if tn, dn, ok := strings.Cut(name, "."); ok {
		d, ok := ParseDim(dn)
		if !ok {
			return fmt.Errorf("cannot set weight %q: unknown dimension %q; want one of %s", spec, dn, strings.Join(dimNames[:], ", "))
		}
		name, dims = tn, 1<<d
	}
	t := event.ParseType([]byte(name))
	if t == event.TypeInvalid {
		return fmt.Errorf("cannot set weight %q: unknown event type %q", spec, name)
	}
	val = strings.TrimSpace(val)
	w, err := strconv.ParseFloat(val, 64)
	if err != nil || math.IsNaN(w) || math.Abs(w) > MaxWeight {
		return fmt.Errorf("cannot set weight %q: %q is not a number in [-%g, %g]", spec, val, float64(MaxWeight), float64(MaxWeight))
	}
	for d := range NumDims {
		if dims&(1<<d) != 0 {
			c.setWeight(t, Dim(d), w)
		}
	}
	return nil
}

// SetPriceBands sets the price bands from their ascending upper edges, e.g.
// "10,25,50,100,250" gives the bands 0-10, 10-25, 25-50, 50-100, 100-250 and
// 250+. A price p falls in the first band whose edge is > p.
func (c *Config) SetPriceBands(spec string) error {
	var bands []float64
	for f := range strings.SplitSeq(spec, ",") {
		f = strings.TrimSpace(f)
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= 0 || math.IsInf(v, 0) || math.IsNaN(v) {
			return fmt.Errorf("cannot set price bands %q: %q is not a positive number", spec, f)
		}
		if len(bands) > 0 && v <= bands[len(bands)-1] {
			return fmt.Errorf("cannot set price bands %q: %q is not above the edge before it", spec, f)
		}
		bands = append(bands, v)
	}
	if len(bands) > MaxPriceBands {
		return fmt.Errorf("cannot set price bands %q: %d edges; the limit is %d", spec, len(bands), MaxPriceBands)
	}
	labels := make([]string, 0, len(bands)+1)
	lo := "0"
	for _, b := range bands {
		hi := strconv.FormatFloat(b, 'f', -1, 64)
		labels = append(labels, lo+"-"+hi)
		lo = hi
	}
	labels = append(labels, lo+"+")
	c.bands, c.bandLabels = bands, labels
	return nil
}

// PriceBands returns the upper edges of the price bands. The caller must not
// modify the result.
func (c *Config) PriceBands() []float64 { return c.bands }

// PriceBand returns the label of the band price falls in, e.g. "10-25" or
// "250+"; "" when the Config has no bands or price is negative or NaN.
func (c *Config) PriceBand(price float64) string {
	if len(c.bandLabels) == 0 || !(price >= 0) {
		return ""
	}
	for i, b := range c.bands {
		if price < b {
			return c.bandLabels[i]
		}
	}
	return c.bandLabels[len(c.bands)]
}

// splitDimSpec splits "VAL" or "DIM=VAL" into a bit set of dimensions and VAL.
func splitDimSpec(spec string) (dims uint8, val string, err error) {
	name, val, ok := strings.Cut(spec, "=")
	if !ok {
		return 1<<NumDims - 1, strings.TrimSpace(spec), nil
	}
	name = strings.TrimSpace(name)
	d, ok := ParseDim(name)
	if !ok {
		return 0, "", fmt.Errorf("unknown dimension %q; want one of %s", name, strings.Join(dimNames[:], ", "))
	}
	return 1 << d, strings.TrimSpace(val), nil
}

package workload

import (
	"math"
	"math/rand/v2"
	"strconv"
)

// Product is one catalog product. Products are numbered by popularity: the
// Zipf draw picks low indexes most often.
type Product struct {
	ID       string
	Brand    string
	Category string // a path of 1–3 levels, e.g. "baby/food/formula"
	Age      string // a child age range, e.g. "0-3"
	Price    float64
}

// Catalog is a synthetic shop catalog, derived from a seed.
type Catalog struct {
	Products []Product
	// ByTop lists the indexes of the products under each top-level
	// category, in popularity order (visitors favour one top category).
	ByTop [][]int
	// Tops are the top-level category names.
	Tops []string
}

// topCategories are the first levels of the category paths.
var topCategories = []string{
	"baby", "toys", "kids-fashion", "school", "nursery", "outdoor",
	"books", "games", "bath", "food", "safety", "gifts",
}

// subCategories are the second levels, combined with every top level.
var subCategories = []string{
	"essentials", "premium", "sets", "accessories", "seasonal", "eco", "classic", "new",
}

// AgeRanges are the child age ranges products are tagged with.
var AgeRanges = []string{"0-1", "1-3", "3-6", "6-9", "9-12", "12+"}

// NewCatalog builds a catalog of n products from brands brands, derived from
// seed only (so every shard of a workload sees the same catalog).
func NewCatalog(seed uint64, n, brands int) *Catalog {
	if n <= 0 {
		n = 1
	}
	if brands <= 0 {
		brands = 1
	}
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	brandNames := make([]string, brands)
	for i := range brandNames {
		brandNames[i] = "brand-" + strconv.Itoa(i)
	}
	// Brand popularity is itself skewed: a few brands hold most products.
	brandZipf := rand.NewZipf(r, 1.2, 2, uint64(brands-1))
	c := &Catalog{
		Products: make([]Product, n),
		ByTop:    make([][]int, len(topCategories)),
		Tops:     topCategories,
	}
	paths := map[string]string{} // interned category paths
	intern := func(s string) string {
		if p, ok := paths[s]; ok {
			return p
		}
		paths[s] = s
		return s
	}
	for i := range c.Products {
		top := r.IntN(len(topCategories))
		path := topCategories[top]
		if r.IntN(10) > 0 {
			path += "/" + subCategories[r.IntN(len(subCategories))]
			if r.IntN(3) > 0 {
				path += "/leaf-" + strconv.Itoa(r.IntN(5))
			}
		}
		// Prices are log-normal around 20, in cents.
		price := math.Round(math.Exp(3+0.9*r.NormFloat64())*100) / 100
		if price < 0.5 {
			price = 0.5
		}
		c.Products[i] = Product{
			ID:       "p" + strconv.Itoa(100000+i),
			Brand:    brandNames[brandZipf.Uint64()],
			Category: intern(path),
			Age:      AgeRanges[r.IntN(len(AgeRanges))],
			Price:    price,
		}
		c.ByTop[top] = append(c.ByTop[top], i)
	}
	return c
}

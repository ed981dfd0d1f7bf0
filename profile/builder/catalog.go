package builder

import (
	"github.com/affinityhq/affinity/profile/catalog"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// maxCatalogCache bounds the products a partition keeps decoded; past it
// the cache starts over (a catalog join is a Badger read when it misses).
const maxCatalogCache = 8192

// productCache is a partition's cache of catalog products, known and
// unknown, dropped whenever the state DB's catalog generation moves.
type productCache struct {
	db  *state.DB
	gen uint64
	m   map[string]*cachedProduct
	key []byte
	buf []byte
}

type cachedProduct struct {
	p     catalog.Product
	found bool
}

func newProductCache(db *state.DB) *productCache {
	return &productCache{db: db, gen: db.CatalogGen(), m: make(map[string]*cachedProduct)}
}

// needsCatalog reports whether an event product carries an id but misses
// an attribute the catalog may have.
func needsCatalog(p *event.Product) bool {
	return p.ID != "" && (p.Brand == "" || p.Category == "" || p.Age == "" || !p.HasPrice)
}

// join fills the missing attributes of p from site's catalog. It reports
// false when the catalog does not know the product; err is a read error.
func (c *productCache) join(site string, p *event.Product) (found bool, err error) {
	if g := c.db.CatalogGen(); g != c.gen || len(c.m) >= maxCatalogCache {
		clear(c.m)
		c.gen = g
	}
	c.key = append(append(append(c.key[:0], site...), 0), p.ID...)
	cp := c.m[string(c.key)]
	if cp == nil {
		val, ok, err := c.db.Product(site, p.ID, c.buf)
		c.buf = val[:0]
		if err != nil {
			return false, err
		}
		cp = &cachedProduct{found: ok}
		if ok {
			if err := catalog.DecodeProduct(&cp.p, val); err != nil {
				// A product this build cannot read is an unknown one: the
				// event is scored on what it carries.
				cp = &cachedProduct{}
			}
		}
		c.m[string(c.key)] = cp
	}
	if cp.found {
		catalog.Join(p, cp.p)
	}
	return cp.found, nil
}

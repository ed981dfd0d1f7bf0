package catalog

import (
	"slices"
	"strconv"
	"unsafe"

	"github.com/affinityhq/affinity/tracker/event"
)

// Product is one product of a site's catalog.
type Product struct {
	ID       string
	Brand    string
	Category string // a path, levels separated by '/', e.g. "baby/food/formula"
	Age      string // a child age range, e.g. "0-3"
	Price    float64
	HasPrice bool   // Price was given (0 is a valid price)
	Attrs    []Attr // any other attributes, in the order given, keys unique
}

// Attr is one extra attribute of a product (a CSV column, a JSON member, a
// YML param). Value is text: a string's contents, or the literal JSON text of
// a number, boolean, array or object.
type Attr struct {
	Key   string
	Value string
}

// Reset empties p for reuse, keeping the capacity of Attrs.
func (p *Product) Reset() {
	attrs := p.Attrs[:0]
	*p = Product{Attrs: attrs}
}

// Clone returns a copy of p owning all its strings in one allocation.
func (p *Product) Clone() Product {
	n := len(p.ID) + len(p.Brand) + len(p.Category) + len(p.Age)
	for _, a := range p.Attrs {
		n += len(a.Key) + len(a.Value)
	}
	// One string holds every byte; the fields are substrings of it.
	all := make([]byte, 0, n)
	all = append(all, p.ID...)
	all = append(all, p.Brand...)
	all = append(all, p.Category...)
	all = append(all, p.Age...)
	for _, a := range p.Attrs {
		all = append(all, a.Key...)
		all = append(all, a.Value...)
	}
	s := ""
	if len(all) > 0 {
		s = unsafe.String(&all[0], len(all)) // all is never written again
	}
	off := 0
	sub := func(n int) string {
		r := s[off : off+n]
		off += n
		return r
	}
	c := Product{Price: p.Price, HasPrice: p.HasPrice}
	c.ID = sub(len(p.ID))
	c.Brand = sub(len(p.Brand))
	c.Category = sub(len(p.Category))
	c.Age = sub(len(p.Age))
	if len(p.Attrs) > 0 {
		c.Attrs = make([]Attr, len(p.Attrs))
		for i, a := range p.Attrs {
			c.Attrs[i] = Attr{Key: sub(len(a.Key)), Value: sub(len(a.Value))}
		}
	}
	return c
}

// Equal reports whether p and o hold the same product.
func (p *Product) Equal(o *Product) bool {
	return p.ID == o.ID && p.Brand == o.Brand && p.Category == o.Category && p.Age == o.Age &&
		p.HasPrice == o.HasPrice && p.Price == o.Price && slices.Equal(p.Attrs, o.Attrs)
}

// Attr returns the value of the attribute key and whether p has it.
func (p *Product) Attr(key string) (string, bool) {
	for _, a := range p.Attrs {
		if a.Key == key {
			return a.Value, true
		}
	}
	return "", false
}

// Join fills the attributes the event's product p did not carry (empty
// strings, no price) from cat, the catalog's product of the same id. The
// event's own attributes win: a shop that sends a brand inline means it.
// After Join, p's filled strings view cat's: they live as long as cat's.
func Join(p *event.Product, cat Product) {
	if p.Brand == "" {
		p.Brand = cat.Brand
	}
	if p.Category == "" {
		p.Category = cat.Category
	}
	if p.Age == "" {
		p.Age = cat.Age
	}
	if !p.HasPrice && cat.HasPrice {
		p.Price, p.HasPrice = cat.Price, true
	}
}

// AppendJSON appends p as a JSON object to dst (GET /v1/catalog/{site}/{id}):
// {"id":…,"brand":…,"category":…,"age":…,"price":…,"attrs":{…}}, empty
// fields left out.
func (p *Product) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"id":`...)
	dst = event.AppendJSONString(dst, p.ID)
	if p.Brand != "" {
		dst = append(dst, `,"brand":`...)
		dst = event.AppendJSONString(dst, p.Brand)
	}
	if p.Category != "" {
		dst = append(dst, `,"category":`...)
		dst = event.AppendJSONString(dst, p.Category)
	}
	if p.Age != "" {
		dst = append(dst, `,"age":`...)
		dst = event.AppendJSONString(dst, p.Age)
	}
	if p.HasPrice {
		dst = append(dst, `,"price":`...)
		dst = strconv.AppendFloat(dst, p.Price, 'g', -1, 64)
	}
	if len(p.Attrs) > 0 {
		dst = append(dst, `,"attrs":{`...)
		for i, a := range p.Attrs {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = event.AppendJSONString(dst, a.Key)
			dst = append(dst, ':')
			dst = event.AppendJSONString(dst, a.Value)
		}
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

package profile

import (
	"strings"
	"testing"
	"time"

	"github.com/affinityhq/affinity/tracker/event"
)

func TestConfigSetters(t *testing.T) {
	c := DefaultConfig()
	if c.HalfLife(DimBrand) != 14*24*time.Hour || c.Weight(event.TypeCart, DimAge) != 3 ||
		c.Weight(event.TypeUncart, DimProduct) != -3 || c.Weight(event.TypeUncart, DimBrand) != 0 ||
		c.Weight(event.TypePageview, DimBrand) != 0 || c.TopK(DimCategory) != 32 {
		t.Fatalf("defaults: %+v", c)
	}
	ok := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	ok(c.SetHalfLife("7d"))
	ok(c.SetHalfLife("brand=36h"))
	ok(c.SetHalfLife("age = 2w"))
	ok(c.SetWeight("cart=2.5"))
	ok(c.SetWeight("uncart.brand=-1"))
	ok(c.SetTopK("product=8"))
	if c.HalfLife(DimBrand) != 36*time.Hour || c.HalfLife(DimAge) != 14*24*time.Hour || c.HalfLife(DimPrice) != 7*24*time.Hour ||
		c.Weight(event.TypeCart, DimPrice) != 2.5 || c.Weight(event.TypeUncart, DimBrand) != -1 || c.TopK(DimProduct) != 8 || c.TopK(DimBrand) != 32 {
		t.Fatalf("after setters: %+v", c)
	}
	bad := []struct {
		err  error
		want string
	}{
		{c.SetHalfLife("14x"), `"14x"`},
		{c.SetHalfLife("colour=1d"), `"colour"`},
		{c.SetHalfLife("1m"), "outside"},
		{c.SetHalfLife("-1h"), `"-1h"`},
		{c.SetWeight("cart"), `"cart"`},
		{c.SetWeight("buy=3"), `"buy"`},
		{c.SetWeight("cart=x"), `"x"`},
		{c.SetWeight("cart=NaN"), `"NaN"`},
		{c.SetWeight("cart.colour=1"), `"colour"`},
		{c.SetTopK("brand=300"), `"300"`},
		{c.SetPriceBands("10,5"), `"5"`},
		{c.SetPriceBands("10,,20"), `""`},
	}
	for _, b := range bad {
		if b.err == nil || !strings.Contains(b.err.Error(), b.want) {
			t.Errorf("error %v; want one naming %s", b.err, b.want)
		}
	}
}

func TestPriceBand(t *testing.T) {
	c := DefaultConfig()
	for _, tc := range []struct {
		price float64
		want  string
	}{{0, "0-10"}, {9.99, "0-10"}, {10, "10-25"}, {249.5, "100-250"}, {250, "250+"}, {1e9, "250+"}, {-1, ""}} {
		if got := c.PriceBand(tc.price); got != tc.want {
			t.Errorf("PriceBand(%v) = %q; want %q", tc.price, got, tc.want)
		}
	}
	if err := c.SetPriceBands("0.5, 2.5"); err != nil {
		t.Fatal(err)
	}
	if got := c.PriceBand(1); got != "0.5-2.5" {
		t.Errorf("PriceBand(1) = %q; want 0.5-2.5", got)
	}
}

func TestSetIndexDims(t *testing.T) {
	for _, tc := range []struct {
		spec, want, err string
	}{
		{"", "", ""},
		{"none", "", ""},
		{"all", "brand,category,age,price,product", ""},
		{"brand, product", "brand,product", ""},
		{"price,age", "age,price", ""},
		{"brand,colour", "", `unknown dimension "colour"`},
	} {
		c := DefaultConfig()
		if got := strings.Join(c.IndexDims(), ","); got != "brand,category,age,price" {
			t.Fatalf("default indexed dimensions %q", got)
		}
		err := c.SetIndexDims(tc.spec)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("SetIndexDims(%q) = %v; want an error with %q", tc.spec, err, tc.err)
			}
			continue
		}
		if got := strings.Join(c.IndexDims(), ","); err != nil || got != tc.want {
			t.Errorf("SetIndexDims(%q): %v, indexed %q; want %q", tc.spec, err, got, tc.want)
		}
		for d := range Dim(NumDims) {
			if c.Indexed(d) != strings.Contains(","+tc.want+",", ","+d.String()+",") {
				t.Errorf("SetIndexDims(%q): Indexed(%s) = %v", tc.spec, d, c.Indexed(d))
			}
		}
	}
}

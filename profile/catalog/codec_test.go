package catalog

import (
	"encoding/hex"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestProductRoundTrip(t *testing.T) {
	f := func(p Product) {
		t.Helper()
		data := AppendProduct(nil, &p)
		var got Product
		got.Attrs = []Attr{{"stale", "x"}} // a reused Product
		if err := DecodeProduct(&got, data); err != nil {
			t.Fatalf("cannot decode %s: %v\n%s", p.AppendJSON(nil), err, hex.Dump(data))
		}
		if !got.Equal(&p) {
			t.Fatalf("round trip:\ngot  %s\nwant %s\n%s", got.AppendJSON(nil), p.AppendJSON(nil), hex.Dump(data))
		}
		for i := range data[:len(data)-1] {
			if err := DecodeProduct(&got, data[:i]); err == nil {
				t.Fatalf("decoding %d of %d bytes: got no error\n%s", i, len(data), hex.Dump(data))
			}
		}
	}
	f(Product{ID: "p"})
	f(Product{ID: "p", HasPrice: true})
	f(Product{ID: "p", Brand: "B", Category: "a/b/c", Age: "0-3", Price: 12.5, HasPrice: true})
	f(Product{ID: "p", Price: math.MaxFloat64, HasPrice: true, Attrs: []Attr{{"k", "v"}, {"name", "é"}}})
	f(Product{ID: "", Attrs: []Attr{{"k", ""}}})
}

func TestDecodeProductBad(t *testing.T) {
	f := func(name string, data []byte, want string) {
		t.Helper()
		var p Product
		err := DecodeProduct(&p, data)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: got error %v; want one containing %q", name, err, want)
		}
	}
	f("empty", nil, "0 bytes")
	f("version", []byte{2, 0, 0}, "unsupported catalog product version 2")
	f("flags", []byte{1, 0x80, 0}, "unknown flags")
	f("trailing", []byte{1, 0, 1, 'a', 'b'}, "1 bytes after")
	f("long string", []byte{1, 0, 5, 'a'}, "at byte 3: id: truncated string: 5 bytes needed, 1 left")
	f("attrs count", []byte{1, fAttrs, 0, 9, 0, 0}, "attrs count 9")
	f("zero attrs", []byte{1, fAttrs, 0, 0}, "attrs count 0")
	f("price", []byte{1, fPrice, 0, 1, 2}, "price: truncated float: 8 bytes needed, 2 left")
	f("NaN price", []byte{1, fPrice, 0, 1, 0, 0, 0, 0, 0, 0xf8, 0x7f}, "price NaN")
	f("negative price", []byte{1, fPrice, 0, 0, 0, 0, 0, 0, 0, 0xf0, 0xbf}, "price -1")
	var p Product
	if err := DecodeProduct(&p, []byte{9, 0}); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("got %v; want ErrUnsupportedVersion", err)
	}
}

func TestAppendJSON(t *testing.T) {
	p := Product{ID: "p\"1", Brand: "B", Category: "a/b", Age: "0-3", Price: 12.5, HasPrice: true, Attrs: []Attr{{"k", "v\n"}}}
	want := `{"id":"p\"1","brand":"B","category":"a/b","age":"0-3","price":12.5,"attrs":{"k":"v\n"}}`
	if got := string(p.AppendJSON(nil)); got != want {
		t.Fatalf("got %s; want %s", got, want)
	}
}

func BenchmarkDecodeProduct(b *testing.B) {
	p := Product{ID: "12345", Brand: "Nutrilon", Category: "baby/food/formula", Age: "0-3", Price: 12.5, HasPrice: true,
		Attrs: []Attr{{"name", "Formula 1"}}}
	data := AppendProduct(nil, &p)
	var got Product
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeProduct(&got, data); err != nil {
			b.Fatal(err)
		}
	}
}

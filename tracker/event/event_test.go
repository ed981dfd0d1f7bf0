package event

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/affinityhq/affinity/internal/quote"
)

// testNow is the receive time of every test and fuzz decode, so that the ts
// window is deterministic: 2026-01-01T00:00:00Z. Fixtures' ts lie just before.
const testNow int64 = 1767225600000

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("cannot read fixture: %s", err)
	}
	return data
}

// mustDecode decodes a JSON batch that must be accepted.
func mustDecode(t testing.TB, data []byte) *Batch {
	t.Helper()
	var b Batch
	if err := NewDecoder(DefaultOptions()).DecodeBatch(&b, data, testNow); err != nil {
		t.Fatalf("cannot decode %s: %s", quote.Value(data), err)
	}
	return &b
}

// dump formats b for a failure message: every field, and the record bytes.
func dump(b *Batch) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "site=%q v=%s recv=%d\n", b.Site, b.Visitor, b.Recv)
	for i := range b.Events {
		e := &b.Events[i]
		fmt.Fprintf(&sb, "events[%d] id=%s t=%s ts=%d email=%q customer=%q url=%q\n", i, e.ID, e.Type, e.TS, e.Email, e.Customer, e.URL)
		if e.HasProduct {
			fmt.Fprintf(&sb, "  product %+v\n", e.Product)
		}
		if e.HasOrder {
			fmt.Fprintf(&sb, "  order id=%q total=%v/%v items=%+v\n", e.Order.ID, e.Order.Total, e.Order.HasTotal, e.Order.Items)
		}
		if len(e.Traits) > 0 {
			fmt.Fprintf(&sb, "  traits %+v\n", e.Traits)
		}
	}
	sb.WriteString(hex.Dump(AppendBatch(nil, b)))
	return sb.String()
}

func TestParseUUID(t *testing.T) {
	f := func(in string, wantOK bool) {
		t.Helper()
		u, ok := ParseUUID([]byte(in))
		if ok != wantOK {
			t.Fatalf("ParseUUID(%q): got ok=%v; want %v", in, ok, wantOK)
		}
		if ok && u.String() != strings.ToLower(in) {
			t.Fatalf("ParseUUID(%q).String(): got %q; want %q", in, u.String(), strings.ToLower(in))
		}
	}
	f("00000000-0000-0000-0000-000000000000", true)
	f("5f0c3c2e-8a4b-4e8e-9b1d-2c6f7a9e0d11", true)
	f("5F0C3C2E-8A4B-4E8E-9B1D-2C6F7A9E0D11", true)
	f("ffffffff-ffff-ffff-ffff-ffffffffffff", true)
	f("", false)
	f("abc", false)
	f("5f0c3c2e8a4b4e8e9b1d2c6f7a9e0d11", false)
	f("{5f0c3c2e-8a4b-4e8e-9b1d-2c6f7a9e0d11}", false)
	f("5f0c3c2e-8a4b-4e8e-9b1d-2c6f7a9e0d1", false)
	f("5f0c3c2e-8a4b-4e8e-9b1d-2c6f7a9e0d111", false)
	f("5f0c3c2e-8a4b-4e8e-9b1d_2c6f7a9e0d11", false)
	f("5f0c3c2e-8a4b-4e8e-9b1d-2c6f7a9e0d1g", false)
	f("5f0c3c2-e8a4b-4e8e-9b1d-2c6f7a9e0d11", false)
	f("urn:uuid:5f0c3c2e-8a4b-4e8e-9b1d-2c", false)
}

func TestParseType(t *testing.T) {
	for typ := Type(1); typ < NumTypes; typ++ {
		if got := ParseType([]byte(typ.String())); got != typ {
			t.Fatalf("ParseType(%q): got %d; want %d", typ.String(), got, typ)
		}
	}
	// open and click are the engagement endpoints' types, convert the
	// builder's: never a batch's.
	for _, s := range []string{"", "View", "views", "click", "open", "convert", "\x00"} {
		if got := ParseType([]byte(s)); got != TypeInvalid {
			t.Fatalf("ParseType(%q): got %d; want TypeInvalid", s, got)
		}
	}
	if s := Type(TypeConvert + 1).String(); s != "" {
		t.Fatalf("Type(TypeConvert+1).String(): got %q; want \"\"", s)
	}
}

func TestBatchEqual(t *testing.T) {
	b := mustDecode(t, readFixture(t, "all_types.json"))
	if !b.Equal(b) {
		t.Fatalf("a batch is not Equal to itself:\n%s", dump(b))
	}
	mutations := map[string]func(c *Batch){
		"site":        func(c *Batch) { c.Site = "other" },
		"visitor":     func(c *Batch) { c.Visitor[15]++ },
		"recv":        func(c *Batch) { c.Recv++ },
		"events":      func(c *Batch) { c.Events = c.Events[:len(c.Events)-1] },
		"id":          func(c *Batch) { c.Events[0].ID[0]++ },
		"type":        func(c *Batch) { c.Events[0].Type = TypeCart },
		"ts":          func(c *Batch) { c.Events[0].TS++ },
		"url":         func(c *Batch) { c.Events[0].URL = "" },
		"product":     func(c *Batch) { c.Events[1].Product.Age = "3-6" },
		"has product": func(c *Batch) { c.Events[1].HasProduct = false },
		"price":       func(c *Batch) { c.Events[1].Product.Price = 12.51 },
		"qty":         func(c *Batch) { c.Events[2].Product.Qty = 3 },
		"order id":    func(c *Batch) { c.Events[4].Order.ID = "x" },
		"total":       func(c *Batch) { c.Events[4].Order.Total = 1 },
		"has total":   func(c *Batch) { c.Events[4].Order.HasTotal = false },
		"has order":   func(c *Batch) { c.Events[4].HasOrder = false },
		"item":        func(c *Batch) { c.Events[4].Order.Items[1].Brand = "Duplo" },
		"items":       func(c *Batch) { c.Events[4].Order.Items = c.Events[4].Order.Items[:1] },
		"email":       func(c *Batch) { c.Events[5].Email = "b@example.com" },
		"customer":    func(c *Batch) { c.Events[5].Customer = "" },
		"trait value": func(c *Batch) { c.Events[5].Traits[1].Value = "3" },
		"trait kind":  func(c *Batch) { c.Events[5].Traits[1].Kind = TraitString },
		"traits":      func(c *Batch) { c.Events[5].Traits = nil },
	}
	for name, mutate := range mutations {
		c := b.Clone()
		mutate(c)
		if b.Equal(c) || c.Equal(b) {
			t.Errorf("%s: a changed batch is Equal to the original", name)
		}
	}
}

func TestBatchClone(t *testing.T) {
	for _, name := range []string{"all_types.json", "purchase.json", "identify.json", "unicode.json"} {
		var b Batch
		d := NewDecoder(DefaultOptions())
		if err := d.DecodeBatch(&b, readFixture(t, name), testNow); err != nil {
			t.Fatalf("%s: %s", name, err)
		}
		c := b.Clone()
		want := dump(c)
		if !c.Equal(&b) {
			t.Fatalf("%s: the clone differs:\ngot\n%s\nwant\n%s", name, want, dump(&b))
		}
		// The clone must not share the arena, items nor traits of b.
		for i := range b.Arena {
			b.Arena[i] = '#'
		}
		for i := range b.Events {
			for j := range b.Events[i].Order.Items {
				b.Events[i].Order.Items[j] = Product{}
			}
			for j := range b.Events[i].Traits {
				b.Events[i].Traits[j] = Trait{}
			}
		}
		if got := dump(c); got != want {
			t.Fatalf("%s: overwriting the original changed the clone:\ngot\n%s\nwant\n%s", name, got, want)
		}
		if len(c.Arena) != cap(c.Arena) {
			t.Fatalf("%s: clone arena: got len %d cap %d; want them equal (sized once)", name, len(c.Arena), cap(c.Arena))
		}
	}
}

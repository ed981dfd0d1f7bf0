package catalog

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite the fuzz seed corpora under testdata/fuzz")

// seeds are the inputs of every Fuzz target, besides the fixtures.
var seeds = map[string][]string{
	"FuzzParseNDJSON": {
		`{"id":"a","brand":"B","category":["x","y"],"price":"1.5","k":{"n":[1,2]}}`,
		"{\"id\":\"a\"}\n{\"id\":",
		`{"id":"a","brand":"x","vendor":"y"}`,
		"\ufeff{\"id\":1}\r\n\r\n{\"id\":2,\"price\":-0}",
	},
	"FuzzParseCSV": {
		"id;price\n1;2\n",
		"id,brand\na,b\"c\n",
		"id,x,X\n",
		"\"id\",\"note\"\n\"a\",\"two\nlines\"\n",
	},
	"FuzzParseYML": {
		"<yml_catalog><shop><categories><category id=\"1\">A</category></categories><offers><offer id=\"a\"><categoryId>1</categoryId><param name=\"age\">3</param></offer></offers></shop></yml_catalog>",
		"<yml_catalog><shop><offers><offer id=\"a\">",
	},
}

// fuzzParse checks what Parse accepts: every product respects the limits
// and round-trips through the stored form; every refusal is a one-line
// *LineError.
func fuzzParse(f *testing.F, format Format, fixture string) {
	f.Add([]byte(readFixture(f, fixture)))
	for _, s := range seeds[f.Name()] {
		f.Add([]byte(s))
	}
	writeCorpus(f, append([]string{readFixture(f, fixture)}, seeds[f.Name()]...))
	opts := DefaultOptions()
	var stored []byte
	var back Product
	f.Fuzz(func(t *testing.T, data []byte) {
		err := Parse(bytes.NewReader(data), format, opts, func(line int, p *Product) error {
			checkProduct(t, p, opts)
			stored = AppendProduct(stored[:0], p)
			if err := DecodeProduct(&back, stored); err != nil || !back.Equal(p) {
				t.Fatalf("line %d: stored form: error %v, got %s; want %s", line, err, back.AppendJSON(nil), p.AppendJSON(nil))
			}
			return nil
		})
		var le *LineError
		if err != nil && (!errors.As(err, &le) || le.Line < 1 || strings.ContainsAny(le.Error(), "\r\n")) {
			t.Fatalf("got error %q; want a one-line *LineError", err)
		}
	})
}

func checkProduct(t *testing.T, p *Product, opts Options) {
	t.Helper()
	if p.ID == "" {
		t.Fatalf("accepted a product without an id: %s", p.AppendJSON(nil))
	}
	strs := []string{p.ID, p.Brand, p.Category, p.Age}
	for _, a := range p.Attrs {
		if a.Key == "" || len(a.Key) > MaxKeyLen || a.Value == "" {
			t.Fatalf("bad attribute %q=%q", a.Key, a.Value)
		}
		strs = append(strs, a.Key, a.Value)
	}
	for _, s := range strs {
		if len(s) > opts.MaxString || !utf8.ValidString(s) {
			t.Fatalf("accepted a bad string %q", s)
		}
	}
	if len(p.Attrs) > opts.MaxAttrs || p.HasPrice && !(p.Price >= 0) {
		t.Fatalf("accepted %s", p.AppendJSON(nil))
	}
	for _, level := range strings.Split(p.Category, "/") {
		if p.Category != "" && (level == "" || strings.TrimSpace(level) != level) {
			t.Fatalf("category %q is not normalised", p.Category)
		}
	}
}

func FuzzParseNDJSON(f *testing.F) { fuzzParse(f, FormatNDJSON, "catalog.ndjson") }
func FuzzParseCSV(f *testing.F)    { fuzzParse(f, FormatCSV, "catalog.csv") }
func FuzzParseYML(f *testing.F)    { fuzzParse(f, FormatYML, "catalog.yml") }

// FuzzDecodeProduct feeds DecodeProduct any bytes (a corrupt state DB): it
// must not panic, and what it accepts re-encodes to a value decoding the same.
func FuzzDecodeProduct(f *testing.F) {
	var corpus []string
	for _, p := range []Product{
		{ID: "p"},
		{ID: "1001", Brand: "Nutrilon", Category: "baby/food", Age: "0-3", Price: 12.5, HasPrice: true, Attrs: []Attr{{"k", "v"}}},
	} {
		data := AppendProduct(nil, &p)
		f.Add(data)
		corpus = append(corpus, string(data))
	}
	writeCorpus(f, corpus)
	var p, q Product
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := DecodeProduct(&p, data); err != nil {
			return
		}
		again := AppendProduct(nil, &p)
		if err := DecodeProduct(&q, again); err != nil || !q.Equal(&p) {
			t.Fatalf("re-encoded value: error %v, got %s; want %s", err, q.AppendJSON(nil), p.AppendJSON(nil))
		}
	})
}

// writeCorpus rewrites testdata/fuzz/<target>/ from inputs under -update.
func writeCorpus(f *testing.F, inputs []string) {
	if !*update {
		return
	}
	dir := filepath.Join("testdata", "fuzz", f.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.Fatal(err)
	}
	for i, in := range inputs {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", in)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed%d", i)), []byte(body), 0o644); err != nil {
			f.Fatal(err)
		}
	}
}

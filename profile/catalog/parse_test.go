package catalog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/affinityhq/affinity/tracker/event"
)

// parseAll parses data and returns clones of every product, and the lines.
func parseAll(data string, f Format, opts Options) ([]Product, []int, error) {
	var ps []Product
	var lines []int
	err := Parse(strings.NewReader(data), f, opts, func(line int, p *Product) error {
		ps = append(ps, p.Clone())
		lines = append(lines, line)
		return nil
	})
	return ps, lines, err
}

func dumpProducts(ps []Product) string {
	var sb strings.Builder
	for _, p := range ps {
		sb.Write(p.AppendJSON(nil))
		sb.WriteByte('\n')
	}
	return sb.String()
}

func TestParseGood(t *testing.T) {
	f := func(name string, format Format, data string, want []Product, wantLines []int) {
		t.Helper()
		got, lines, err := parseAll(data, format, Options{})
		if err != nil {
			t.Fatalf("%s: got error %v; want none", name, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: got %d products; want %d:\n%s", name, len(got), len(want), dumpProducts(got))
		}
		for i := range want {
			if !got[i].Equal(&want[i]) {
				t.Fatalf("%s: product %d:\ngot  %s\nwant %s", name, i, got[i].AppendJSON(nil), want[i].AppendJSON(nil))
			}
		}
		if wantLines != nil && fmt.Sprint(lines) != fmt.Sprint(wantLines) {
			t.Fatalf("%s: got lines %v; want %v", name, lines, wantLines)
		}
	}
	full := Product{ID: "p1", Brand: "Nutrilon", Category: "baby/food/formula", Age: "0-3", Price: 12.5, HasPrice: true,
		Attrs: []Attr{{"name", "Formula 1"}, {"stock", "3"}, {"new", "true"}, {"tags", `["a","b"]`}}}

	f("ndjson full", FormatNDJSON,
		`{"id":"p1","brand":"Nutrilon","category":"baby/food/formula","age":"0-3","price":12.5,"name":"Formula 1","stock":3,"new":true,"tags":["a","b"]}`+"\n",
		[]Product{full}, []int{1})
	f("ndjson blank lines, CRLF, BOM, no final newline", FormatNDJSON,
		"\ufeff{\"id\":\"a\"}\r\n\r\n   \n{\"id\":\"b\",\"price\":0}",
		[]Product{{ID: "a"}, {ID: "b", HasPrice: true}}, []int{1, 4})
	f("ndjson numeric id and age, string price, list category, nulls", FormatNDJSON,
		`{"id":123,"age":3,"price":"9.90","category":[" Baby ","Food"],"brand":null,"color":null}`,
		[]Product{{ID: "123", Age: "3", Price: 9.9, HasPrice: true, Category: "Baby/Food"}}, nil)
	f("ndjson aliases and case", FormatNDJSON,
		`{"ID":"x","Vendor":"Acme","category_path":"/a / b/","AGE_RANGE":"3-6"}`,
		[]Product{{ID: "x", Brand: "Acme", Category: "a/b", Age: "3-6"}}, nil)
	f("ndjson escapes", FormatNDJSON,
		`{"id":"\u00e9\"q","brand":"a\\b"}`,
		[]Product{{ID: "é\"q", Brand: `a\b`}}, nil)
	f("ndjson empty", FormatNDJSON, "", nil, nil)

	f("csv full", FormatCSV,
		"id,brand,category,age,price,name,stock\np1,Nutrilon,baby/food/formula,0-3,12.5,Formula 1,3\n",
		[]Product{{ID: "p1", Brand: "Nutrilon", Category: "baby/food/formula", Age: "0-3", Price: 12.5, HasPrice: true,
			Attrs: []Attr{{"name", "Formula 1"}, {"stock", "3"}}}}, []int{2})
	f("csv empty cells, quotes, multi-line cell", FormatCSV,
		"Price,ID,Note\n,a,\n7,\"b,c\",\"two\nlines\"\n1,d,x\n",
		[]Product{{ID: "a"}, {ID: "b,c", Price: 7, HasPrice: true, Attrs: []Attr{{"Note", "two\nlines"}}},
			{ID: "d", Price: 1, HasPrice: true, Attrs: []Attr{{"Note", "x"}}}}, []int{2, 3, 5})
	f("csv semicolons, BOM, CRLF", FormatCSV,
		"\ufeffid;vendor;price\r\na;Acme;1.5\r\n",
		[]Product{{ID: "a", Brand: "Acme", Price: 1.5, HasPrice: true}}, nil)
	f("csv tabs", FormatCSV,
		"id\tbrand\na\tB\n",
		[]Product{{ID: "a", Brand: "B"}}, nil)
	f("csv header only", FormatCSV, "id,brand\n", nil, nil)
	f("csv empty", FormatCSV, "", nil, nil)

	f("yml fixture", FormatYML, readFixture(t, "catalog.yml"), []Product{
		{ID: "1001", Brand: "Nutrilon", Category: "Baby/Food/Formula", Age: "0-1", Price: 15.9, HasPrice: true,
			Attrs: []Attr{{"url", "https://shop.example/p/1001"}, {"currencyId", "EUR"}, {"name", "Nutrilon 1"}, {"Weight", "800"}}},
		{ID: "1003", Brand: "Lego", Category: "Toys", Price: 49, HasPrice: true},
	}, []int{12, 22})
	f("yml no offers", FormatYML, "<yml_catalog><shop></shop></yml_catalog>", nil, nil)
}

func readFixture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseBad(t *testing.T) {
	f := func(name string, format Format, opts Options, data string, wantLine int, wantReason string) {
		t.Helper()
		n := 0
		_, _, err := parseAll(data, format, opts)
		var le *LineError
		if !errors.As(err, &le) {
			t.Fatalf("%s: got error %v (after %d products); want a *LineError", name, err, n)
		}
		if le.Line != wantLine || !strings.Contains(le.Reason, wantReason) {
			t.Fatalf("%s: got %q; want line %d containing %q", name, le, wantLine, wantReason)
		}
		if strings.ContainsAny(le.Error(), "\r\n") {
			t.Fatalf("%s: error %q spans lines", name, le)
		}
	}
	nd := FormatNDJSON
	f("invalid json", nd, Options{}, "{\"id\":\"a\"}\n{\"id\":", 2, "invalid JSON")
	f("trailing garbage", nd, Options{}, `{"id":"a"} x`, 1, "invalid JSON")
	f("not an object", nd, Options{}, "\n[1,2]", 2, "want a JSON object")
	f("no id", nd, Options{}, `{"brand":"x"}`, 1, "no product id")
	f("empty id", nd, Options{}, `{"id":"  "}`, 1, "no product id")
	f("id object", nd, Options{}, `{"id":{}}`, 1, "id must be a string")
	f("id bool", nd, Options{}, `{"id":true}`, 1, "id must be a string or number")
	f("brand number", nd, Options{}, `{"id":"a","brand":5}`, 1, "brand must be a string")
	f("duplicate field", nd, Options{}, `{"id":"a","brand":"x","vendor":"y"}`, 1, "brand given twice")
	f("duplicate attr", nd, Options{}, `{"id":"a","k":"x","k":"y"}`, 1, `attribute "k" given twice`)
	f("negative price", nd, Options{}, `{"id":"a","price":-1}`, 1, "must not be negative")
	f("text price", nd, Options{}, `{"id":"a","price":"12,50"}`, 1, "finite number")
	f("huge price", nd, Options{}, `{"id":"a","price":1e999}`, 1, "finite number")
	f("bad category level", nd, Options{}, `{"id":"a","category":["a/b"]}`, 1, "contains '/'")
	f("category level number", nd, Options{}, `{"id":"a","category":["a",1]}`, 1, "levels must be strings")
	f("invalid utf8", nd, Options{}, "{\"id\":\"a\xff\"}", 1, "not valid UTF-8")
	f("long value", nd, Options{MaxString: 4}, `{"id":"abcde"}`, 1, "the limit is 4")
	f("long attr key", nd, Options{}, `{"id":"a","`+strings.Repeat("k", 65)+`":1}`, 1, "the limit is 64")
	f("too many attrs", nd, Options{MaxAttrs: 1}, `{"id":"a","x":1,"y":2}`, 1, "more than 1 attributes")
	f("long line", nd, Options{MaxLine: 100}, "{\"id\":\"a\"}\n"+`{"id":"`+strings.Repeat("a", 200)+`"}`, 2, "longer than 100 bytes")
	f("very long line", nd, Options{MaxLine: 100}, `{"id":"`+strings.Repeat("a", 200<<10)+`"}`, 1, "longer than 100 bytes")

	c := FormatCSV
	f("no id column", c, Options{}, "brand,price\nx,1\n", 1, "no id column")
	f("unnamed column", c, Options{}, "id,,price\n", 1, "column 2 has no name")
	f("same field twice", c, Options{}, "id,brand,vendor\n", 1, "two columns name the brand")
	f("same column twice", c, Options{}, "id,x,X\n", 1, `two columns named "X"`)
	f("too many columns", c, Options{MaxAttrs: 1}, "id,x,y\n", 1, "2 attribute columns")
	f("wrong cell count", c, Options{}, "id,brand\na,b\nc\n", 3, "wrong number of cells")
	f("bad quote", c, Options{}, "id,brand\na,b\"c\n", 2, "quote")
	f("empty id", c, Options{}, "id,brand\n,b\n", 2, "no product id")
	f("bad price", c, Options{}, "id,price\na,1\nb,x\n", 3, "finite number")
	f("invalid utf8", c, Options{}, "id,brand\na,\xff\n", 2, "not valid UTF-8")
	f("long record", c, Options{MaxLine: 10}, "id,x\na,"+strings.Repeat("b", 20)+"\n", 2, "longer than 10 bytes")

	y := FormatYML
	const cats = "<yml_catalog><shop><categories><category id=\"1\">A</category><category id=\"2\" parentId=\"1\">B</category></categories>\n<offers>\n"
	f("offer without id", y, Options{}, cats+"<offer><price>1</price></offer></offers></shop></yml_catalog>", 3, "without an id")
	f("unknown category", y, Options{}, cats+"<offer id=\"a\">\n<categoryId>9</categoryId></offer></offers></shop></yml_catalog>", 3, "categoryId \"9\" is not in")
	f("category loop", y, Options{}, "<yml_catalog><shop><categories><category id=\"1\" parentId=\"2\">A</category><category id=\"2\" parentId=\"1\">B</category></categories><offers><offer id=\"a\"><categoryId>1</categoryId></offer></offers></shop></yml_catalog>", 1, "levels deep")
	f("bad price", y, Options{}, cats+"<offer id=\"a\">\n<price>x</price></offer></offers></shop></yml_catalog>", 4, "finite number")
	f("broken xml", y, Options{}, cats+"<offer id=\"a\">\n<price>1</prize></offer></offers></shop></yml_catalog>", 4, "invalid XML")
	f("truncated", y, Options{}, cats+"<offer id=\"a\">", 3, "unexpected EOF")
	f("windows-1251", y, Options{}, "<?xml version=\"1.0\" encoding=\"windows-1251\"?>\n<yml_catalog/>", 1, "invalid XML")
}

func TestParseCallbackError(t *testing.T) {
	stop := errors.New("stop")
	n := 0
	err := Parse(strings.NewReader("{\"id\":\"a\"}\n{\"id\":\"b\"}\n"), FormatNDJSON, Options{}, func(int, *Product) error {
		n++
		return stop
	})
	if err != stop || n != 1 {
		t.Fatalf("got error %v after %d calls; want the callback's error after 1", err, n)
	}
}

func TestFormatOf(t *testing.T) {
	f := func(ct string, want Format, wantErr bool) {
		t.Helper()
		got, err := FormatOf(ct)
		if got != want || (err != nil) != wantErr {
			t.Fatalf("FormatOf(%q) = %v, %v; want %v, error %v", ct, got, err, want, wantErr)
		}
	}
	f("application/x-ndjson", FormatNDJSON, false)
	f("application/x-ndjson; charset=utf-8", FormatNDJSON, false)
	f("text/csv; charset=utf-8", FormatCSV, false)
	f("application/xml", FormatYML, false)
	f("text/xml", FormatYML, false)
	f("text/plain", 0, true)
	f("", 0, true)
}

func TestJoin(t *testing.T) {
	cat := Product{ID: "p", Brand: "CatBrand", Category: "a/b", Age: "0-3", Price: 10, HasPrice: true}
	f := func(in, want event.Product) {
		t.Helper()
		got := in
		Join(&got, cat)
		if got != want {
			t.Fatalf("Join(%+v) = %+v; want %+v", in, got, want)
		}
	}
	f(event.Product{ID: "p"}, event.Product{ID: "p", Brand: "CatBrand", Category: "a/b", Age: "0-3", Price: 10, HasPrice: true})
	f(event.Product{ID: "p", Brand: "Own", Price: 0, HasPrice: true, Qty: 2},
		event.Product{ID: "p", Brand: "Own", Category: "a/b", Age: "0-3", Price: 0, HasPrice: true, Qty: 2})
	f(event.Product{ID: "p", Category: "x", Age: "9"}, event.Product{ID: "p", Brand: "CatBrand", Category: "x", Age: "9", Price: 10, HasPrice: true})
}

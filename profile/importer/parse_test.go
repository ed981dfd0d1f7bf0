package importer

import (
	"os"
	"strings"
	"testing"

	"github.com/affinityhq/affinity/tracker/event"
)

// now is the upload time of the tests: 2026-06-01T00:00:00Z.
const now = 1780272000000

// want is what testdata/orders.{ndjson,csv} hold.
var want = []Order{
	{Line: 1, ID: "A-1", Email: "ann@example.com", TS: 1767225600000, Total: 42.5, HasTotal: true, Store: "Lyon-3",
		Items: []event.Product{{ID: "p1", Qty: 2, Price: 12.5, HasPrice: true}, {ID: "p2", Qty: 1, Price: 17.5, HasPrice: true}}},
	{Line: 2, ID: "1002", Email: "bob@example.com", Customer: "C-77", TS: 1763632800000, Total: 9.9, HasTotal: true,
		Items: []event.Product{{ID: "p3", Qty: 1}}},
	{Line: 4, ID: "A-3", Customer: "4411", TS: 1767225600123, Store: "7"},
}

func TestParseFiles(t *testing.T) {
	f := func(path string, format Format, lines []int) {
		t.Helper()
		body, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var got Orders
		if err := Parse(body, format, now, &got); err != nil {
			t.Fatalf("%s: %s", path, err)
		}
		if len(got.List) != len(want) {
			t.Fatalf("%s: %d orders; want %d", path, len(got.List), len(want))
		}
		for i := range want {
			w := want[i]
			w.Line = lines[i]
			if !equalOrder(&got.List[i], &w) {
				t.Errorf("%s: order %d:\n got %+v\nwant %+v", path, i, got.List[i], w)
			}
		}
	}
	f("testdata/orders.ndjson", FormatNDJSON, []int{1, 2, 4})
	f("testdata/orders.csv", FormatCSV, []int{2, 4, 5})
}

func equalOrder(a, b *Order) bool {
	if a.Line != b.Line || a.ID != b.ID || a.Email != b.Email || a.Customer != b.Customer || a.TS != b.TS ||
		a.Total != b.Total || a.HasTotal != b.HasTotal || a.Store != b.Store || len(a.Items) != len(b.Items) {
		return false
	}
	for i := range a.Items {
		if a.Items[i] != b.Items[i] {
			return false
		}
	}
	return true
}

func TestParseRefuses(t *testing.T) {
	f := func(format Format, body, wantErr string) {
		t.Helper()
		var got Orders
		err := Parse([]byte(body), format, now, &got)
		if err == nil {
			t.Fatalf("Parse(%q) accepted %d orders; want error %q", body, len(got.List), wantErr)
		}
		if err.Error() != wantErr {
			t.Fatalf("Parse(%q) = %q; want %q", body, err, wantErr)
		}
		if len(got.List) != 0 {
			t.Fatalf("Parse(%q) refused but kept %d orders", body, len(got.List))
		}
	}
	ok := `{"order_id":"1","email":"a@b.c","ts":1767225600000}` + "\n"
	f(FormatNDJSON, ok+strings.Replace(ok, `"1"`, `"2"`, 1)+`{"order_id":"3","email":"a@b.c","ts":"yesterday"}`+"\n"+ok,
		`line 3: invalid ts "yesterday": want milliseconds since the epoch or an RFC 3339 time such as 2026-03-01T10:00:00Z`)
	f(FormatNDJSON, `{"order_id":"1","email":"a@b.c","ts":1767225600}`,
		`line 1: invalid ts "1767225600": before 2000-01-01: want milliseconds since the epoch (seconds times 1000) or an RFC 3339 time`)
	f(FormatNDJSON, `{"order_id":"1","email":"a@b.c","ts":1880000000000}`, `line 1: invalid ts "1880000000000": in the future`)
	f(FormatNDJSON, `{"order_id":"1","ts":1767225600000}`, `line 1: order "1" has neither email nor customer_id: one names the person`)
	f(FormatNDJSON, `{"email":"a@b.c","ts":1767225600000}`, `line 1: no order_id`)
	f(FormatNDJSON, `{"order_id":"1","email":"a@b.c"}`, `line 1: order "1" has no ts`)
	f(FormatNDJSON, `{"order_id":"1","email":"nobody","ts":1767225600000}`, `line 1: invalid email "nobody": want an address such as ann@example.com`)
	f(FormatNDJSON, `{"order_id":"1","email":"a@b.c","ts":1767225600000,"total":-1}`, `line 1: invalid total "-1": must not be negative`)
	f(FormatNDJSON, `{"order_id":"1","email":"a@b.c","ts":1767225600000,"total":"12,50"}`, `line 1: invalid total "12,50": want a finite number with '.' as the decimal point`)
	f(FormatNDJSON, `{"order_id":"1","email":"a@b.c","ts":1767225600000,"items":[{"id":"p","qty":0}]}`, `line 1: invalid qty "0": want a whole number from 1 to 4294967295`)
	f(FormatNDJSON, `{"order_id":"1","email":"a@b.c","ts":1767225600000,"items":[{"qty":2}]}`, `line 1: an item of order "1" has no id`)
	f(FormatNDJSON, `{"order_id":"1","email":"a@b.c","ts":1767225600000,"items":"p1"}`, `line 1: invalid items "p1": want a list of {"id","qty","price"}`)
	f(FormatNDJSON, `{"order_id":"1","email":"a@b.c","ts":1767225600000,"items":[3]}`, `line 1: invalid items "3": an item must be an object {"id","qty","price"}`)
	f(FormatNDJSON, `{"order_id":"1","email":"a@b.c","ts":1767225600000,"qty":3}`, `line 1: invalid qty "3": an item field: give it inside "items"`)
	f(FormatNDJSON, `{"order_id":{"a":1},"email":"a@b.c","ts":1767225600000}`, `line 1: invalid order_id "{\"a\":1}": want a string or number`)
	f(FormatNDJSON, `{"order_id":"1","order_id":"2","email":"a@b.c","ts":1767225600000}`, `line 1: invalid order_id "2": order_id given twice`)
	f(FormatNDJSON, `{"order_id":"1",`, `line 1: invalid JSON: cannot parse JSON: cannot parse object: cannot find opening '"" for object key; unparsed tail: ""`)
	f(FormatNDJSON, `[1]`, `line 1: want a JSON object per line, got array`)
	f(FormatNDJSON, ok+ok, `line 2: invalid order_id "1": the order of line 1 has the same id (in CSV the rows of one order are consecutive)`)
	f(FormatCSV, "order_id,email\n1,a@b.c\n", `line 1: no ts column in the header`)
	f(FormatCSV, "order_id,ts\n1,1767225600000\n", `line 1: no email or customer_id column in the header`)
	f(FormatCSV, "order_id,email,ts,e-mail\n", `line 1: two columns give the email ("e-mail")`)
	f(FormatCSV, "order_id,email,ts\n1,a@b.c,1767225600000\n2,a@b.c\n", `line 3: wrong number of cells: the header has a different number of columns`)
	f(FormatCSV, "order_id,email,ts,item_id\n1,a@b.c,1767225600000,p1\n1,x@b.c,,p2\n", `line 3: invalid email "x@b.c": order "1" has email "a@b.c" on line 2`)
	f(FormatCSV, "order_id,email,ts,item_id\n1,a@b.c,1767225600000,p1\n2,a@b.c,1767225600000,p1\n1,a@b.c,1767225600000,p2\n",
		`line 4: invalid order_id "1": the order of line 2 has the same id (in CSV the rows of one order are consecutive)`)
	f(FormatCSV, "order_id,email,ts,qty\n1,a@b.c,1767225600000,2\n", `line 2: invalid qty "2": the row has no item_id`)
	f(FormatCSV, "order_id,email,ts\n1,a@b.c,1767225600000\n,a@b.c,1767225600000\n", `line 3: no order_id`)
}

func TestFormatOf(t *testing.T) {
	f := func(param, ct string, want Format, wantErr string) {
		t.Helper()
		got, err := FormatOf(param, ct)
		if wantErr != "" {
			if err == nil || err.Error() != wantErr {
				t.Fatalf("FormatOf(%q, %q) = %v, %v; want error %q", param, ct, got, err, wantErr)
			}
			return
		}
		if err != nil || got != want {
			t.Fatalf("FormatOf(%q, %q) = %v, %v; want %v", param, ct, got, err, want)
		}
	}
	f("", "application/x-ndjson", FormatNDJSON, "")
	f("", "text/csv; charset=utf-8", FormatCSV, "")
	f("csv", "application/x-www-form-urlencoded", FormatCSV, "")
	f("ndjson", "", FormatNDJSON, "")
	f("xml", "", 0, `invalid format="xml": want ndjson or csv`)
	f("", "text/html", 0, `invalid Content-Type "text/html": want application/x-ndjson or text/csv, or set ?format=ndjson|csv`)
}

func FuzzParseNDJSON(f *testing.F) {
	seed, err := os.ReadFile("testdata/orders.ndjson")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	f.Add([]byte(`{"order_id":"1","email":"a@b.c","ts":1767225600000,"items":[{"id":"p","qty":4294967296}]}`))
	fuzzParse(f, FormatNDJSON)
}

func FuzzParseCSV(f *testing.F) {
	seed, err := os.ReadFile("testdata/orders.csv")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	f.Add([]byte("order_id\tcustomer_id\tts\titem_id\n\"1\t\"\t7\t2026-01-01T00:00:00Z\tp\n"))
	fuzzParse(f, FormatCSV)
}

// fuzzParse checks that Parse never panics, that an accepted upload's
// orders are valid, and that a refusal keeps no order.
func fuzzParse(f *testing.F, format Format) {
	f.Fuzz(func(t *testing.T, body []byte) {
		var o Orders
		if err := Parse(body, format, now, &o); err != nil {
			if len(o.List) != 0 {
				t.Fatalf("refused with %d orders kept", len(o.List))
			}
			if !strings.HasPrefix(err.Error(), "line ") {
				t.Fatalf("error %q does not name a line", err)
			}
			return
		}
		for _, x := range o.List {
			if x.ID == "" || x.Email == "" && x.Customer == "" || x.TS < minTS || x.TS > now+5*60*1000 {
				t.Fatalf("accepted an invalid order %+v", x)
			}
			for _, it := range x.Items {
				if it.ID == "" || it.Qty == 0 {
					t.Fatalf("accepted an invalid item %+v", it)
				}
			}
		}
	})
}

// BenchmarkParse parses 10k orders into a reused Orders (the pool's
// steady state) and into a new one (the first upload, or after a GC
// emptied the pool).
func BenchmarkParse(b *testing.B) {
	for _, format := range []Format{FormatNDJSON, FormatCSV} {
		body := SampleUpload(format, 10000)
		for _, fresh := range []bool{false, true} {
			name := format.String()
			if fresh {
				name += "-fresh"
			}
			b.Run(name, func(b *testing.B) {
				var o Orders
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					if fresh {
						o = Orders{}
					}
					if err := Parse(body, format, now, &o); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*len(o.List))/b.Elapsed().Seconds(), "orders/s")
			})
		}
	}
}

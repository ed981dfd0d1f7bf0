package importer_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/valyala/fastjson"

	"github.com/affinityhq/affinity/profile/importer"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/tracker/event"
)

// now is the clock of the tests: 2026-06-01T00:00:00Z.
const now = 1780272000000

const day = 24 * 3600 * 1000

func open(t *testing.T, dir string) *profiletest.Env { return openAt(t, dir, now) }

func openAt(t *testing.T, dir string, ms int64) *profiletest.Env {
	t.Helper()
	clock := &profiletest.Clock{}
	clock.Set(ms)
	return profiletest.Open(t, profiletest.Options{Dir: dir, Partitions: 4, Serve: true, Clock: clock})
}

// post sends an upload and returns the status and body.
func post(t *testing.T, e *profiletest.Env, path, contentType, encoding string, body []byte) (int, string) {
	t.Helper()
	h := http.Header{}
	h.Set("Content-Type", contentType)
	if encoding != "" {
		h.Set("Content-Encoding", encoding)
	}
	return e.DoHeader(t, http.MethodPost, path, h, body, true)
}

// upload posts an upload that must be accepted, waits until GET of its
// import id says done, and returns the POST's answer.
func upload(t *testing.T, e *profiletest.Env, query, contentType, encoding string, body []byte) *fastjson.Value {
	t.Helper()
	const site = "shop"
	code, resp := post(t, e, "/v1/import/"+site+"/orders"+query, contentType, encoding, body)
	if code != http.StatusAccepted {
		t.Fatalf("POST: %d %s; want 202", code, resp)
	}
	v, err := fastjson.Parse(resp)
	if err != nil {
		t.Fatalf("POST answered %q: %s", resp, err)
	}
	id := string(v.GetStringBytes("id"))
	deadline := time.Now().Add(2 * time.Minute)
	for {
		code, pr := e.Get(t, "/v1/import/"+site+"/orders/"+id)
		if code != http.StatusOK {
			t.Fatalf("GET progress: %d %s", code, pr)
		}
		if strings.HasPrefix(pr, `{"done":true`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("import %s not done: %s", id, pr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.Wait(t) // and membership has sequenced its changes
	return v
}

// dump closes e and returns every key and value of its state but the
// partition offsets ('o'), which advance with every record.
func dump(t *testing.T, e *profiletest.Env) map[string]string {
	t.Helper()
	e.Close(t)
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(e.Dir, "state")).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	m := map[string]string{}
	err = db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().KeyCopy(nil)
			if k[0] == 'o' {
				continue
			}
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			m[string(k)] = string(v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func diff(t *testing.T, what string, a, b map[string]string) {
	t.Helper()
	n := 0
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			if n++; n <= 3 {
				t.Errorf("%s: key %q: %q, then %q (present %v)", what, k, v, w, ok)
			}
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			if n++; n <= 6 {
				t.Errorf("%s: key %q appeared", what, k)
			}
		}
	}
	if n > 0 {
		t.Fatalf("%s: %d keys of %d differ", what, n, len(a))
	}
}

// 200k orders, then the same file again, after a restart and 30 days
// later (past the event-id dedup's window): every visitor value and index
// key is the same.
func TestImportTwiceIdentical(t *testing.T) {
	orders := 200_000
	if testing.Short() {
		orders = 20_000
	}
	dir := t.TempDir()
	e := open(t, dir)
	body := importer.SampleUpload(importer.FormatNDJSON, orders)
	res := upload(t, e, "", "application/x-ndjson", "", body)
	if got := res.GetInt("orders"); got != orders {
		t.Fatalf("orders = %d; want %d", got, orders)
	}
	if got, want := res.GetInt("persons"), orders/4; got != want {
		t.Fatalf("persons = %d; want %d", got, want)
	}
	// Person 0 (customer C0) bought orders 0-3.
	p := e.Profile(t, "shop", importer.Visitor("shop", "C0", ""))
	if p == nil || p.Events[event.TypePurchase].Count != 4 || p.Email != "person0@example.com" || p.Customer != "C0" {
		t.Fatalf("person 0: %+v; want 4 purchases, email person0@example.com, customer C0", p)
	}
	if got := p.Traits; len(got) == 0 {
		t.Fatalf("person 0 has no store trait")
	}
	first := dump(t, e)

	e = openAt(t, dir, now+30*day)
	upload(t, e, "", "application/x-ndjson", "", body)
	// Dropped by event id (the visitors' lists still hold them) or by
	// order id (TestOrderDedupForever of profile/builder has the lists
	// pruned).
	hits := e.Metrics.GetOrCreateCounter("affinity_builder_dedup_hits_total").Get() +
		e.Metrics.GetOrCreateCounter("affinity_builder_order_dedup_hits_total").Get()
	if hits != uint64(orders) {
		t.Fatalf("dedup hits = %d; want %d", hits, orders)
	}
	diff(t, "state after the second upload", first, dump(t, e))
}

// A purchase 100 days old puts its person in since(purchase) > 90d as
// soon as the builder applied it: no accept window, no wait for time.
func TestImportOldPurchaseEntersSegment(t *testing.T) {
	e := open(t, t.TempDir())
	if code, body := e.Do(t, http.MethodPut, "/v1/segments/shop/sleeping", "", []byte("since(purchase) > 90d"), true); code/100 != 2 {
		t.Fatalf("PUT segment: %d %s", code, body)
	}
	ts := time.UnixMilli(now - 100*day).UTC().Format(time.RFC3339)
	upload(t, e, "", "application/x-ndjson", "", []byte(`{"order_id":"old-1","email":"Sleepy@Example.com","ts":"`+ts+`","total":30,"store":"S7"}`+"\n"+
		`{"order_id":"new-1","email":"fresh@example.com","ts":`+fmt.Sprint(now-10*day)+`,"total":30}`+"\n"))
	f := func(email, want string) {
		t.Helper()
		v := importer.Visitor("shop", "", email)
		code, body := e.Get(t, "/v1/visitors/shop/"+v.String()+"/segments")
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Fatalf("segments of %s: %d %s; want %s", email, code, body, want)
		}
	}
	f("sleepy@example.com", `"sleeping"`)
	f("fresh@example.com", `[]`)
	p := e.Profile(t, "shop", importer.Visitor("shop", "", "sleepy@example.com"))
	if p.Events[event.TypePurchase].Last != now-100*day {
		t.Fatalf("last purchase at %d; want %d", p.Events[event.TypePurchase].Last, now-100*day)
	}
	code, body := e.Do(t, http.MethodPut, "/v1/segments/shop/s7", "", []byte(`trait("store") == "S7"`), true)
	if code/100 != 2 {
		t.Fatalf("PUT segment on the store: %d %s", code, body)
	}
	// The put answers before its backfill has evaluated the profile.
	e.Segments.BackfillOf("shop", "s7").Wait()
	e.Wait(t)
	f("sleepy@example.com", `"s7"`)
}

// A bad row on line 3 of 5 refuses the upload whole: 400 naming the line,
// nothing appended to the log, no profile.
func TestImportBadRowStoresNothing(t *testing.T) {
	e := open(t, t.TempDir())
	var rows []string
	for i := range 5 {
		rows = append(rows, fmt.Sprintf(`{"order_id":"o%d","email":"a%d@example.com","ts":%d,"total":5}`, i, i, now-day))
	}
	rows[2] = `{"order_id":"o2","email":"a2@example.com","ts":1767225600000,"total":"5,00"}`
	for _, c := range []struct{ ct, body, want string }{
		{"application/x-ndjson", strings.Join(rows, "\n"), `line 3: invalid total "5,00": want a finite number with '.' as the decimal point`},
		{"text/csv", "order_id,email,ts\no1,a@b.c,1767225600000\no2,a@b.c,1767225600000\no3,a@b.c,17672256000000\no4,a@b.c,1767225600000\n",
			`line 4: invalid ts "17672256000000": in the future`},
		{"text/html", "x", `invalid Content-Type "text/html": want application/x-ndjson or text/csv, or set ?format=ndjson|csv`},
	} {
		code, body := post(t, e, "/v1/import/shop/orders", c.ct, "", []byte(c.body))
		if code/100 != 4 || strings.TrimSpace(body) != c.want {
			t.Fatalf("POST %s: %d %q; want 4xx %q", c.ct, code, body, c.want)
		}
	}
	for p := range e.Log.Partitions() {
		if _, next, err := e.Log.Offsets(context.Background(), p); err != nil || next != 0 {
			t.Fatalf("partition %d: next offset %d, %v; want 0: nothing appended", p, next, err)
		}
	}
	if m := e.Metrics.GetOrCreateCounter("affinity_import_uploads_refused_total").Get(); m != 3 {
		t.Fatalf("refused uploads = %d; want 3", m)
	}
	if code, body := e.Get(t, "/v1/import/shop/orders/nonsense"); code != http.StatusBadRequest {
		t.Fatalf("GET of a bad id: %d %s; want 400", code, body)
	}
}

// The same orders as CSV (one row per item), gzip with Content-Encoding
// or only by its magic, and as NDJSON give the same state.
func TestImportFormatsAgree(t *testing.T) {
	const orders = 2000
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		_, _ = w.Write(b)
		_ = w.Close()
		return buf.Bytes()
	}
	nd := importer.SampleUpload(importer.FormatNDJSON, orders)
	csv := importer.SampleUpload(importer.FormatCSV, orders)
	var want map[string]string
	for _, c := range []struct {
		name, path, ct, ce string
		body               []byte
	}{
		{"ndjson", "", "application/x-ndjson", "", nd},
		{"csv", "", "text/csv", "", csv},
		{"csv gzip", "", "text/csv", "gzip", gz(csv)},
		{"ndjson gzip magic, ?format", "?format=ndjson", "application/octet-stream", "", gz(nd)},
	} {
		e := open(t, t.TempDir())
		upload(t, e, c.path, c.ct, c.ce, c.body)
		got := dump(t, e)
		if want == nil {
			want = got
			continue
		}
		diff(t, c.name, want, got)
	}
}

// BenchmarkImportApplied measures the whole import on a real profile side
// (embedded log, state, builder with segment membership, the query API on
// loopback): each op POSTs 20k orders of 5k persons new to the state and
// waits until GET of the import id says done. cpu-ns/order is the
// process's CPU time (all cores) per order: 2 cores / cpu-ns/order bounds
// the rate on an idle 2-core machine, whatever else runs while measuring.
func BenchmarkImportApplied(b *testing.B) {
	const orders = 20_000
	clock := &profiletest.Clock{}
	clock.Set(now)
	e := profiletest.Open(b, profiletest.Options{Partitions: 8, Serve: true, Clock: clock})
	sample := importer.SampleUpload(importer.FormatNDJSON, orders)
	h := http.Header{}
	h.Set("Content-Type", "application/x-ndjson")
	var body []byte
	var cpu time.Duration
	n := 0
	b.SetBytes(int64(len(sample)))
	b.ReportAllocs()
	for b.Loop() {
		// New order ids and persons each op, so that every order is applied.
		n++
		prefix := []byte(`"O` + strconv.Itoa(n) + `-`)
		body = bytes.ReplaceAll(sample, []byte(`"O-`), prefix)
		body = bytes.ReplaceAll(body, []byte(`"person`), []byte(`"p`+strconv.Itoa(n)+`-`))
		body = bytes.ReplaceAll(body, []byte(`"C`), []byte(`"C`+strconv.Itoa(n)+`-`))
		cpu0 := profiletest.CPUTime()
		code, resp := e.DoHeader(b, http.MethodPost, "/v1/import/shop/orders", h, body, true)
		if code != http.StatusAccepted {
			b.Fatalf("POST: %d %s", code, resp)
		}
		id := string(fastjson.GetBytes([]byte(resp), "id"))
		for {
			_, pr := e.Get(b, "/v1/import/shop/orders/"+id)
			if strings.HasPrefix(pr, `{"done":true`) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		cpu += profiletest.CPUTime() - cpu0
	}
	all := float64(n * orders)
	b.ReportMetric(all/b.Elapsed().Seconds(), "orders/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/all, "cpu-ns/order")
	b.ReportMetric(float64(e.Metrics.GetOrCreateCounter("affinity_builder_state_writes_total").Get())/all, "writes/order")
	var persons, stored int
	err := e.DB.ScanVisitors("shop", func(_ [16]byte, prof, seen []byte) bool {
		persons, stored = persons+1, stored+len(prof)+len(seen)
		return true
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(stored)/float64(max(persons, 1)), "value-B/person")
}

package event

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the generated fixtures (testdata/batch*.json) and the fuzz seed corpora (testdata/fuzz)")

// FuzzDecodeBatch feeds DecodeBatch what browsers (and others) may send. An
// accepted batch must be valid JSON meaning the same to encoding/json,
// respect every limit, and survive the log record and Clone unchanged.
func FuzzDecodeBatch(f *testing.F) {
	for _, name := range []string{"all_types.json", "purchase.json", "identify.json", "unicode.json", "batch10.json"} {
		f.Add(readFixture(f, name))
	}
	warm := readFixture(f, "all_types.json")
	d := NewDecoder(DefaultOptions())
	var b, reused, fromRecord Batch
	var record []byte
	f.Fuzz(func(t *testing.T, data []byte) {
		err := d.DecodeBatch(&b, data, testNow)
		if err != nil {
			ve, ok := err.(*ValidationError)
			if !ok || !slices.Contains(Reasons(), ve.Reason) || strings.ContainsAny(ve.Error(), "\r\n") {
				t.Fatalf("got error %#v; want a *ValidationError with a known reason and a one-line message", err)
			}
			return
		}
		checkLimits(t, &b, DefaultOptions())
		checkAgainstStdlib(t, data, &b)

		record = AppendBatch(record[:0], &b)
		if err := DecodeRecord(&fromRecord, record); err != nil {
			t.Fatalf("cannot decode the record of an accepted batch: %s\n%s", err, dump(&b))
		}
		if !fromRecord.Equal(&b) {
			t.Fatalf("the record decodes to another batch:\ngot\n%s\nwant\n%s", dump(&fromRecord), dump(&b))
		}
		if c := b.Clone(); !c.Equal(&b) {
			t.Fatalf("the clone differs:\ngot\n%s\nwant\n%s", dump(c), dump(&b))
		}
		// A Batch that held another batch decodes the same.
		if err := d.DecodeBatch(&reused, warm, testNow); err != nil {
			t.Fatal(err)
		}
		if err := d.DecodeBatch(&reused, data, testNow); err != nil || !reused.Equal(&b) {
			t.Fatalf("decoding into a reused Batch: got error %v and\n%s\nwant\n%s", err, dump(&reused), dump(&b))
		}
	})
}

// FuzzDecodeRecord feeds DecodeRecord arbitrary bytes, as a corrupt log
// might hold. It must never panic, and an accepted record must be canonical:
// re-encoding it gives the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	for _, name := range []string{"all_types.json", "purchase.json", "identify.json", "unicode.json", "batch10.json"} {
		f.Add(AppendBatch(nil, mustDecode(f, readFixture(f, name))))
	}
	for _, b := range engagementBatches {
		f.Add(AppendBatch(nil, b))
	}
	var b Batch
	var again []byte
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := DecodeRecord(&b, data); err != nil {
			if !strings.HasPrefix(err.Error(), "cannot decode event record") {
				t.Fatalf("got error %q; want one saying what it could not decode", err)
			}
			return
		}
		again = AppendBatch(again[:0], &b)
		if data[0] >= 1 && data[0] < RecordVersion {
			again[0] = data[0] // an older record re-encodes as the current version
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("an accepted record re-encodes to other bytes:\ngot\n%s\nwant\n%s", hex.Dump(again), hex.Dump(data))
		}
		if c := b.Clone(); !c.Equal(&b) {
			t.Fatalf("the clone differs:\ngot\n%s\nwant\n%s", dump(c), dump(&b))
		}
	})
}

// checkLimits checks that an accepted batch respects every limit of opts.
func checkLimits(t *testing.T, b *Batch, opts Options) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("accepted a batch over a limit: "+format+"\n%s", append(args, dump(b))...)
	}
	if b.Site == "" || len(b.Site) > MaxSiteLen {
		fail("site %q", b.Site)
	}
	if len(b.Events) == 0 || len(b.Events) > opts.MaxEvents {
		fail("%d events", len(b.Events))
	}
	ids := map[UUID]bool{}
	for i := range b.Events {
		e := &b.Events[i]
		if ids[e.ID] {
			fail("duplicate id %s", e.ID)
		}
		ids[e.ID] = true
		if e.Type == TypeInvalid || e.Type >= NumTypes {
			fail("type %d", e.Type)
		}
		if e.TS < testNow-opts.AcceptWindow.Milliseconds() || e.TS > testNow+opts.MaxFuture.Milliseconds() {
			fail("ts %d", e.TS)
		}
		if len(e.Order.Items) > opts.MaxItems || len(e.Traits) > opts.MaxTraits {
			fail("%d items, %d traits", len(e.Order.Items), len(e.Traits))
		}
		for _, t := range e.Traits {
			if t.Key == "" || len(t.Key) > MaxTraitKeyLen {
				fail("trait key %q", t.Key)
			}
		}
	}
	b.eachString(func(s *string) {
		if len(*s) > opts.MaxString {
			fail("a string of %d bytes", len(*s))
		}
	})
}

// checkAgainstStdlib checks that encoding/json reads data as DecodeBatch
// read it into b: no parser differential between the collector and whatever
// else reads the same bodies.
func checkAgainstStdlib(t *testing.T, data []byte, b *Batch) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("encoding/json disagrees: "+format+"\ninput %q\n%s", append(args, data, dump(b))...)
	}
	if !json.Valid(data) {
		fail("invalid JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		fail("%s", err)
	}
	str := func(x any) string { s, _ := x.(string); return s }
	if got := str(m["site"]); got != b.Site {
		fail("site %q", got)
	}
	if u, _ := ParseUUID([]byte(str(m["v"]))); u != b.Visitor {
		fail("v %q", m["v"])
	}
	events, _ := m["events"].([]any)
	if len(events) != len(b.Events) {
		fail("%d events", len(events))
	}
	product := func(x any, p *Product) {
		pm, _ := x.(map[string]any)
		if str(pm["id"]) != p.ID || str(pm["brand"]) != p.Brand || str(pm["category"]) != p.Category || str(pm["age"]) != p.Age {
			fail("product %v", pm)
		}
		price, ok := pm["price"].(json.Number)
		if f, _ := strconv.ParseFloat(string(price), 64); ok != p.HasPrice || f != p.Price {
			fail("price %v", pm["price"])
		}
		qty, _ := pm["qty"].(json.Number)
		if q, _ := strconv.ParseUint(string(qty), 10, 32); uint32(q) != p.Qty {
			fail("qty %v", pm["qty"])
		}
	}
	for i, x := range events {
		em, _ := x.(map[string]any)
		e := &b.Events[i]
		id, _ := ParseUUID([]byte(str(em["id"])))
		ts, _ := em["ts"].(json.Number)
		if n, _ := strconv.ParseInt(string(ts), 10, 64); id != e.ID || str(em["t"]) != e.Type.String() || n != e.TS {
			fail("events[%d] id %v t %v ts %v", i, em["id"], em["t"], em["ts"])
		}
		if str(em["email"]) != e.Email || str(em["customer_id"]) != e.Customer || str(em["url"]) != e.URL {
			fail("events[%d] email %v customer_id %v url %v", i, em["email"], em["customer_id"], em["url"])
		}
		if _, ok := em["product"].(map[string]any); ok != e.HasProduct {
			fail("events[%d] product %v", i, em["product"])
		}
		product(em["product"], &e.Product)
		om, ok := em["order"].(map[string]any)
		if ok != e.HasOrder {
			fail("events[%d] order %v", i, em["order"])
		}
		total, ok := om["total"].(json.Number)
		if f, _ := strconv.ParseFloat(string(total), 64); str(om["id"]) != e.Order.ID || ok != e.Order.HasTotal || f != e.Order.Total {
			fail("events[%d] order %v", i, om)
		}
		items, _ := om["items"].([]any)
		if len(items) != len(e.Order.Items) {
			fail("events[%d] items %v", i, items)
		}
		for j := range items {
			product(items[j], &e.Order.Items[j])
		}
		traits, _ := em["traits"].(map[string]any)
		if len(traits) != len(e.Traits) {
			fail("events[%d] traits %v", i, traits)
		}
		for _, tr := range e.Traits {
			var kind TraitKind
			var value string
			switch v := traits[tr.Key].(type) {
			case string:
				kind, value = TraitString, v
			case json.Number:
				kind, value = TraitNumber, string(v)
			case bool:
				kind, value = TraitBool, strconv.FormatBool(v)
			default:
				fail("events[%d] trait %q: %v", i, tr.Key, v)
			}
			if kind != tr.Kind || value != tr.Value {
				fail("events[%d] trait %q: %v", i, tr.Key, traits[tr.Key])
			}
		}
	}
}

// TestUpdateTestdata rewrites the generated fixtures and the fuzz seed
// corpora when run with -update.
func TestUpdateTestdata(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite testdata")
	}
	write := func(path string, data []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("testdata/batch10.json", session(10, 1))
	write("testdata/batch100.json", session(100, 2))

	seeds := map[string][]byte{}
	for _, name := range []string{"all_types.json", "purchase.json", "identify.json", "unicode.json", "batch10.json", "batch100.json"} {
		seeds[strings.TrimSuffix(name, ".json")] = readFixture(t, name)
	}
	for typ := Type(1); typ < NumTypes; typ++ {
		seeds["single_"+typ.String()] = session1(typ)
	}
	full := readFixture(t, "all_types.json")
	for _, cut := range []int{1, 2, 17, 80, len(full) / 2, len(full) - 3, len(full) - 2} {
		seeds[fmt.Sprintf("truncated_all_types_%d", cut)] = full[:cut]
	}
	other := readFixture(t, "identify.json")
	seeds["spliced_all_types_identify"] = append(full[:len(full)/2:len(full)/2], other[len(other)/2:]...)
	seeds["split_events_concatenated"] = append(append([]byte{}, other...), other...)
	seeds["refused_dup_id"] = []byte(body(event(1, ""), event(2, ""), event(1, "")))
	seeds["refused_ts_future"] = []byte(body(`{"id":"0b9e6c1a-3c1f-4c47-9d0e-000000000001","t":"view","ts":` + fmt.Sprint(testNow+300001) + `}`))
	seeds["refused_bad_uuid"] = []byte(body(`{"id":"0b9e6c1a-3c1f-4c47-9d0e-00000000000g","t":"view","ts":1}`))
	seeds["escapes"] = []byte(body(event(1, `,"url":"\"\\\/\b\f\n\r\t\u0000\u00e9\ud83d\ude00\udc00\ud800","traits":{"\u006b":"\u2028"}`)))
	seeds["unknown_nested"] = []byte(body(event(1, `,"ctx":{"a":[{"b":[1,2.5e-3,-0,true,false,null,"s"]}]}`)))
	seeds["identify_token"] = []byte(body(strings.Replace(event(1, `,"token":"AQEAAAAAAAAAAAAAAAA"`), `"t":"view"`, `"t":"identify"`, 1)))
	writeCorpus(t, "FuzzDecodeBatch", seeds)

	records := map[string][]byte{}
	for name, data := range seeds {
		var b Batch
		if NewDecoder(DefaultOptions()).DecodeBatch(&b, data, testNow) == nil {
			records[name] = AppendBatch(nil, &b)
		}
	}
	rec := records["all_types"]
	for _, cut := range []int{0, 1, 5, 30, len(rec) / 2, len(rec) - 1} {
		records[fmt.Sprintf("truncated_all_types_%d", cut)] = rec[:cut]
	}
	records["version_5"] = append([]byte{5}, rec[1:]...)
	records["version_3"] = append([]byte{3}, rec[1:]...)
	records["version_2"] = append([]byte{2}, rec[1:]...)
	records["version_1"] = append([]byte{1}, rec[1:]...)
	records["open"] = AppendBatch(nil, engagementBatches[0])
	records["click"] = AppendBatch(nil, engagementBatches[1])
	records["version_2_with_token"] = append([]byte{2}, records["open"][1:]...)
	records["convert"] = AppendBatch(nil, engagementBatches[2])
	records["version_3_with_campaign"] = append([]byte{3}, records["convert"][1:]...)
	if custom := records["single_custom"]; custom != nil {
		records["version_1_with_name"] = append([]byte{1}, custom[1:]...)
	}
	records["trailing_byte"] = append(append([]byte{}, rec...), 0)
	records["empty_batch"] = AppendBatch(nil, &Batch{})
	records["huge_count"] = []byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}
	writeCorpus(t, "FuzzDecodeRecord", records)
}

func writeCorpus(t *testing.T, fuzz string, seeds map[string][]byte) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", fuzz)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range seeds {
		file := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(file), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// session returns a realistic batch of n events of one visitor: browsing,
// carting, a purchase now and then, one identify; the same for a seed.
func session(n int, seed uint64) []byte {
	rnd := rand.New(rand.NewPCG(seed, 42))
	brands := []string{"Hipp", "Lego", "Chicco", "Pampers", "Müller", "Fisher-Price", "Playmobil", "Cybex"}
	categories := []string{"baby/food/formula", "toys/blocks", "baby/stroller", "baby/diapers", "toys/figures", "kids/clothes/shoes"}
	ages := []string{"0-1", "0-3", "1-3", "3-6", "6-12"}
	product := func() string {
		return fmt.Sprintf(`{"id":"sku-%d","brand":%q,"category":%q,"age":%q,"price":%d.%02d}`,
			1000+rnd.IntN(9000), brands[rnd.IntN(len(brands))], categories[rnd.IntN(len(categories))],
			ages[rnd.IntN(len(ages))], 1+rnd.IntN(300), rnd.IntN(100))
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, `{"site":"shop-7f3a","v":"%08x-%04x-4%03x-8%03x-%012x","events":[`,
		rnd.Uint32(), rnd.IntN(1<<16), rnd.IntN(1<<12), rnd.IntN(1<<12), rnd.Uint64()>>16)
	ts := testNow - int64(n)*20000
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		ts += int64(1000 + rnd.IntN(18000))
		fmt.Fprintf(&sb, `{"id":"%08x-%04x-4%03x-a%03x-%012x","ts":%d,`,
			rnd.Uint32(), rnd.IntN(1<<16), rnd.IntN(1<<12), rnd.IntN(1<<12), rnd.Uint64()>>16, ts)
		url := fmt.Sprintf(`"url":"https://shop.example/p/%d?utm_source=newsletter&utm_campaign=spring"`, rnd.IntN(100000))
		switch k := rnd.IntN(20); {
		case i == n/2:
			sb.WriteString(`"t":"identify","email":"anna.k@example.com","customer_id":"c-9001","traits":{"birthday":"1990-05-12","children":2,"newsletter":true}`)
		case k < 4:
			sb.WriteString(`"t":"pageview",` + url)
		case k < 13:
			sb.WriteString(`"t":"view","product":` + product() + `,` + url)
		case k < 16:
			fmt.Fprintf(&sb, `"t":"cart","product":%s,%s`, strings.TrimSuffix(product(), "}")+`,"qty":1}`, url)
		case k < 17:
			sb.WriteString(`"t":"uncart","product":` + product())
		default:
			items := make([]string, 1+rnd.IntN(3))
			for j := range items {
				items[j] = strings.TrimSuffix(product(), "}") + fmt.Sprintf(`,"qty":%d}`, 1+rnd.IntN(3))
			}
			fmt.Fprintf(&sb, `"t":"purchase","order":{"id":"ord-%d","total":%d.%02d,"items":[%s]}`,
				rnd.IntN(1000000), 10+rnd.IntN(500), rnd.IntN(100), strings.Join(items, ","))
		}
		sb.WriteByte('}')
	}
	sb.WriteString("]}\n")
	return []byte(sb.String())
}

// session1 returns a batch of one event of type typ, with the fields that
// type carries.
func session1(typ Type) []byte {
	extra := map[Type]string{
		TypePageview: `,"url":"https://shop.example/"`,
		TypeView:     `,"product":{"id":"sku-1","brand":"Hipp","category":"baby/food","age":"0-1","price":3.49}`,
		TypeCart:     `,"product":{"id":"sku-1","price":3.49,"qty":4}`,
		TypeUncart:   `,"product":{"id":"sku-1","qty":1}`,
		TypePurchase: `,"order":{"id":"o-1","total":13.96,"items":[{"id":"sku-1","price":3.49,"qty":4}]}`,
		TypeIdentify: `,"email":"a@example.com","customer_id":"7","traits":{"birthday":"1990-05-12","kids":1,"vip":false}`,
		TypeCustom:   `,"name":"Newsletter Signup","traits":{"list":"weekly"}`,
	}[typ]
	return []byte(body(strings.Replace(event(int(typ), extra), `"t":"view"`, `"t":"`+typ.String()+`"`, 1)))
}

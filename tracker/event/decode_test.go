package event

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func uuid(s string) UUID {
	u, ok := ParseUUID([]byte(s))
	if !ok {
		panic("bad test UUID " + s)
	}
	return u
}

func TestDecodeBatchFixtures(t *testing.T) {
	visitor := uuid("5f0c3c2e-8a4b-4e8e-9b1d-2c6f7a9e0d11")
	f := func(fixture string, want *Batch) {
		t.Helper()
		got := mustDecode(t, readFixture(t, fixture))
		if !got.Equal(want) {
			t.Fatalf("%s:\ngot\n%s\nwant\n%s", fixture, dump(got), dump(want))
		}
	}
	f("all_types.json", &Batch{Site: "shop-7f3a", Visitor: visitor, Recv: testNow, Events: []Event{
		{ID: uuid("0b9e6c1a-3c1f-4c47-9d0e-5b6a2f1e7d01"), Type: TypePageview, TS: 1767225500000,
			URL: "https://shop.example/c/baby/food"},
		{ID: uuid("0b9e6c1a-3c1f-4c47-9d0e-5b6a2f1e7d02"), Type: TypeView, TS: 1767225510000,
			HasProduct: true, Product: Product{ID: "sku-1001", Brand: "Hipp", Category: "baby/food/formula", Age: "0-3", Price: 12.5, HasPrice: true},
			URL: "https://shop.example/p/sku-1001"},
		{ID: uuid("0b9e6c1a-3c1f-4c47-9d0e-5b6a2f1e7d03"), Type: TypeCart, TS: 1767225520000,
			HasProduct: true, Product: Product{ID: "sku-1001", Brand: "Hipp", Price: 12.5, HasPrice: true, Qty: 2}},
		{ID: uuid("0b9e6c1a-3c1f-4c47-9d0e-5b6a2f1e7d04"), Type: TypeUncart, TS: 1767225530000,
			HasProduct: true, Product: Product{ID: "sku-1001", Qty: 1}},
		{ID: uuid("0b9e6c1a-3c1f-4c47-9d0e-5b6a2f1e7d05"), Type: TypePurchase, TS: 1767225540000,
			HasOrder: true, Order: Order{ID: "ord-42", Total: 37.49, HasTotal: true, Items: []Product{
				{ID: "sku-1001", Brand: "Hipp", Category: "baby/food/formula", Age: "0-3", Price: 12.5, HasPrice: true, Qty: 1},
				{ID: "sku-2002", Brand: "Lego", Category: "toys/blocks", Age: "3-6", Price: 24.99, HasPrice: true, Qty: 1},
			}}},
		{ID: uuid("0b9e6c1a-3c1f-4c47-9d0e-5b6a2f1e7d06"), Type: TypeIdentify, TS: 1767225550000,
			Email: "Anna.K@Example.com", Customer: "c-9001", Traits: []Trait{
				{Key: "birthday", Value: "1990-05-12", Kind: TraitString},
				{Key: "children", Value: "2", Kind: TraitNumber},
				{Key: "newsletter", Value: "true", Kind: TraitBool},
			}},
	}})
	f("purchase.json", &Batch{Site: "shop-7f3a", Visitor: visitor, Recv: testNow, Events: []Event{
		{ID: uuid("7d1f2b3c-1111-4a2b-8c3d-000000000001"), Type: TypePurchase, TS: 1767225000000,
			HasOrder: true, Order: Order{ID: "100-2345", Total: 0, HasTotal: true, Items: []Product{
				{ID: "sku-1", Price: 0, HasPrice: true, Qty: 3},
				{ID: "sku-2", Brand: "Chicco", Price: 100, HasPrice: true, Qty: 1},
				{ID: "sku-3", Category: "baby/stroller", Price: 349.9, HasPrice: true},
			}},
			URL: "https://shop.example/checkout/thank-you?order=100-2345"},
	}})
	f("identify.json", &Batch{Site: "shop-7f3a", Visitor: visitor, Recv: testNow, Events: []Event{
		{ID: uuid("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"), Type: TypeIdentify, TS: 1767225599000,
			Email: "anna@example.com", Customer: "42", Traits: []Trait{
				{Key: "birthday", Value: "1990-05-12"},
				{Key: "child_birthday", Value: "2023-11-02"},
				{Key: "children", Value: "2", Kind: TraitNumber},
				{Key: "ltv", Value: "1234.56", Kind: TraitNumber},
				{Key: "vip", Value: "false", Kind: TraitBool},
				{Key: "consent", Value: "true", Kind: TraitBool},
				{Key: "score", Value: "-1.5e-3", Kind: TraitNumber},
				{Key: "city", Value: "Köln"},
			}},
	}})
	f("unicode.json", &Batch{Site: "shop-éè", Visitor: visitor, Recv: testNow, Events: []Event{
		{ID: uuid("3c2b1a09-8f7e-4d6c-9b5a-493827160504"), Type: TypeView, TS: testNow,
			HasProduct: true, Product: Product{ID: `"quoted" \ back/slash`, Brand: "Müller 👶 Baby",
				Category: "bébé/jouets/中文", Age: "0–3", Price: 9.99, HasPrice: true},
			URL: "https://shop.example/p/ü?q=a&b=\t\n\r\b\f"},
		{ID: uuid("3c2b1a09-8f7e-4d6c-9b5a-493827160505"), Type: TypeView, TS: testNow,
			HasProduct: true, Product: Product{Brand: "Müller 👶 Baby", Category: "日本語/カテゴリ", Age: "\uFFFDA"}},
	}})
}

// event returns the JSON of a valid event with id number n and extra
// members appended.
func event(n int, extra string) string {
	return fmt.Sprintf(`{"id":"0b9e6c1a-3c1f-4c47-9d0e-%012d","t":"view","ts":%d%s}`, n, testNow-1000, extra)
}

// body returns a valid batch envelope around events.
func body(events ...string) string {
	return `{"site":"shop-7f3a","v":"5f0c3c2e-8a4b-4e8e-9b1d-2c6f7a9e0d11","events":[` + strings.Join(events, ",") + `]}`
}

func TestDecodeBatchRefused(t *testing.T) {
	opts := DefaultOptions()
	window, future := opts.AcceptWindow.Milliseconds(), opts.MaxFuture.Milliseconds()
	ev := event(1, "")
	tsEvent := func(ts string) string {
		return `{"id":"0b9e6c1a-3c1f-4c47-9d0e-000000000001","t":"view","ts":` + ts + `}`
	}
	many := func(n int, f func(i int) string) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = f(i)
		}
		return strings.Join(parts, ",")
	}
	long := strings.Repeat("x", 2049)
	nowTS := fmt.Sprint(testNow)
	seen := map[string]bool{}
	f := func(in, reason, msg string) {
		t.Helper()
		seen[reason] = true
		var b Batch
		err := NewDecoder(opts).DecodeBatch(&b, []byte(in), testNow)
		var ve *ValidationError
		if !errors.As(err, &ve) {
			t.Fatalf("%s\ngot error %v; want a *ValidationError %s", in, err, reason)
		}
		if ve.Reason != reason || !strings.Contains(ve.Error(), msg) {
			t.Fatalf("%.200s\ngot  %s: %s\nwant %s: …%s…", in, ve.Reason, ve, reason, msg)
		}
		if strings.ContainsAny(ve.Error(), "\n\r") {
			t.Fatalf("%s: the message is not one line: %q", in, ve)
		}
	}

	// The body.
	f(``, ReasonBadJSON, "invalid JSON at byte 0: the body must be a JSON object, found the end of the body")
	f(`  `, ReasonBadJSON, "the body must be a JSON object")
	f(`[]`, ReasonBadJSON, `the body must be a JSON object, found "[]"`)
	f(`"x"`, ReasonBadJSON, "the body must be a JSON object")
	f(`{`, ReasonBadJSON, "expected a string key, found the end of the body")
	f(`{"site"}`, ReasonBadJSON, "expected ':' after an object key")
	f(`{"site":"a",}`, ReasonBadJSON, "expected a string key")
	f(`{"site":"a" "v":1}`, ReasonBadJSON, "expected ',' or '}' after an object member")
	f(`{} {}`, ReasonBadJSON, "unexpected data after the JSON object")
	f(`{"x":[1,2}`, ReasonBadJSON, "expected ',' or ']' after an array element")
	f(`{"x":[1,]}`, ReasonBadJSON, "expected a value")
	f(`{"x":tru}`, ReasonBadJSON, "expected a value")
	f(`{"x":NaN}`, ReasonBadJSON, "expected a value")
	f(`{"x":-}`, ReasonBadJSON, "expected a value")
	f(`{"x":01}`, ReasonBadJSON, "expected ',' or '}'")
	f(`{"x":1.}`, ReasonBadJSON, "expected a digit after the decimal point")
	f(`{"x":1e}`, ReasonBadJSON, "expected a digit in the exponent")
	f(`{"x":"a`, ReasonBadJSON, "unterminated string")
	f(`{"x":"a`+"\x01"+`"}`, ReasonBadJSON, "control character in a string")
	f(`{"x":"\q"}`, ReasonBadJSON, "invalid escape in a string")
	f(`{"x":"\u12G4"}`, ReasonBadJSON, "invalid escape in a string")
	f(`{"x":"`+"\xff"+`"}`, ReasonBadJSON, "invalid UTF-8 in a string")
	f(`{"x":"`+"\xed\xa0\x80"+`"}`, ReasonBadJSON, "invalid UTF-8 in a string") // an encoded surrogate
	f(`{"x":`+strings.Repeat("[", 40)+strings.Repeat("]", 40)+`}`, ReasonBadJSON, "values nested deeper than 32 levels")
	f(`{"site":"a","site":"b"}`, ReasonBadJSON, "site: duplicate key")
	f(body(event(1, `,"ts":1`)), ReasonBadJSON, "events[0].ts: duplicate key")
	f(body(ev, ev[:20]), ReasonBadJSON, `events[1]: invalid JSON at byte`)

	// The envelope.
	f(`{"v":"5f0c3c2e-8a4b-4e8e-9b1d-2c6f7a9e0d11","events":[`+ev+`]}`, ReasonMissingSite, "site: missing")
	f(`{"site":"","v":"5f0c3c2e-8a4b-4e8e-9b1d-2c6f7a9e0d11","events":[`+ev+`]}`, ReasonMissingSite, "site: missing")
	f(`{"site":null,"v":"5f0c3c2e-8a4b-4e8e-9b1d-2c6f7a9e0d11","events":[`+ev+`]}`, ReasonMissingSite, "site: missing")
	f(`{"site":7}`, ReasonBadSite, "site: must be a string, got 7")
	f(`{"site":"`+strings.Repeat("s", 65)+`"}`, ReasonBadSite, `site: "ssss`)
	f(`{"site":"`+strings.Repeat("s", 65)+`"}`, ReasonBadSite, `is 65 bytes long; the limit is 64`)
	f(`{"site":"a","events":[`+ev+`]}`, ReasonBadVisitor, "v: missing")
	f(`{"site":"a","v":null}`, ReasonBadVisitor, "v: must be a UUID string, got null")
	f(`{"site":"a","v":{"id":1}}`, ReasonBadVisitor, `v: must be a string, got {"id":1}`)
	f(`{"site":"a","v":"abc"}`, ReasonBadVisitor, `v: invalid UUID "abc"`)
	f(`{"site":"a","v":"5f0c3c2e8a4b4e8e9b1d2c6f7a9e0d11"}`, ReasonBadVisitor, `v: invalid UUID "5f0c3c2e8a4b4e8e9b1d2c6f7a9e0d11"`)
	f(`{"site":"a","v":"5f0c3c2e-8a4b-4e8e-9b1d-2c6f7a9e0d11"}`, ReasonMissingEvents, "events: missing")
	f(`{"site":"a","v":"5f0c3c2e-8a4b-4e8e-9b1d-2c6f7a9e0d11","events":null}`, ReasonMissingEvents, "events: missing")
	f(body(), ReasonMissingEvents, "events: missing")
	f(`{"events":{}}`, ReasonBadEvent, "events: must be an array of event objects, got {}")
	f(body(many(101, func(i int) string { return event(i, "") })), ReasonTooManyEvents,
		"events: more than 100 events; the limit is Options.MaxEvents")
	f(body(ev, `"view"`), ReasonBadEvent, `events[1]: must be an object, got "view"`)
	f(body(ev, `null`), ReasonBadEvent, `events[1]: must be an object, got null`)

	// The required fields of an event.
	f(body(`{"t":"view","ts":`+nowTS+`}`), ReasonBadEventID, "events[0].id: missing")
	f(body(event(1, ""), `{"id":"abc","t":"view","ts":`+nowTS+`}`), ReasonBadEventID, `events[1].id: invalid UUID "abc"`)
	f(body(`{"id":null}`), ReasonBadEventID, `events[0].id: must be a UUID string, got null`)
	f(body(`{"id":42}`), ReasonBadEventID, `events[0].id: must be a string, got 42`)
	f(body(`{"id":"`+long+`"}`), ReasonBadEventID, `events[0].id: invalid UUID "xxxx`)
	f(body(ev, event(2, ""), event(1, "")), ReasonDupEventID,
		`events[2].id: duplicate of events[0].id "0b9e6c1a-3c1f-4c47-9d0e-000000000001"`)
	f(body(`{"id":"0b9e6c1a-3c1f-4c47-9d0e-000000000001","ts":`+nowTS+`}`), ReasonBadType, "events[0].t: missing")
	f(body(`{"id":"0b9e6c1a-3c1f-4c47-9d0e-000000000001","t":"click"}`), ReasonBadType, `events[0].t: unknown event type "click"`)
	f(body(`{"id":"0b9e6c1a-3c1f-4c47-9d0e-000000000001","t":"convert","campaign":1,"recipient":0}`), ReasonBadType, `events[0].t: unknown event type "convert"`)
	f(body(`{"id":"0b9e6c1a-3c1f-4c47-9d0e-000000000001","t":"View"}`), ReasonBadType, `unknown event type "View"`)
	f(body(`{"t":2}`), ReasonBadType, `events[0].t: must be a string, got 2`)
	f(body(`{"t":null}`), ReasonBadType, `events[0].t: must be an event type string, got null`)
	f(body(`{"id":"0b9e6c1a-3c1f-4c47-9d0e-000000000001","t":"view"}`), ReasonBadTS, "events[0].ts: missing")
	f(body(tsEvent(`"1767225600000"`)), ReasonBadTS, `events[0].ts: must be a number, got "1767225600000"`)
	f(body(tsEvent(`null`)), ReasonBadTS, `events[0].ts: must be an integer of Unix milliseconds, got null`)
	f(body(tsEvent(`1767225600000.5`)), ReasonBadTS, "must be an integer of Unix milliseconds, got 1767225600000.5")
	f(body(tsEvent(`1.7672256e12`)), ReasonBadTS, "got 1.7672256e12")
	f(body(tsEvent(`99999999999999999999`)), ReasonBadTS, "got 99999999999999999999")
	f(body(tsEvent(`-9223372036854775809`)), ReasonBadTS, "got -9223372036854775809")

	// The ts window, at its edges.
	f(body(tsEvent(fmt.Sprint(testNow+future+1))), ReasonTSFuture,
		fmt.Sprintf("events[0].ts: %d is more than 5m0s (Options.MaxFuture) after the receive time %d", testNow+future+1, testNow))
	f(body(tsEvent(fmt.Sprint(testNow-window-1))), ReasonTSTooOld,
		fmt.Sprintf("events[0].ts: %d is more than 168h0m0s (Options.AcceptWindow) before the receive time %d", testNow-window-1, testNow))
	f(body(tsEvent("0")), ReasonTSTooOld, "events[0].ts: 0 is more than")
	f(body(tsEvent("-9223372036854775808")), ReasonTSTooOld, "-9223372036854775808 is more than")
	f(body(tsEvent("9223372036854775807")), ReasonTSFuture, "9223372036854775807 is more than")

	// The name of a custom event.
	custom := func(extra string) string {
		return strings.Replace(event(1, extra), `"t":"view"`, `"t":"custom"`, 1)
	}
	f(body(custom(``)), ReasonBadField, `events[0].name: missing: a custom event needs its name`)
	f(body(custom(`,"name":null`)), ReasonBadField, `events[0].name: missing: a custom event needs its name`)
	f(body(custom(`,"name":""`)), ReasonBadField, `events[0].name: missing`)
	f(body(custom(`,"name":7`)), ReasonBadField, `events[0].name: must be a string, got 7`)
	f(body(custom(`,"name":"`+strings.Repeat("n", MaxNameLen+1)+`"`)), ReasonBadField,
		fmt.Sprintf(`is %d bytes long; the limit is %d (event.MaxNameLen)`, MaxNameLen+1, MaxNameLen))
	f(body(event(1, `,"name":"Signup"`)), ReasonBadField, `events[0].name: "Signup" given for a view event: only a custom event has a name`)
	f(body(custom(`,"name":"a","name":"b"`)), ReasonBadJSON, `events[0].name: duplicate key`)

	// The campaign token of an identify (the landing page's aff_t).
	identify := func(extra string) string {
		return strings.Replace(event(1, extra), `"t":"view"`, `"t":"identify"`, 1)
	}
	f(body(event(1, `,"token":"AQEAAAAAAAAAAAAAAAA"`)), ReasonBadField, `events[0].token: "AQEAAAAAAAAAAAAAAAA" given for a view event: only an identify carries a campaign token`)
	f(body(identify(`,"token":""`)), ReasonBadField, `events[0].token: "" is not a campaign token: want 1..64 base64url characters`)
	f(body(identify(`,"token":"a+b"`)), ReasonBadField, `events[0].token: "a+b" is not a campaign token`)
	f(body(identify(`,"token":"`+strings.Repeat("A", MaxTokenLen+1)+`"`)), ReasonBadField, `is not a campaign token`)
	f(body(identify(`,"token":7`)), ReasonBadField, `events[0].token: must be a string, got 7`)
	f(body(identify(`,"token":"a","token":"b"`)), ReasonBadJSON, `events[0].token: duplicate key`)

	// Optional fields.
	f(body(event(1, `,"product":"sku-1"`)), ReasonBadField, `events[0].product: must be an object, got "sku-1"`)
	f(body(event(1, `,"product":{"id":1001}`)), ReasonBadField, `events[0].product.id: must be a string, got 1001`)
	f(body(event(1, `,"product":{"brand":["a"]}`)), ReasonBadField, `events[0].product.brand: must be a string, got ["a"]`)
	f(body(event(1, `,"product":{"category":true}`)), ReasonBadField, `events[0].product.category: must be a string, got true`)
	f(body(event(1, `,"product":{"age":3}`)), ReasonBadField, `events[0].product.age: must be a string, got 3`)
	f(body(event(1, `,"product":{"price":"12.5"}`)), ReasonBadField, `events[0].product.price: must be a number, got "12.5"`)
	f(body(event(1, `,"product":{"price":-0.01}`)), ReasonBadField, `events[0].product.price: must not be negative, got -0.01`)
	f(body(event(1, `,"product":{"price":1e309}`)), ReasonBadField, `events[0].product.price: must be a finite number, got 1e309`)
	f(body(event(1, `,"product":{"qty":1.5}`)), ReasonBadField, `events[0].product.qty: must be an integer from 0 to 4294967295, got 1.5`)
	f(body(event(1, `,"product":{"qty":-1}`)), ReasonBadField, `got -1`)
	f(body(event(1, `,"product":{"qty":4294967296}`)), ReasonBadField, `got 4294967296`)
	f(body(event(1, `,"product":{"id":"`+long+`"}`)), ReasonBadField,
		`events[0].product.id: "xxxx`)
	f(body(event(1, `,"product":{"id":"`+long+`"}`)), ReasonBadField,
		`"… is 2049 bytes long; the limit is 2048 (Options.MaxString)`)
	f(body(event(1, `,"product":{"id":"a","id":"b"}`)), ReasonBadJSON, `events[0].product.id: duplicate key`)
	f(body(event(1, `,"order":[]`)), ReasonBadField, `events[0].order: must be an object, got []`)
	f(body(event(1, `,"order":{"id":5}`)), ReasonBadField, `events[0].order.id: must be a string, got 5`)
	f(body(event(1, `,"order":{"total":-5}`)), ReasonBadField, `events[0].order.total: must not be negative, got -5`)
	f(body(event(1, `,"order":{"total":true}`)), ReasonBadField, `events[0].order.total: must be a number, got true`)
	f(body(event(1, `,"order":{"items":{}}`)), ReasonBadField, `events[0].order.items: must be an array of product objects, got {}`)
	f(body(event(1, `,"order":{"items":[{"id":"a"},null]}`)), ReasonBadField, `events[0].order.items[1]: must be an object, got null`)
	f(body(event(1, `,"order":{"items":[{"id":"a"},"b"]}`)), ReasonBadField, `events[0].order.items[1]: must be an object, got "b"`)
	f(body(event(1, `,"order":{"items":[{},{"price":-1}]}`)), ReasonBadField, `events[0].order.items[1].price: must not be negative`)
	f(body(event(1, `,"order":{"items":[{"qty":"2"}]}`)), ReasonBadField, `events[0].order.items[0].qty: must be a number, got "2"`)
	f(body(event(1, `,"order":{"items":[`+many(101, func(int) string { return `{}` })+`]}`)), ReasonTooManyItems,
		`events[0].order.items: more than 100 items; the limit is Options.MaxItems`)
	f(body(event(1, `,"email":["a@b.c"]`)), ReasonBadField, `events[0].email: must be a string, got ["a@b.c"]`)
	f(body(event(1, `,"email":"`+long+`"`)), ReasonBadField, `events[0].email: "xxx`)
	f(body(event(1, `,"customer_id":42`)), ReasonBadField, `events[0].customer_id: must be a string, got 42`)
	f(body(event(1, `,"url":{"href":"x"}`)), ReasonBadField, `events[0].url: must be a string, got {"href":"x"}`)
	f(body(event(1, `,"url":"https://x/`+long+`"`)), ReasonBadField, `is 2059 bytes long; the limit is 2048 (Options.MaxString)`)
	f(body(event(1, `,"traits":["a"]`)), ReasonBadField, `events[0].traits: must be an object of strings, numbers and booleans, got ["a"]`)
	f(body(event(1, `,"traits":{"kids":[1,2]}`)), ReasonBadField, `events[0].traits["kids"]: must be a string, number or boolean, got [1,2]`)
	f(body(event(1, `,"traits":{"a":null}`)), ReasonBadField, `events[0].traits["a"]: must be a string, number or boolean, got null`)
	f(body(event(1, `,"traits":{"a":{}}`)), ReasonBadField, `events[0].traits["a"]: must be a string, number or boolean, got {}`)
	f(body(event(1, `,"traits":{"":"x"}`)), ReasonBadField, `events[0].traits: empty key`)
	f(body(event(1, `,"traits":{"`+strings.Repeat("k", 65)+`":"x"}`)), ReasonBadField, `events[0].traits: key "kkkk`)
	f(body(event(1, `,"traits":{"`+strings.Repeat("k", 65)+`":"x"}`)), ReasonBadField, `is 65 bytes long; the limit is 64`)
	f(body(event(1, `,"traits":{"a":1,"b":2,"a":3}`)), ReasonBadField, `events[0].traits: duplicate key "a"`)
	f(body(event(1, `,"traits":{"a":"`+long+`"}`)), ReasonBadField, `events[0].traits["a"]: "xxx`)
	f(body(event(1, `,"traits":{`+many(33, func(i int) string { return fmt.Sprintf(`"k%d":%d`, i, i) })+`}`)), ReasonTooManyTraits,
		`events[0].traits: more than 32 keys; the limit is Options.MaxTraits`)
	f(body(event(1, `,"traits":{"a":"\ud83d\udc76","b":`)), ReasonBadJSON, `events[0]: invalid JSON`)

	// Base64 is the pixel's: see TestDecodeBase64Batch.
	seen[ReasonBadBase64] = true
	for _, r := range Reasons() {
		if !seen[r] {
			t.Errorf("no case refuses a batch with reason %s", r)
		}
	}
}

// TestDecodeBatchAccepted covers what the contract lets through.
func TestDecodeBatchAccepted(t *testing.T) {
	opts := DefaultOptions()
	window, future := opts.AcceptWindow.Milliseconds(), opts.MaxFuture.Milliseconds()
	f := func(in string, check func(b *Batch) string) {
		t.Helper()
		b := mustDecode(t, []byte(in))
		if msg := check(b); msg != "" {
			t.Fatalf("%.300s\n%s\n%s", in, msg, dump(b))
		}
	}
	tsIs := func(want int64) func(b *Batch) string {
		return func(b *Batch) string {
			if got := b.Events[0].TS; got != want {
				return fmt.Sprintf("got ts %d; want %d", got, want)
			}
			return ""
		}
	}
	ts := func(ts int64) string {
		return body(`{"id":"0b9e6c1a-3c1f-4c47-9d0e-000000000001","t":"view","ts":` + fmt.Sprint(ts) + `}`)
	}
	// A custom event keeps its name, escapes undone, at the limit's length.
	for _, name := range []string{"Newsletter Signup", strings.Repeat("é", MaxNameLen/2)} {
		f(body(`{"name":`+string(AppendJSONString(nil, name))+`,"id":"0b9e6c1a-3c1f-4c47-9d0e-000000000001","t":"custom","ts":`+fmt.Sprint(testNow)+`}`),
			func(b *Batch) string {
				if e := &b.Events[0]; e.Type != TypeCustom || e.Name != name {
					return fmt.Sprintf("got type %s name %q; want custom %q", e.Type, e.Name, name)
				}
				return ""
			})
	}
	f(body(`{"name":"Newsletter \u0053ignup","id":"0b9e6c1a-3c1f-4c47-9d0e-000000000001","t":"custom","ts":`+fmt.Sprint(testNow)+`}`),
		func(b *Batch) string {
			if got := b.Events[0].Name; got != "Newsletter Signup" {
				return fmt.Sprintf("got name %q; want %q", got, "Newsletter Signup")
			}
			return ""
		})

	// The window's edges are inside it.
	f(ts(testNow-window), tsIs(testNow-window))
	f(ts(testNow+future), tsIs(testNow+future))
	f(ts(testNow), tsIs(testNow))

	// Whitespace everywhere JSON allows it, members in any order, unknown
	// members of every type skipped, null for "not given".
	f(" \t\r\n{ \"events\" : [ { \"ts\" : "+fmt.Sprint(testNow)+" , \"t\" : \"cart\" , \"x\" : { \"y\" : [ 1 , -2.5e+3 , true , false , null , \"z\" , { } , [ ] ] } ,"+
		" \"id\" : \"0b9e6c1a-3c1f-4c47-9d0e-000000000001\" , \"product\" : null , \"order\" : null , \"traits\" : null , \"email\" : null , \"url\" : null } ] ,"+
		" \"v\" : \"5f0c3c2e-8a4b-4e8e-9b1d-2c6f7a9e0d11\" , \"site\" : \"s\" , \"extra\" : 1 } \n ",
		func(b *Batch) string {
			e := &b.Events[0]
			if b.Site != "s" || e.Type != TypeCart || e.HasProduct || e.HasOrder || e.Traits != nil || e.Email != "" || e.URL != "" {
				return "got a field that was not given"
			}
			return ""
		})
	// Escaped keys are the keys they spell.
	f(`{"\u0073ite":"s","v":"5f0c3c2e-8a4b-4e8e-9b1d-2c6f7a9e0d11","events":[{"i\u0064":"0b9e6c1a-3c1f-4c47-9d0e-000000000001","t":"\u0076iew","ts":`+fmt.Sprint(testNow)+`}]}`,
		func(b *Batch) string {
			if b.Site != "s" || b.Events[0].Type != TypeView {
				return "escaped keys or values were not matched"
			}
			return ""
		})
	// Zero prices and totals are given; -0 is 0; qty 0 is "not given".
	f(body(event(1, `,"product":{"price":-0,"qty":0},"order":{"total":0.0,"items":[]}`)), func(b *Batch) string {
		e := &b.Events[0]
		if !e.Product.HasPrice || math.Signbit(e.Product.Price) || e.Product.Qty != 0 || !e.Order.HasTotal || len(e.Order.Items) != 0 {
			return "got the wrong zeros"
		}
		return ""
	})
	// The limits themselves are accepted.
	long := strings.Repeat("é", 1024)
	f(`{"site":"`+strings.Repeat("s", 64)+`","v":"5f0c3c2e-8a4b-4e8e-9b1d-2c6f7a9e0d11","events":[`+event(1, `,"url":"`+long+`","traits":{"`+strings.Repeat("k", 64)+`":"`+long+`"}`)+`]}`,
		func(b *Batch) string {
			if b.Events[0].URL != long || b.Events[0].Traits[0].Value != long {
				return "got a cut string"
			}
			return ""
		})
	f(string(readFixture(t, "batch100.json")), func(b *Batch) string {
		if len(b.Events) != 100 {
			return fmt.Sprintf("got %d events; want 100", len(b.Events))
		}
		return ""
	})
}

func TestDecoderOptions(t *testing.T) {
	opts := Options{MaxEvents: 2, MaxItems: 1, MaxTraits: 1, MaxString: 3, AcceptWindow: time.Minute, MaxFuture: time.Second}
	f := func(in, reason string) {
		t.Helper()
		var b Batch
		err := NewDecoder(opts).DecodeBatch(&b, []byte(in), testNow)
		var ve *ValidationError
		switch {
		case reason == "" && err != nil:
			t.Fatalf("%s\ngot error %s; want none", in, err)
		case reason != "" && (!errors.As(err, &ve) || ve.Reason != reason):
			t.Fatalf("%s\ngot error %v; want reason %s", in, err, reason)
		}
	}
	f(body(event(1, ""), event(2, "")), "")
	f(body(event(1, ""), event(2, ""), event(3, "")), ReasonTooManyEvents)
	f(body(event(1, `,"order":{"items":[{}]}`)), "")
	f(body(event(1, `,"order":{"items":[{},{}]}`)), ReasonTooManyItems)
	f(body(event(1, `,"traits":{"a":1}`)), "")
	f(body(event(1, `,"traits":{"a":1,"b":2}`)), ReasonTooManyTraits)
	f(body(event(1, `,"email":"abc"`)), "")
	f(body(event(1, `,"email":"abcd"`)), ReasonBadField)
	f(body(`{"id":"0b9e6c1a-3c1f-4c47-9d0e-000000000001","t":"view","ts":`+fmt.Sprint(testNow-60000)+`}`), "")
	f(body(`{"id":"0b9e6c1a-3c1f-4c47-9d0e-000000000001","t":"view","ts":`+fmt.Sprint(testNow-60001)+`}`), ReasonTSTooOld)
	f(body(`{"id":"0b9e6c1a-3c1f-4c47-9d0e-000000000001","t":"view","ts":`+fmt.Sprint(testNow+1000)+`}`), "")
	f(body(`{"id":"0b9e6c1a-3c1f-4c47-9d0e-000000000001","t":"view","ts":`+fmt.Sprint(testNow+1001)+`}`), ReasonTSFuture)

	// A zero Decoder and zero Options take the defaults.
	var d Decoder
	var b Batch
	if err := d.DecodeBatch(&b, readFixture(t, "batch100.json"), testNow); err != nil {
		t.Fatalf("zero Decoder: %s", err)
	}
	if got, want := NewDecoder(Options{}).opts, DefaultOptions(); got != want {
		t.Fatalf("NewDecoder(Options{}): got options %+v; want %+v", got, want)
	}
}

func TestDecodeBase64Batch(t *testing.T) {
	data := readFixture(t, "all_types.json")
	want := mustDecode(t, data)
	d := NewDecoder(DefaultOptions())
	var b Batch
	// Trailing blanks make a length that base64 pads with "==".
	for len(data)%3 != 1 {
		data = append(data, ' ')
	}
	for name, param := range map[string]string{
		"padded":   base64.URLEncoding.EncodeToString(data),
		"unpadded": base64.RawURLEncoding.EncodeToString(data),
	} {
		if name == "padded" && !strings.HasSuffix(param, "==") {
			t.Fatalf("BUG: the padded case has no padding: %q", param[len(param)-8:])
		}
		if err := d.DecodeBase64Batch(&b, []byte(param), testNow); err != nil {
			t.Fatalf("%s: %s", name, err)
		}
		if !b.Equal(want) {
			t.Fatalf("%s:\ngot\n%s\nwant\n%s", name, dump(&b), dump(want))
		}
	}
	f := func(param, reason, msg string) {
		t.Helper()
		err := d.DecodeBase64Batch(&b, []byte(param), testNow)
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Reason != reason || !strings.Contains(ve.Error(), msg) {
			t.Fatalf("%q: got %v; want %s: …%s…", param, err, reason, msg)
		}
	}
	std := base64.StdEncoding.EncodeToString([]byte(`{"site":"???>>>"}`))
	f(std, ReasonBadBase64, `d: invalid base64url: illegal base64 data at input byte`)
	f("e30=x", ReasonBadBase64, `in "e30=x"`)
	f("e", ReasonBadBase64, "illegal base64 data")
	f("", ReasonBadJSON, "the body must be a JSON object")
	f(base64.RawURLEncoding.EncodeToString([]byte(`{"site":"a"}`)), ReasonBadVisitor, "v: missing")
}

// TestDecodeBatchReuse decodes into one Decoder and Batch batches of
// shrinking and growing sizes: nothing of an earlier batch may leak into a
// later one, and an earlier refused batch changes nothing.
func TestDecodeBatchReuse(t *testing.T) {
	names := []string{"batch100.json", "all_types.json", "identify.json", "purchase.json", "unicode.json", "batch10.json", "all_types.json"}
	d := NewDecoder(DefaultOptions())
	var b Batch
	for i, name := range names {
		data := readFixture(t, name)
		if err := d.DecodeBatch(&b, []byte(body(event(1, `,"traits":{"x":1},"order":{"items":[{"id":"i"}]},"product":{"id":"p"}`), `{`)), testNow); err == nil {
			t.Fatalf("a broken batch was accepted")
		}
		if err := d.DecodeBatch(&b, data, testNow); err != nil {
			t.Fatalf("%s: %s", name, err)
		}
		want := mustDecode(t, data)
		if !b.Equal(want) {
			t.Fatalf("step %d, %s, decoded into a reused Batch:\ngot\n%s\nwant\n%s", i, name, dump(&b), dump(want))
		}
		// The input is the caller's again: overwriting it changes nothing.
		clear(data)
		if !b.Equal(want) {
			t.Fatalf("%s: the batch changed with its input", name)
		}
	}
}

func TestDecodeBatchAllocs(t *testing.T) {
	for _, name := range []string{"batch10.json", "batch100.json", "all_types.json", "unicode.json"} {
		data := readFixture(t, name)
		param := []byte(base64.RawURLEncoding.EncodeToString(data))
		d := NewDecoder(DefaultOptions())
		var b Batch
		if n := testing.AllocsPerRun(100, func() {
			if err := d.DecodeBatch(&b, data, testNow); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%s: DecodeBatch: got %v allocs per run; want 0", name, n)
		}
		if n := testing.AllocsPerRun(100, func() {
			if err := d.DecodeBase64Batch(&b, param, testNow); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%s: DecodeBase64Batch: got %v allocs per run; want 0", name, n)
		}
	}
}

func TestValidationErrorTruncatesValues(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes: cut within the 64 byte budget on a rune boundary
	var b Batch
	err := NewDecoder(DefaultOptions()).DecodeBatch(&b, []byte(`{"site":"a","v":"`+long+`"}`), testNow)
	want := `v: invalid UUID "` + strings.Repeat("é", 32) + `"…`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v; want %s", err, want)
	}
	if !slices.Contains(Reasons(), err.(*ValidationError).Reason) {
		t.Fatalf("reason %q is not in Reasons()", err.(*ValidationError).Reason)
	}
}

// TestDecodeIdentifyToken: the snippet's identify with the aff_t of a
// campaign click keeps the token through the record.
func TestDecodeIdentifyToken(t *testing.T) {
	b := mustDecode(t, []byte(body(strings.Replace(event(1, `,"token":"AQEAAAAAAAAAAAAAAAA"`), `"t":"view"`, `"t":"identify"`, 1))))
	if e := b.Events[0]; e.Type != TypeIdentify || e.Token != "AQEAAAAAAAAAAAAAAAA" || e.Email != "" {
		t.Fatalf("got %+v", e)
	}
	var again Batch
	if err := DecodeRecord(&again, AppendBatch(nil, b)); err != nil || again.Events[0].Token != "AQEAAAAAAAAAAAAAAAA" {
		t.Fatalf("record round trip: %v, %+v", err, again.Events)
	}
}

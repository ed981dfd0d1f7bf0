package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeDemoSegments runs `affinity serve --demo`: the demo site has the
// reference segments; a demo shopper's view and cart of a Nutrilon 0-1
// product put it in the abandoned cart and the mums' segment; a user's
// change of a reference segment survives a restart.
func TestServeDemoSegments(t *testing.T) {
	data := t.TempDir()
	p := startAffinity(t, "serve", "--data", data, "--site", "demo", "--demo")
	seg := p.api + "/v1/segments/demo"
	type definition struct {
		Name, Rule string
		Size       int
		Backfill   struct{ State string }
	}
	list := func() map[string]definition {
		t.Helper()
		code, body := apiDo(t, http.MethodGet, seg, "", nil)
		var page struct{ Segments []definition }
		if err := json.Unmarshal([]byte(body), &page); err != nil || code != http.StatusOK {
			t.Fatalf("GET %s: %d %v %s", seg, code, err, body)
		}
		defs := make(map[string]definition)
		for _, d := range page.Segments {
			defs[d.Name] = d
		}
		return defs
	}
	defs := list()
	for _, want := range demoSegments {
		if got, ok := defs[want.name]; !ok || got.Rule != want.rule {
			t.Errorf("demo segment %s: got %+v (defined: %t); want rule %s", want.name, got, ok, want.rule)
		}
	}
	if len(defs) != len(demoSegments) {
		t.Errorf("demo site has %d segments; want the %d reference ones", len(defs), len(demoSegments))
	}

	// A shopper of the demo shop, as its shop.js sends: a view and a cart of
	// an infant milk.
	v, now := uuidString(), time.Now().UnixMilli()
	const product = `{"id":"nutrilon-1","name":"Nutrilon Premium 1 infant milk 800 g","brand":"Nutrilon","category":"baby/food/formula","age":"0-1","price":24.99}`
	postBatch(t, p.collector, []byte(fmt.Sprintf(`{"site":"demo","v":%q,"events":[`+
		`{"id":%q,"t":"view","ts":%d,"product":%s},{"id":%q,"t":"cart","ts":%d,"product":%s,"qty":1}]}`,
		v, uuidString(), now-1000, product, uuidString(), now, product)))
	var in []string
	waitUntil(t, "the shopper in the abandoned cart", func() bool {
		code, body := apiDo(t, http.MethodGet, p.api+"/v1/visitors/demo/"+v+"/segments", "", nil)
		var page struct{ Segments []struct{ Name string } }
		if code == http.StatusNotFound {
			return false
		}
		if err := json.Unmarshal([]byte(body), &page); err != nil || code != http.StatusOK {
			t.Fatalf("visitor segments: %d %v %s", code, err, body)
		}
		in = in[:0]
		for _, s := range page.Segments {
			in = append(in, s.Name)
		}
		return slices.Contains(in, "abandoned-cart-24h")
	})
	if !slices.Contains(in, "mums-0-3-nutrilon-merries-philips") {
		t.Errorf("shopper's segments %q; want the mums' one too", in)
	}
	if got := list()["abandoned-cart-24h"].Size; got != 1 {
		t.Errorf("abandoned-cart-24h size %d; want 1", got)
	}
	code, body := apiDo(t, http.MethodGet, seg+"/abandoned-cart-24h/members?format=ndjson", "", nil)
	if code != http.StatusOK || !strings.Contains(body, `"visitor":"`+v+`"`) {
		t.Errorf("abandoned-cart-24h members: %d %s; want %s", code, body, v)
	}

	// A user's own abandoned cart (48 h) is kept across a restart; a deleted
	// reference segment comes back.
	const mine = `since(cart) <= 48h and since(purchase) > since(cart)`
	if code, body := apiDo(t, http.MethodPut, seg+"/abandoned-cart-24h", "text/plain", []byte(mine)); code != http.StatusOK {
		t.Fatalf("PUT abandoned-cart-24h: %d %s", code, body)
	}
	if code, body := apiDo(t, http.MethodDelete, seg+"/rfm-champions", "", nil); code != http.StatusOK && code != http.StatusNoContent {
		t.Fatalf("DELETE rfm-champions: %d %s", code, body)
	}
	p.stop(t, syscall.SIGTERM)
	p = startAffinity(t, "serve", "--data", data, "--site", "demo", "--demo")
	seg = p.api + "/v1/segments/demo"
	defs = list()
	if got := defs["abandoned-cart-24h"].Rule; got != mine {
		t.Errorf("after a restart, abandoned-cart-24h is %s; want the user's %s", got, mine)
	}
	if _, ok := defs["rfm-champions"]; !ok || len(defs) != len(demoSegments) {
		t.Errorf("after a restart: %d segments, rfm-champions defined: %t; want all %d", len(defs), ok, len(demoSegments))
	}
}

package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestServePeople runs `affinity serve` (with --retention, which must not
// touch active visitors): a phone and a laptop identified with one email,
// a till with the customer id the laptop also gave, are one person with
// all three devices' events; DELETE erases the person from every read.
func TestServePeople(t *testing.T) {
	p := startAffinity(t, "serve", "--data", t.TempDir(), "--site", "demo", "--retention", "400d")
	const site = "demo"
	now := time.Now().UnixMilli()
	phone, laptop, till := uuidString(), uuidString(), uuidString()
	send := func(visitor, events string) {
		postBatch(t, p.collector, []byte(fmt.Sprintf(`{"site":%q,"v":%q,"events":[%s]}`, site, visitor, events)))
	}
	view := func(brand string) string {
		return fmt.Sprintf(`{"id":%q,"t":"view","ts":%d,"product":{"id":"p-%s","brand":%q}}`, uuidString(), now-1000, brand, brand)
	}
	send(phone, view("Lego")+","+fmt.Sprintf(`{"id":%q,"t":"identify","ts":%d,"email":"Ann@Example.com"}`, uuidString(), now-1000))
	send(laptop, view("Duplo")+","+fmt.Sprintf(`{"id":%q,"t":"identify","ts":%d,"email":"ann@example.com","customer_id":"C-7"}`, uuidString(), now-1000))
	send(till, view("Lego")+","+fmt.Sprintf(`{"id":%q,"t":"identify","ts":%d,"customer_id":"C-7"}`, uuidString(), now-1000))

	var person struct {
		Visitors  []string
		Truncated bool
		Events    map[string]struct{ Count int }
		Interests map[string][]struct {
			Value string
			Score float64
		}
	}
	waitUntil(t, "the person of three devices", func() bool {
		code, body := apiDo(t, http.MethodGet, p.api+"/v1/people/"+site+"/C-7", "", nil)
		if code == http.StatusNotFound {
			return false
		}
		if code != http.StatusOK {
			t.Fatalf("GET person: %d %s", code, body)
		}
		if err := json.Unmarshal([]byte(body), &person); err != nil {
			t.Fatalf("person %s: %s", body, err)
		}
		return len(person.Visitors) == 3
	})
	if person.Events["view"].Count != 3 || person.Truncated || len(person.Interests["brand"]) != 2 ||
		person.Interests["brand"][0].Value != "Lego" || person.Interests["brand"][0].Score < 1.99 {
		t.Fatalf("person: %+v; want 3 views, Lego (two devices, score ≈ 2) above Duplo", person)
	}

	code, body := apiDo(t, http.MethodDelete, p.api+"/v1/people/"+site+"/ann@example.com", "", nil)
	if code != http.StatusOK || !strings.Contains(body, `"visitors_deleted":3`) {
		t.Fatalf("DELETE person: %d %s; want 200 with 3 visitors deleted", code, body)
	}
	for _, path := range []string{"/v1/people/" + site + "/C-7", "/v1/people/" + site + "/ann@example.com",
		"/v1/visitors/" + site + "/" + phone, "/v1/visitors/" + site + "/" + till} {
		if code, body := apiDo(t, http.MethodGet, p.api+path, "", nil); code != http.StatusNotFound {
			t.Errorf("GET %s after erasure: %d %s; want 404", path, code, body)
		}
	}
}

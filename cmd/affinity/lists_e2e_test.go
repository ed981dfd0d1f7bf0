package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestServeLists runs `affinity serve`, uploads a static list, defines a
// segment reading it with in_list, posts events and finds the listed
// visitor in the export; a refused upload leaves it there, a replacement
// without its email takes it out.
func TestServeLists(t *testing.T) {
	p := startAffinity(t, "serve", "--data", t.TempDir(), "--site", "demo")
	const site = "demo"
	list := p.api + "/v1/lists/" + site + "/crm"
	if code, body := apiDo(t, http.MethodPut, list, "text/csv", []byte("email,name\nAnn@Example.com,Ann\n")); code != http.StatusCreated || !strings.Contains(body, `"emails":1`) {
		t.Fatalf("PUT list: %d %s", code, body)
	}
	seg := p.api + "/v1/segments/" + site + "/crm-viewers"
	if code, body := apiDo(t, http.MethodPut, seg, "text/plain", []byte(`in_list("crm") and count(view) >= 1`)); code != http.StatusCreated {
		t.Fatalf("PUT segment: %d %s", code, body)
	}
	now := time.Now().UnixMilli()
	for _, email := range []string{"ann@example.com", "bob@example.com"} {
		postBatch(t, p.collector, []byte(fmt.Sprintf(`{"site":%q,"v":%q,"events":[`+
			`{"id":%q,"t":"view","ts":%d,"product":{"id":"n1","brand":"Nutrilon"}},`+
			`{"id":%q,"t":"identify","ts":%d,"email":%q}]}`,
			site, uuidString(), uuidString(), now, uuidString(), now, email)))
	}
	members := func() string {
		code, body := apiDo(t, http.MethodGet, seg+"/members?format=csv&facts=false", "", nil)
		if code != http.StatusOK {
			t.Fatalf("members: %d %s", code, body)
		}
		return body
	}
	waitUntil(t, "ann in the export", func() bool { return strings.Contains(members(), "ann@example.com") })
	if got := members(); strings.Contains(got, "bob@example.com") {
		t.Fatalf("members: got %q; bob is not in the list", got)
	}
	if code, body := apiDo(t, http.MethodPut, list, "text/csv", []byte("email\nbob@example.com\nbob@\n")); code != http.StatusBadRequest ||
		!strings.Contains(body, `line 3: invalid email "bob@"`) {
		t.Fatalf("PUT of a bad row: %d %s; want 400 naming line 3", code, body)
	}
	if got := members(); !strings.Contains(got, "ann@example.com") || strings.Contains(got, "bob@example.com") {
		t.Fatalf("members after a refused upload: got %q; want ann only", got)
	}
	if code, body := apiDo(t, http.MethodPut, list, "application/x-ndjson", []byte(`{"email":"bob@example.com"}`)); code != http.StatusOK {
		t.Fatalf("replace list: %d %s", code, body)
	}
	waitUntil(t, "bob instead of ann", func() bool {
		got := members()
		return strings.Contains(got, "bob@example.com") && !strings.Contains(got, "ann@example.com")
	})
	if code, body := apiDo(t, http.MethodGet, list+"?format=csv", "", nil); code != http.StatusOK || body != "email,customer_id\nbob@example.com,\n" {
		t.Fatalf("GET list as CSV: %d %q", code, body)
	}
}

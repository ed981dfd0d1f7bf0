package query_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/affinityhq/affinity/profile/profiletest"
)

// putList uploads a list over the API and waits for its re-evaluation.
func (e *segEnv) putList(t testing.TB, name, contentType, body string) (int, string) {
	t.Helper()
	code, resp := e.Do(t, http.MethodPut, "/v1/lists/"+site+"/"+name, contentType, []byte(body), true)
	if bf := e.Segments.ListChange(site, name); bf != nil {
		bf.Wait()
	}
	return code, resp
}

func TestListsAPI(t *testing.T) {
	e := newSegEnv(t)
	f := func(method, path, contentType, body string, code int, want string) {
		t.Helper()
		gotCode, got := e.Do(t, method, path, contentType, []byte(body), true)
		if gotCode != code || !strings.Contains(got, want) {
			t.Fatalf("%s %s: got %d %q; want %d containing %q", method, path, gotCode, got, code, want)
		}
	}
	f("GET", "/v1/lists/shop", "", "", 200, `{"site":"shop","lists":[]}`)
	f("PUT", "/v1/lists/shop/crm", "text/csv", "name,email,customer_id\nAnn,Ann@X.io,\nBob,,b-1\nCyd,cyd@x.io,c-1\n", 201,
		`"name":"crm","emails":2,"customer_ids":2,"rows":3,"generation":1,`)
	// The put answers before the list's re-evaluation has ended.
	e.Segments.ListChange("shop", "crm").Wait()
	f("GET", "/v1/lists/shop/crm", "", "", 200, `"reevaluation":{"state":"done"`)
	f("GET", "/v1/lists/shop/crm?format=csv", "", "", 200, "email,customer_id\nann@x.io,\ncyd@x.io,\n,b-1\n,c-1\n")
	f("GET", "/v1/lists/shop/crm?format=ndjson", "", "", 200, `{"email":"ann@x.io"}`+"\n"+`{"email":"cyd@x.io"}`+"\n"+`{"customer_id":"b-1"}`+"\n"+`{"customer_id":"c-1"}`+"\n")
	f("GET", "/v1/lists/shop/crm?format=xml", "", "", 400, `invalid format="xml": want csv or ndjson`)
	// Bad rows: 400 naming the line, and the list as it was.
	f("PUT", "/v1/lists/shop/crm", "text/csv", "email\nd@x.io\nnope\n", 400, `line 3: invalid email "nope": want one @ between a local part and a domain`)
	f("PUT", "/v1/lists/shop/crm", "application/x-ndjson", `{"email":"d@x.io"}`+"\n\n"+`{"email":"e@x.io"}`, 400, `line 2: invalid row: empty`)
	f("PUT", "/v1/lists/shop/crm", "application/x-ndjson", `{"phone":"1"}`, 400, `line 1: invalid row: neither an email nor a customer_id`)
	f("GET", "/v1/lists/shop/crm", "", "", 200, `"emails":2,"customer_ids":2,"rows":3,"generation":1,`)
	f("PUT", "/v1/lists/shop/crm", "text/plain", "email\n", 415, `unsupported Content-Type "text/plain"`)
	f("PUT", "/v1/lists/shop/a%20b", "text/csv", "email\n", 400, `invalid list name "a b"`)
	f("POST", "/v1/lists/shop/crm", "text/csv", "email\n", 405, "allowed: GET, HEAD, PUT, DELETE")
	f("GET", "/v1/lists/shop/crm/x", "", "", 404, "")
	f("GET", "/v1/lists/shop/none", "", "", 404, `no list "none" of site "shop"`)
	// Replace (200), with gzip.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(`{"email":"zoe@x.io"}` + "\n"))
	_ = zw.Close()
	req, _ := http.NewRequest(http.MethodPut, e.URL+"/v1/lists/shop/crm", &gz)
	req.Header.Set("Authorization", "Bearer "+profiletest.Token)
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"emails":1,"customer_ids":0,"rows":1,"generation":2,`) {
		t.Fatalf("gzip PUT: got %d %s", resp.StatusCode, body)
	}
	e.Segments.ListChange(site, "crm").Wait()
	f("GET", "/v1/lists/shop", "", "", 200, `"lists":[{"site":"shop","name":"crm","emails":1,`)
	f("DELETE", "/v1/lists/shop/crm", "", "", 204, "")
	f("DELETE", "/v1/lists/shop/crm", "", "", 404, `no list "crm" of site "shop"`)
	f("GET", "/v1/lists/shop/crm", "", "", 404, "")
	if code, _ := e.Do(t, "GET", "/v1/lists/shop", "", nil, false); code != 401 {
		t.Fatalf("GET without the token: got %d; want 401", code)
	}
}

// A segment with in_list over the API: the list's replacement moves its
// members at once.
func TestListsInSegments(t *testing.T) {
	e := newSegEnv(t)
	v1, v2 := profiletest.Visitor(1), profiletest.Visitor(2)
	e.Send(t,
		profiletest.Batch(site, v1, profiletest.Identify(t0, "ann@x.io"), profiletest.View(t0, nutrilon)),
		profiletest.Batch(site, v2, profiletest.Identify(t0, "bob@x.io"), profiletest.View(t0, lego)),
	)
	if code, body := e.putSegment(t, "crm", `in_list("crm") and count(view) >= 1`); code != 201 {
		t.Fatalf("PUT segment: got %d %s", code, body)
	}
	members := func() string {
		_, body := e.Get(t, "/v1/segments/"+site+"/crm/members?format=csv&facts=false")
		return body
	}
	if got := members(); strings.Contains(got, "@") {
		t.Fatalf("members before the list: got %q; want none", got)
	}
	if code, body := e.putList(t, "crm", "text/csv", "email\nANN@x.io\n"); code != 201 {
		t.Fatalf("PUT list: got %d %s", code, body)
	}
	if got := members(); !strings.Contains(got, "ann@x.io") || strings.Contains(got, "bob@x.io") {
		t.Fatalf("members with the list: got %q; want ann only", got)
	}
	if code, body := e.putList(t, "crm", "text/csv", "email\nbob@x.io\n"); code != 200 {
		t.Fatalf("PUT list: got %d %s", code, body)
	}
	if got := members(); strings.Contains(got, "ann@x.io") || !strings.Contains(got, "bob@x.io") {
		t.Fatalf("members after the replacement: got %q; want bob only", got)
	}
}

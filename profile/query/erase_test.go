package query_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/tracker/event"
)

// receiver is a webhook endpoint on a real loopback listener: it answers
// 503 until accepting is set, and keeps every body it was sent.
type receiver struct {
	accepting atomic.Bool
	mu        sync.Mutex
	failed    []string // bodies answered 503
	accepted  []string // bodies answered 200
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if !rc.accepting.Load() {
		rc.failed = append(rc.failed, string(body))
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	rc.accepted = append(rc.accepted, string(body))
}

func (rc *receiver) bodies(accepted bool) string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if accepted {
		return strings.Join(rc.accepted, "\n")
	}
	return strings.Join(rc.failed, "\n")
}

// surfaces returns every answer of the API that could name a person: the
// visitor and person reads, an interest list, the members exports and all
// pages of the change feed. A 404 (it repeats the id asked for) is kept
// as the status only.
func surfaces(t *testing.T, e *env, visitors []event.UUID, ids ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	get := func(path string) {
		code, body := e.Get(t, path)
		if code == http.StatusNotFound {
			body = "404"
		}
		out[path] = body
	}
	for _, v := range visitors {
		get("/v1/visitors/" + site + "/" + v.String())
		// The visitor's segments: its id is the one asked for, echoed.
		path := "/v1/visitors/" + site + "/" + v.String() + "/segments"
		get(path)
		out[path] = strings.Replace(out[path], `{"visitor":"`+v.String()+`"`, `{"visitor":(asked)`, 1)
	}
	for _, id := range ids {
		get("/v1/people/" + site + "/" + id)
	}
	get("/v1/interests/" + site + "/brand/lego?min=0.001&at=" + rfc3339(t0+10*day))
	get("/v1/segments/" + site + "/viewers/members")
	get("/v1/segments/" + site + "/viewers/members?format=csv")
	after := ""
	for page := 0; ; page++ {
		path := "/v1/segments/" + site + "/viewers/changes?limit=2&after=" + after
		code, body := e.Get(t, path)
		var p struct {
			Changes []json.RawMessage
			Cursor  string
		}
		if err := json.Unmarshal([]byte(body), &p); err != nil || code != 200 {
			t.Fatalf("changes: %d %s %v", code, body, err)
		}
		out[path] = body
		if len(p.Changes) == 0 || page > 100 {
			break
		}
		after = p.Cursor
	}
	return out
}

func mentions(t *testing.T, answers map[string]string, what string) []string {
	t.Helper()
	var where []string
	for path, body := range answers {
		if strings.Contains(body, what) {
			where = append(where, path)
		}
	}
	return where
}

// TestErasePerson: DELETE /v1/people forgets every linked visitor, and no
// answer, feed page, export or webhook delivery names the person after it.
func TestErasePerson(t *testing.T) {
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	e := &env{profiletest.Open(t, profiletest.Options{Serve: true, Membership: func(o *membership.Options) {
		o.WebhookMinBackoff, o.WebhookMaxBackoff = 10*time.Millisecond, 20*time.Millisecond
	}})}
	e.Clock.Set(t0)
	if code, body := e.putSegment(t, "viewers", `count(view) >= 1`); code != 201 {
		t.Fatalf("PUT segment: %d %s", code, body)
	}
	if code, body := e.Do(t, http.MethodPut, "/v1/segments/"+site+"/viewers/webhook", "application/json",
		[]byte(`{"url":"`+srv.URL+`/hook","secret":"k"}`), true); code != 200 {
		t.Fatalf("PUT webhook: %d %s", code, body)
	}
	vs := visitorsOnPartitions(e, site, 3)
	evs := personEvents()
	for i, v := range vs {
		e.Append(t, profiletest.Batch(site, v, evs[i]...))
	}
	bob := profiletest.Visitor(2)
	e.Append(t, profiletest.Batch(site, bob, profiletest.View(t0, lego), profiletest.Identify(t0, "bob@example.com")))
	e.Wait(t)
	if _, err := e.Segments.Sequence(context.Background()); err != nil {
		t.Fatal(err)
	}
	names := []string{"ann@example.com", "c9"}
	for _, v := range vs {
		names = append(names, v.String())
	}
	// Before: each surface names the person (the webhook in its failed
	// deliveries, pending).
	before := surfaces(t, e, vs, "ann@example.com", "c9")
	for _, path := range []string{
		"/v1/people/" + site + "/c9",
		"/v1/interests/" + site + "/brand/lego?min=0.001&at=" + rfc3339(t0+10*day),
		"/v1/segments/" + site + "/viewers/members",
		"/v1/segments/" + site + "/viewers/members?format=csv",
	} {
		if !strings.Contains(before[path], "ann@example.com") || !strings.Contains(before[path], vs[0].String()) {
			t.Fatalf("before erasure, %s does not name the person:\n%s", path, before[path])
		}
	}
	if where := mentions(t, before, `"email":"ann@example.com"`); len(where) < 3 {
		t.Fatalf("before erasure the feed and reads name the email in %v only", where)
	}
	profiletest.WaitUntil(t, "a failed delivery naming the person", func() bool { return strings.Contains(rc.bodies(false), "ann@example.com") })

	code, body := e.Do(t, http.MethodDelete, "/v1/people/"+site+"/ANN@example.com", "", nil, true)
	if code != 200 || !strings.Contains(body, `"visitors_deleted":3`) || !strings.Contains(body, `"changes_scrubbed":3`) {
		t.Fatalf("DELETE person: %d %s; want 200, 3 visitors deleted, 3 records scrubbed", code, body)
	}
	rc.accepting.Store(true)
	profiletest.WaitUntil(t, "the stranger's records delivered", func() bool { return strings.Contains(rc.bodies(true), bob.String()) })

	after := surfaces(t, e, vs, "ann@example.com", "c9")
	after["webhook deliveries"] = rc.bodies(true)
	for _, name := range names {
		if where := mentions(t, after, name); len(where) > 0 {
			t.Errorf("after erasure %q is still in %v", name, where)
		}
	}
	for _, v := range vs {
		if got := after["/v1/visitors/"+site+"/"+v.String()]; got != "404" {
			t.Errorf("GET erased visitor %s: %s; want 404", v, got)
		}
	}
	for _, id := range []string{"ann@example.com", "c9"} {
		if got := after["/v1/people/"+site+"/"+id]; got != "404" {
			t.Errorf("GET erased person %s: %s; want 404", id, got)
		}
	}
	if where := mentions(t, after, bob.String()); len(where) < 3 {
		t.Fatalf("the stranger is in %v only; want its reads, exports and feed untouched", where)
	}
	if code, body := e.Do(t, http.MethodDelete, "/v1/people/"+site+"/c9", "", nil, true); code != 404 {
		t.Fatalf("DELETE erased person again: %d %s; want 404", code, body)
	}

	// DELETE /v1/visitors scrubs the same way.
	if code, body := e.Do(t, http.MethodDelete, "/v1/visitors/"+site+"/"+bob.String(), "", nil, true); code != 204 {
		t.Fatalf("DELETE visitor: %d %s; want 204", code, body)
	}
	after = surfaces(t, e, []event.UUID{bob}, "bob@example.com")
	for _, name := range []string{bob.String(), "bob@example.com"} {
		if where := mentions(t, after, name); len(where) > 0 {
			t.Errorf("after DELETE of the visitor %q is still in %v", name, where)
		}
	}
}

// TestErasePersonByCustomer: a person with no email is keyed by its
// customer id, and a per-person segment's records name it by that key's
// person id alone. DELETE /v1/people of the customer id scrubs them, and
// so does a DELETE of a person whose visitors are already gone (finishing
// an erasure a crash interrupted); another person's records stay.
func TestErasePersonByCustomer(t *testing.T) {
	e := &env{profiletest.Open(t, profiletest.Options{Serve: true})}
	e.Clock.Set(t0)
	if code, body := e.Do(t, http.MethodPut, "/v1/segments/"+site+"/fans?per=person", "text/plain", []byte(`count(view) >= 1`), true); code != 201 {
		t.Fatalf("PUT segment: %d %s", code, body)
	}
	vs := visitorsOnPartitions(e, site, 2)
	e.Append(t,
		profiletest.Batch(site, vs[0], profiletest.View(t0, lego), profiletest.IdentifyCustomer(t0, "c7", "")),
		profiletest.Batch(site, vs[1], profiletest.View(t0, lego), profiletest.IdentifyCustomer(t0, "c8", "")),
	)
	e.Wait(t)
	c7, c8 := membership.PersonID(site, "c:c7").String(), membership.PersonID(site, "c:c8").String()
	changes := func() string {
		t.Helper()
		if _, err := e.Segments.Sequence(context.Background()); err != nil {
			t.Fatal(err)
		}
		code, body := e.Get(t, "/v1/segments/"+site+"/fans/changes")
		if code != 200 {
			t.Fatalf("GET changes: %d %s", code, body)
		}
		return body
	}
	if body := changes(); !strings.Contains(body, c7) || !strings.Contains(body, c8) {
		t.Fatalf("changes before erasure name neither c7's person %s nor c8's %s:\n%s", c7, c8, body)
	}

	// The person's entry and the leave its last visitor's erasure made.
	code, body := e.Do(t, http.MethodDelete, "/v1/people/"+site+"/c7", "", nil, true)
	if code != 200 || !strings.Contains(body, `"visitors_deleted":1`) || !strings.Contains(body, `"changes_scrubbed":2`) {
		t.Fatalf("DELETE person c7: %d %s; want 200, 1 visitor deleted, 2 records scrubbed", code, body)
	}
	if body := changes(); strings.Contains(body, c7) || strings.Contains(body, `"c:c7"`) || !strings.Contains(body, c8) {
		t.Fatalf("changes after erasing c7 = %s; want none naming %s, c8's %s kept", body, c7, c8)
	}

	// An erasure interrupted after the visitors' deletes: DELETE of the
	// visitor scrubs the records naming it, not its person's.
	if code, body := e.Do(t, http.MethodDelete, "/v1/visitors/"+site+"/"+vs[1].String(), "", nil, true); code != 204 {
		t.Fatalf("DELETE visitor: %d %s; want 204", code, body)
	}
	if body := changes(); !strings.Contains(body, c8) {
		t.Fatalf("changes after the visitor's DELETE = %s; want c8's person %s still named", body, c8)
	}
	code, body = e.Do(t, http.MethodDelete, "/v1/people/"+site+"/c8", "", nil, true)
	if code != 200 || !strings.Contains(body, `"visitors_deleted":0`) || !strings.Contains(body, `"changes_scrubbed":2`) {
		t.Fatalf("DELETE person c8 without visitors: %d %s; want 200, 0 visitors deleted, 2 records scrubbed", code, body)
	}
	if body := changes(); strings.Contains(body, c8) || strings.Contains(body, `"c:c8"`) {
		t.Fatalf("changes after erasing c8 = %s; want none naming %s", body, c8)
	}
	if code, body := e.Do(t, http.MethodDelete, "/v1/people/"+site+"/c8", "", nil, true); code != 404 {
		t.Fatalf("DELETE erased person c8 again: %d %s; want 404", code, body)
	}
}

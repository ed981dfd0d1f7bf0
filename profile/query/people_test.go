package query_test

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/profile/query"
	"github.com/affinityhq/affinity/tracker/event"
)

// nearJSON reports where two decoded JSON values differ, numbers to 1e-9
// relative; "" when they agree.
func nearJSON(path string, a, b any) string {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return fmt.Sprintf("%s: %v; %v", path, a, b)
		}
		for k := range x {
			if d := nearJSON(path+"."+k, x[k], y[k]); d != "" {
				return d
			}
		}
		return ""
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return fmt.Sprintf("%s: %v; %v", path, a, b)
		}
		for i := range x {
			if d := nearJSON(fmt.Sprintf("%s[%d]", path, i), x[i], y[i]); d != "" {
				return d
			}
		}
		return ""
	case float64:
		y, ok := b.(float64)
		if !ok || math.Abs(x-y) > 1e-9*math.Max(math.Abs(x), math.Abs(y)) {
			return fmt.Sprintf("%s: %v; %v", path, a, b)
		}
		return ""
	}
	if !reflect.DeepEqual(a, b) {
		return fmt.Sprintf("%s: %v; %v", path, a, b)
	}
	return ""
}

// visitorsOnPartitions returns n visitors of site, each on a different
// log partition than the one before.
func visitorsOnPartitions(e *env, site string, n int) []event.UUID {
	var vs []event.UUID
	last := -1
	for i := 1; len(vs) < n; i++ {
		v := profiletest.Visitor(100 + i)
		if p := e.Log.Partition(event.AppendLogKey(nil, site, v)); p != last {
			vs, last = append(vs, v), p
		}
	}
	return vs
}

// personEvents are the events of a person on three devices: a and b share
// an email (cased differently), b and c a customer id.
func personEvents() [3][]event.Event {
	lego := event.Product{ID: "p1", Brand: "lego", Category: "toys/bricks", Price: 30, HasPrice: true}
	duplo := event.Product{ID: "p2", Brand: "duplo", Category: "toys/bricks", Age: "0-3"}
	cart := profiletest.Event(event.TypeCart, t0+3*day, &duplo)
	buy := profiletest.Event(event.TypePurchase, t0+5*day, &lego)
	return [3][]event.Event{
		{profiletest.View(t0, lego), profiletest.Identify(t0+day, " Ann@Example.com")},
		{profiletest.View(t0+2*day, duplo), profiletest.IdentifyCustomer(t0+2*day, "c9", "ann@example.com"), cart},
		{profiletest.IdentifyCustomer(t0+4*day, "c9", ""), buy, profiletest.View(t0+6*day, lego)},
	}
}

func getJSON(t *testing.T, e *env, path string) (int, map[string]any) {
	t.Helper()
	code, body := e.Get(t, path)
	var m map[string]any
	if code == http.StatusOK {
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Fatalf("GET %s: %s\n%s", path, err, body)
		}
	}
	return code, m
}

// TestPersonProfile: three visitors on different partitions, linked by an
// email and a customer id, are one person whose profile is that of one
// visitor with all their events.
func TestPersonProfile(t *testing.T) {
	e := newEnv(t, nil)
	vs := visitorsOnPartitions(e, site, 3)
	evs := personEvents()
	var all []event.Event
	for i, v := range vs {
		e.Append(t, profiletest.Batch(site, v, evs[i]...))
		all = append(all, evs[i]...)
	}
	// The reference: one visitor with every event, on another site.
	e.Append(t, profiletest.Batch("ref", profiletest.Visitor(1), all...))
	// A stranger with an email of its own is not part of the person.
	e.Append(t, profiletest.Batch(site, profiletest.Visitor(2), profiletest.Identify(t0, "bob@example.com")))
	e.Wait(t)

	at := "?at=" + rfc3339(t0+10*day)
	_, want := getJSON(t, e, "/v1/visitors/ref/"+profiletest.Visitor(1).String()+at)
	for _, id := range []string{"ann@example.com", "ANN@example.com", "c9"} {
		code, got := getJSON(t, e, "/v1/people/"+site+"/"+id+at)
		if code != http.StatusOK {
			t.Fatalf("GET person %s: %d; want 200", id, code)
		}
		var ids []string
		for _, v := range got["visitors"].([]any) {
			ids = append(ids, v.(string))
		}
		slices.Sort(ids)
		wantIDs := []string{vs[0].String(), vs[1].String(), vs[2].String()}
		slices.Sort(wantIDs)
		if !slices.Equal(ids, wantIDs) || got["truncated"] != false {
			t.Fatalf("person %s: visitors %v, truncated %v; want %v, false", id, ids, got["truncated"], wantIDs)
		}
		delete(got, "visitors")
		delete(got, "truncated")
		if d := nearJSON("person", got, want); d != "" {
			t.Fatalf("person %s (left) differs from one visitor with all the events (right): %s", id, d)
		}
	}

	f := func(path string, wantCode int, wantBody string) {
		t.Helper()
		code, body := e.Get(t, path)
		if code != wantCode || !strings.Contains(body, wantBody) {
			t.Fatalf("GET %s = %d %q; want %d containing %q", path, code, body, wantCode, wantBody)
		}
	}
	f("/v1/people/"+site+"/nobody@example.com", http.StatusNotFound, `no person with email "nobody@example.com" on site "shop"`)
	f("/v1/people/"+site+"/c10", http.StatusNotFound, `no person with customer id "c10"`)
	f("/v1/people/"+site+"/%20", http.StatusBadRequest, `invalid person id " "`)
	f("/v1/people/"+site+"/", http.StatusNotFound, "/v1/people/{site}/{email-or-customer-id}")
}

// TestPersonTruncated: past the bound a person is the first visitors
// found, and says so.
func TestPersonTruncated(t *testing.T) {
	e := &env{profiletest.Open(t, profiletest.Options{Serve: true, Query: func(o *query.Options) { o.MaxPersonVisitors = 2 }})}
	for i := range 3 {
		e.Append(t, profiletest.Batch(site, profiletest.Visitor(10+i), profiletest.Identify(t0, "shared@example.com")))
	}
	e.Wait(t)
	_, got := getJSON(t, e, "/v1/people/"+site+"/shared@example.com")
	if n := len(got["visitors"].([]any)); n != 2 || got["truncated"] != true {
		t.Fatalf("person over the bound: %d visitors, truncated %v; want 2, true", n, got["truncated"])
	}
}

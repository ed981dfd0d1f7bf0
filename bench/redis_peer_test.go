package bench

import (
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/tracker/event"
)

// parseRESP splits a buffer of RESP commands into their arguments.
func parseRESP(t *testing.T, buf []byte) [][]string {
	t.Helper()
	var cmds [][]string
	s := string(buf)
	next := func() string {
		i := strings.Index(s, "\r\n")
		if i < 0 {
			t.Fatalf("unterminated RESP line in %q", s)
		}
		line := s[:i]
		s = s[i+2:]
		return line
	}
	for s != "" {
		h := next()
		n, err := strconv.Atoi(strings.TrimPrefix(h, "*"))
		if err != nil || h[0] != '*' {
			t.Fatalf("bad array header %q", h)
		}
		var args []string
		for range n {
			l, err := strconv.Atoi(strings.TrimPrefix(next(), "$"))
			if err != nil {
				t.Fatal(err)
			}
			args = append(args, s[:l])
			s = s[l+2:]
		}
		cmds = append(cmds, args)
	}
	return cmds
}

// TestRedisApplier checks the peer's commands for each kind of event: the
// same dimensions and weights as the builder, in the landmark form.
func TestRedisApplier(t *testing.T) {
	const day = 24 * 3600 * 1000
	ts := profile.Landmark + 14*day // one half-life after the landmark: 2^1
	prod := event.Product{ID: "p1", Brand: "b", Category: "baby/food", Age: "0-1", Price: 12, HasPrice: true}
	key := "p:demo:aa000000000000000000000000000001"
	f := func(name string, e event.Event, want []string) {
		t.Helper()
		b := &event.Batch{Site: "demo", Visitor: event.UUID{0: 0xaa, 15: 1}, Events: []event.Event{e}}
		rc := &respConn{}
		a := newRedisApplier(profile.DefaultConfig())
		if n := a.batch(rc, b); n != 1 {
			t.Fatalf("%s: batch returned %d events; want 1", name, n)
		}
		var got []string
		for _, c := range parseRESP(t, rc.buf) {
			got = append(got, strings.Join(c, " "))
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: commands\n%s\nwant\n%s", name, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if rc.pending != len(want) {
			t.Errorf("%s: %d commands pending; want %d", name, rc.pending, len(want))
		}
	}
	g := func(w float64) string { return strconv.FormatFloat(w*math.Exp2(1), 'g', 17, 64) }
	f("view", event.Event{Type: event.TypeView, TS: ts, Product: prod, HasProduct: true}, []string{
		"HINCRBY " + key + ":n view 1",
		"ZINCRBY " + key + ":brand " + g(1) + " b",
		"ZINCRBY " + key + ":category " + g(1) + " baby/food",
		"ZINCRBY " + key + ":category " + g(1) + " baby",
		"ZINCRBY " + key + ":age " + g(1) + " 0-1",
		"ZINCRBY " + key + ":price " + g(1) + " 10-25",
		"ZINCRBY " + key + ":product " + g(1) + " p1",
	})
	f("uncart", event.Event{Type: event.TypeUncart, TS: ts, Product: prod, HasProduct: true}, []string{
		"HINCRBY " + key + ":n uncart 1",
		"ZINCRBY " + key + ":product " + g(-3) + " p1",
	})
	f("purchase", event.Event{Type: event.TypePurchase, TS: ts, HasOrder: true,
		Order: event.Order{ID: "o", Items: []event.Product{{ID: "p2", Brand: "c"}}}}, []string{
		"HINCRBY " + key + ":n purchase 1",
		"ZINCRBY " + key + ":brand " + g(5) + " c",
		"ZINCRBY " + key + ":product " + g(5) + " p2",
	})
	f("identify", event.Event{Type: event.TypeIdentify, TS: ts, Email: "a@b.c"}, []string{
		"HINCRBY " + key + ":n identify 1",
		"HSET " + key + ":n email a@b.c",
	})
	f("pageview", event.Event{Type: event.TypePageview, TS: ts, URL: "https://x/"}, []string{
		"HINCRBY " + key + ":n pageview 1",
	})
}

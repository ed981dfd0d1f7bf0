package campaign_test

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/affinityhq/affinity/profile/campaign"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/tracker"
	"github.com/affinityhq/affinity/tracker/event"
)

// startCollector serves the real collector on a loopback port, on e's
// log, checking tokens with e's campaign store, for sites (each may
// redirect clicks to https://<site>.example, and takes Segment calls
// with write key <site>-key).
func startCollector(t *testing.T, e *profiletest.Env, sites ...string) string {
	t.Helper()
	return startCollectorOn(t, e, e.Campaigns, sites...)
}

// startCollectorOn is startCollector checking tokens with eng.
func startCollectorOn(t *testing.T, e *profiletest.Env, eng tracker.Engagement, sites ...string) string {
	t.Helper()
	co := tracker.DefaultOptions()
	for _, s := range sites {
		co.Sites = append(co.Sites, tracker.Site{Key: s, RedirectOrigins: []string{"https://" + s + ".example"}, WriteKeys: []string{s + "-key"}})
	}
	co.Log, co.Engagement, co.Now = e.Log, eng, e.Clock.Now
	c, err := tracker.New(co)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Serve() }()
	t.Cleanup(func() { _ = c.Shutdown(context.Background()) })
	return "http://" + c.Addr()
}

var noFollow = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 30 * time.Second}

func get(t *testing.T, u string) (int, http.Header, string) {
	t.Helper()
	resp, err := noFollow.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

type tokenOf struct {
	tok string
	campaign.Cell
}

func tokens(t *testing.T, s *campaign.Store, c *campaign.Campaign) []tokenOf {
	t.Helper()
	var out []tokenOf
	if err := s.ScanRecipients(c, func(r *campaign.Recipient) bool {
		out = append(out, tokenOf{string(campaign.AppendToken(nil, c.ID, r.Number, &r.MAC)), r.Cell})
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEngagementThroughCollector drives opens and clicks — replayed,
// forged, of a site the collector does not serve, to a foreign origin —
// through the real collector and builder, and checks the report's
// counters against a count of what was sent.
func TestEngagementThroughCollector(t *testing.T) {
	e, s := openShop(t, 400, 0, 0)
	c := create(t, s, "shop", `{"name":"p","arms":[{"name":"a","segment":"mums","variants":["10%","20%"]}],"holdout":20,"window":"7d"}`)
	base := startCollector(t, e, "shop")
	toks := tokens(t, s, c)
	rnd := rand.New(rand.NewPCG(1, 2))
	want := map[campaign.Cell]*campaign.Counters{}
	var opened, clicked []string
	for _, tk := range toks {
		w := want[tk.Cell]
		if w == nil {
			w = &campaign.Counters{}
			want[tk.Cell] = w
		}
		opens, clicks := rnd.IntN(3), rnd.IntN(3) // 0, 1 or 2 each: replays count once
		for range opens {
			if code, h, body := get(t, base+"/e/o/"+tk.tok+".gif"); code != 200 || h.Get("Content-Type") != "image/gif" || h.Get("Cache-Control") != "no-store" || len(body) == 0 {
				t.Fatalf("open: %d %v %q", code, h, body)
			}
		}
		for range clicks {
			to := "https://shop.example/p/1?x=y"
			code, h, body := get(t, base+"/e/c/"+tk.tok+"?to="+url.QueryEscape(to))
			loc, _ := url.Parse(h.Get("Location"))
			if code != 302 || loc == nil || loc.Host != "shop.example" || loc.Path != "/p/1" || loc.Query().Get("x") != "y" || loc.Query().Get(tracker.ClickParam) != tk.tok {
				t.Fatalf("click: %d %v %q", code, h, body)
			}
		}
		if opens+clicks > 0 {
			opened = append(opened, tk.tok)
			w.Opened++ // a click without an open counts as opened
		}
		if clicks > 0 {
			clicked = append(clicked, tk.tok)
			w.Clicked++
		}
	}
	// Forged and altered tokens, and a redirect off the site's origins:
	// refused, nothing counted.
	tok := toks[0].tok
	swap := byte('A') // one character of the MAC changed
	if tok[len(tok)-2] == 'A' {
		swap = 'B'
	}
	altered := tok[:len(tok)-2] + string(swap) + tok[len(tok)-1:]
	for _, bad := range []string{altered, "AQEAAAAAAAAAAAAAAAA", "x", strings.Repeat("A", 40)} {
		if code, h, body := get(t, base+"/e/o/"+bad+".gif"); code != 404 || h.Get("Content-Type") != "image/gif" || len(body) == 0 {
			t.Errorf("open of forged token %q: %d %v", bad, code, h)
		}
		if code, _, body := get(t, base+"/e/c/"+bad+"?to="+url.QueryEscape("https://shop.example/")); code != 404 || !strings.Contains(body, "invalid token") {
			t.Errorf("click of forged token %q: %d %q", bad, code, body)
		}
	}
	for _, to := range []string{"https://evil.example/", "https://shop.example.evil.example/", "//evil.example/", "javascript:alert(1)", "", "http://shop.example/"} {
		if code, _, body := get(t, base+"/e/c/"+tok+"?to="+url.QueryEscape(to)); code != 400 || !strings.Contains(body, "no open redirect") {
			t.Errorf("click to %q: %d %q; want 400 no open redirect", to, code, body)
		}
	}
	if code, _, _ := get(t, base+"/e/o/"+tok); code != 404 {
		t.Errorf("open pixel without .gif: %d; want 404", code)
	}
	// A collector that does not serve site shop refuses its tokens.
	other := startCollector(t, e, "other")
	if code, _, _ := get(t, other+"/e/c/"+tok+"?to="+url.QueryEscape("https://other.example/")); code != 404 {
		t.Errorf("shop's token on a collector of site other: %d; want 404", code)
	}
	if code, _, _ := get(t, other+"/e/o/"+toks[1].tok+".gif"); code != 404 {
		t.Errorf("shop's open on a collector of site other: %d; want 404", code)
	}
	e.Wait(t)
	checkCounters(t, s, c, want)
	// Replaying opens and clicks in later batches counts nothing.
	for i := range 50 {
		get(t, base+"/e/o/"+opened[i]+".gif")
		get(t, base+"/e/c/"+clicked[i]+"?to="+url.QueryEscape("https://shop.example/"))
	}
	e.Wait(t)
	checkCounters(t, s, c, want)

	// The landing page's snippet sends the click's aff_t in an identify:
	// the browser's new visitor is linked to the recipient's email; a
	// forged token links nothing.
	_, r, err := s.Resolve([]byte(toks[5].tok))
	if err != nil {
		t.Fatal(err)
	}
	land := func(v, tok string) {
		t.Helper()
		body := `{"site":"shop","v":"` + v + `","events":[{"id":"` + v[:30] + `000001","t":"identify","ts":` + fmt.Sprint(t0) + `,"token":"` + tok + `"}]}`
		resp, err := http.Post(base+"/v1/events", "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 202 {
			t.Fatalf("identify with token: %d", resp.StatusCode)
		}
	}
	land("7a000000-0000-4000-8000-000000000001", toks[5].tok)
	land("7a000000-0000-4000-8000-000000000002", altered)
	e.Wait(t)
	v1, _ := event.ParseUUID([]byte("7a000000-0000-4000-8000-000000000001"))
	v2, _ := event.ParseUUID([]byte("7a000000-0000-4000-8000-000000000002"))
	if p := e.Profile(t, "shop", v1); p == nil || p.Email != string(r.Email) {
		t.Errorf("landed visitor: profile %+v; want email %s", p, r.Email)
	}
	if p := e.Profile(t, "shop", v2); p == nil || p.Email != "" {
		t.Errorf("visitor landed with a forged token: profile %+v; want no email", p)
	}
}

// checkCounters checks that the counters of campaign c, and its report's
// sums over arms and groups, are want (revenue to 1e-6: sums of cents in
// another order).
func checkCounters(t *testing.T, s *campaign.Store, c *campaign.Campaign, want map[campaign.Cell]*campaign.Counters) {
	t.Helper()
	got, err := s.Counters(c)
	if err != nil {
		t.Fatal(err)
	}
	same := func(g, w *campaign.Counters) bool {
		x, y := *g, *w
		x.Revenue, y.Revenue = 0, 0
		return x == y && math.Abs(g.Revenue-w.Revenue) < 1e-6
	}
	for cell, w := range want {
		if g := got[cell]; !same(&g, w) {
			t.Errorf("cell %+v: got %+v; want %+v", cell, g, *w)
		}
	}
	for cell, g := range got {
		if want[cell] == nil {
			t.Errorf("cell %+v counted %+v; want none", cell, g)
		}
	}
	r, err := s.Report(c, c.Sent)
	if err != nil {
		t.Fatal(err)
	}
	var sum, all campaign.Counters
	for _, w := range want {
		all.Add(w)
	}
	for i := range r.Arms {
		sum.Add(&r.Arms[i].Treated.Counters)
		sum.Add(&r.Arms[i].Control.Counters)
	}
	if !same(&sum, &all) {
		t.Errorf("report: %+v summed over arms and groups; want %+v", sum, all)
	}
}

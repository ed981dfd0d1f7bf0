package tracker

import (
	"net/http"
	"strings"
	"testing"
)

func TestParseRedirectOrigins(t *testing.T) {
	for _, tc := range []struct {
		specs []string
		want  []string // of site "shop"
		err   string
	}{
		{specs: []string{"shop=https://Shop.example/", "shop=http://127.0.0.1:8080"}, want: []string{"https://shop.example", "http://127.0.0.1:8080"}},
		{specs: []string{"shop=https://a.example,shop=https://b.example"}, want: []string{"https://a.example", "https://b.example"}},
		{specs: nil},
		{specs: []string{"https://shop.example"}, err: `cannot parse --redirect-origin "https://shop.example": want SITE=ORIGIN`},
		{specs: []string{"other=https://shop.example"}, err: `site "other": no such site`},
		{specs: []string{"shop=ftp://shop.example"}, err: `origin "ftp://shop.example" must be scheme://host[:port]`},
		{specs: []string{"shop=https://shop.example/path"}, err: `origin "https://shop.example/path" must be`},
		{specs: []string{"shop=shop.example"}, err: `origin "shop.example" must be`},
		{specs: []string{"shop=https://u@shop.example"}, err: `origin "https://u@shop.example" must be`},
	} {
		sites := []Site{{Key: "shop"}}
		err := ParseRedirectOrigins(tc.specs, sites)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: got error %v; want one containing %q", tc.specs, err, tc.err)
			}
			continue
		}
		if err != nil || strings.Join(sites[0].RedirectOrigins, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%q: got %q, %v; want %q", tc.specs, sites[0].RedirectOrigins, err, tc.want)
		}
	}
}

// TestEngagementWithoutState: a collector without token checking (collect
// on Kafka) refuses the engagement endpoints with a reason, and wrong
// methods and paths are refused before any token is read.
func TestEngagementWithoutState(t *testing.T) {
	tc := startCollector(t, nil)
	for _, r := range []struct {
		req    request
		status int
		reason string
	}{
		{request{method: http.MethodGet, path: "/e/o/AQEAAAAAAAAAAAAAAAA.gif"}, 503, reasonEngagementOff},
		{request{method: http.MethodGet, path: "/e/c/AQEAAAAAAAAAAAAAAAA?to=https://shop.example/"}, 503, reasonEngagementOff},
		{request{method: http.MethodPost, path: "/e/o/AQEAAAAAAAAAAAAAAAA.gif"}, 405, reasonBadMethod},
		{request{method: http.MethodGet, path: "/e/o/AQEAAAAAAAAAAAAAAAA"}, 404, reasonNotFound},
	} {
		got := tc.do(t, r.req)
		if got.status != r.status || got.header.Get("X-Affinity-Reason") != r.reason {
			t.Errorf("%s %s: got %d %q %q; want %d %s", r.req.method, r.req.path, got.status, got.header.Get("X-Affinity-Reason"), got.body, r.status, r.reason)
		}
	}
	if got := tc.do(t, request{method: http.MethodGet, path: "/e/c/x"}); !strings.Contains(got.body, "no state and reads no definitions topic") {
		t.Errorf("body %q: want it to say why", got.body)
	}
}

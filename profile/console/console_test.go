package console_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/profile/console"
)

// The console's files are served without the token from the binary,
// with their types; everything else on the listener still needs it.
func TestServe(t *testing.T) {
	s, err := api.New(api.Options{Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	console.Register(s)
	s.Handle("/v1/", func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("data") })
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		<-done
	})
	base := "http://" + s.Addr()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		method, path string
		code         int
		ctype, want  string
	}{
		{"GET", "/console/", 200, "text/html", `<form id="login"`},
		{"GET", "/console/index.html", 200, "text/html", `<script type="module" src="app.js">`},
		{"GET", "/console/index.html", 200, "text/html", `<a href="#campaigns">Campaigns</a>`},
		{"GET", "/console/app.js", 200, "javascript", "Authorization: 'Bearer '"},
		{"GET", "/console/style.css", 200, "text/css", "@media (max-width: 600px)"},
		{"HEAD", "/console/app.js", 200, "javascript", ""},
		{"GET", "/console", 301, "", ""},
		{"GET", "/console/nope.js", 404, "", "no such path /console/nope.js"},
		{"GET", "/console/../v1/x", 401, "", "bearer token"}, // cleaned to /v1/x by the server
		{"POST", "/console/", 405, "", "allowed: GET, HEAD"},
		{"GET", "/v1/x", 401, "", "missing or wrong bearer token"},
	} {
		req, _ := http.NewRequest(tc.method, base+tc.path, nil)
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(resp.Header.Get("Content-Type"), tc.ctype) || !strings.Contains(string(body), tc.want) {
			t.Errorf("%s %s: got %d %q %.80q; want %d %q containing %q", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), body, tc.code, tc.ctype, tc.want)
		}
		if tc.code == 200 && !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("%s %s: no Content-Security-Policy", tc.method, tc.path)
		}
	}
}

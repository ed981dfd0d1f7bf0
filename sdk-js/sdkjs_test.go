package sdkjs

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// serve runs h on a real fasthttp server on 127.0.0.1:0 and returns its
// base URL.
func serve(t *testing.T, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h, NoDefaultContentType: true}
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { _ = srv.Shutdown() })
	return "http://" + ln.Addr().String()
}

type reply struct {
	status int
	header map[string]string
	body   []byte
}

func get(t *testing.T, method, url string, header ...string) reply {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI(url)
	req.SetConnectionClose() // so that the server's Shutdown does not wait for it
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	c := &fasthttp.Client{}
	if method == fasthttp.MethodHead {
		resp.SkipBody = true
	}
	if err := c.DoTimeout(req, resp, 5*time.Second); err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	r := reply{status: resp.StatusCode(), header: map[string]string{}, body: append([]byte(nil), resp.Body()...)}
	for _, k := range resp.Header.PeekKeys() {
		r.header[string(k)] = string(resp.Header.PeekBytes(k))
	}
	return r
}

func TestBuild(t *testing.T) {
	s, err := Build()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(s.Code, []byte("(()=>{")) || !bytes.HasSuffix(s.Code, []byte("})();\n")) {
		t.Fatalf("the build is not one IIFE: %.40q … %q", s.Code, s.Code[len(s.Code)-10:])
	}
	for _, bad := range []string{"import ", "export ", "core.js", "\n\n"} {
		if bytes.Contains(s.Code, []byte(bad)) {
			t.Errorf("the build contains %q: not bundled and minified", bad)
		}
	}
	zr, err := gzip.NewReader(bytes.NewReader(s.Gzip))
	if err != nil {
		t.Fatal(err)
	}
	if plain, err := io.ReadAll(zr); err != nil || !bytes.Equal(plain, s.Code) {
		t.Fatalf("Gzip does not decompress to Code: %v", err)
	}
	if len(s.Gzip) > MaxGzipBytes {
		t.Fatalf("got %d bytes min+gzip; want ≤ %d", len(s.Gzip), MaxGzipBytes)
	}
	t.Logf("sdk.js: %d bytes minified, %d bytes min+gzip (Go gzip level 9)", len(s.Code), len(s.Gzip))
	s2, err := Build()
	if err != nil || s2.ETag != s.ETag {
		t.Fatalf("two builds differ: ETag %s then %s (%v)", s.ETag, s2.ETag, err)
	}
}

func TestScriptServe(t *testing.T) {
	s, err := Build()
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, s.Serve) + "/sdk.js"
	f := func(name, method string, header []string, wantStatus int, wantBody []byte, wantHeader map[string]string) {
		t.Helper()
		r := get(t, method, url, header...)
		if r.status != wantStatus {
			t.Fatalf("%s: got status %d; want %d", name, r.status, wantStatus)
		}
		if !bytes.Equal(r.body, wantBody) {
			t.Fatalf("%s: got body of %d bytes; want %d bytes", name, len(r.body), len(wantBody))
		}
		for k, v := range wantHeader {
			if r.header[k] != v {
				t.Fatalf("%s: got %s %q; want %q", name, k, r.header[k], v)
			}
		}
	}
	gzTag := strings.TrimSuffix(s.ETag, `"`) + `-gz"`
	plain := map[string]string{"Cache-Control": CacheControl, "Etag": s.ETag, "Content-Type": "text/javascript; charset=utf-8", "Content-Encoding": ""}
	f("plain", "GET", nil, 200, s.Code, plain)
	f("gzip", "GET", []string{"Accept-Encoding", "gzip, deflate, br"}, 200, s.Gzip,
		map[string]string{"Content-Encoding": "gzip", "Etag": gzTag, "Vary": "Accept-Encoding", "Cache-Control": CacheControl})
	f("head", "HEAD", nil, 200, nil, plain)
	f("revalidate", "GET", []string{"If-None-Match", s.ETag}, 304, nil, map[string]string{"Etag": s.ETag, "Cache-Control": CacheControl})
	f("revalidate gzip", "GET", []string{"If-None-Match", gzTag, "Accept-Encoding", "gzip"}, 304, nil, map[string]string{"Etag": gzTag, "Content-Encoding": ""})
	f("weak in a list", "GET", []string{"If-None-Match", `"old", W/` + s.ETag}, 304, nil, nil)
	f("star", "GET", []string{"If-None-Match", "*"}, 304, nil, nil)
	f("stale tag", "GET", []string{"If-None-Match", `"0123"`}, 200, s.Code, plain)
	f("post", "POST", nil, 405, []byte("method not allowed: use GET\n"), map[string]string{"Allow": "GET, HEAD"})
}

// source is a VisitorSource answering fixed bodies or errors.
type source struct {
	profile, segments string
	err               error
	calls             []string
}

func (s *source) AppendVisitor(_ context.Context, dst []byte, site, v string) ([]byte, error) {
	s.calls = append(s.calls, site+"/"+v)
	if s.err != nil {
		return dst, s.err
	}
	return append(dst, s.profile...), nil
}

func (s *source) AppendSegments(_ context.Context, dst []byte, site, v string) ([]byte, error) {
	if s.err != nil {
		return dst, s.err
	}
	return append(dst, s.segments...), nil
}

// segmentsNotServed serves profiles but no segments.
type segmentsNotServed struct{ source }

func (s *segmentsNotServed) AppendSegments(_ context.Context, dst []byte, _, _ string) ([]byte, error) {
	return dst, ErrNotServed
}

const vid = "8c6f4e1a-2b3c-4d5e-8f90-a1b2c3d4e5f6"

func TestDemoPages(t *testing.T) {
	d, err := NewDemo(DemoOptions{Site: `shop"1`})
	if err != nil {
		t.Fatal(err)
	}
	base := serve(t, d.Serve)
	f := func(path string, wantStatus int, wantType, wantIn string) {
		t.Helper()
		r := get(t, "GET", base+path)
		if r.status != wantStatus || r.header["Content-Type"] != wantType || !bytes.Contains(r.body, []byte(wantIn)) {
			t.Fatalf("GET %s: got %d %q %.80q; want %d %q containing %q", path, r.status, r.header["Content-Type"], r.body, wantStatus, wantType, wantIn)
		}
	}
	f("/demo/", 200, "text/html; charset=utf-8", `data-page="index"`)
	f("/demo/index.html", 200, "text/html; charset=utf-8", `<script src="site.js">`)
	f("/demo/product.html", 200, "text/html; charset=utf-8", `data-page="product"`)
	f("/demo/cart.html", 200, "text/html; charset=utf-8", `data-page="cart"`)
	f("/demo/checkout.html", 200, "text/html; charset=utf-8", `data-page="checkout"`)
	f("/demo/shop.js", 200, "text/javascript; charset=utf-8", "PRODUCTS")
	f("/demo/shop.css", 200, "text/css; charset=utf-8", "aside")
	f("/demo/site.js", 200, "text/javascript; charset=utf-8", `affinity("init",{site:"shop\"1"})`)
	f("/demo/nope.html", 404, "text/plain; charset=utf-8", "no such page")
	f("/demo/../sdkjs.go", 404, "text/plain; charset=utf-8", "no such page")
	f("/demo/%2e%2e/sdkjs.go", 404, "text/plain; charset=utf-8", "no such page")
	if r := get(t, "GET", base+"/demo"); r.status != 302 || !strings.HasSuffix(r.header["Location"], "/demo/") {
		t.Fatalf("GET /demo: got %d Location %q; want 302 to /demo/", r.status, r.header["Location"])
	}
	if r := get(t, "POST", base+"/demo/"); r.status != 405 {
		t.Fatalf("POST /demo/: got %d; want 405", r.status)
	}
}

func TestDemoVisitor(t *testing.T) {
	type want struct {
		status int
		body   string // JSON compared as values, or a text prefix
	}
	f := func(name string, src VisitorSource, query, cookie string, w want) {
		t.Helper()
		d, err := NewDemo(DemoOptions{Site: "demo", Visitors: src})
		if err != nil {
			t.Fatal(err)
		}
		var hdr []string
		if cookie != "" {
			hdr = []string{"Cookie", "_aff_v=" + cookie}
		}
		r := get(t, "GET", serve(t, d.Serve)+"/demo/api/visitor"+query, hdr...)
		if r.status != w.status {
			t.Fatalf("%s: got status %d (%s); want %d", name, r.status, r.body, w.status)
		}
		if r.status != 200 {
			if !strings.HasPrefix(string(r.body), w.body) {
				t.Fatalf("%s: got %q; want it to start with %q", name, r.body, w.body)
			}
			return
		}
		var got, exp any
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Fatalf("%s: invalid JSON %s: %v", name, r.body, err)
		}
		if err := json.Unmarshal([]byte(w.body), &exp); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(exp) {
			t.Fatalf("%s: got %s; want %s", name, r.body, w.body)
		}
	}
	ok := &source{profile: `{"brand":[{"value":"Nutrilon","score":3}]}`, segments: `["new"]`}
	f("own visitor", ok, "?v="+vid, vid, want{200,
		`{"visitor":"` + vid + `","profile":{"brand":[{"value":"Nutrilon","score":3}]},"segments":["new"],"errors":[],"pending":false}`})
	if len(ok.calls) != 1 || ok.calls[0] != "demo/"+vid {
		t.Fatalf("the source was asked for %v; want [demo/%s]", ok.calls, vid)
	}
	f("upper-case id", ok, "?v="+strings.ToUpper(vid), vid, want{200,
		`{"visitor":"` + vid + `","profile":{"brand":[{"value":"Nutrilon","score":3}]},"segments":["new"],"errors":[],"pending":false}`})
	f("another visitor", ok, "?v="+vid, "00000000-0000-4000-8000-000000000000", want{403, "visitor " + vid + " is not this browser's"})
	f("no cookie", ok, "?v="+vid, "", want{403, "visitor " + vid + " is not this browser's"})
	f("bad id", ok, "?v=x", "x", want{400, `invalid visitor id "x"`})
	f("no id", ok, "", "", want{400, `invalid visitor id ""`})
	f("not seen yet", &source{err: fmt.Errorf("GET x: %w", ErrNoVisitor)}, "?v="+vid, vid, want{200,
		`{"visitor":"` + vid + `","profile":null,"segments":null,"errors":[],"pending":false}`})
	f("API not served", &source{err: fmt.Errorf("GET x: %w", ErrNotServed)}, "?v="+vid, vid, want{200,
		`{"visitor":"` + vid + `","profile":null,"segments":null,"errors":["profile: GET x: not served by this build","segments: GET x: not served by this build"],"pending":true}`})
	f("segments not served", &segmentsNotServed{source{profile: `{}`}}, "?v="+vid, vid, want{200,
		`{"visitor":"` + vid + `","profile":{},"segments":null,"errors":["segments: not served by this build"],"pending":false}`})
	f("API failing", &source{err: fmt.Errorf("status 500")}, "?v="+vid, vid, want{200,
		`{"visitor":"` + vid + `","profile":null,"segments":null,"errors":["profile: status 500","segments: status 500"],"pending":false}`})
	f("not JSON", &source{profile: `{"a":`, segments: `[]`}, "?v="+vid, vid, want{200,
		`{"visitor":"` + vid + `","profile":null,"segments":[],"errors":["profile: the API answered something that is not JSON"],"pending":false}`})
	f("no reader wired", nil, "?v="+vid, vid, want{200,
		`{"visitor":"` + vid + `","profile":null,"segments":null,"errors":["no profile reader is wired into this binary"],"pending":true}`})
}

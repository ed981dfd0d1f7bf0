package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
)

func startServer(t *testing.T, opts Options, register func(*Server)) *Server {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if register != nil {
		register(s)
	}
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-done
	})
	return s
}

func get(t *testing.T, url, token string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestServerAuthAndRoutes(t *testing.T) {
	set := metrics.NewSet()
	set.NewCounter("affinity_test_total").Add(7)
	s := startServer(t, Options{Token: "s3cret", Metrics: []*metrics.Set{set}}, func(s *Server) {
		s.Handle("/v1/visitors/", func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("visitors") })
		s.Handle("/v1/", func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("v1") })
	})
	base := "http://" + s.Addr()
	for _, c := range []struct {
		path, token string
		status      int
		body        string
	}{
		{"/v1/visitors/demo/x", "", 401, "missing or wrong bearer token"},
		{"/v1/visitors/demo/x", "wrong", 401, "missing or wrong bearer token"},
		{"/v1/visitors/demo/x", "s3cret", 200, "visitors"},
		{"/v1/segments/demo", "s3cret", 200, "v1"},
		{"/v2/nothing", "s3cret", 404, "no such path /v2/nothing"},
		{"/metrics", "", 401, "missing or wrong bearer token"},
		{"/metrics", "s3cret", 200, "affinity_test_total 7"},
		{"/debug/pprof/cmdline", "", 401, "missing or wrong bearer token"},
		{"/healthz", "", 200, "ok\n"},
	} {
		st, body, hdr := get(t, base+c.path, c.token)
		if st != c.status || !strings.Contains(body, c.body) {
			t.Errorf("GET %s (token %q): %d %q; want %d containing %q", c.path, c.token, st, body, c.status, c.body)
		}
		if st == 401 && hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("GET %s: 401 without WWW-Authenticate", c.path)
		}
		if got, noRoute := hdr.Get(HeaderError), c.status == 404; (got == ErrorNoRoute) != noRoute {
			t.Errorf("GET %s: %d with %s %q; want %q only on the 404 of a path not served", c.path, st, HeaderError, got, ErrorNoRoute)
		}
	}
}

func TestServerMetricsMetadata(t *testing.T) {
	set := metrics.NewSet()
	set.NewCounter("affinity_test_events_total").Add(3)
	set.NewPrometheusHistogram("affinity_test_append_seconds").Update(0.01)
	s := startServer(t, Options{Token: "t", Metrics: []*metrics.Set{set}}, nil)
	st, body, _ := get(t, "http://"+s.Addr()+"/metrics", "t")
	if st != 200 {
		t.Fatalf("GET /metrics: %d %q", st, body)
	}
	for _, want := range []string{
		"# TYPE affinity_test_events_total counter\naffinity_test_events_total 3\n",
		"# TYPE affinity_test_append_seconds histogram\n",
		"# HELP affinity_test_append_seconds\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q; got:\n%s", want, body)
		}
	}
}

func TestServerHealthz(t *testing.T) {
	var failing atomic.Bool
	s := startServer(t, Options{
		Token: "t",
		Health: func(context.Context) error {
			if failing.Load() {
				return errors.New("log is full")
			}
			return nil
		},
		Status: func(dst []byte) []byte { return append(dst, "partition 0 lag=3\n"...) },
	}, nil)
	url := "http://" + s.Addr() + "/healthz"
	if st, body, _ := get(t, url, ""); st != 200 || body != "ok\npartition 0 lag=3\n" {
		t.Errorf("healthy: %d %q", st, body)
	}
	failing.Store(true)
	if st, body, _ := get(t, url, ""); st != 503 || body != "not ready: log is full\npartition 0 lag=3\n" {
		t.Errorf("unhealthy: %d %q", st, body)
	}
	failing.Store(false)
	s.SetDraining()
	if st, body, _ := get(t, url, ""); st != 503 || !strings.HasPrefix(body, "not ready: draining") {
		t.Errorf("draining: %d %q", st, body)
	}
}

func TestServerNeedsToken(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without a token succeeded")
	}
}

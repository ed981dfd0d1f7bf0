package api

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/pprofhandler"

	"github.com/affinityhq/affinity/internal/logger"
)

// Options configures a Server.
type Options struct {
	// Token is the bearer token every request but /healthz must carry. It
	// must not be empty: cmd generates one when none is configured.
	Token string
	// Metrics are written, in order, on /metrics.
	Metrics []*metrics.Set
	// Health reports readiness for /healthz; nil error means ready.
	Health func(ctx context.Context) error
	// Status, if set, appends lines of progress (e.g. the builder's lag per
	// partition) to the body of /healthz, ready or not.
	Status func(dst []byte) []byte
	// Logger receives the listener's connection errors. Nil discards them.
	Logger logger.Logger
}

// Server is the internal API listener.
type Server struct {
	opts     Options
	token    []byte
	srv      *fasthttp.Server
	routes   []route
	draining atomic.Bool

	mu sync.Mutex
	ln net.Listener
}

type route struct {
	prefix string
	h      fasthttp.RequestHandler
	public bool // served without the token (HandlePublic)
}

// New returns a Server for opts.
func New(opts Options) (*Server, error) {
	if opts.Token == "" {
		return nil, errors.New("cannot create API server: empty token (--api-token)")
	}
	// /metrics carries # HELP and # TYPE lines, so that scrapers read the
	// histograms as histograms. The library keeps this switch process-wide.
	metrics.ExposeMetadata(true)
	s := &Server{opts: opts, token: []byte("Bearer " + opts.Token)}
	s.srv = &fasthttp.Server{
		Handler:              s.handle,
		Name:                 "affinity-api",
		ReadTimeout:          time.Minute,
		IdleTimeout:          2 * time.Minute,
		NoDefaultContentType: true,
		CloseOnShutdown:      true,
		StreamRequestBody:    false,
		MaxRequestBodySize:   256 << 20, // catalogs
		ReduceMemoryUsage:    true,
		Logger:               opts.Logger,
	}
	return s, nil
}

// Handle registers h for every path starting with prefix. Longer prefixes
// must be registered first. Call before Serve.
func (s *Server) Handle(prefix string, h fasthttp.RequestHandler) {
	s.routes = append(s.routes, route{prefix, h, false})
}

// HandlePublic is Handle for a handler that needs no token: static pages
// that hold no data and call the API with the token themselves (the
// console). Call before Serve.
func (s *Server) HandlePublic(prefix string, h fasthttp.RequestHandler) {
	s.routes = append(s.routes, route{prefix, h, true})
}

// Listen binds addr ("host:port"; port 0 picks a free one).
func (s *Server) Listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s (--api-listen): %w", addr, err)
	}
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	return nil
}

// Addr returns the bound address, once Listen succeeded.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Serve serves until Shutdown.
func (s *Server) Serve() error {
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	if ln == nil {
		return errors.New("BUG: api.Server.Serve called before Listen")
	}
	return s.srv.Serve(ln)
}

// Shutdown makes /healthz answer 503 and stops the server, waiting for
// in-flight requests up to ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	return s.srv.ShutdownWithContext(ctx)
}

// SetDraining makes /healthz answer 503 from now on (the first step of a
// graceful shutdown, before any listener closes).
func (s *Server) SetDraining() { s.draining.Store(true) }

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	path := ctx.Path()
	if string(path) == "/healthz" {
		s.healthz(ctx)
		return
	}
	for _, r := range s.routes {
		if r.public && strings.HasPrefix(string(path), r.prefix) {
			r.h(ctx)
			return
		}
	}
	if subtle.ConstantTimeCompare(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization), s.token) != 1 {
		ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, `Bearer realm="affinity"`)
		Error(ctx, fasthttp.StatusUnauthorized, "missing or wrong bearer token: send Authorization: Bearer <--api-token>")
		return
	}
	switch {
	case string(path) == "/metrics":
		ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
		w := ctx.Response.BodyWriter()
		for _, set := range s.opts.Metrics {
			set.WritePrometheus(w)
		}
		metrics.WriteProcessMetrics(w)
		return
	case bytes.HasPrefix(path, []byte("/debug/pprof")):
		pprofhandler.PprofHandler(ctx)
		return
	}
	for _, r := range s.routes {
		if !r.public && strings.HasPrefix(string(path), r.prefix) {
			r.h(ctx)
			return
		}
	}
	NoRoute(ctx, "")
}

func (s *Server) healthz(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("text/plain; charset=utf-8")
	var err error
	if s.draining.Load() {
		err = errors.New("draining: shutting down")
	} else if s.opts.Health != nil {
		err = s.opts.Health(ctx)
	}
	body := []byte("ok\n")
	if err != nil {
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		body = []byte("not ready: " + err.Error() + "\n")
	}
	if s.opts.Status != nil {
		body = s.opts.Status(body)
	}
	ctx.SetBody(body)
}

// HeaderError classifies some error answers for programs, so that they
// need not read the one-line reason: its values are the Error*
// constants.
const HeaderError = "X-Affinity-Error"

// HeaderHop marks a request one node of a build group forwarded to
// another (profile/cluster routes it): its receiver answers from its own
// partitions or refuses with 503, and never forwards it again, so a stale
// view of the group cannot bounce a request between nodes.
const HeaderHop = "X-Affinity-Hop"

// HeaderPartitions, on a forwarded request, lists the partitions its
// receiver answers for ("0,3,5"), its part of a fan-out: the receiver
// answers 503 when it does not own one of them, and leaves out the rows of
// any other partition its state still holds.
const HeaderPartitions = "X-Affinity-Partitions"

// Shard is one node of a build group as a fan-out asks it: its API URL
// and the partitions it answers for (HeaderPartitions), ascending.
type Shard struct {
	URL        string
	Partitions []int
}

// ErrorNoRoute is HeaderError's value on a 404 for a path the API does not
// serve, as opposed to a 404 for a thing (a visitor, a segment) it does not
// have.
const ErrorNoRoute = "no-route"

// NoRoute answers 404 for a path the API does not serve, with the
// HeaderError ErrorNoRoute; want, if set, names the paths it does serve
// there.
func NoRoute(ctx *fasthttp.RequestCtx, want string) {
	msg := "no such path " + string(ctx.Path())
	if want != "" {
		msg += "; want " + want
	}
	Error(ctx, fasthttp.StatusNotFound, msg)
	ctx.Response.Header.Set(HeaderError, ErrorNoRoute)
}

// Error answers status with a one-line reason.
func Error(ctx *fasthttp.RequestCtx, status int, msg string) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.Response.ResetBody()
	_, _ = io.WriteString(ctx, msg+"\n")
}

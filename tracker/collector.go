package tracker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/internal/logger"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/diskwatch"
	"github.com/affinityhq/affinity/tracker/event"
)

// Options configures a Collector. Start from DefaultOptions.
type Options struct {
	// Sites that may post; a batch naming another key is refused with 403.
	Sites []Site
	// MaxBodyBytes bounds a POST body; larger ones are refused with 413.
	MaxBodyBytes int
	// Decode holds the contract's limits: events per batch, the accept
	// window for old client timestamps (the snippet's offline queue can hold
	// events for days) and the allowed clock skew into the future.
	Decode event.Options
	// RetryAfter is what a 503 tells clients to wait, in whole seconds.
	RetryAfter time.Duration
	// Concurrency bounds requests served at once; fasthttp answers 503 above it,
	// which keeps memory bounded when the log is slow.
	Concurrency int
	// Extra serves paths the collector does not know (e.g. /sdk.js, /demo/);
	// nil means 404.
	Extra fasthttp.RequestHandler
	// Engagement checks the tokens of a campaign email's open pixel
	// (GET /e/o/{token}.gif) and click redirect (GET /e/c/{token}?to=URL).
	// Nil (collect, which has no state): they answer 503.
	Engagement Engagement

	Log storage.Log
	// Writable, if set, is asked before every append (the node's
	// diskwatch.Watcher.Err, one atomic load): while it returns an error,
	// batches are refused with 503, Retry-After and its text, and
	// /healthz answers 503 with it.
	Writable func() error
	Metrics  *metrics.Set
	// Logger receives the server's connection errors, throttled to one line
	// per errorLogInterval: browsers cause them. Nil discards them.
	Logger logger.Logger
	// Now returns the server's receive time; tests pin it. Nil means time.Now.
	Now func() time.Time
}

// errorLogInterval is the least time between two logged connection errors.
const errorLogInterval = 10 * time.Second

// DefaultOptions returns the collector's defaults; Log, Sites and Metrics
// must still be set.
func DefaultOptions() Options {
	return Options{
		MaxBodyBytes: 64 << 10,
		Decode:       event.DefaultOptions(),
		RetryAfter:   time.Second,
		Concurrency:  4096,
	}
}

// Collector is the HTTP collector. Create it with New, run it with Serve and
// stop it with Shutdown.
type Collector struct {
	opts  Options
	sites map[string]*Site
	// writeKeys maps each secret write key to its site (Site.WriteKeys).
	writeKeys map[string]*Site
	srv       *fasthttp.Server
	m         *collectorMetrics
	draining  atomic.Bool
	// epoch anchors the sites' rate buckets on the monotonic clock.
	epoch time.Time

	// logDownUntil (Unix ms, 0 when healthy) is when the log last failed
	// plus RetryAfter; logDownErr holds that failure's text.
	logDownUntil atomic.Int64
	logDownErr   atomic.Value
	ctxPool      sync.Pool

	mu sync.Mutex
	ln net.Listener
}

// New returns a Collector for opts.
func New(opts Options) (*Collector, error) {
	if opts.Log == nil {
		return nil, errors.New("cannot create collector: no event log given")
	}
	if len(opts.Sites) == 0 {
		return nil, errors.New("cannot create collector: no site given (--site)")
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.NewSet()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.Sites = append([]Site(nil), opts.Sites...) // New sets their buckets
	c := &Collector{opts: opts, sites: make(map[string]*Site, len(opts.Sites)), writeKeys: map[string]*Site{}, epoch: time.Now()}
	c.m = newCollectorMetrics(opts.Metrics)
	for i := range opts.Sites {
		s := &opts.Sites[i]
		c.sites[s.Key] = s
		if s.Rate < 0 || s.Burst < 0 {
			return nil, fmt.Errorf("cannot create collector: site %q has a negative rate or burst (--site-rate)", s.Key)
		}
		if s.Rate > 0 {
			burst := s.Burst
			if burst == 0 {
				burst = int(math.Ceil(s.Rate))
			}
			s.bucket = newRateBucket(s.Rate, burst)
			label := `{site="` + escapeLabel(s.Key) + `"}`
			s.bucket.limited = opts.Metrics.NewCounter(`affinity_collector_rate_limited_total` + label)
			s.bucket.limitedEvents = opts.Metrics.NewCounter(`affinity_collector_rate_limited_events_total` + label)
		}
	}
	if err := c.indexWriteKeys(); err != nil {
		return nil, err
	}
	c.ctxPool.New = func() any { return c.newRequestCtx() }
	c.srv = &fasthttp.Server{
		Handler: c.Handle,
		Name:    "affinity",
		// The server-level cap only bounds memory; the handler refuses bodies
		// above MaxBodyBytes with its own 413 and reason.
		MaxRequestBodySize:            4 * opts.MaxBodyBytes,
		ReadBufferSize:                16 << 10, // the pixel's ?d= rides in the request line
		Concurrency:                   opts.Concurrency,
		ReadTimeout:                   30 * time.Second,
		WriteTimeout:                  30 * time.Second,
		IdleTimeout:                   2 * time.Minute,
		NoDefaultServerHeader:         false,
		NoDefaultContentType:          true,
		DisableHeaderNamesNormalizing: false,
		CloseOnShutdown:               true,
		// Never parse a multipart body: it is refused with 415 unread.
		DisablePreParseMultipartForm: true,
		Logger:                       logger.Throttled(opts.Logger, errorLogInterval),
	}
	return c, nil
}

// Listen binds addr ("host:port"; port 0 picks a free one).
func (c *Collector) Listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s (--listen): %w", addr, err)
	}
	c.mu.Lock()
	c.ln = ln
	c.mu.Unlock()
	return nil
}

// Addr returns the bound address, once Listen succeeded.
func (c *Collector) Addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ln == nil {
		return ""
	}
	return c.ln.Addr().String()
}

// Serve serves requests on the listener bound by Listen until Shutdown.
func (c *Collector) Serve() error {
	c.mu.Lock()
	ln := c.ln
	c.mu.Unlock()
	if ln == nil {
		return errors.New("BUG: Collector.Serve called before Listen")
	}
	return c.srv.Serve(ln)
}

// Shutdown makes /healthz answer 503, stops accepting connections and waits,
// bounded by ctx, for in-flight requests to finish — each of them either got
// its batch acknowledged by the log or was refused.
func (c *Collector) Shutdown(ctx context.Context) error {
	c.draining.Store(true)
	return c.srv.ShutdownWithContext(ctx)
}

// Draining reports whether Shutdown has begun.
func (c *Collector) Draining() bool { return c.draining.Load() }

// Health returns nil when the collector can take batches: not draining,
// Options.Writable passes, it is not refusing batches after a failed
// append (for RetryAfter after each failure, the next request probing the
// log again) and the log says it is writable.
func (c *Collector) Health(ctx context.Context) error {
	if c.draining.Load() {
		return errors.New("draining: shutting down")
	}
	if c.opts.Writable != nil {
		if err := c.opts.Writable(); err != nil {
			return err
		}
	}
	if until := c.logDownUntil.Load(); until != 0 && time.Now().UnixMilli() < until {
		msg, _ := c.logDownErr.Load().(string)
		return fmt.Errorf("the event log failed the last append: %s", msg)
	}
	return c.opts.Log.Writable(ctx)
}

// requestCtx holds the per-request scratch state, pooled.
type requestCtx struct {
	dec    *event.Decoder
	batch  event.Batch
	record []byte
	key    []byte
	msgs   [1]storage.Message
	ua     []byte      // scratch: the lower-cased User-Agent, then the reply body
	seg    *segmentCtx // the Segment API's scratch, made on its first request
}

func (c *Collector) newRequestCtx() *requestCtx {
	return &requestCtx{dec: event.NewDecoder(c.opts.Decode)}
}

var (
	strEvents  = []byte("/v1/events")
	strPixel   = []byte("/v1/p.gif")
	strHealthz = []byte("/healthz")
)

// Handle is the collector's fasthttp handler.
func (c *Collector) Handle(ctx *fasthttp.RequestCtx) {
	path := ctx.Path()
	switch string(path) {
	case string(strEvents):
		c.handleEvents(ctx, false)
	case string(strPixel):
		c.handleEvents(ctx, true)
	case string(strHealthz):
		c.handleHealthz(ctx)
	case "/v1/batch", "/v1/import", "/v1/track", "/v1/identify", "/v1/page", "/v1/screen", "/v1/alias", "/v1/group":
		c.handleSegment(ctx, path)
	default:
		if bytes.HasPrefix(path, []byte(openPrefix)) || bytes.HasPrefix(path, []byte(clickPrefix)) {
			c.handleEngagement(ctx, path)
			return
		}
		if c.opts.Extra != nil {
			c.opts.Extra(ctx)
			c.m.countStatus(ctx.Response.StatusCode())
			return
		}
		c.refuse(ctx, fasthttp.StatusNotFound, reasonNotFound, "no such path: use POST /v1/events or GET /v1/p.gif")
	}
}

func (c *Collector) handleHealthz(ctx *fasthttp.RequestCtx) {
	if err := c.Health(ctx); err != nil {
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBodyString("not ready: " + err.Error() + "\n")
		c.m.countStatus(fasthttp.StatusServiceUnavailable)
		return
	}
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBodyString("ok\n")
	c.m.countStatus(fasthttp.StatusOK)
}

func (c *Collector) handleEvents(ctx *fasthttp.RequestCtx, pixel bool) {
	origin := ctx.Request.Header.Peek(fasthttp.HeaderOrigin)
	method := ctx.Method()
	if string(method) == fasthttp.MethodOptions {
		c.preflight(ctx, origin)
		return
	}
	if pixel && string(method) != fasthttp.MethodGet || !pixel && string(method) != fasthttp.MethodPost {
		want := fasthttp.MethodPost
		if pixel {
			want = fasthttp.MethodGet
		}
		ctx.Response.Header.Set(fasthttp.HeaderAllow, want+", OPTIONS")
		c.refuse(ctx, fasthttp.StatusMethodNotAllowed, reasonBadMethod, "method "+string(method)+" not allowed: use "+want)
		return
	}
	// CORS: answer with the origin when it is allowed, so that even a refusal
	// is readable by the snippet; the site check below refuses disallowed ones.
	// Retry-After must be exposed for the snippet's backoff to read it.
	if len(origin) > 0 {
		ctx.Response.Header.SetBytesV(fasthttp.HeaderAccessControlAllowOrigin, origin)
		ctx.Response.Header.Set(fasthttp.HeaderVary, "Origin")
		ctx.Response.Header.Set(fasthttp.HeaderAccessControlExposeHeaders, "Retry-After")
	}

	rc := c.ctxPool.Get().(*requestCtx)
	defer c.ctxPool.Put(rc)
	rc.batch.Reset()

	now := c.opts.Now()
	nowMs := now.UnixMilli()
	var err error
	if pixel {
		d := ctx.QueryArgs().Peek("d")
		if len(d) == 0 {
			c.refuse(ctx, fasthttp.StatusBadRequest, reasonBadRequest, "missing query parameter d: the base64url-encoded JSON batch")
			return
		}
		err = rc.dec.DecodeBase64Batch(&rc.batch, d, nowMs)
	} else {
		body, ok := c.body(ctx, c.opts.MaxBodyBytes, "", "the JSON batch as text/plain or application/json")
		if !ok {
			return
		}
		err = rc.dec.DecodeBatch(&rc.batch, body, nowMs)
	}
	if err != nil {
		c.refuseBatch(ctx, err, len(rc.batch.Events))
		return
	}
	site := c.sites[rc.batch.Site]
	if site == nil {
		c.m.eventsRefused(reasonUnknownSite, len(rc.batch.Events))
		c.refuse(ctx, fasthttp.StatusForbidden, reasonUnknownSite, "unknown site "+strconv.Quote(rc.batch.Site))
		return
	}
	if !site.AllowsOrigin(origin) {
		c.m.eventsRefused(reasonBadOrigin, len(rc.batch.Events))
		ctx.Response.Header.Del(fasthttp.HeaderAccessControlAllowOrigin)
		c.refuse(ctx, fasthttp.StatusForbidden, reasonBadOrigin,
			"origin "+strconv.Quote(string(origin))+" not allowed for site "+strconv.Quote(site.Key))
		return
	}
	var bot bool
	bot, rc.ua = isBot(ctx.Request.Header.UserAgent(), rc.ua)
	if bot {
		c.m.botBatches.Inc()
		c.m.botEvents.Add(len(rc.batch.Events))
		c.accepted(ctx, pixel, 0, &rc.ua)
		return
	}

	if site.bucket != nil {
		if wait := site.bucket.take(int64(time.Since(c.epoch)), len(rc.batch.Events)); wait > 0 {
			c.rateLimited(ctx, site, len(rc.batch.Events), wait)
			return
		}
	}

	rc.batch.Recv = nowMs
	rc.record = event.AppendBatch(rc.record[:0], &rc.batch)
	rc.key = event.AppendLogKey(rc.key[:0], rc.batch.Site, rc.batch.Visitor)
	rc.msgs[0] = storage.Message{Key: rc.key, Value: rc.record}
	ok := c.append(ctx, rc.msgs[:], len(rc.batch.Events))
	rc.msgs[0] = storage.Message{}
	if ok {
		c.accepted(ctx, pixel, len(rc.batch.Events), &rc.ua)
	}
}

// append appends msgs, the records of events accepted events, to the log
// in one call and reports whether the log acknowledged them; if not, it has
// answered the request with 503.
func (c *Collector) append(ctx *fasthttp.RequestCtx, msgs []storage.Message, events int) bool {
	// While the log is failing, refuse at once instead of making every
	// request wait out the log's own timeout: clients retry after
	// Retry-After, memory stays bounded, and the first request past the
	// pause probes the log again.
	start := time.Now() // the real clock, not opts.Now: this is about the log, not the events
	if c.opts.Writable != nil {
		if err := c.opts.Writable(); err != nil {
			c.storageUnavailable(ctx, events, err)
			return false
		}
	}
	if until := c.logDownUntil.Load(); until != 0 && start.UnixMilli() < until {
		c.logUnavailable(ctx, events, c.logDownErr.Load().(string))
		return false
	}

	// No per-request deadline: each log bounds its own wait (the embedded
	// log refuses past a bounded queue, Kafka's has WriteTimeout), and a
	// context per request would cost allocations on the hot path.
	c.m.inflight.Add(1)
	err := c.opts.Log.Append(context.Background(), msgs)
	c.m.appendSeconds.UpdateDuration(start)
	c.m.inflight.Add(-1)
	if err != nil {
		c.m.logErrors.Inc()
		msg := err.Error()
		c.logDownErr.Store(msg)
		c.logDownUntil.Store(time.Now().Add(c.opts.RetryAfter).UnixMilli())
		c.logUnavailable(ctx, events, msg)
		return false
	}
	if c.logDownUntil.Load() != 0 {
		c.logDownUntil.Store(0)
	}
	c.m.eventsAccepted.Add(events)
	return true
}

// body returns the request's body, inflated when it is compressed, or
// refuses the request: a body over limit bytes, before or after inflating
// (a small gzip bomb never inflates past it; of names the limit's owner,
// e.g. " of /v1/track"), or of a content type other than the JSON the
// collector reads (send says how to send it).
func (c *Collector) body(ctx *fasthttp.RequestCtx, limit int, of, send string) ([]byte, bool) {
	if n := len(ctx.Request.Body()); n > limit {
		c.refuse(ctx, fasthttp.StatusRequestEntityTooLarge, reasonTooLarge,
			"body of "+strconv.Itoa(n)+" bytes exceeds the limit of "+strconv.Itoa(limit)+" bytes"+of)
		return nil, false
	}
	if ct := ctx.Request.Header.ContentType(); !acceptableContentType(ct) {
		c.refuse(ctx, fasthttp.StatusUnsupportedMediaType, reasonBadContentType,
			"content type "+strconv.Quote(string(ct))+" not accepted: send "+send)
		return nil, false
	}
	body, err := ctx.Request.BodyUncompressedWithLimit(limit)
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		c.refuse(ctx, fasthttp.StatusRequestEntityTooLarge, reasonTooLarge,
			"decompressed body exceeds the limit of "+strconv.Itoa(limit)+" bytes"+of)
		return nil, false
	}
	if err != nil {
		c.refuse(ctx, fasthttp.StatusBadRequest, reasonBadEncoding, "cannot decompress body: "+err.Error())
		return nil, false
	}
	return body, true
}

// refuseBatch answers a body the decoder refused with 400 and its reason.
func (c *Collector) refuseBatch(ctx *fasthttp.RequestCtx, err error, events int) {
	var ve *event.ValidationError
	if errors.As(err, &ve) {
		c.m.eventsRefused(ve.Reason, events)
		c.refuse(ctx, fasthttp.StatusBadRequest, ve.Reason, ve.Error())
		return
	}
	c.refuse(ctx, fasthttp.StatusBadRequest, reasonBadRequest, err.Error())
}

func (c *Collector) logUnavailable(ctx *fasthttp.RequestCtx, events int, cause string) {
	c.unavailable(ctx, reasonLogUnavailable, events, cause)
}

// storageUnavailable refuses a batch while Options.Writable fails: the
// free disk space is below the floor, or the storage is failing.
func (c *Collector) storageUnavailable(ctx *fasthttp.RequestCtx, events int, err error) {
	reason := reasonStorageFailing
	if errors.Is(err, diskwatch.ErrLowDisk) {
		reason = reasonLowDisk
	}
	c.unavailable(ctx, reason, events, err.Error())
}

func (c *Collector) unavailable(ctx *fasthttp.RequestCtx, reason string, events int, cause string) {
	c.m.eventsRefused(reason, events)
	ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, strconv.Itoa(int((c.opts.RetryAfter+time.Second-1)/time.Second)))
	c.refuse(ctx, fasthttp.StatusServiceUnavailable, reason, "cannot store batch now, retry later: "+cause)
}

// rateLimited refuses a batch of a site over its --site-rate with 429 and
// the whole seconds until its bucket has room for the batch.
func (c *Collector) rateLimited(ctx *fasthttp.RequestCtx, site *Site, events int, wait time.Duration) {
	site.bucket.limited.Inc()
	site.bucket.limitedEvents.Add(events)
	c.m.eventsRefused(reasonRateLimited, events)
	secs := int((wait + time.Second - 1) / time.Second)
	ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, strconv.Itoa(secs))
	c.refuse(ctx, fasthttp.StatusTooManyRequests, reasonRateLimited,
		"site "+strconv.Quote(site.Key)+" is over its rate of "+strconv.FormatFloat(site.Rate, 'g', -1, 64)+
			" events/s (burst "+strconv.FormatInt(site.bucket.burst, 10)+", --site-rate): batch of "+strconv.Itoa(events)+
			" events refused, retry in "+strconv.Itoa(secs)+"s")
}

// gif1x1 is a transparent 1x1 GIF, the pixel's answer.
var gif1x1 = []byte("GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")

func (c *Collector) accepted(ctx *fasthttp.RequestCtx, pixel bool, n int, scratch *[]byte) {
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	if pixel {
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetContentType("image/gif")
		ctx.SetBody(gif1x1)
		c.m.countStatus(fasthttp.StatusOK)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusAccepted)
	ctx.SetContentType("application/json")
	*scratch = append((*scratch)[:0], `{"accepted":`...)
	*scratch = strconv.AppendInt(*scratch, int64(n), 10)
	*scratch = append(*scratch, '}')
	ctx.SetBody(*scratch)
	c.m.countStatus(fasthttp.StatusAccepted)
}

func (c *Collector) refuse(ctx *fasthttp.RequestCtx, status int, reason, msg string) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	ctx.Response.Header.Set("X-Affinity-Reason", reason)
	ctx.SetBodyString(msg + "\n")
	c.m.countStatus(status)
	c.m.batchesRefused(reason)
}

func (c *Collector) preflight(ctx *fasthttp.RequestCtx, origin []byte) {
	// The site key is in the body, which a preflight does not carry: allow any
	// origin here; the POST itself is checked against the site's origins.
	if len(origin) > 0 {
		ctx.Response.Header.SetBytesV(fasthttp.HeaderAccessControlAllowOrigin, origin)
		ctx.Response.Header.Set(fasthttp.HeaderVary, "Origin")
	}
	ctx.Response.Header.Set(fasthttp.HeaderAccessControlAllowMethods, "POST, GET, OPTIONS")
	ctx.Response.Header.Set(fasthttp.HeaderAccessControlAllowHeaders, "Content-Type, Content-Encoding")
	ctx.Response.Header.Set(fasthttp.HeaderAccessControlMaxAge, "86400")
	ctx.SetStatusCode(fasthttp.StatusNoContent)
	c.m.countStatus(fasthttp.StatusNoContent)
}

// acceptableContentType accepts text/plain (what sendBeacon and a simple
// CORS request send), application/json, application/x-www-form-urlencoded
// (what `curl --data` sends: the body is still the JSON batch) and no type
// at all, each with any parameters (charset).
func acceptableContentType(ct []byte) bool {
	if len(ct) == 0 {
		return true
	}
	for i, b := range ct {
		if b == ';' || b == ' ' {
			ct = ct[:i]
			break
		}
	}
	return equalFoldASCII(ct, "text/plain") || equalFoldASCII(ct, "application/json") ||
		equalFoldASCII(ct, "application/x-www-form-urlencoded")
}

func equalFoldASCII(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

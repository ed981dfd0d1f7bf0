package query

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/internal/logger"
	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/profile/campaign"
	"github.com/affinityhq/affinity/profile/catalog"
	"github.com/affinityhq/affinity/profile/defs"
	"github.com/affinityhq/affinity/profile/importer"
	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/people"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// Deleter forgets a visitor everywhere (profile, interest index, identity
// index, caches): the profile builder, which owns the profiles it caches.
// found is false when the visitor had no profile. In a build group it
// also tells where an erasure was in the visitor's partition (ErasedAt,
// for the erasure's record) and learns of the group's erasures (Erased):
// profile/builder erased.go.
type Deleter interface {
	DeleteVisitor(site string, visitor event.UUID) (found bool, err error)
	ErasedAt(site string, visitor event.UUID) (partition int, offset int64)
	Erased(site string, visitor event.UUID, partition int, offset int64) error
}

// Options configures a Handler.
type Options struct {
	// State is the state DB the builder writes. Required.
	State *state.DB
	// Builder forgets visitors (DELETE /v1/visitors). Nil: DELETE answers
	// 503, as a process without a builder (collect) cannot delete.
	Builder Deleter
	// Segments serves the segment API (segments.go); nil: /v1/segments/
	// answers 503 and /v1/visitors/…/segments 404.
	Segments *membership.Engine
	// Campaigns is the campaign store of /v1/campaigns/, the one the
	// builder counts into. Nil: one is made on State when Segments is set.
	Campaigns *campaign.Store
	// Config is the scoring configuration the builder applies (half-lives
	// turn ?min=θ into an index key). Required.
	Config *profile.Config
	// Now returns the time scores are evaluated at without ?at=. Default
	// time.Now.
	Now func() time.Time
	// Metrics receives the API's counters. Nil: a private set.
	Metrics *metrics.Set
	// Logger receives errors of the state DB. Nil discards them.
	Logger logger.Logger

	// MaxCatalogBytes bounds one catalog upload, in bytes; above it PUT
	// answers 413. Default 64 MiB.
	MaxCatalogBytes int
	// Catalog limits the rows of an upload.
	Catalog catalog.Options
	// Importer serves /v1/import (import.go); nil: it answers 503.
	Importer *importer.Importer
	// Definitions, if set, carries the definition writes (segments,
	// webhooks, lists, catalog) to every node of a cluster (defs.go);
	// nil: they apply to this node alone.
	Definitions *defs.Log
	// MaxImportBytes bounds one orders upload after gunzip, in bytes; above
	// it POST answers 413. Default 256 MiB, the listener's body limit.
	MaxImportBytes int
	// MaxPersonVisitors bounds the visitors one person is merged from
	// (GET /v1/people): past it the answer says "truncated": true. Default
	// people.DefaultMaxVisitors.
	MaxPersonVisitors int
	// MaxListBytes bounds one list upload (after gunzip), in bytes; above
	// it PUT answers 413. Default 256 MiB, the API server's body limit.
	MaxListBytes int
	// PreviewMaxScan bounds the profiles one rule preview evaluates
	// (POST /v1/segments/{site}/_preview); past it the count is a lower
	// bound, "exact": false. Default 200000.
	PreviewMaxScan int
	// PreviewTimeout bounds the time one rule preview evaluates for.
	// Default 2 s.
	PreviewTimeout time.Duration
	// MaxPreviews bounds the previews running at once; another answers
	// 429. Default 2.
	MaxPreviews int
	// MaxLimit bounds ?limit= of the interest list. Default 100000; without
	// ?limit= the whole list streams.
	MaxLimit int
}

// DefaultOptions returns the defaults of the optional fields.
func DefaultOptions() Options {
	return Options{
		Now:             time.Now,
		MaxCatalogBytes: 64 << 20,
		MaxImportBytes:  256 << 20,
		MaxListBytes:    256 << 20,
		Catalog:         catalog.DefaultOptions(),
		MaxLimit:        100000,
		PreviewMaxScan:  200000,
		PreviewTimeout:  2 * time.Second,
		MaxPreviews:     2,
	}
}

// Handler serves the query API.
type Handler struct {
	opts      Options
	campaigns *campaign.Store // nil without Options.Segments
	m         queryMetrics
	pool      sync.Pool // *scratch
	people    sync.Pool // *people.Person
	// previews holds a token per preview running (Options.MaxPreviews).
	previews chan struct{}
	// cluster routes what this node cannot answer alone; nil outside a
	// build group (SetCluster).
	cluster atomic.Pointer[Cluster]
}

// scratch is a request's reusable space.
type scratch struct {
	buf  []byte
	out  []byte
	prof profile.Profile
	prod catalog.Product
}

type queryMetrics struct {
	visitorGets, visitorMisses, visitorDeletes *metrics.Counter
	personGets, personDeletes                  *metrics.Counter
	interestQueries, interestRows              *metrics.Counter
	catalogPuts, catalogProducts, catalogBad   *metrics.Counter
	catalogGets                                *metrics.Counter
	memberRows                                 *metrics.Counter
	changeRows                                 *metrics.Counter
	badRequests, errors                        *metrics.Counter
	forwarded, fanOuts, unavailable            *metrics.Counter
}

// New returns a Handler for opts.
func New(opts Options) (*Handler, error) {
	def := DefaultOptions()
	if opts.State == nil || opts.Config == nil {
		return nil, errors.New("BUG: query.New needs Options.State and Options.Config")
	}
	if opts.Now == nil {
		opts.Now = def.Now
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.NewSet()
	}
	if opts.MaxCatalogBytes <= 0 {
		opts.MaxCatalogBytes = def.MaxCatalogBytes
	}
	if opts.MaxImportBytes <= 0 {
		opts.MaxImportBytes = def.MaxImportBytes
	}
	if opts.MaxListBytes <= 0 {
		opts.MaxListBytes = def.MaxListBytes
	}
	if opts.MaxLimit <= 0 {
		opts.MaxLimit = def.MaxLimit
	}
	if opts.PreviewMaxScan <= 0 {
		opts.PreviewMaxScan = def.PreviewMaxScan
	}
	if opts.PreviewTimeout <= 0 {
		opts.PreviewTimeout = def.PreviewTimeout
	}
	if opts.MaxPreviews <= 0 {
		opts.MaxPreviews = def.MaxPreviews
	}
	s := opts.Metrics
	h := &Handler{opts: opts, previews: make(chan struct{}, opts.MaxPreviews)}
	h.m = queryMetrics{
		visitorGets:     s.NewCounter(`affinity_query_visitor_reads_total`),
		visitorMisses:   s.NewCounter(`affinity_query_visitor_not_found_total`),
		visitorDeletes:  s.NewCounter(`affinity_query_visitor_deletes_total`),
		personGets:      s.NewCounter(`affinity_query_person_reads_total`),
		personDeletes:   s.NewCounter(`affinity_query_person_erasures_total`),
		interestQueries: s.NewCounter(`affinity_query_interest_queries_total`),
		interestRows:    s.NewCounter(`affinity_query_interest_rows_total`),
		catalogPuts:     s.NewCounter(`affinity_catalog_uploads_total`),
		catalogProducts: s.NewCounter(`affinity_catalog_products_stored_total`),
		catalogBad:      s.NewCounter(`affinity_catalog_uploads_refused_total`),
		catalogGets:     s.NewCounter(`affinity_query_catalog_reads_total`),
		badRequests:     s.NewCounter(`affinity_query_bad_requests_total`),
		errors:          s.NewCounter(`affinity_query_errors_total`),
		memberRows:      s.NewCounter(`affinity_segment_export_rows_total`),
		changeRows:      s.NewCounter(`affinity_segment_change_rows_total`),
		forwarded:       s.NewCounter(`affinity_query_forwarded_total`),
		fanOuts:         s.NewCounter(`affinity_query_fan_outs_total`),
		unavailable:     s.NewCounter(`affinity_query_unavailable_total`),
	}
	h.campaigns = opts.Campaigns
	if h.campaigns == nil && opts.Segments != nil {
		var err error
		if h.campaigns, err = campaign.New(campaign.Options{State: opts.State, Segments: opts.Segments, Now: opts.Now}); err != nil {
			return nil, err
		}
	}
	h.pool.New = func() any { return &scratch{} }
	h.people.New = func() any { return &people.Person{} }
	return h, nil
}

// Register adds the routes of h to s. Call before s.Serve.
func (h *Handler) Register(s *api.Server) {
	s.Handle("/v1/visitors/", h.serveVisitors)
	s.Handle(peoplePrefix, h.servePeople)
	s.Handle("/v1/interests/", h.serveInterests)
	s.Handle("/v1/catalog/", h.serveCatalog)
	s.Handle(importPrefix, h.serveImport)
	s.Handle(segmentsPrefix, h.serveSegments)
	s.Handle(listsPrefix, h.serveLists)
	s.Handle(campaignsPrefix, h.serveCampaigns)
	s.Handle(internalPrefix, h.serveInternal)
}

// Campaigns returns the campaign store the API serves, nil without
// Options.Segments: the engagement endpoints resolve tokens with it.
func (h *Handler) Campaigns() *campaign.Store { return h.campaigns }

// badRequest answers 400 with reason.
func (h *Handler) badRequest(ctx *fasthttp.RequestCtx, reason string) {
	h.m.badRequests.Inc()
	api.Error(ctx, fasthttp.StatusBadRequest, reason)
}

// refuse answers err: 400 with its text when it holds an *invalid.Error
// (the request's fault), else 500 (internalError). It never reads the text
// to decide.
func (h *Handler) refuse(ctx *fasthttp.RequestCtx, err error) {
	if ie := (*invalid.Error)(nil); errors.As(err, &ie) {
		h.badRequest(ctx, quote.OneLine(err.Error()))
		return
	}
	h.internalError(ctx, err)
}

// notOwner answers 503 when err is about a partition this node's builder
// does not own (another node of its group does, or nobody during a
// rebalance), and reports whether it did.
func notOwner(ctx *fasthttp.RequestCtx, err error) bool {
	var noe *builder.NotOwnerError
	if !errors.As(err, &noe) {
		return false
	}
	api.Error(ctx, fasthttp.StatusServiceUnavailable, fmt.Sprintf("partition %d is not owned by this node: ask its owner (GET /v1/cluster)", noe.Partition))
	return true
}

// internalError answers 500 and logs err.
func (h *Handler) internalError(ctx *fasthttp.RequestCtx, err error) {
	h.m.errors.Inc()
	h.opts.Logger.Printf("query: %s %s: %v", ctx.Method(), ctx.Path(), err)
	api.Error(ctx, fasthttp.StatusInternalServerError, "internal error: "+quote.OneLine(err.Error()))
}

func methodNotAllowed(ctx *fasthttp.RequestCtx, allow string) {
	ctx.Response.Header.Set(fasthttp.HeaderAllow, allow)
	api.Error(ctx, fasthttp.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s; allowed: %s", ctx.Method(), ctx.Path(), allow))
}

// splitPath returns the n segments of path after prefix, the last taking
// the rest of the path (so a category value or product id may hold '/').
// Segments are the decoded path's; none may be empty.
func splitPath(path []byte, prefix string, n int) ([]string, bool) {
	rest := path[len(prefix):]
	segs := make([]string, 0, n)
	for i := 0; i < n-1; i++ {
		j := bytes.IndexByte(rest, '/')
		if j <= 0 {
			return nil, false
		}
		segs = append(segs, string(rest[:j]))
		rest = rest[j+1:]
	}
	if len(rest) == 0 {
		return nil, false
	}
	return append(segs, string(rest)), true
}

// parseAt returns the evaluation time: ?at= (RFC 3339) or now.
func (h *Handler) parseAt(ctx *fasthttp.RequestCtx) (int64, bool, error) {
	at, ok, err := parseTimeArg(ctx, "at")
	if !ok && err == nil {
		at = h.opts.Now().UnixMilli()
	}
	return at, ok, err
}

// parseTimeArg returns the query argument name as Unix ms (RFC 3339), and
// whether it was given.
func parseTimeArg(ctx *fasthttp.RequestCtx, name string) (int64, bool, error) {
	raw := ctx.QueryArgs().Peek(name)
	if len(raw) == 0 {
		return 0, false, nil
	}
	t, err := time.Parse(time.RFC3339Nano, string(raw))
	if err != nil {
		return 0, false, invalid.Errorf("invalid %s=%s: want an RFC 3339 time such as 2026-11-24T06:00:00Z", name, quote.Value(raw))
	}
	return t.UnixMilli(), true, nil
}

func parseVisitor(s string) (event.UUID, error) {
	v, ok := event.ParseUUID([]byte(s))
	if !ok {
		return v, invalid.Errorf("invalid visitor id %s: want a UUID such as 0b9e6c1a-3c1f-4c47-9d0e-5b6a2f1e7d3c", quote.Value(s))
	}
	return v, nil
}

func checkSite(site string) error {
	if len(site) > state.MaxSiteLen {
		return invalid.Errorf("invalid site %s: longer than %d bytes", quote.Value(site), state.MaxSiteLen)
	}
	return nil
}

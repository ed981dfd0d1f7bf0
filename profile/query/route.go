package query

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/tracker/event"
)

// Cluster is what a Handler of a node in a build group routes through:
// profile/cluster.Router. Without one (serve, build --own) every request is
// answered from the node's own state, as it always was.
type Cluster interface {
	// Partition returns the partition of site's visitor.
	Partition(site string, visitor event.UUID) int
	// Owns reports whether this node's builder owns partition p now.
	Owns(p int) bool
	// Owner returns the API URL of partition p's owner, or an error
	// naming p when it has none now (the API answers it with 503).
	Owner(ctx context.Context, p int) (string, error)
	// Shards returns every owner with its partitions, or an error naming
	// a partition without an owner now (503).
	Shards(ctx context.Context) ([]api.Shard, error)
	// Do sends req to the node its URI names, marked as forwarded.
	Do(req *fasthttp.Request, resp *fasthttp.Response) error
}

// SetCluster makes h route what its node cannot answer alone through c
// (nil: answer everything from this node's state again).
func (h *Handler) SetCluster(c Cluster) {
	if c == nil {
		h.cluster.Store(nil)
		return
	}
	h.cluster.Store(&c)
}

// clusterOf returns the Cluster of SetCluster, nil outside a build group.
func (h *Handler) clusterOf() Cluster {
	if c := h.cluster.Load(); c != nil {
		return *c
	}
	return nil
}

// retryAfter is the Retry-After of a 503 about a partition: about one
// Directory TTL, after which a rebalance has usually settled.
const retryAfter = "2"

// lookupTimeout bounds a Directory lookup of a routed request.
const lookupTimeout = 5 * time.Second

// unavailable answers 503 and Retry-After for err, a partition no node can
// answer for now (its text names the partition).
func (h *Handler) unavailable(ctx *fasthttp.RequestCtx, err error) {
	h.m.unavailable.Inc()
	ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, retryAfter)
	api.Error(ctx, fasthttp.StatusServiceUnavailable, quote.OneLine(err.Error()))
}

// forwarded reports whether ctx came from another node (api.HeaderHop):
// such a request is answered here or refused, never forwarded again.
func forwarded(ctx *fasthttp.RequestCtx) bool {
	return len(ctx.Request.Header.Peek(api.HeaderHop)) > 0
}

// notOwnedHere answers 503 for a forwarded request about partition p,
// which this node does not serve: the sender's view was stale, or this
// node is still catching up with p (Builder.Serving).
func (h *Handler) notOwnedHere(ctx *fasthttp.RequestCtx, p int) {
	h.unavailable(ctx, fmt.Errorf("partition %d is not served by this node: it moved away, or is still catching up after it moved here (GET /v1/cluster)", p))
}

// routeVisitor forwards a request about site's visitor to the owner of its
// partition when that is another node, and reports whether it answered
// ctx: false means "answer from the local state".
func (h *Handler) routeVisitor(ctx *fasthttp.RequestCtx, site string, visitor event.UUID) bool {
	c := h.clusterOf()
	if c == nil {
		return false
	}
	p := c.Partition(site, visitor)
	if c.Owns(p) {
		return false
	}
	if forwarded(ctx) {
		h.notOwnedHere(ctx, p)
		return true
	}
	lc, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	url, err := c.Owner(lc, p)
	if err != nil {
		h.unavailable(ctx, err)
		return true
	}
	h.forward(ctx, url, p)
	return true
}

// proxiedHeaders are the response headers a forwarded answer carries back.
var proxiedHeaders = []string{fasthttp.HeaderContentType, fasthttp.HeaderRetryAfter, fasthttp.HeaderAllow, api.HeaderError}

// forward sends ctx's request (method, path, query, Authorization, body)
// to the node at url, the owner of partition p, and answers with its
// status, headers and body.
func (h *Handler) forward(ctx *fasthttp.RequestCtx, url string, p int) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethodBytes(ctx.Method())
	req.SetRequestURI(url + string(ctx.RequestURI()))
	req.Header.SetBytesV(fasthttp.HeaderAuthorization, ctx.Request.Header.Peek(fasthttp.HeaderAuthorization))
	if body := ctx.Request.Body(); len(body) > 0 {
		req.Header.SetContentTypeBytes(ctx.Request.Header.ContentType())
		req.SetBody(body)
	}
	h.m.forwarded.Inc()
	if err := h.clusterOf().Do(req, resp); err != nil {
		h.unavailable(ctx, fmt.Errorf("cannot reach the owner %s of partition %d: %w", url, p, err))
		return
	}
	ctx.SetStatusCode(resp.StatusCode())
	for _, k := range proxiedHeaders {
		if v := resp.Header.Peek(k); len(v) > 0 {
			ctx.Response.Header.SetBytesV(k, v)
		}
	}
	ctx.SetBody(resp.Body())
}

// localParts returns the partitions a forwarded part of a fan-out answers
// for (api.HeaderPartitions) as a set by partition: nil for any other
// request. ok is false when it answered ctx: the header is bad, or names a
// partition this node does not serve.
func (h *Handler) localParts(ctx *fasthttp.RequestCtx) (set []bool, ok bool) {
	raw := ctx.Request.Header.Peek(api.HeaderPartitions)
	c := h.clusterOf()
	if len(raw) == 0 || c == nil || !forwarded(ctx) {
		return nil, true
	}
	parts, err := parsePartitions(raw)
	if err != nil {
		h.refuse(ctx, err)
		return nil, false
	}
	for _, p := range parts {
		if !c.Owns(p) {
			h.notOwnedHere(ctx, p)
			return nil, false
		}
	}
	set = make([]bool, slices.Max(parts)+1)
	for _, p := range parts {
		set[p] = true
	}
	return set, true
}

// inParts reports whether site's visitor is in the partitions of set
// (nil: every partition).
func (h *Handler) inParts(set []bool, site string, visitor event.UUID) bool {
	if set == nil {
		return true
	}
	p := h.clusterOf().Partition(site, visitor)
	return p < len(set) && set[p]
}

// fanOut is one request sent to every owner, each answering for its own
// partitions; their bodies stream.
type fanOut struct {
	resps  []*fasthttp.Response
	owners []string // the URL of each response's owner
	// shards are the owners and their partitions, as asked; auth is the
	// request's Authorization: a by=email join asks them again.
	shards []api.Shard
	auth   []byte
}

// openFanOut sends ctx's GET (its path, args and Authorization) to every
// owner of the group, each with the partitions it answers for, and
// returns once every owner answered 200 with its headers. Otherwise it
// answers ctx — 503 when a partition has no owner or an owner cannot be
// reached, else the first refusal as the owner gave it (a 400, a 404 of
// a segment that node does not define) — and returns nil.
func (h *Handler) openFanOut(ctx *fasthttp.RequestCtx, args *fasthttp.Args) *fanOut {
	return h.openFanOutPath(ctx, string(ctx.Path()), args)
}

// openFanOutPath is openFanOut of a GET of path, which need not be ctx's.
func (h *Handler) openFanOutPath(ctx *fasthttp.RequestCtx, path string, args *fasthttp.Args) *fanOut {
	lc, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	shards, err := h.clusterOf().Shards(lc)
	if err != nil {
		h.unavailable(ctx, err)
		return nil
	}
	h.m.fanOuts.Inc()
	f := &fanOut{shards: shards, auth: bytes.Clone(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization))}
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	var parts []byte
	for _, s := range shards {
		req.Reset()
		req.Header.SetMethod(fasthttp.MethodGet)
		req.SetRequestURI(s.URL)
		req.URI().SetPath(path)
		req.URI().SetQueryStringBytes(args.QueryString())
		req.Header.SetBytesV(fasthttp.HeaderAuthorization, ctx.Request.Header.Peek(fasthttp.HeaderAuthorization))
		parts = appendPartitions(parts[:0], s.Partitions)
		req.Header.SetBytesV(api.HeaderPartitions, parts)
		resp := fasthttp.AcquireResponse()
		resp.StreamBody = true
		f.resps, f.owners = append(f.resps, resp), append(f.owners, s.URL)
		if err := h.clusterOf().Do(req, resp); err != nil {
			f.close()
			h.unavailable(ctx, fmt.Errorf("cannot reach the owner %s of partitions %s: %w", s.URL, appendPartitions(nil, s.Partitions), err))
			return nil
		}
		if resp.StatusCode() != fasthttp.StatusOK {
			status, ct, retry := resp.StatusCode(), string(resp.Header.ContentType()), string(resp.Header.Peek(fasthttp.HeaderRetryAfter))
			body, _ := readAtMost(resp, 4<<10)
			f.close()
			ctx.SetStatusCode(status)
			ctx.SetContentType(ct)
			if retry != "" {
				ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, retry)
			}
			ctx.SetBody(body)
			return nil
		}
	}
	return f
}

// readAtMost reads up to n bytes of resp's body, streamed or not.
func readAtMost(resp *fasthttp.Response, n int) ([]byte, error) {
	r := resp.BodyStream()
	if r == nil {
		b := resp.Body()
		return b[:min(n, len(b))], nil
	}
	buf := make([]byte, n)
	total := 0
	for total < n {
		m, err := r.Read(buf[total:])
		total += m
		if err != nil {
			break
		}
	}
	return buf[:total], nil
}

// close ends every stream of f and returns its responses to the pool.
func (f *fanOut) close() {
	for _, r := range f.resps {
		_ = r.CloseBodyStream()
		fasthttp.ReleaseResponse(r)
	}
	f.resps = nil
}

// fanOutArgs returns a copy of ctx's query args with at= set to at: every
// owner evaluates at the coordinator's instant, as one node would.
func fanOutArgs(ctx *fasthttp.RequestCtx, at int64) *fasthttp.Args {
	args := fasthttp.AcquireArgs()
	ctx.QueryArgs().CopyTo(args)
	args.Set("at", time.UnixMilli(at).UTC().Format(time.RFC3339Nano))
	return args
}

// appendPartitions appends parts as api.HeaderPartitions's value.
func appendPartitions(dst []byte, parts []int) []byte {
	for i, p := range parts {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendInt(dst, int64(p), 10)
	}
	return dst
}

// parsePartitions reads api.HeaderPartitions's value: distinct partition
// numbers, comma-separated.
func parsePartitions(s []byte) ([]int, error) {
	var parts []int
	for f := range bytes.SplitSeq(s, []byte{','}) {
		p, err := strconv.Atoi(string(f))
		if err != nil || p < 0 || p > maxPartition || slices.Contains(parts, p) {
			return nil, invalid.Errorf("invalid %s %s: want distinct partition numbers, comma-separated", api.HeaderPartitions, quote.Value(s))
		}
		parts = append(parts, p)
	}
	return parts, nil
}

// maxPartition bounds a partition number of api.HeaderPartitions: the set
// of them is a slice by partition.
const maxPartition = 1 << 16

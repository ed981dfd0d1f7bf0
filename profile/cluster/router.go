package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/tracker/event"
)

// UnavailableError says that a request needs a partition no node can
// answer for now: it has no owner (a rebalance), or its owner did not
// answer. The query API answers it with 503 and Retry-After.
type UnavailableError struct {
	Partition int
	Owner     string // "" when the partition has no owner
	Err       error  // why the owner did not answer; nil when there is none
}

func (e *UnavailableError) Error() string {
	switch {
	case e.Owner == "" && e.Err != nil:
		return fmt.Sprintf("cannot look up the owner of partition %d: %v", e.Partition, e.Err)
	case e.Owner == "":
		return fmt.Sprintf("partition %d has no owner now: the build group is rebalancing (GET /v1/cluster)", e.Partition)
	}
	return fmt.Sprintf("cannot reach the owner %s of partition %d: %v", e.Owner, e.Partition, e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// RouterOptions configures a Router.
type RouterOptions struct {
	// Lookup returns the group's View (Directory.Lookup). Required.
	Lookup func(ctx context.Context) (*View, error)
	// Partitions is the event topic's partition count (storage.Log's
	// Partitions). A visitor's partition is storage.PartitionFor of its
	// log key, where both logs put its events. Required.
	Partitions int
	// Owned returns the partitions this node's builder owns and answers
	// queries for now (builder.Builder.Serving: a partition that moved
	// here serves once it caught up). Required.
	Owned func() []int
	// DialTimeout bounds the connection to an owner. Default 3 s.
	DialTimeout time.Duration
	// Timeout bounds a routed request whose answer is read whole (a
	// lookup, a profile, a link list), from sending it to its last byte.
	// Default 30 s.
	Timeout time.Duration
	// ReadTimeout bounds any routed request, a fanned-out export's stream
	// included. Default 10 m.
	ReadTimeout time.Duration
}

// Router tells the query API where a partition's requests go and sends
// them there: a Directory's View and a pooled fasthttp client. Safe for
// concurrent use.
type Router struct {
	opts   RouterOptions
	client *fasthttp.Client
}

// NewRouter returns a Router for opts.
func NewRouter(opts RouterOptions) (*Router, error) {
	if opts.Lookup == nil || opts.Partitions <= 0 || opts.Owned == nil {
		return nil, errors.New("BUG: cluster.NewRouter needs Lookup, Partitions and Owned")
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 3 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = 10 * time.Minute
	}
	dialer := &fasthttp.TCPDialer{}
	r := &Router{opts: opts, client: &fasthttp.Client{
		Name:                "affinity-router",
		ReadTimeout:         opts.ReadTimeout,
		WriteTimeout:        opts.DialTimeout,
		MaxIdleConnDuration: time.Minute,
		Dial: func(addr string) (net.Conn, error) {
			return dialer.DialTimeout(addr, opts.DialTimeout)
		},
	}}
	return r, nil
}

// Partition returns the partition of site's visitor. It allocates
// nothing: an owner's part of an export calls it for every row.
func (r *Router) Partition(site string, visitor event.UUID) int {
	var buf [96]byte
	return storage.PartitionFor(event.AppendLogKey(buf[:0], site, visitor), r.opts.Partitions)
}

// Owns reports whether this node's builder owns partition p now and
// serves it (RouterOptions.Owned).
func (r *Router) Owns(p int) bool { return slices.Contains(r.opts.Owned(), p) }

// Owner returns the API URL of partition p's owner, or an
// *UnavailableError when p has none now.
func (r *Router) Owner(ctx context.Context, p int) (string, error) {
	v, err := r.opts.Lookup(ctx)
	if err != nil {
		return "", &UnavailableError{Partition: p, Err: err}
	}
	url, ok := v.Owner(p)
	if !ok {
		return "", &UnavailableError{Partition: p}
	}
	return url, nil
}

// Shards returns every owner with its partitions, by URL, or an
// *UnavailableError naming the first partition without an owner (or the
// error of the lookup).
func (r *Router) Shards(ctx context.Context) ([]api.Shard, error) {
	v, err := r.opts.Lookup(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot look up the owners of the partitions: %w", err)
	}
	return v.Shards()
}

// Shards returns v's owners with their partitions, by URL, or an
// *UnavailableError naming the first partition without an owner.
func (v *View) Shards() ([]api.Shard, error) {
	var shards []api.Shard
	for p, url := range v.Owners {
		if url == "" {
			return nil, &UnavailableError{Partition: p}
		}
		i := slices.IndexFunc(shards, func(s api.Shard) bool { return s.URL == url })
		if i < 0 {
			shards = append(shards, api.Shard{URL: url})
			i = len(shards) - 1
		}
		shards[i].Partitions = append(shards[i].Partitions, p)
	}
	slices.SortFunc(shards, func(a, b api.Shard) int {
		switch {
		case a.URL < b.URL:
			return -1
		case a.URL > b.URL:
			return 1
		}
		return 0
	})
	return shards, nil
}

// Do sends req (its URI already the owner's) and reads the answer into
// resp, within Timeout; with resp.StreamBody set the body streams
// (resp.BodyStream, within ReadTimeout) and the caller must close it
// (resp.CloseBodyStream).
func (r *Router) Do(req *fasthttp.Request, resp *fasthttp.Response) error {
	req.Header.Set(api.HeaderHop, "1")
	if !resp.StreamBody {
		req.SetTimeout(r.opts.Timeout)
	}
	return r.client.Do(req, resp)
}

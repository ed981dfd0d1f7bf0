package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// View is the group as described at one instant: who is in it, where
// their APIs are, which partitions each owns.
type View struct {
	Group string
	// Generation is this node's generation when the view was read; -1
	// between generations.
	Generation int32
	// State is the group's state as Kafka says it ("Stable",
	// "PreparingRebalance", "CompletingRebalance", "Empty", "Dead").
	State   string
	Members []MemberView // by member id
	// Owners is the owner's API URL by partition; "" while a partition has
	// no owner.
	Owners []string
	At     time.Time
}

// MemberView is one member of a View.
type MemberView struct {
	ID         string
	API        string
	Partitions []int
}

// Owner returns the API URL of partition p's owner; ok is false when it
// has none (a rebalance in progress, or p out of range).
func (v *View) Owner(p int) (url string, ok bool) {
	if p < 0 || p >= len(v.Owners) || v.Owners[p] == "" {
		return "", false
	}
	return v.Owners[p], true
}

// DirectoryOptions configures a Directory.
type DirectoryOptions struct {
	Brokers    []string
	Topic      string
	Group      string
	Partitions int // of Topic
	// Generation, if set, returns this node's generation (Member.Generation).
	Generation func() int32
	// TTL is how long a View is reused. Default 2 s.
	TTL time.Duration
}

// Directory answers who owns what from the group's description. See the
// package doc.
type Directory struct {
	opts   DirectoryOptions
	client *kafka.Client

	mu   sync.Mutex
	view *View
}

// NewDirectory returns a Directory for opts.
func NewDirectory(opts DirectoryOptions) *Directory {
	if opts.TTL <= 0 {
		opts.TTL = 2 * time.Second
	}
	if opts.Group == "" {
		opts.Group = DefaultOptions().Group
	}
	return &Directory{opts: opts, client: &kafka.Client{Addr: kafka.TCP(opts.Brokers...), Timeout: 10 * time.Second}}
}

// Invalidate drops the cached View: the next Lookup reads the group.
// Member.OnGeneration calls it.
func (d *Directory) Invalidate(int32) {
	d.mu.Lock()
	d.view = nil
	d.mu.Unlock()
}

// Lookup returns the group's View, at most TTL old. The View must not be
// changed.
func (d *Directory) Lookup(ctx context.Context) (*View, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if v := d.view; v != nil && time.Since(v.At) < d.opts.TTL {
		return v, nil
	}
	v, err := d.describe(ctx)
	if err != nil {
		return nil, err
	}
	d.view = v
	return v, nil
}

func (d *Directory) describe(ctx context.Context) (*View, error) {
	resp, err := d.client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{d.opts.Group}})
	if err != nil {
		return nil, fmt.Errorf("cannot describe consumer group %q: %w", d.opts.Group, err)
	}
	if len(resp.Groups) != 1 {
		return nil, fmt.Errorf("cannot describe consumer group %q: %d groups in the answer", d.opts.Group, len(resp.Groups))
	}
	g := resp.Groups[0]
	if g.Error != nil {
		return nil, fmt.Errorf("cannot describe consumer group %q: %w", d.opts.Group, g.Error)
	}
	v := &View{Group: d.opts.Group, Generation: -1, State: g.GroupState, Owners: make([]string, d.opts.Partitions), At: time.Now()}
	if d.opts.Generation != nil {
		v.Generation = d.opts.Generation()
	}
	for _, m := range g.Members {
		mv := MemberView{ID: m.MemberID}
		if meta, err := DecodeMeta(m.MemberMetadata.UserData); err == nil {
			mv.API = meta.API
		}
		for _, t := range m.MemberAssignments.Topics {
			if t.Topic == d.opts.Topic {
				mv.Partitions = append(mv.Partitions, t.Partitions...)
			}
		}
		slices.Sort(mv.Partitions)
		if g.GroupState == "Stable" {
			// Mid-rebalance the assignments are the last generation's:
			// their owners may have revoked them already.
			for _, p := range mv.Partitions {
				if p >= 0 && p < len(v.Owners) {
					v.Owners[p] = mv.API
				}
			}
		}
		v.Members = append(v.Members, mv)
	}
	slices.SortFunc(v.Members, func(a, b MemberView) int { return strings.Compare(a.ID, b.ID) })
	return v, nil
}

// Close releases the Directory's connections.
func (d *Directory) Close() error {
	if t, ok := d.client.Transport.(*kafka.Transport); ok && t != nil {
		t.CloseIdleConnections()
	}
	return nil
}

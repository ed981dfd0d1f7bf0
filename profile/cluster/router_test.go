package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/tracker/event"
)

func TestViewShards(t *testing.T) {
	f := func(owners []string, want string, wantErr string) {
		t.Helper()
		shards, err := (&View{Owners: owners}).Shards()
		if got := fmt.Sprint(shards); got != want {
			t.Errorf("Shards of %q = %s; want %s", owners, got, want)
		}
		var ue *UnavailableError
		if (err == nil) != (wantErr == "") || err != nil && (!errors.As(err, &ue) || err.Error() != wantErr) {
			t.Errorf("Shards of %q: err %v; want %q", owners, err, wantErr)
		}
	}
	f([]string{"http://b", "http://a", "http://b", "http://a"}, "[{http://a [1 3]} {http://b [0 2]}]", "")
	f([]string{"http://a"}, "[{http://a [0]}]", "")
	f([]string{"http://a", "", "http://b"}, "[]", "partition 1 has no owner now: the build group is rebalancing (GET /v1/cluster)")
	f(nil, "[]", "")
}

func TestRouterPartition(t *testing.T) {
	r, err := NewRouter(RouterOptions{Partitions: 8, Owned: func() []int { return []int{2} },
		Lookup: func(context.Context) (*View, error) { return &View{Owners: []string{"", "", "http://me"}}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 64 {
		v := event.UUID{byte(i), 7}
		want := storage.PartitionFor(event.AppendLogKey(nil, "shop", v), 8)
		if got := r.Partition("shop", v); got != want {
			t.Fatalf("Partition of visitor %s = %d; want the log's %d", v, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { r.Partition("shop", event.UUID{1}) }); n != 0 {
		t.Errorf("Partition allocates %v times; want 0 (an owner calls it per exported row)", n)
	}
	if !r.Owns(2) || r.Owns(1) {
		t.Errorf("Owns(2), Owns(1) = %v, %v; want true, false", r.Owns(2), r.Owns(1))
	}
	if url, err := r.Owner(context.Background(), 2); url != "http://me" || err != nil {
		t.Errorf("Owner(2) = %q, %v", url, err)
	}
	if _, err := r.Owner(context.Background(), 1); err == nil || err.Error() != "partition 1 has no owner now: the build group is rebalancing (GET /v1/cluster)" {
		t.Errorf("Owner(1) = %v; want partition 1 without owner", err)
	}
	down, _ := NewRouter(RouterOptions{Partitions: 8, Owned: func() []int { return nil },
		Lookup: func(context.Context) (*View, error) { return nil, errors.New("no broker answers") }})
	if _, err := down.Owner(context.Background(), 3); err == nil || err.Error() != "cannot look up the owner of partition 3: no broker answers" {
		t.Errorf("Owner with the group unreadable = %v", err)
	}
	if _, err := down.Shards(context.Background()); err == nil || err.Error() != "cannot look up the owners of the partitions: no broker answers" {
		t.Errorf("Shards with the group unreadable = %v", err)
	}
	if _, err := NewRouter(RouterOptions{Partitions: 8}); err == nil {
		t.Error("NewRouter without Lookup and Owned succeeded")
	}
}

// TestRouterTimeout: an owner that accepts a lookup and never answers
// costs the asking node Timeout, then an error, not a request held open.
func TestRouterTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	r, err := NewRouter(RouterOptions{Partitions: 1, Owned: func() []int { return nil }, Timeout: 100 * time.Millisecond,
		Lookup: func(context.Context) (*View, error) { return &View{}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + ln.Addr().String() + "/v1/visitors/shop/x")
	if err := r.Do(req, resp); !errors.Is(err, fasthttp.ErrTimeout) {
		t.Fatalf("Do to a silent owner = %v; want fasthttp.ErrTimeout", err)
	}
	if string(req.Header.Peek(api.HeaderHop)) != "1" {
		t.Errorf("the routed request carries no %s", api.HeaderHop)
	}
}

package query_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/tracker/event"
)

// BenchmarkClusterMembersExport streams a segment of 20 000 members with
// their facts from one node holding every partition, and from a node of a
// two-node group, which fans the export out to both owners over loopback
// and merges their streams: the cost of the merge and the extra hop.
func BenchmarkClusterMembersExport(b *testing.B) {
	benchClusterExport(b, func(int) string { return "m@x.y" }, "", 20000)
}

// BenchmarkClusterMembersByEmail streams the by=email export of 20 000
// members, two per email, from one node holding every partition, and from
// a node of a two-node group: the owners' candidate streams merged, and
// each window of 512 candidates joined by one lookup per owner.
func BenchmarkClusterMembersByEmail(b *testing.B) {
	benchClusterExport(b, func(i int) string { return fmt.Sprintf("m%d@x.y", i/2) }, "&by=email", 10000)
}

// benchClusterExport exports the 20 000 members of a segment, visitor i
// identified by email(i), with args, expecting rows rows, from one node
// and from a node of a group of two.
func benchClusterExport(b *testing.B, email func(i int) string, args string, rows int) {
	f := newClusterFixture(b)
	for _, e := range f.all() {
		if code, body := e.Do(b, http.MethodPut, "/v1/segments/shop/all", "text/plain", []byte(`count(view) >= 1`), true); code != 201 {
			b.Fatalf("PUT: %d %s", code, body)
		}
	}
	const n = 20000
	bs := make([]*event.Batch, 0, n)
	for i := range n {
		bs = append(bs, profiletest.Batch(clusterSite, profiletest.Visitor(i), profiletest.View(t0, nutrilon), profiletest.Identify(t0, email(i))))
	}
	for i := 0; i < n; i += 2000 {
		f.send(b, bs[i:i+2000]...)
	}
	for _, c := range []struct {
		name string
		env  *profiletest.Env
	}{{"one-node", f.ref}, {"group-of-2", f.nodes[0]}} {
		b.Run(c.name, func(b *testing.B) {
			benchExport(b, c.env.URL+"/v1/segments/shop/all/members?at=2026-02-01T00:00:00Z"+args, rows)
		})
	}
}

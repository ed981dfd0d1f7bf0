package defs_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/affinityhq/affinity/profile/defs"
	"github.com/affinityhq/affinity/profile/profiletest"
)

// BenchmarkSubmitSegment measures a segment put's round trip on kfake:
// produced, consumed by the node's own consumer, applied (compile, store,
// backfill start over no profiles), answered.
func BenchmarkSubmitSegment(b *testing.B) {
	n := openNode(b, profiletest.StartKafka(b), "")
	rule := []byte(`count(purchase, 90d) >= 1`)
	b.ReportAllocs()
	b.SetBytes(int64(len(rule)))
	b.ResetTimer()
	for i := range b.N {
		r := &defs.Record{Kind: defs.KindSegment, Op: defs.OpPut, Site: "shop", Name: "s" + strconv.Itoa(i%64), Args: []string{"visitor"}, Body: rule}
		if i%128 >= 64 {
			r.Body = []byte(strings.Replace(string(rule), ">= 1", ">= 2", 1))
		}
		if _, err := n.Definitions.Submit(context.Background(), r); err != nil {
			b.Fatal(err)
		}
	}
}

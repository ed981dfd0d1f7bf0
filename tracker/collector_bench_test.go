package tracker

import (
	"net"
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkHandler measures the collector's handler on one request of the
// 10-event fixture, decode to durable append on a real EmbeddedLog, without
// the network. Parallel requests share the log's group commits, as they do
// under load.
func BenchmarkHandler(b *testing.B) { benchmarkHandler(b, nil) }

// BenchmarkHandlerSiteRate is BenchmarkHandler with the site under a
// --site-rate it never reaches: the cost of the token bucket.
func BenchmarkHandlerSiteRate(b *testing.B) {
	benchmarkHandler(b, func(o *Options) { o.Sites = []Site{{Key: "shop-7f3a", Rate: 1 << 30}} })
}

func benchmarkHandler(b *testing.B, mutate func(*Options)) {
	tc := startCollector(b, mutate)
	body := []byte(fixture(b, "batch10.json"))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	b.SetParallelism(32) // 64 requests in flight on 2 cores, as behind a busy listener
	b.RunParallel(func(pb *testing.PB) {
		var ctx fasthttp.RequestCtx
		var req fasthttp.Request
		ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
		for pb.Next() {
			ctx.Request.Reset()
			ctx.Response.Reset()
			ctx.Request.Header.SetMethod(fasthttp.MethodPost)
			ctx.Request.SetRequestURI("/v1/events")
			ctx.Request.Header.SetContentType("text/plain")
			ctx.Request.Header.SetUserAgent(browserUA)
			ctx.Request.SetBody(body)
			tc.Handle(&ctx)
			if ctx.Response.StatusCode() != fasthttp.StatusAccepted {
				b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
		}
	})
	b.ReportMetric(float64(b.N)*10/b.Elapsed().Seconds(), "events/s")
}

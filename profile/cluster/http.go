package cluster

import (
	"context"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/tracker/event"
)

// Path is the route of the cluster view on the query API.
const Path = "/v1/cluster"

// Register adds GET /v1/cluster to s: the group's View as JSON.
func (d *Directory) Register(s *api.Server) { s.Handle(Path, d.serve) }

func (d *Directory) serve(ctx *fasthttp.RequestCtx) {
	if string(ctx.Path()) != Path {
		api.Error(ctx, fasthttp.StatusNotFound, "no such route "+quote.OneLine(string(ctx.Path())))
		return
	}
	if !ctx.IsGet() {
		ctx.Response.Header.Set(fasthttp.HeaderAllow, "GET")
		api.Error(ctx, fasthttp.StatusMethodNotAllowed, "method "+string(ctx.Method())+" not allowed on "+Path+"; allowed: GET")
		return
	}
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := d.Lookup(c)
	if err != nil {
		api.Error(ctx, fasthttp.StatusServiceUnavailable, quote.OneLine(err.Error()))
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(append(v.AppendJSON(nil), '\n'))
}

// AppendJSON appends v as the JSON object GET /v1/cluster answers:
// {"group","generation","state","members":[{"id","api","partitions"}],
// "owners":[url or null, by partition]}.
func (v *View) AppendJSON(dst []byte) []byte {
	dst = event.AppendJSONString(append(dst, `{"group":`...), v.Group)
	dst = strconv.AppendInt(append(dst, `,"generation":`...), int64(v.Generation), 10)
	dst = event.AppendJSONString(append(dst, `,"state":`...), v.State)
	dst = append(dst, `,"members":[`...)
	for i, m := range v.Members {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = event.AppendJSONString(append(dst, `{"id":`...), m.ID)
		dst = event.AppendJSONString(append(dst, `,"api":`...), m.API)
		dst = appendInts(append(dst, `,"partitions":`...), m.Partitions)
		dst = append(dst, '}')
	}
	dst = append(dst, `],"owners":[`...)
	for p, url := range v.Owners {
		if p > 0 {
			dst = append(dst, ',')
		}
		if url == "" {
			dst = append(dst, "null"...)
		} else {
			dst = event.AppendJSONString(dst, url)
		}
	}
	return append(dst, "]}"...)
}

func appendInts(dst []byte, xs []int) []byte {
	dst = append(dst, '[')
	for i, x := range xs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendInt(dst, int64(x), 10)
	}
	return append(dst, ']')
}

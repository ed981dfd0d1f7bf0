package query

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/profile/importer"
	"github.com/affinityhq/affinity/storage"
)

const importPrefix = "/v1/import/"

// ordersPool holds parsed uploads, so that a large import's arena is
// reused by the next one.
var ordersPool = sync.Pool{New: func() any { return &importer.Orders{} }}

// serveImport serves POST /v1/import/{site}/orders and
// GET /v1/import/{site}/orders/{id}.
func (h *Handler) serveImport(ctx *fasthttp.RequestCtx) {
	segs, ok := splitPath(ctx.Path(), importPrefix, 2)
	if !ok || segs[1] != "orders" && !bytes.HasPrefix([]byte(segs[1]), []byte("orders/")) {
		api.NoRoute(ctx, "/v1/import/{site}/orders[/{id}]")
		return
	}
	if h.opts.Importer == nil {
		api.Error(ctx, fasthttp.StatusServiceUnavailable, "this node does not import orders: it runs no builder")
		return
	}
	site := segs[0]
	if err := checkSite(site); err != nil {
		h.refuse(ctx, err)
		return
	}
	if segs[1] == "orders" {
		if !ctx.IsPost() {
			methodNotAllowed(ctx, "POST")
			return
		}
		h.postOrders(ctx, site)
		return
	}
	if !ctx.IsGet() && !ctx.IsHead() {
		methodNotAllowed(ctx, "GET, HEAD")
		return
	}
	pr, err := h.opts.Importer.Progress(segs[1][len("orders/"):])
	if err != nil {
		h.refuse(ctx, err)
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(append(pr.AppendJSON(nil), '\n'))
}

// postOrders imports an upload of orders: validated whole (a bad row
// answers 400 with its line, and nothing is appended), then appended to
// the event log; 202 once the log holds every record.
func (h *Handler) postOrders(ctx *fasthttp.RequestCtx, site string) {
	im := h.opts.Importer
	format, err := importer.FormatOf(string(ctx.QueryArgs().Peek("format")), string(ctx.Request.Header.ContentType()))
	if err != nil {
		im.Refused()
		api.Error(ctx, fasthttp.StatusUnsupportedMediaType, err.Error())
		return
	}
	body := ctx.Request.Body()
	ce := string(ctx.Request.Header.ContentEncoding())
	gz := ce == "gzip" || (ce == "" || ce == "identity") && len(body) > 2 && body[0] == 0x1f && body[1] == 0x8b
	switch {
	case gz:
		if body, err = gunzip(body, h.opts.MaxImportBytes); errors.Is(err, errTooLarge) {
			im.Refused()
			api.Error(ctx, fasthttp.StatusRequestEntityTooLarge, fmt.Sprintf("orders upload larger than the limit of %d bytes after gunzip: split it into several uploads", h.opts.MaxImportBytes))
			return
		} else if err != nil {
			im.Refused()
			h.badRequest(ctx, "invalid gzip upload: "+quote.OneLine(err.Error()))
			return
		}
	case ce == "" || ce == "identity":
	default:
		im.Refused()
		api.Error(ctx, fasthttp.StatusUnsupportedMediaType, fmt.Sprintf("unsupported Content-Encoding %s: send the orders plain or gzip", quote.Value(ce)))
		return
	}
	orders := ordersPool.Get().(*importer.Orders)
	defer ordersPool.Put(orders)
	if err := importer.Parse(body, format, im.Now(), orders); err != nil {
		im.Refused()
		h.refuse(ctx, err)
		return
	}
	res, err := im.Import(ctx, site, orders)
	orders.Reset()
	if errors.Is(err, storage.ErrFull) {
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "5")
		api.Error(ctx, fasthttp.StatusServiceUnavailable, quote.OneLine(err.Error())+"; send the whole upload again: orders already stored are not applied twice")
		return
	}
	if err != nil {
		h.refuse(ctx, err)
		return
	}
	out := append([]byte(`{"id":"`), res.ID...)
	out = append(out, `","orders":`...)
	out = strconv.AppendInt(out, int64(res.Orders), 10)
	out = append(out, `,"persons":`...)
	out = strconv.AppendInt(out, int64(res.Persons), 10)
	out = append(out, `,"records":`...)
	out = strconv.AppendInt(out, int64(res.Records), 10)
	out = append(out, "}\n"...)
	ctx.SetStatusCode(fasthttp.StatusAccepted)
	ctx.SetContentType("application/json")
	ctx.SetBody(out)
}

package query

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/profile/catalog"
	"github.com/affinityhq/affinity/profile/defs"
)

const catalogPrefix = "/v1/catalog/"

// serveCatalog serves PUT /v1/catalog/{site} and GET /v1/catalog/{site}/{id}.
func (h *Handler) serveCatalog(ctx *fasthttp.RequestCtx) {
	rest := ctx.Path()[len(catalogPrefix):]
	if i := bytes.IndexByte(rest, '/'); i < 0 || i == len(rest)-1 {
		site := string(bytes.TrimSuffix(rest, []byte("/")))
		if site == "" {
			api.NoRoute(ctx, "/v1/catalog/{site}")
			return
		}
		if !ctx.IsPut() {
			methodNotAllowed(ctx, "PUT")
			return
		}
		h.putCatalog(ctx, site)
		return
	}
	segs, ok := splitPath(ctx.Path(), catalogPrefix, 2)
	if !ok {
		api.NoRoute(ctx, "/v1/catalog/{site}/{id}")
		return
	}
	if !ctx.IsGet() && !ctx.IsHead() {
		methodNotAllowed(ctx, "GET, HEAD")
		return
	}
	h.getProduct(ctx, segs[0], segs[1])
}

// putCatalog stores the products of an uploaded catalog: upserted by id,
// the later row winning within one upload; products the upload does not
// name are kept (events of discontinued products still resolve). The body
// is validated whole before anything is stored: a bad row answers 400 with
// its line and reason, and nothing changes.
func (h *Handler) putCatalog(ctx *fasthttp.RequestCtx, site string) {
	if err := checkSite(site); err != nil {
		h.refuse(ctx, err)
		return
	}
	format, err := catalog.FormatOf(string(ctx.Request.Header.ContentType()))
	if err != nil {
		h.m.catalogBad.Inc()
		api.Error(ctx, fasthttp.StatusUnsupportedMediaType, err.Error())
		return
	}
	body := ctx.Request.Body()
	tooLarge := len(body) > h.opts.MaxCatalogBytes
	switch ce := string(ctx.Request.Header.ContentEncoding()); ce {
	case "", "identity":
	case "gzip":
		if !tooLarge {
			if body, err = gunzip(body, h.opts.MaxCatalogBytes); errors.Is(err, errTooLarge) {
				tooLarge = true
			} else if err != nil {
				h.m.catalogBad.Inc()
				h.badRequest(ctx, "invalid gzip catalog: "+quote.OneLine(err.Error()))
				return
			}
		}
	default:
		h.m.catalogBad.Inc()
		api.Error(ctx, fasthttp.StatusUnsupportedMediaType, fmt.Sprintf("unsupported Content-Encoding %s: send the catalog plain or gzip", quote.Value(ce)))
		return
	}
	if tooLarge {
		h.m.catalogBad.Inc()
		api.Error(ctx, fasthttp.StatusRequestEntityTooLarge, fmt.Sprintf("catalog larger than the limit of %d bytes (--catalog-max-bytes, after gunzip): split it into several uploads",
			h.opts.MaxCatalogBytes))
		return
	}
	// Pass 1: validate everything, store nothing.
	n := 0
	err = catalog.Parse(bytes.NewReader(body), format, h.opts.Catalog, func(int, *catalog.Product) error {
		n++
		return nil
	})
	if err != nil {
		h.m.catalogBad.Inc()
		h.refuse(ctx, err)
		return
	}
	// Pass 2: store. Catalog uploads are upserts, so each is its own
	// record on the definitions topic (named by a fresh upload id): a
	// node replaying the topic applies every one, in order.
	v, err := h.writeDefinition(&defs.Record{Kind: defs.KindCatalog, Op: defs.OpPut, Site: site, Name: defs.NewUploadID(),
		Args: []string{string(ctx.Request.Header.ContentType())}, Body: body})
	if err != nil {
		h.refuseDefinition(ctx, err)
		return
	}
	n = v.(int)
	h.m.catalogPuts.Inc()
	h.m.catalogProducts.Add(n)
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"products":` + strconv.Itoa(n) + "}\n")
}

// storeCatalog stores the products of a validated upload (ApplyDefinition)
// and returns their count.
func (h *Handler) storeCatalog(site string, body []byte, format catalog.Format) (int, error) {
	w, err := h.opts.State.NewProductWriter(site)
	if err != nil {
		return 0, err
	}
	var val []byte
	n := 0
	err = catalog.Parse(bytes.NewReader(body), format, h.opts.Catalog, func(_ int, p *catalog.Product) error {
		n++
		val = catalog.AppendProduct(val[:0], p)
		return w.Put(p.ID, val)
	})
	if err != nil {
		w.Cancel()
		return 0, err
	}
	return n, w.Flush()
}

var errTooLarge = errors.New("too large")

// gunzip inflates a gzip body of at most max bytes; more is errTooLarge.
func gunzip(body []byte, max int) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	out, err := io.ReadAll(io.LimitReader(zr, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if len(out) > max {
		return nil, errTooLarge
	}
	return out, nil
}

func (h *Handler) getProduct(ctx *fasthttp.RequestCtx, site, id string) {
	if err := checkSite(site); err != nil {
		h.refuse(ctx, err)
		return
	}
	h.m.catalogGets.Inc()
	sc := h.pool.Get().(*scratch)
	defer h.pool.Put(sc)
	var found bool
	var err error
	sc.buf, found, err = h.opts.State.Product(site, id, sc.buf)
	if err != nil {
		h.internalError(ctx, err)
		return
	}
	if !found {
		api.Error(ctx, fasthttp.StatusNotFound, fmt.Sprintf("no product %s in the catalog of site %s", quote.Value(id), quote.Value(site)))
		return
	}
	if err := catalog.DecodeProduct(&sc.prod, sc.buf); err != nil {
		h.internalError(ctx, fmt.Errorf("cannot decode product %q of site %q: %w", id, site, err))
		return
	}
	sc.out = append(sc.prod.AppendJSON(sc.out[:0]), '\n')
	ctx.SetContentType("application/json")
	ctx.SetBody(sc.out)
}

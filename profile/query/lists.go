package query

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/profile/defs"
	"github.com/affinityhq/affinity/profile/lists"
	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/tracker/event"
)

// The static list API (with Options.Segments, whose rules read the lists):
//
//	PUT    /v1/lists/{site}/{name}     CSV or NDJSON, gzip ok → 201 (created) / 200, the list; 400 "line N: …"
//	GET    /v1/lists/{site}            the lists with their sizes
//	GET    /v1/lists/{site}/{name}     the list; ?format=csv|ndjson streams its rows
//	DELETE /v1/lists/{site}/{name}     204, 404
const listsPrefix = "/v1/lists/"

func (h *Handler) serveLists(ctx *fasthttp.RequestCtx) {
	if h.opts.Segments == nil {
		api.Error(ctx, fasthttp.StatusServiceUnavailable, "this process keeps no lists: send list requests to the process running affinity serve or build")
		return
	}
	parts, ok := h.sitePath(ctx, listsPrefix, 2, "/v1/lists/{site}[/{name}]")
	if !ok {
		return
	}
	site := parts[0]
	if len(parts) == 1 {
		if !ctx.IsGet() && !ctx.IsHead() {
			methodNotAllowed(ctx, "GET, HEAD")
			return
		}
		h.listLists(ctx, site)
		return
	}
	name := parts[1]
	if err := lists.CheckName(name); err != nil {
		h.refuse(ctx, err)
		return
	}
	switch {
	case ctx.IsPut():
		h.putList(ctx, site, name)
	case ctx.IsGet() || ctx.IsHead():
		h.getList(ctx, site, name)
	case ctx.IsDelete():
		h.deleteList(ctx, site, name)
	default:
		methodNotAllowed(ctx, "GET, HEAD, PUT, DELETE")
	}
}

func (h *Handler) noList(ctx *fasthttp.RequestCtx, site, name string) {
	api.Error(ctx, fasthttp.StatusNotFound, fmt.Sprintf("no list %s of site %s", quote.Value(name), quote.Value(site)))
}

// putList replaces a list by the upload, whole or not at all: a bad row
// answers 400 "line N: invalid <field> <value>: reason" and the list stays
// as it was. The answer comes once the new list is in force; the visitors
// it changes are re-evaluated in the background ("reevaluation" in the
// list's JSON).
func (h *Handler) putList(ctx *fasthttp.RequestCtx, site, name string) {
	format, err := lists.FormatOf(string(ctx.Request.Header.ContentType()))
	if err != nil {
		api.Error(ctx, fasthttp.StatusUnsupportedMediaType, err.Error())
		return
	}
	body := ctx.Request.Body()
	tooLarge := len(body) > h.opts.MaxListBytes
	switch ce := string(ctx.Request.Header.ContentEncoding()); ce {
	case "", "identity":
	case "gzip":
		if !tooLarge {
			if body, err = gunzip(body, h.opts.MaxListBytes); errors.Is(err, errTooLarge) {
				tooLarge = true
			} else if err != nil {
				h.badRequest(ctx, "invalid gzip list: "+quote.OneLine(err.Error()))
				return
			}
		}
	default:
		api.Error(ctx, fasthttp.StatusUnsupportedMediaType, fmt.Sprintf("unsupported Content-Encoding %s: send the list plain or gzip", quote.Value(ce)))
		return
	}
	if tooLarge {
		api.Error(ctx, fasthttp.StatusRequestEntityTooLarge, fmt.Sprintf("list larger than the limit of %d bytes (after gunzip)", h.opts.MaxListBytes))
		return
	}
	// Validate the whole upload before it is written to the topic (alone,
	// the store refuses it whole).
	if h.opts.Definitions != nil {
		if err := lists.Parse(bytes.NewReader(body), format, func(int, []byte, []byte) error { return nil }); err != nil {
			h.refuse(ctx, err)
			return
		}
	}
	v, err := h.writeDefinition(&defs.Record{Kind: defs.KindList, Op: defs.OpPut, Site: site, Name: name,
		Args: []string{string(ctx.Request.Header.ContentType())}, Body: body})
	if err != nil {
		h.refuseDefinition(ctx, err)
		return
	}
	m := v.(lists.Meta)
	if m.Pending == 0 {
		ctx.SetStatusCode(fasthttp.StatusCreated)
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(append(h.appendList(nil, &m), '\n'))
}

func (h *Handler) deleteList(ctx *fasthttp.RequestCtx, site, name string) {
	if _, found, err := h.opts.Segments.Lists().Meta(site, name); err != nil || !found {
		if err != nil {
			h.refuse(ctx, err)
		} else {
			h.noList(ctx, site, name)
		}
		return
	}
	v, err := h.writeDefinition(&defs.Record{Kind: defs.KindList, Op: defs.OpDelete, Site: site, Name: name})
	if err != nil {
		h.refuseDefinition(ctx, err)
		return
	}
	if !v.(bool) {
		h.noList(ctx, site, name)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

func (h *Handler) listLists(ctx *fasthttp.RequestCtx, site string) {
	ms, err := h.opts.Segments.Lists().Metas(site)
	if err != nil {
		h.refuse(ctx, err)
		return
	}
	out := append([]byte(nil), `{"site":`...)
	out = event.AppendJSONString(out, site)
	out = append(out, `,"lists":[`...)
	for i := range ms {
		if i > 0 {
			out = append(out, ',')
		}
		out = h.appendList(out, &ms[i])
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(append(out, "]}\n"...))
}

// getList answers the list's JSON, or with ?format=csv|ndjson streams its
// rows: the emails in byte order, then the customer ids (csv: a header
// email,customer_id and one of the two per row; ndjson: {"email":…} or
// {"customer_id":…}).
func (h *Handler) getList(ctx *fasthttp.RequestCtx, site, name string) {
	m, found, err := h.opts.Segments.Lists().Meta(site, name)
	if err != nil {
		h.refuse(ctx, err)
		return
	}
	if !found {
		h.noList(ctx, site, name)
		return
	}
	var csv bool
	switch f := string(ctx.QueryArgs().Peek("format")); f {
	case "":
		ctx.SetContentType("application/json")
		ctx.SetBody(append(h.appendList(nil, &m), '\n'))
		return
	case "csv":
		csv = true
		ctx.SetContentType("text/csv; charset=utf-8")
	case "ndjson":
		ctx.SetContentType("application/x-ndjson")
	default:
		h.badRequest(ctx, fmt.Sprintf("invalid format=%s: want csv or ndjson", quote.Value(f)))
		return
	}
	if ctx.IsHead() {
		return
	}
	store, logf := h.opts.Segments.Lists(), h.opts.Logger.Printf
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		var line []byte
		if csv {
			_, _ = w.WriteString("email,customer_id\n")
		}
		err := store.ScanGen(site, name, m.Gen, func(email, customer []byte) bool {
			line = appendListRow(line[:0], email, customer, csv)
			_, err := w.Write(line)
			return err == nil
		})
		if err != nil {
			logf("query: list %q of site %q: %s", name, site, err)
		}
	})
}

// appendListRow appends one row of a list export.
func appendListRow(dst, email, customer []byte, csv bool) []byte {
	switch {
	case csv && email != nil:
		return append(append(dst, email...), ",\n"...) // a valid email holds no , " or newline
	case csv:
		dst = append(dst, ',')
		if bytes.ContainsAny(customer, ",\"\r\n") {
			dst = append(dst, '"')
			dst = append(dst, bytes.ReplaceAll(customer, []byte(`"`), []byte(`""`))...)
			return append(dst, "\"\n"...)
		}
		return append(append(dst, customer...), '\n')
	case email != nil:
		return append(event.AppendJSONString(append(dst, `{"email":`...), string(email)), "}\n"...)
	}
	return append(event.AppendJSONString(append(dst, `{"customer_id":`...), string(customer)), "}\n"...)
}

// appendList appends the JSON of a list:
//
//	{"site":…,"name":…,"emails":N,"customer_ids":N,"rows":N,"generation":N,"created":…,"updated":…,
//	 "reevaluation":{"state":"running|done","scanned":N,"total":N}}
func (h *Handler) appendList(out []byte, m *lists.Meta) []byte {
	out = append(out, `{"site":`...)
	out = event.AppendJSONString(out, m.Site)
	out = append(out, `,"name":`...)
	out = event.AppendJSONString(out, m.Name)
	out = append(out, `,"emails":`...)
	out = strconv.AppendUint(out, m.Emails, 10)
	out = append(out, `,"customer_ids":`...)
	out = strconv.AppendUint(out, m.Customers, 10)
	out = append(out, `,"rows":`...)
	out = strconv.AppendUint(out, m.Rows, 10)
	out = append(out, `,"generation":`...)
	out = strconv.AppendUint(out, m.Gen, 10)
	out = append(out, `,"created":`...)
	out = profile.AppendJSONTime(out, m.Created)
	out = append(out, `,"updated":`...)
	out = profile.AppendJSONTime(out, m.Updated)
	out = append(out, `,"reevaluation":{"state":`...)
	bf := h.opts.Segments.ListChange(m.Site, m.Name)
	if bf == nil || bf.Gen != m.Gen {
		bf = nil
	}
	out = appendReevaluation(out, bf, !m.Unsettled)
	return append(out, "}}"...)
}

// appendReevaluation appends the state of a re-evaluation and, when this
// process runs it, its progress.
func appendReevaluation(out []byte, bf *membership.Backfill, settled bool) []byte {
	if bf == nil {
		if settled {
			return append(out, `"done"`...)
		}
		return append(out, `"pending"`...)
	}
	scanned, total, done := bf.Progress()
	if done || settled {
		out = append(out, `"done"`...)
	} else {
		out = append(out, `"running"`...)
	}
	out = append(out, `,"scanned":`...)
	out = strconv.AppendInt(out, scanned, 10)
	out = append(out, `,"total":`...)
	if total < 0 {
		return append(out, "null"...)
	}
	return strconv.AppendInt(out, total, 10)
}

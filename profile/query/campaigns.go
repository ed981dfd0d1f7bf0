package query

import (
	"bufio"
	"errors"
	"fmt"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/profile/campaign"
	"github.com/affinityhq/affinity/tracker/event"
)

// The campaign API (with Options.Segments, whose segments and lists are
// the arms):
//
//	POST   /v1/campaigns/{site}                      JSON definition → 201, the campaign (its audience frozen)
//	GET    /v1/campaigns/{site}                      the campaigns
//	GET    /v1/campaigns/{site}/{id}                 the campaign
//	DELETE /v1/campaigns/{site}/{id}                 204, 404
//	GET    /v1/campaigns/{site}/{id}/recipients      ?format=csv|ndjson[&arm=][&group=treated|control]
//	GET    /v1/campaigns/{site}/{id}/report          JSON; ?format=csv
const campaignsPrefix = "/v1/campaigns/"

// maxCampaignBytes bounds a campaign's JSON definition.
const maxCampaignBytes = 64 << 10

func (h *Handler) serveCampaigns(ctx *fasthttp.RequestCtx) {
	if h.campaigns == nil {
		api.Error(ctx, fasthttp.StatusServiceUnavailable, "this process keeps no campaigns: send campaign requests to the process running affinity serve or build")
		return
	}
	parts, ok := h.sitePath(ctx, campaignsPrefix, 3, "/v1/campaigns/{site}[/{id}[/recipients|/report]]")
	if !ok {
		return
	}
	site := parts[0]
	if len(parts) == 1 {
		switch {
		case ctx.IsPost():
			h.createCampaign(ctx, site)
		case ctx.IsGet() || ctx.IsHead():
			h.listCampaigns(ctx, site)
		default:
			methodNotAllowed(ctx, "GET, HEAD, POST")
		}
		return
	}
	id, err := campaign.ParseID(parts[1])
	if err != nil {
		h.refuse(ctx, err)
		return
	}
	if len(parts) == 2 && ctx.IsDelete() {
		h.deleteCampaign(ctx, site, id)
		return
	}
	if !ctx.IsGet() && !ctx.IsHead() {
		if len(parts) == 2 {
			methodNotAllowed(ctx, "GET, HEAD, DELETE")
		} else {
			methodNotAllowed(ctx, "GET, HEAD")
		}
		return
	}
	c, err := h.campaigns.Get(site, id)
	if errors.Is(err, campaign.ErrNotFound) {
		api.Error(ctx, fasthttp.StatusNotFound, fmt.Sprintf("no campaign %d of site %s", id, quote.Value(site)))
		return
	}
	if err != nil {
		h.internalError(ctx, err)
		return
	}
	switch {
	case len(parts) == 2:
		ctx.SetContentType("application/json")
		ctx.SetBody(append(c.AppendJSON(nil), '\n'))
	case parts[2] == "recipients":
		h.campaignRecipients(ctx, c)
	case parts[2] == "report":
		h.campaignReport(ctx, c)
	default:
		api.NoRoute(ctx, "/v1/campaigns/{site}/{id}/recipients or /report")
	}
}

func (h *Handler) createCampaign(ctx *fasthttp.RequestCtx, site string) {
	body := ctx.PostBody()
	if len(body) > maxCampaignBytes {
		api.Error(ctx, fasthttp.StatusRequestEntityTooLarge, fmt.Sprintf("campaign of %d bytes: at most %d", len(body), maxCampaignBytes))
		return
	}
	c, err := campaign.ParseSpec(site, body)
	if err == nil {
		err = h.campaigns.Create(c)
	}
	if err != nil {
		h.refuse(ctx, err)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusCreated)
	ctx.SetContentType("application/json")
	ctx.SetBody(append(c.AppendJSON(nil), '\n'))
}

func (h *Handler) listCampaigns(ctx *fasthttp.RequestCtx, site string) {
	cs, err := h.campaigns.List(site)
	if err != nil {
		h.refuse(ctx, err)
		return
	}
	out := event.AppendJSONString(append([]byte(nil), `{"site":`...), site)
	out = append(out, `,"campaigns":[`...)
	for i, c := range cs {
		if i > 0 {
			out = append(out, ',')
		}
		out = c.AppendJSON(out)
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(append(out, "]}\n"...))
}

func (h *Handler) deleteCampaign(ctx *fasthttp.RequestCtx, site string, id uint64) {
	found, err := h.campaigns.Delete(site, id)
	if err != nil {
		h.internalError(ctx, err)
		return
	}
	if !found {
		api.Error(ctx, fasthttp.StatusNotFound, fmt.Sprintf("no campaign %d of site %s", id, quote.Value(site)))
		return
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

// campaignRecipients streams the treated (or with group=control the
// control) recipients, of every arm or of arm=: CSV email,arm,variant,token
// or NDJSON with those fields.
func (h *Handler) campaignRecipients(ctx *fasthttp.RequestCtx, c *campaign.Campaign) {
	args := ctx.QueryArgs()
	var csv bool
	switch f := string(args.Peek("format")); f {
	case "csv":
		csv = true
		ctx.SetContentType("text/csv; charset=utf-8")
	case "ndjson":
		ctx.SetContentType("application/x-ndjson")
	default:
		h.badRequest(ctx, fmt.Sprintf("invalid format=%s: want csv or ndjson", quote.Value(f)))
		return
	}
	var control bool
	switch g := string(args.Peek("group")); g {
	case "", "treated":
	case "control":
		control = true
	default:
		h.badRequest(ctx, fmt.Sprintf("invalid group=%s: want treated or control", quote.Value(g)))
		return
	}
	arm := -1
	if a := args.Peek("arm"); a != nil {
		for i := range c.Arms {
			if c.Arms[i].Name == string(a) {
				arm = i
			}
		}
		if arm < 0 {
			h.badRequest(ctx, fmt.Sprintf("invalid arm=%s: campaign %d has no such arm", quote.Value(a), c.ID))
			return
		}
	}
	if ctx.IsHead() {
		return
	}
	store, logf := h.campaigns, h.opts.Logger.Printf
	ctx.SetBodyStream(&streamBody{write: func(w *bufio.Writer) {
		if err := writeRecipients(w, store, c, arm, control, csv); err != nil {
			logf("query: recipients of campaign %d of site %q: %s", c.ID, c.Site, err)
		}
	}}, -1)
}

// writeRecipients writes the rows of campaignRecipients to w: arm -1 for
// every arm.
func writeRecipients(w *bufio.Writer, store *campaign.Store, c *campaign.Campaign, arm int, control, csv bool) error {
	if csv {
		_, _ = w.WriteString("email,arm,variant,token\n")
	}
	var (
		line []byte
		werr error
	)
	err := store.ScanRecipients(c, func(r *campaign.Recipient) bool {
		if r.Control != control || arm >= 0 && int(r.Arm) != arm {
			return true
		}
		line = appendRecipientRow(line[:0], c, r, csv)
		_, werr = w.Write(line)
		return werr == nil
	})
	if err == nil {
		err = werr
	}
	return err
}

// appendRecipientRow appends one row of the recipients export.
func appendRecipientRow(dst []byte, c *campaign.Campaign, r *campaign.Recipient, csv bool) []byte {
	a := &c.Arms[r.Arm]
	variant := ""
	if r.Variant > 0 {
		variant = a.Variants[r.Variant-1]
	}
	if csv {
		dst = append(append(dst, r.Email...), ',') // a stored email holds no , " or newline
		dst = append(appendCSV(dst, a.Name), ',')
		dst = append(appendCSV(dst, variant), ',')
		return append(campaign.AppendToken(dst, c.ID, r.Number, &r.MAC), '\n')
	}
	dst = append(dst, `{"email":`...)
	dst = event.AppendJSONString(dst, unsafe.String(unsafe.SliceData(r.Email), len(r.Email)))
	dst = event.AppendJSONString(append(dst, `,"arm":`...), a.Name)
	dst = event.AppendJSONString(append(dst, `,"variant":`...), variant)
	dst = append(dst, `,"token":"`...)
	return append(campaign.AppendToken(dst, c.ID, r.Number, &r.MAC), "\"}\n"...)
}

// campaignReport answers the report: JSON, or with format=csv one row per
// arm and group.
func (h *Handler) campaignReport(ctx *fasthttp.RequestCtx, c *campaign.Campaign) {
	r, err := h.campaigns.Report(c, h.opts.Now().UnixMilli())
	if err != nil {
		h.internalError(ctx, err)
		return
	}
	switch f := string(ctx.QueryArgs().Peek("format")); f {
	case "", "json":
		ctx.SetContentType("application/json")
		ctx.SetBody(append(r.AppendJSON(nil), '\n'))
	case "csv":
		ctx.SetContentType("text/csv; charset=utf-8")
		ctx.SetBody(r.AppendCSV(nil))
	default:
		h.badRequest(ctx, fmt.Sprintf("invalid format=%s: want json or csv", quote.Value(f)))
	}
}

package query

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/profile/campaign"
	"github.com/affinityhq/affinity/profile/defs"
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
	switch {
	case err != nil:
	case h.opts.Definitions == nil:
		err = h.campaigns.Create(c)
	default:
		c, err = h.shareCampaign(ctx, c)
	}
	if errors.Is(err, errAnswered) {
		return
	}
	if err != nil {
		h.refuseDefinition(ctx, err)
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
	var found bool
	_, err := h.campaigns.Get(site, id)
	switch {
	case errors.Is(err, campaign.ErrNotFound):
		err = nil
	case err != nil:
	case h.opts.Definitions == nil:
		found, err = h.campaigns.Delete(site, id)
	default:
		var v any
		v, err = h.writeDefinition(&defs.Record{Kind: defs.KindCampaign, Op: defs.OpDelete, Site: site, Name: strconv.FormatUint(id, 10)})
		found, _ = v.(bool)
	}
	if err != nil {
		h.refuseDefinition(ctx, err)
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
	at := h.opts.Now().UnixMilli()
	var (
		r   *campaign.Report
		err error
	)
	if h.clusterOf() != nil && !forwarded(ctx) {
		var cs map[campaign.Cell]campaign.Counters
		if cs, err = h.clusterCounters(ctx, c); err == nil {
			r = campaign.ReportOf(c, cs, at)
		}
	} else {
		r, err = h.campaigns.Report(c, at)
	}
	if isUnavailable(err) {
		h.unavailable(ctx, err)
		return
	}
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

// errAnswered is returned by the steps of a campaign's creation that
// answered the request themselves (a fan-out refused: 503, or an owner's
// 4xx).
var errAnswered = errors.New("answered")

// shareCampaign creates campaign c on a node of a definitions topic
// (DESIGN "Campaigns in a build group"): it reserves an id on the topic,
// freezes the audience here — a segment arm's members from every owner
// in a build group — and writes the frozen campaign to the topic, which
// every node applies; it returns this node's copy once applied.
func (h *Handler) shareCampaign(ctx *fasthttp.RequestCtx, c *campaign.Campaign) (*campaign.Campaign, error) {
	if err := h.campaigns.CheckArms(c); err != nil {
		return nil, err // before an id is spent on it
	}
	v, err := h.writeDefinition(&defs.Record{Kind: defs.KindCampaignID, Op: defs.OpPut, Site: c.Site, Name: defs.NewUploadID()})
	if err != nil {
		return nil, err
	}
	id, _ := v.(uint64)
	if id == 0 {
		return nil, fmt.Errorf("BUG: the campaign id reservation of site %q gave no id", c.Site)
	}
	var members campaign.Members // nil: this node's own members
	if h.clusterOf() != nil {
		members = h.fanOutAudience(ctx)
	}
	rec, err := h.campaigns.Freeze(c, id, members)
	if err != nil {
		return nil, err
	}
	v, err = h.writeDefinition(&defs.Record{Kind: defs.KindCampaign, Op: defs.OpPut, Site: c.Site, Name: c.IDString(), Body: rec})
	if err != nil {
		return nil, err
	}
	applied, _ := v.(*campaign.Campaign)
	if applied == nil {
		return nil, fmt.Errorf("BUG: campaign %d of site %q applied without a result", id, c.Site)
	}
	return applied, nil
}

// applyCampaign applies a campaign record of the definitions topic:
// ReserveID's id, Apply's campaign, Delete's found.
func (h *Handler) applyCampaign(r *defs.Record) (any, error) {
	if h.campaigns == nil {
		return nil, fmt.Errorf("cannot apply %s: this process keeps no campaigns", r.Describe())
	}
	if r.Kind == defs.KindCampaignID {
		return h.campaigns.ReserveID(r.Offset)
	}
	id, err := campaign.ParseID(r.Name)
	if err != nil {
		return nil, err
	}
	if r.Op == defs.OpDelete {
		return h.campaigns.Delete(r.Site, id)
	}
	c, err := h.campaigns.Apply(id, r.Body)
	if err == nil && c.Site != r.Site {
		err = fmt.Errorf("cannot apply %s: campaign %d is of site %q", r.Describe(), id, c.Site)
	}
	return c, err
}

// fanOutAudience is the campaign.Members of a node of a build group: the
// segment's members export (CSV, no facts, at the freeze's instant) from
// every owner, merged in visitor order as one node's Export gives them.
// When an owner refuses or cannot be reached it answers ctx (503, or the
// owner's refusal) and returns errAnswered.
func (h *Handler) fanOutAudience(ctx *fasthttp.RequestCtx) campaign.Members {
	return func(c *campaign.Campaign, segment string, fn func(email []byte) bool) error {
		args := fasthttp.AcquireArgs()
		defer fasthttp.ReleaseArgs(args)
		args.Set("format", "csv")
		args.Set("facts", "false")
		args.Set("at", time.UnixMilli(c.Sent).UTC().Format(time.RFC3339Nano))
		f := h.openFanOutPath(ctx, segmentsPrefix+c.Site+"/"+segment+"/members", args)
		if f == nil {
			return errAnswered
		}
		defer f.close()
		srcs := f.sources()
		col := 0
		for _, s := range srcs {
			s.csv = true
			err := s.next()
			ok := err == nil && s.row != nil
			if ok {
				col, ok = csvEmailColumn(s.row)
			}
			if !ok {
				return &unavailableError{fmt.Errorf("cannot read the members of segment %q of site %q from %s: no header with an email column (%v)", segment, c.Site, s.name, err)}
			}
		}
		stopped := false
		m := merger{srcs: srcs, cmp: cmpCSVRows, write: func(_ *bufio.Writer, row []byte) error {
			if !fn(csvRowEmail(row, col)) {
				stopped = true
				return errStopped
			}
			return nil
		}}
		if res := m.merge(nil, 0); res.err != nil && !stopped {
			return &unavailableError{fmt.Errorf("cannot read the members of segment %q of site %q from the build group: %w", segment, c.Site, res.err)}
		}
		return nil
	}
}

// errStopped ends a merge whose reader wants no more rows.
var errStopped = errors.New("stopped")

// csvEmailColumn returns the index of the email column of a members
// export's CSV header: 1 (visitor,email,entered…), or 2 in a per-person
// segment's (person,visitor,email,…); ok is false without one.
func csvEmailColumn(header []byte) (col int, ok bool) {
	for f := range bytes.SplitSeq(bytes.TrimRight(header, "\r\n"), []byte{','}) {
		if string(f) == "email" {
			return col, true
		}
		col++
	}
	return 0, false
}

// csvRowEmail returns column col (csvEmailColumn) of a members export's
// CSV row: the fields up to the email are ids and a stored email holds no
// comma or quote, so the row splits at its commas there.
func csvRowEmail(row []byte, col int) []byte {
	for range col {
		i := bytes.IndexByte(row, ',')
		if i < 0 {
			return nil
		}
		row = row[i+1:]
	}
	if j := bytes.IndexByte(row, ','); j >= 0 {
		return row[:j]
	}
	return nil
}

// clusterCounters sums campaign c's counters of every partition of the
// build group: every owner sends its partitions' counter rows.
func (h *Handler) clusterCounters(ctx *fasthttp.RequestCtx, c *campaign.Campaign) (map[campaign.Cell]campaign.Counters, error) {
	lc, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	shards, err := h.clusterOf().Shards(lc)
	if err != nil {
		return nil, &unavailableError{err}
	}
	rs := h.newRemoteStore(ctx)
	defer rs.release()
	path := internalPrefix + "campaigns/" + c.Site + "/" + c.IDString() + "/counters"
	bodies := make([][]byte, 0, len(shards))
	for _, sh := range shards {
		status, body, err := rs.get(sh.URL, path, sh.Partitions, true)
		if err != nil {
			return nil, err
		}
		if status != fasthttp.StatusOK {
			return nil, fmt.Errorf("cannot read the counters of campaign %d of site %q from %s: %d %s", c.ID, c.Site, sh.URL, status, quote.Value(bytes.TrimSpace(body)))
		}
		bodies = append(bodies, bytes.Clone(body))
	}
	return campaign.SumCounterRows(c, bodies...)
}

// serveCampaignCounters answers an owner's part of a report of a build
// group: the counter rows of the partitions it is asked for.
func (h *Handler) serveCampaignCounters(ctx *fasthttp.RequestCtx, site, rawID string) {
	if h.campaigns == nil {
		api.Error(ctx, fasthttp.StatusServiceUnavailable, "this process keeps no campaigns")
		return
	}
	if err := checkSite(site); err != nil {
		h.refuse(ctx, err)
		return
	}
	id, err := campaign.ParseID(rawID)
	if err != nil {
		h.refuse(ctx, err)
		return
	}
	parts, ok := h.partParts(ctx, "counters")
	if !ok {
		return
	}
	c, err := h.campaigns.Get(site, id)
	if errors.Is(err, campaign.ErrNotFound) {
		// Not applied here yet, or deleted since the asking node read it.
		h.unavailable(ctx, fmt.Errorf("no campaign %d of site %s on this node (yet)", id, quote.Value(site)))
		return
	}
	if err != nil {
		h.internalError(ctx, err)
		return
	}
	rows, err := h.campaigns.AppendCounterRows(nil, c, parts)
	if err != nil {
		h.internalError(ctx, err)
		return
	}
	ctx.SetContentType("application/octet-stream")
	ctx.SetBody(rows)
}

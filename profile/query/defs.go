package query

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/profile/catalog"
	"github.com/affinityhq/affinity/profile/defs"
	"github.com/affinityhq/affinity/profile/lists"
	"github.com/affinityhq/affinity/profile/membership"
)

// A definition write (segment, webhook, list, catalog) is validated by its
// handler, then made a defs.Record and applied by ApplyDefinition: here at
// once, or, with Options.Definitions, by every node's consumer of the
// definitions topic, this node's answering the request.

// segmentPut is ApplyDefinition's result of a segment's put.
type segmentPut struct {
	d       membership.Definition
	created bool
}

// writeDefinition applies r on this node alone, or writes it to the
// definitions topic and returns this node's result once applied.
func (h *Handler) writeDefinition(r *defs.Record) (any, error) {
	r.At = h.opts.Now().UnixMilli()
	if h.opts.Definitions == nil {
		return h.ApplyDefinition(r)
	}
	return h.opts.Definitions.Submit(context.Background(), r)
}

// refuseDefinition answers the error of writeDefinition: 503 when the
// write did not reach the topic or was not applied in time, else as
// refuse.
func (h *Handler) refuseDefinition(ctx *fasthttp.RequestCtx, err error) {
	if errors.Is(err, defs.ErrNotApplied) {
		api.Error(ctx, fasthttp.StatusServiceUnavailable, quote.OneLine(err.Error()))
		return
	}
	h.refuse(ctx, err)
}

// ApplyDefinition applies one definition write with the store calls of
// its handler; the result is what the handler answers from:
// segment put segmentPut, deletes a found bool, list put lists.Meta,
// catalog put the product count, webhook put nil, campaign id
// reservation the id, campaign put the *campaign.Campaign.
func (h *Handler) ApplyDefinition(r *defs.Record) (any, error) {
	seg := h.opts.Segments
	if seg == nil && r.Kind != defs.KindCatalog {
		return nil, fmt.Errorf("cannot apply %s: this process keeps no segments", r.Describe())
	}
	arg := func(i int) string {
		if i < len(r.Args) {
			return r.Args[i]
		}
		return ""
	}
	switch {
	case r.Kind == defs.KindSegment && r.Op == defs.OpPut:
		per, err := membership.ParsePer(arg(0))
		if err != nil {
			return nil, err
		}
		d, created, err := seg.PutPerAt(r.Site, r.Name, string(r.Body), per, r.At)
		return segmentPut{d, created}, err
	case r.Kind == defs.KindSegment && r.Op == defs.OpDelete:
		return seg.Delete(r.Site, r.Name)
	case r.Kind == defs.KindWebhook && r.Op == defs.OpPut:
		if _, ok, err := seg.Definition(r.Site, r.Name); err != nil || !ok {
			if err == nil {
				err = fmt.Errorf("no segment %s of site %s: %w", quote.Value(r.Name), quote.Value(r.Site), defs.ErrMissing)
			}
			return nil, err
		}
		return nil, seg.SetWebhook(r.Site, r.Name, arg(0), arg(1))
	case r.Kind == defs.KindWebhook && r.Op == defs.OpDelete:
		return seg.DeleteWebhook(r.Site, r.Name)
	case r.Kind == defs.KindList && r.Op == defs.OpPut:
		format, err := lists.FormatOf(arg(0))
		if err != nil {
			return nil, err
		}
		m, _, err := seg.PutListAt(r.Site, r.Name, bytes.NewReader(r.Body), format, time.UnixMilli(r.At))
		return m, err
	case r.Kind == defs.KindList && r.Op == defs.OpDelete:
		found, _, err := seg.DeleteList(r.Site, r.Name)
		return found, err
	case r.Kind == defs.KindCampaignID && r.Op == defs.OpPut, r.Kind == defs.KindCampaign && r.Op != defs.OpChunk:
		return h.applyCampaign(r)
	case r.Kind == defs.KindErasure && r.Op == defs.OpPut:
		return h.applyErasure(r)
	case r.Kind == defs.KindCatalog && r.Op == defs.OpPut:
		format, err := catalog.FormatOf(arg(0))
		if err != nil {
			return nil, err
		}
		return h.storeCatalog(r.Site, r.Body, format)
	}
	return nil, fmt.Errorf("cannot apply definition record: kind %q has no op %d", r.Kind, r.Op)
}

// applyErasure applies an erasure of the group: the segment engine keeps
// each visitor's mark and scrubs this node's feeds, then the builder
// learns where each visitor's partition was at the erasure, so that it
// skips the visitor's records below it (and deletes what it holds of them
// if it applied the partition from below the erasure before the record
// came). It answers the records scrubbed.
func (h *Handler) applyErasure(r *defs.Record) (any, error) {
	erased, err := r.Erasures(nil)
	if err != nil {
		return nil, fmt.Errorf("cannot apply %s: %w", r.Describe(), err)
	}
	n, err := h.opts.Segments.Erase(r.Site, erased, nil, r.At)
	if err != nil || h.opts.Builder == nil {
		return n, err
	}
	for _, e := range erased {
		if e.Offset > 0 {
			err = errors.Join(err, h.opts.Builder.Erased(r.Site, e.Visitor, e.Partition, e.Offset))
		}
	}
	if err != nil {
		return n, fmt.Errorf("cannot apply %s: %w", r.Describe(), err)
	}
	return n, nil
}

package query

import (
	"bufio"
	"fmt"
	"io"

	"github.com/valyala/fasthttp"
)

// ReadMembers returns the export of segment name of site with the query
// args, read through membersBody.Read: the path fasthttp does not take
// (it calls WriteTo), which tests compare with the served body.
func ReadMembers(h *Handler, site, name, args string) ([]byte, error) {
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/members?" + args)
	q, err := h.parseMembersQuery(&ctx, site, name)
	if err != nil {
		return nil, err
	}
	rule, ok := h.opts.Segments.Rule(site, name)
	if !ok {
		return nil, fmt.Errorf("no segment %s/%s", site, name)
	}
	q.rule = rule
	b := &streamBody{write: func(w *bufio.Writer) { h.streamMembers(w, q) }}
	data, err := io.ReadAll(b)
	if cerr := b.Close(); err == nil {
		err = cerr
	}
	return data, err
}

// WriteRecipients writes the recipients export of campaign id of site
// (treated, every arm) to w, as GET …/recipients streams it.
func WriteRecipients(w *bufio.Writer, h *Handler, site string, id uint64, csv bool) error {
	c, err := h.campaigns.Get(site, id)
	if err != nil {
		return err
	}
	return writeRecipients(w, h.campaigns, c, -1, false, csv)
}

// HoldPreview takes one of h's preview slots as a running preview does,
// without waiting: false when all are taken. release gives it back.
func HoldPreview(h *Handler) (release func(), ok bool) {
	select {
	case h.previews <- struct{}{}:
		return func() { <-h.previews }, true
	default:
		return nil, false
	}
}

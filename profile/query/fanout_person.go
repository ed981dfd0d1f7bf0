package query

import (
	"bufio"
	"bytes"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/tracker/event"
)

// Per-person segments in a build group (DESIGN.md "Per-person segments in
// a build group"): a person's membership lives with the evaluator of its
// evaluating partition, the partition of its person id (what
// Cluster.Partition gives for it), so the fan-outs of the per-visitor
// segments serve them with the person id where the visitor stands: each
// owner answers for the persons of its partitions, once it restored them
// (membership.Engine.PersonsReady; 503 before).

// perPerson reports whether segment site/name is per person; on an
// owner's part of a fan-out (parts), a per-person segment answers 503
// while one of parts has its persons being restored. ok is false when it
// answered ctx.
func (h *Handler) perPerson(ctx *fasthttp.RequestCtx, site, name string, parts []bool) (person, ok bool) {
	d, found, err := h.opts.Segments.Definition(site, name)
	if err != nil {
		h.internalError(ctx, err)
		return false, false
	}
	if !found || d.Per != membership.PerPerson {
		return false, true
	}
	return true, h.personsReady(ctx, parts)
}

// personsReady answers 503 and reports false when one of parts (nil:
// none) has its persons being restored here.
func (h *Handler) personsReady(ctx *fasthttp.RequestCtx, parts []bool) bool {
	for p, ok := range parts {
		if ok && !h.opts.Segments.PersonsReady(p) {
			h.unavailable(ctx, &membership.PersonsPendingError{Partition: p})
			return false
		}
	}
	return true
}

// An owner's person row in a fan-out starts with the person id, which the
// merge orders by (a person row shows it only after its visitors): 36
// characters and a space, then the row as one node sends it.
const personRowKey = 36 + 1

// prependPersonRowKey returns sc.out with person's key in front, in sc's
// buffers (swapped, not allocated).
func prependPersonRowKey(sc *segScratch, person event.UUID) []byte {
	sc.tmp = append(person.Append(sc.tmp[:0]), ' ')
	sc.tmp = append(sc.tmp, sc.out...)
	sc.out, sc.tmp = sc.tmp, sc.out
	return sc.out
}

// cmpPersonRows orders owners' person rows by person id.
func cmpPersonRows(a, b []byte) int {
	return bytes.Compare(span(a, 0, personRowKey-1), span(b, 0, personRowKey-1))
}

// writePersonRow is a merger's write of an owner's person row: the row
// without its key.
func writePersonRow(w *bufio.Writer, row []byte) error {
	_, err := w.Write(span(row, personRowKey, len(row)))
	return err
}

package query

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/internal/codec"
	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

const interestsPrefix = "/v1/interests/"

// interestQuery is one parsed GET /v1/interests request.
type interestQuery struct {
	site, value string
	dim         profile.Dim
	min         float64
	at          int64
	limit       int // 0: no limit
	after       *state.InterestPos
	// parts, on an owner's part of a fan-out, are the partitions it
	// answers for (Handler.localParts); nil: all. Its rows then start
	// with their order key (appendInterestKey).
	parts []bool
}

// serveInterests serves GET /v1/interests/{site}/{dimension}/{value}: the
// visitors whose score of (dimension, value) is ≥ ?min= at ?at= (default
// now), best first (ties by visitor id), as NDJSON rows
//
//	{"visitor":"<uuid>","score":<float>,"email":"<email, when identified>"}
//
// With ?limit=N at most N rows come; when more remain, a last row
// {"cursor":"<opaque>"} follows: pass it as ?cursor= (with the same site,
// dimension, value and min) for the next page. A cursor carries its ?at=,
// so later pages evaluate at the same instant unless ?at= is given. Pages
// read the live index: a visitor whose score an event raises past the
// cursor between pages is not listed again, nor missed if it stays below.
// An error after rows were sent ends the stream with {"error":"…"}.
func (h *Handler) serveInterests(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		methodNotAllowed(ctx, "GET, HEAD")
		return
	}
	q, err := h.parseInterestQuery(ctx)
	if err != nil {
		if errors.Is(err, errNoRoute) {
			api.NoRoute(ctx, "/v1/interests/{site}/{dimension}/{value}")
			return
		}
		h.refuse(ctx, err)
		return
	}
	var ok bool
	if q.parts, ok = h.localParts(ctx); !ok {
		return
	}
	if !h.opts.State.InterestsLoaded() {
		// Never a partial answer: the builder's start is rebuilding it.
		api.Error(ctx, fasthttp.StatusServiceUnavailable, state.ErrInterestsNotLoaded.Error())
		return
	}
	h.m.interestQueries.Inc()
	if h.clusterOf() != nil && !forwarded(ctx) && !ctx.IsHead() {
		h.fanOutInterests(ctx, q)
		return
	}
	ctx.SetContentType("application/x-ndjson")
	if ctx.IsHead() {
		return
	}
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) { h.streamInterests(w, q) })
}

// errNoRoute is parseInterestQuery's answer for a path it does not serve.
var errNoRoute = errors.New("no such path")

func (h *Handler) parseInterestQuery(ctx *fasthttp.RequestCtx) (*interestQuery, error) {
	segs, ok := splitPath(ctx.Path(), interestsPrefix, 3)
	if !ok {
		return nil, errNoRoute
	}
	q := &interestQuery{site: segs[0], value: segs[2]}
	if err := checkSite(q.site); err != nil {
		return nil, err
	}
	if q.dim, ok = profile.ParseDim(segs[1]); !ok {
		return nil, invalid.Errorf("invalid dimension %s: want brand, category, age, price or product", quote.Value([]byte(segs[1])))
	}
	if !h.opts.Config.Indexed(q.dim) {
		return nil, invalid.Errorf("invalid dimension %s: not in the interest index (--index-dims %s); add it there to query it",
			q.dim, strings.Join(h.opts.Config.IndexDims(), ","))
	}
	if !utf8.ValidString(q.value) || len(q.value) > profile.MaxValueLen {
		return nil, invalid.Errorf("invalid value %s: want valid UTF-8 of at most %d bytes", quote.Value(q.value), profile.MaxValueLen)
	}
	args := ctx.QueryArgs()
	if raw := args.Peek("min"); len(raw) > 0 {
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
			return nil, invalid.Errorf("invalid min=%s: want a finite score ≥ 0", quote.Value(raw))
		}
		q.min = f
	}
	if raw := args.Peek("limit"); len(raw) > 0 {
		n, err := strconv.Atoi(string(raw))
		if err != nil || n < 1 || n > h.opts.MaxLimit {
			return nil, invalid.Errorf("invalid limit=%s: want 1..%d", quote.Value(raw), h.opts.MaxLimit)
		}
		q.limit = n
	}
	at, atGiven, err := h.parseAt(ctx)
	if err != nil {
		return nil, err
	}
	q.at = at
	if raw := args.Peek("cursor"); len(raw) > 0 {
		pos, cursorAt, err := decodeCursor(raw)
		if err != nil {
			return nil, err
		}
		q.after = &pos
		if !atGiven {
			q.at = cursorAt
		}
	}
	return q, nil
}

// streamInterests writes the rows of q to w.
func (h *Handler) streamInterests(w *bufio.Writer, q *interestQuery) {
	sc := h.pool.Get().(*scratch)
	defer h.pool.Put(sc)
	cfg := h.opts.Config
	maxKey := state.ScoreKey(cfg.LogThreshold(q.dim, q.min, q.at))
	var (
		n    int
		last state.InterestPos
		more bool
		werr error
		rerr error
	)
	err := h.opts.State.ScanInterests(q.site, q.dim.String(), q.value, maxKey, q.after, func(pos state.InterestPos) bool {
		if !h.inParts(q.parts, q.site, pos.Visitor) {
			return true // a partition another node answers for
		}
		if q.limit > 0 && n == q.limit {
			more = true
			return false
		}
		logG := state.KeyScore(pos.Key)
		out := sc.out[:0]
		if q.parts != nil {
			out = appendInterestKey(out, pos.Key)
		}
		out = append(out, `{"visitor":"`...)
		out = append(out, event.UUID(pos.Visitor).String()...)
		out = append(out, `","score":`...)
		out = appendFloat(out, cfg.ScoreAt(q.dim, logG, q.at))
		var found bool
		sc.buf, found, rerr = h.opts.State.Profile(q.site, pos.Visitor, sc.buf)
		if rerr != nil {
			return false
		}
		if found {
			if err := profile.DecodeProfile(&sc.prof, sc.buf); err != nil {
				rerr = fmt.Errorf("cannot decode the profile of visitor %s of site %q: %w", event.UUID(pos.Visitor), q.site, err)
				return false
			}
			if sc.prof.Email != "" {
				out = append(out, `,"email":`...)
				out = event.AppendJSONString(out, sc.prof.Email)
			}
		}
		out = append(out, "}\n"...)
		sc.out = out
		if _, werr = w.Write(out); werr != nil {
			return false
		}
		n++
		last = pos
		return true
	})
	h.m.interestRows.Add(n)
	if werr != nil {
		return // the client went away
	}
	if err == nil {
		err = rerr
	}
	if err != nil {
		h.m.errors.Inc()
		h.opts.Logger.Printf("query: interests %s/%s/%s: %v", q.site, q.dim, q.value, err)
		out := event.AppendJSONString(append(sc.out[:0], `{"error":`...), err.Error())
		_, _ = w.Write(append(out, "}\n"...))
		_ = w.Flush()
		return
	}
	if more {
		out := append(sc.out[:0], `{"cursor":"`...)
		out = appendCursor(out, last, q.at)
		_, _ = w.Write(append(out, "\"}\n"...))
	}
	_ = w.Flush()
}

// A cursor is base64url (no padding) of: version 1 | order key u64 |
// visitor (16) | at ms i64, all big-endian.
const (
	cursorVersion = 1
	cursorLen     = 1 + 8 + 16 + 8
)

func appendCursor(dst []byte, pos state.InterestPos, at int64) []byte {
	var raw [cursorLen]byte
	raw[0] = cursorVersion
	binary.BigEndian.PutUint64(raw[1:], pos.Key)
	copy(raw[9:], pos.Visitor[:])
	binary.BigEndian.PutUint64(raw[25:], uint64(at))
	return base64.RawURLEncoding.AppendEncode(dst, raw[:])
}

func decodeCursor(s []byte) (pos state.InterestPos, at int64, err error) {
	var raw [cursorLen]byte
	enc := base64.RawURLEncoding.Strict()
	if enc.DecodedLen(len(s)) != cursorLen || !codec.IsBase64URL(s) {
		return pos, 0, badCursor(s)
	}
	if n, err := enc.Decode(raw[:], s); err != nil || n != cursorLen || raw[0] != cursorVersion {
		return pos, 0, badCursor(s)
	}
	pos.Key = binary.BigEndian.Uint64(raw[1:])
	copy(pos.Visitor[:], raw[9:25])
	return pos, int64(binary.BigEndian.Uint64(raw[25:])), nil
}

func badCursor(s []byte) error {
	return invalid.Errorf("invalid cursor=%s: pass the cursor of the previous page as it was given", quote.Value(s))
}

// appendFloat appends f as a JSON number (scores are finite and ≥ 0).
func appendFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, '0')
	}
	return strconv.AppendFloat(dst, f, 'g', -1, 64)
}

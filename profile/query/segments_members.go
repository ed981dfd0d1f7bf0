package query

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"sync"
	"unicode/utf8"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/segment"
	"github.com/affinityhq/affinity/tracker/event"
)

// membersQuery is one parsed GET …/members request.
type membersQuery struct {
	site, name string
	rule       *segment.Rule
	csv        bool
	limit      int // 0: all
	at         int64
	noFacts    bool // ?facts=false: no profile reads
	// parts, on an owner's part of a fan-out, are the partitions it
	// answers for (Handler.localParts); nil: all.
	parts []bool
	// export selects the rows: by=email, cursor=, holdout=, salt=, group=.
	export membership.ExportOptions
	// person: the segment is per person: its CSV rows start with the
	// person id, and in a build group its rows are merged by person id
	// (personRowKey).
	person bool
}

// segScratch is the per-request space of an export.
type segScratch struct {
	subj segment.ProfileSubject
	dec  profile.PartialDecoder
	tmp  []byte // a fact's JSON string, unquoted for CSV
	out  []byte

	// entered and enteredFmt cache the last formatted entry time: members
	// of a segment share few of them (a backfill gives one to all).
	entered    int64
	enteredFmt []byte
}

var segScratchPool sync.Pool

func (h *Handler) parseMembersQuery(ctx *fasthttp.RequestCtx, site, name string) (*membersQuery, error) {
	q := &membersQuery{site: site, name: name}
	args := ctx.QueryArgs()
	switch f := string(args.Peek("format")); f {
	case "", "ndjson":
	case "csv":
		q.csv = true
	default:
		return nil, invalid.Errorf("invalid format=%s: want ndjson or csv", quote.Value(f))
	}
	switch by := string(args.Peek("by")); by {
	case "", "visitor":
	case "email":
		q.export.ByEmail = true
	default:
		return nil, invalid.Errorf("invalid by=%s: want visitor or email", quote.Value(by))
	}
	if raw := args.Peek("cursor"); len(raw) > 0 {
		v, err := parseVisitor(string(raw))
		if err != nil {
			return nil, invalid.Errorf("invalid cursor=%s: pass the visitor of the last row received", quote.Value(raw))
		}
		q.export.After = &v
	}
	if raw := args.Peek("limit"); len(raw) > 0 {
		n, err := strconv.Atoi(string(raw))
		if err != nil || n < 1 || n > h.opts.MaxLimit {
			return nil, invalid.Errorf("invalid limit=%s: want 1..%d", quote.Value(raw), h.opts.MaxLimit)
		}
		q.limit = n
	}
	if raw := args.Peek("holdout"); len(raw) > 0 {
		p, err := strconv.ParseFloat(string(raw), 64)
		if err != nil || !(p > 0 && p < 100) {
			return nil, invalid.Errorf("invalid holdout=%s: want a percentage in (0, 100)", quote.Value(raw))
		}
		q.export.Holdout = p
		q.export.Salt = string(args.Peek("salt"))
		if q.export.Salt == "" {
			return nil, invalid.Errorf("invalid holdout=%s without salt=S: the same salt gives the same split", quote.Value(raw))
		}
	}
	switch g := string(args.Peek("group")); g {
	case "", "treatment":
	case "control":
		if q.export.Holdout == 0 {
			return nil, invalid.Errorf("invalid group=control without holdout=P&salt=S")
		}
		q.export.Control = true
	default:
		return nil, invalid.Errorf("invalid group=%s: want treatment or control", quote.Value(g))
	}
	switch f := string(args.Peek("facts")); f {
	case "", "true", "1":
	case "false", "0":
		q.noFacts = true
	default:
		return nil, invalid.Errorf("invalid facts=%s: want true or false", quote.Value(f))
	}
	q.export.Profiles = !q.noFacts
	var err error
	if q.at, _, err = h.parseAt(ctx); err != nil {
		return nil, err
	}
	return q, nil
}

// serveMembers streams the members of a segment, one row per visitor (or
// per person with by=email), in visitor order:
//
//	ndjson: {"visitor":"…","email":"…"|null,"entered":"…","facts":{…}}
//	        by=email: {"email":"…","visitors":["…",…],"visitor":"<first>","entered":"…","facts":{…}}
//	        per-person segment: {"email":"…","visitors":["…",…],"person":"<person id>","entered":"…","facts":{…}}
//	csv:    visitor,email,entered,<one column per term of the rule>
//	        (by=email: the visitor column lists the person's visitors, space-separated)
//	        per-person segment: person,visitor,email,entered,… (the person id, then its visitors as by=email)
//
// facts are the rule's terms for the (first) visitor at ?at= (default
// now); ?facts=false leaves them out (no profile is read: faster). To
// resume, pass the first 36 characters of the last row as ?cursor=: the
// (first) visitor, or a per-person segment's person id;
// with ?limit=N an NDJSON export that stops early ends with
// {"cursor":"<visitor>"}. With by=email, visitors without an email are
// left out. ?holdout=P&salt=S leaves out a deterministic P% control group
// (membership.InHoldout over the visitor id, or the email with by=email),
// which ?group=control lists instead. The rows are membership.Export's;
// this file only formats them.
func (h *Handler) serveMembers(ctx *fasthttp.RequestCtx, site, name string) {
	q, err := h.parseMembersQuery(ctx, site, name)
	if err != nil {
		h.refuse(ctx, err)
		return
	}
	rule, ok := h.opts.Segments.Rule(site, name)
	if !ok {
		h.noSegment(ctx, site, name)
		return
	}
	q.rule = rule
	if q.parts, ok = h.localParts(ctx); !ok {
		return
	}
	if q.person, ok = h.perPerson(ctx, site, name, q.parts); !ok {
		return
	}
	// An owner's part of a by=email export in a build group streams its
	// candidates, which the node asked joins (fanout_email.go); a person's
	// row is its own whatever by says.
	q.export.Unjoined = q.parts != nil && q.export.ByEmail && !q.person
	if h.clusterOf() != nil && !forwarded(ctx) && !ctx.IsHead() {
		h.fanOutMembers(ctx, q)
		return
	}
	if q.csv {
		ctx.SetContentType("text/csv; charset=utf-8")
	} else {
		ctx.SetContentType("application/x-ndjson")
	}
	if ctx.IsHead() {
		return
	}
	body := &streamBody{write: func(w *bufio.Writer) { h.streamMembers(w, q) }}
	if q.parts != nil && q.person && q.export.Profiles {
		// A person's visitors are on other nodes too: its row merges the
		// group's profiles of them.
		rs := h.newRemoteStore(ctx)
		q.export.Store, body.done = rs, rs.release
	}
	ctx.SetBodyStream(body, -1)
}

// streamBody is the body of an export (a segment's members, a campaign's
// recipients) that write streams. fasthttp frames what WriteTo writes as
// chunks of exportChunk bytes straight to the connection; Read, for any
// other reader, streams through fasthttp.NewStreamReader (a pipe and a
// goroutine, in chunks of 4 KiB: a write system call per 4 KiB).
type streamBody struct {
	write func(w *bufio.Writer)
	done  func() // if set, called once when fasthttp closes the body
	r     io.ReadCloser
}

// exportChunk is the size of the chunks of an export.
const exportChunk = 32 << 10

var exportWriterPool sync.Pool // *bufio.Writer of exportChunk bytes

// SupportsBodyWriteTo implements fasthttp.BodyWriterTo: WriteTo writes
// what Read would read.
func (b *streamBody) SupportsBodyWriteTo() bool { return true }

// WriteTo streams the export to w.
func (b *streamBody) WriteTo(w io.Writer) (int64, error) {
	cw := countingWriter{w: w}
	bw, _ := exportWriterPool.Get().(*bufio.Writer)
	if bw == nil {
		bw = bufio.NewWriterSize(&cw, exportChunk)
	} else {
		bw.Reset(&cw)
	}
	b.write(bw)
	_ = bw.Flush()
	bw.Reset(nil)
	exportWriterPool.Put(bw)
	return cw.n, cw.err
}

func (b *streamBody) Read(p []byte) (int, error) {
	if b.r == nil {
		b.r = fasthttp.NewStreamReader(b.write)
	}
	return b.r.Read(p)
}

// Close implements io.Closer: fasthttp closes the body when done.
func (b *streamBody) Close() error {
	if b.done != nil {
		b.done()
		b.done = nil
	}
	if b.r != nil {
		return b.r.Close()
	}
	return nil
}

type countingWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

func (h *Handler) streamMembers(w *bufio.Writer, q *membersQuery) {
	sc, _ := segScratchPool.Get().(*segScratch)
	if sc == nil {
		sc = &segScratch{}
	}
	defer segScratchPool.Put(sc)
	sc.subj.Cfg = h.opts.Config
	sc.entered, sc.enteredFmt = 0, sc.enteredFmt[:0]
	m := h.opts.Segments
	if q.csv {
		out := sc.out[:0]
		if q.person {
			out = append(out, "person,"...)
		}
		out = append(out, "visitor,email,entered"...)
		for _, r := range q.rule.Refs() {
			out = append(out, ',')
			out = appendCSV(out, r.Name)
		}
		sc.out = append(out, "\r\n"...)
		if _, err := w.Write(sc.out); err != nil {
			return
		}
	}
	var (
		n    int
		more bool
		last event.UUID
		werr error
		rerr error
	)
	err := m.Export(q.site, q.name, &q.export, func(mb *membership.MemberView, vis []event.UUID) bool {
		if !h.inParts(q.parts, q.site, mb.Visitor) {
			return true // a partition another node answers for
		}
		if q.limit > 0 && n == q.limit {
			more = true
			return false
		}
		if rerr = h.appendMemberRow(sc, q, mb, vis); rerr != nil {
			return false
		}
		if q.parts != nil && q.person {
			sc.out = prependPersonRowKey(sc, mb.Visitor)
		}
		if _, werr = w.Write(sc.out); werr != nil {
			return false
		}
		n++
		last = mb.Visitor
		return true
	})
	h.m.memberRows.Add(n)
	if werr != nil {
		return
	}
	if err == nil {
		err = rerr
	}
	if err != nil {
		h.m.errors.Inc()
		h.opts.Logger.Printf("query: members of %s/%s: %v", q.site, q.name, err)
		if !q.csv {
			out := event.AppendJSONString(append(sc.out[:0], `{"error":`...), err.Error())
			_, _ = w.Write(append(out, "}\n"...))
		}
		_ = w.Flush()
		return
	}
	if more && !q.csv {
		out := append(sc.out[:0], `{"cursor":"`...)
		out = last.Append(out)
		_, _ = w.Write(append(out, "\"}\n"...))
	}
	_ = w.Flush()
}

// appendMemberRow puts the row of mb (vis: the visitors of the row) in
// sc.out.
func (h *Handler) appendMemberRow(sc *segScratch, q *membersQuery, mb *membership.MemberView, vis []event.UUID) error {
	// email aliases the stored value: valid for this row only, and passed
	// only to calls that copy it.
	email := unsafe.String(unsafe.SliceData(mb.Email), len(mb.Email))
	haveProf := false
	if mb.Profile != nil {
		p, err := sc.dec.Decode(mb.Profile, q.rule.Parts())
		if err != nil {
			return fmt.Errorf("cannot decode the profile of visitor %s of site %q: %w", mb.Visitor, q.site, err)
		}
		sc.subj.P, haveProf = p, true
	}
	if mb.Entered != sc.entered || len(sc.enteredFmt) == 0 {
		sc.entered = mb.Entered
		sc.enteredFmt = profile.AppendTime(sc.enteredFmt[:0], mb.Entered)
	}
	out := sc.out[:0]
	if q.export.Unjoined {
		// An owner's candidate row: the node that asked writes the head
		// of the row, once it joined the email's members of every owner.
		out = appendEmailCandidate(out, mb.Visitor, mb.Email)
	} else if q.csv || q.export.ByEmail || len(mb.Person) > 0 {
		if q.csv && q.person {
			// The rows come in person-id order: the cursor leads the
			// row, as a visitor leads a per-visitor row.
			out = append(mb.Visitor.Append(out), ',')
		}
		out = appendRowVisitors(out, q.csv, email, vis)
	}
	if q.csv {
		out = append(out, ',')
		out = appendCSV(out, email)
		out = append(out, ',')
		out = append(out, sc.enteredFmt...)
		refs := q.rule.Refs()
		for i := range refs {
			if q.noFacts {
				break
			}
			out = append(out, ',')
			if haveProf {
				n := len(out)
				out = refs[i].AppendValue(out, &sc.subj, q.at)
				out = sc.jsonToCSV(out, n)
			}
		}
		sc.out = append(out, "\r\n"...)
		return nil
	}
	if q.export.ByEmail || len(mb.Person) > 0 {
		if len(mb.Person) > 0 {
			out = append(out, `,"person":"`...)
		} else {
			out = append(out, `,"visitor":"`...)
		}
		out = mb.Visitor.Append(out)
		out = append(out, '"')
	} else {
		out = append(out, `{"visitor":"`...)
		out = mb.Visitor.Append(out)
		out = append(out, `","email":`...)
		if email == "" {
			out = append(out, "null"...)
		} else {
			out = event.AppendJSONString(out, email)
		}
	}
	out = append(out, `,"entered":"`...)
	out = append(out, sc.enteredFmt...)
	out = append(out, '"')
	if !q.noFacts {
		out = append(out, `,"facts":`...)
		if haveProf {
			out = q.rule.AppendFacts(out, &sc.subj, q.at)
		} else {
			out = append(out, "{}"...)
		}
	}
	sc.out = append(out, "}\n"...)
	return nil
}

// appendRowVisitors appends the head of a row listing visitors: in CSV
// its first field, the visitors space-separated; in NDJSON (by=email, a
// person) {"email":…,"visitors":[…] — the rest of the row follows.
func appendRowVisitors(out []byte, csv bool, email string, vis []event.UUID) []byte {
	if csv {
		for i, v := range vis {
			if i > 0 {
				out = append(out, ' ')
			}
			out = v.Append(out)
		}
		return out
	}
	out = append(out, `{"email":`...)
	out = event.AppendJSONString(out, email)
	out = append(out, `,"visitors":[`...)
	for i, v := range vis {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, '"')
		out = v.Append(out)
		out = append(out, '"')
	}
	return append(out, ']')
}

// jsonToCSV rewrites the JSON value out[n:] as a CSV field: null becomes
// empty, a string its CSV form, anything else stays.
func (sc *segScratch) jsonToCSV(out []byte, n int) []byte {
	v := out[n:]
	switch {
	case string(v) == "null":
		return out[:n]
	case len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"':
		return out
	}
	body := v[1 : len(v)-1]
	if !bytes.ContainsAny(body, "\\\"\n") && utf8.Valid(body) {
		// No escapes: the string is its JSON body, as strconv.Unquote
		// would return it.
		sc.tmp = append(sc.tmp[:0], body...)
		return appendCSV(out[:n], unsafe.String(unsafe.SliceData(sc.tmp), len(sc.tmp)))
	}
	if s, err := strconv.Unquote(string(v)); err == nil {
		return appendCSV(out[:n], s)
	}
	return out
}

// appendCSV appends s as a CSV field (RFC 4180), quoted when it needs to.
func appendCSV(dst []byte, s string) []byte {
	quoteIt := false
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == ',' || c == '"' || c == '\n' || c == '\r' {
			quoteIt = true
			break
		}
	}
	if len(s) > 0 && (s[0] == ' ' || s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@') {
		quoteIt = true
	}
	if !quoteIt {
		return append(dst, s...)
	}
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			dst = append(dst, '"')
		}
		dst = append(dst, s[i])
	}
	return append(dst, '"')
}

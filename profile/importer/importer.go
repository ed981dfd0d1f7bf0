package importer

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/affinityhq/affinity/internal/codec"
	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/tracker/event"
)

// StoreTrait is the trait key of an order's store on its purchase event: a
// profile keeps the latest one (segment rules: trait("store")).
const StoreTrait = "store"

// Offsets reads the offset a partition's builder has committed up to
// (state.DB.Offset).
type Offsets interface {
	Offset(partition int) (int64, error)
}

// Options configures an Importer.
type Options struct {
	// Log is the event log the builder consumes. Required.
	Log storage.Log
	// Committed reads the builder's committed offsets. Required.
	Committed Offsets
	// Metrics receives the importer's counters. Nil: a private set.
	Metrics *metrics.Set
	// Now is the receive time of the records; default time.Now.
	Now func() time.Time
	// MaxEvents is the most orders one log record holds (a person with more
	// takes several). Default event.DefaultOptions().MaxEvents.
	MaxEvents int
	// AppendBytes is about how many record bytes one Log.Append carries.
	// Default 1 MiB.
	AppendBytes int
}

// Importer appends parsed orders to the event log and reports how far the
// builder has applied them.
type Importer struct {
	opts                                      Options
	uploads, refused, orders, persons, errors *metrics.Counter
}

// New returns an Importer for opts.
func New(opts Options) (*Importer, error) {
	if opts.Log == nil || opts.Committed == nil {
		return nil, errors.New("BUG: importer.New needs Options.Log and Options.Committed")
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.NewSet()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxEvents <= 0 {
		opts.MaxEvents = event.DefaultOptions().MaxEvents
	}
	if opts.AppendBytes <= 0 {
		opts.AppendBytes = 1 << 20
	}
	s := opts.Metrics
	return &Importer{
		opts:    opts,
		uploads: s.NewCounter(`affinity_import_uploads_total`),
		refused: s.NewCounter(`affinity_import_uploads_refused_total`),
		orders:  s.NewCounter(`affinity_import_orders_total`),
		persons: s.NewCounter(`affinity_import_persons_total`),
		errors:  s.NewCounter(`affinity_import_errors_total`),
	}, nil
}

// Refused counts an upload refused before Import (bad request).
func (im *Importer) Refused() { im.refused.Inc() }

// Now returns the importer's clock in Unix ms, the upper bound of Parse.
func (im *Importer) Now() int64 { return im.opts.Now().UnixMilli() }

// Result is what an accepted upload stored.
type Result struct {
	ID      string // the import id (Progress)
	Orders  int
	Persons int // distinct visitors (Visitor) the orders went to
	Records int // log records appended
}

// Import appends orders to the log as purchase events of their persons'
// visitors and returns once the log acknowledged every record. On error
// some records may be stored: a retry of the whole upload is exact, as the
// builder drops order ids a visitor has applied.
func (im *Importer) Import(ctx context.Context, site string, orders *Orders) (Result, error) {
	var res Result
	if len(site) > event.MaxSiteLen {
		return res, invalid.Errorf("invalid site %s: longer than %d bytes", quote.Value(site), event.MaxSiteLen)
	}
	type ref struct {
		v event.UUID
		i int32
	}
	refs := make([]ref, len(orders.List))
	var name []byte
	for i := range orders.List {
		o := &orders.List[i]
		var v event.UUID
		v, name = appendVisitor(name[:0], site, o.Customer, o.Email)
		refs[i] = ref{v, int32(i)}
	}
	slices.SortFunc(refs, func(a, b ref) int {
		if c := bytes.Compare(a.v[:], b.v[:]); c != 0 {
			return c
		}
		return int(a.i - b.i)
	})
	recv := im.opts.Now().UnixMilli()
	ends := make(map[int]bool)
	w := appender{log: im.opts.Log, max: im.opts.AppendBytes}
	var b event.Batch
	for start := 0; start < len(refs); {
		end := start + 1
		for end < len(refs) && refs[end].v == refs[start].v {
			end++
		}
		res.Persons++
		for lo := start; lo < end; lo += im.opts.MaxEvents {
			b.Reset()
			b.Site, b.Visitor, b.Recv = site, refs[start].v, recv
			for _, r := range refs[lo:min(lo+im.opts.MaxEvents, end)] {
				o := &orders.List[r.i]
				b.Events = append(b.Events, event.Event{})
				e := &b.Events[len(b.Events)-1]
				e.ID, name = appendEventID(name[:0], site, o.ID)
				e.Type, e.TS = event.TypePurchase, o.TS
				e.HasOrder = true
				e.Order = event.Order{ID: o.ID, Total: o.Total, HasTotal: o.HasTotal, Items: o.Items}
				e.Email, e.Customer = o.Email, o.Customer
				if o.Store != "" {
					e.Traits = append(e.Traits[:0], event.Trait{Key: StoreTrait, Value: o.Store})
				}
			}
			ends[im.opts.Log.Partition(w.add(&b))] = true
			res.Records++
			if err := w.flushIfFull(ctx); err != nil {
				im.errors.Inc()
				return res, err
			}
		}
		start = end
	}
	if err := w.flush(ctx); err != nil {
		im.errors.Inc()
		return res, err
	}
	// The partitions' next offsets now bound the upload's records from
	// above: once the builder committed up to them, it applied the upload.
	marks := make([]mark, 0, len(ends))
	for p := range ends {
		_, next, err := im.opts.Log.Offsets(ctx, p)
		if err != nil {
			im.errors.Inc()
			return res, fmt.Errorf("cannot read the offsets of partition %d after the import: %w", p, err)
		}
		marks = append(marks, mark{p, next})
	}
	slices.SortFunc(marks, func(a, b mark) int { return a.partition - b.partition })
	res.ID = encodeID(marks)
	res.Orders = len(orders.List)
	im.uploads.Inc()
	im.orders.Add(res.Orders)
	im.persons.Add(res.Persons)
	return res, nil
}

// appender gathers encoded records and appends them about max bytes at a
// time.
type appender struct {
	log   storage.Log
	max   int
	buf   []byte
	spans []int // key start, value start, value end of each record in buf
	msgs  []storage.Message
}

// add encodes b and returns its log key.
func (w *appender) add(b *event.Batch) []byte {
	k := len(w.buf)
	w.buf = event.AppendLogKey(w.buf, b.Site, b.Visitor)
	v := len(w.buf)
	w.buf = event.AppendBatch(w.buf, b)
	w.spans = append(w.spans, k, v, len(w.buf))
	return w.buf[k:v]
}

func (w *appender) flushIfFull(ctx context.Context) error {
	if len(w.buf) < w.max {
		return nil
	}
	return w.flush(ctx)
}

func (w *appender) flush(ctx context.Context) error {
	if len(w.spans) == 0 {
		return nil
	}
	w.msgs = w.msgs[:0]
	for i := 0; i < len(w.spans); i += 3 {
		k, v, end := w.spans[i], w.spans[i+1], w.spans[i+2]
		w.msgs = append(w.msgs, storage.Message{Key: w.buf[k:v], Value: w.buf[v:end]})
	}
	err := w.log.Append(ctx, w.msgs)
	clear(w.msgs)
	w.buf, w.spans = w.buf[:0], w.spans[:0]
	if err != nil {
		return fmt.Errorf("cannot append the import to the event log: %w", err)
	}
	return nil
}

// Visitor returns the visitor an imported person's orders go to: a
// name-based UUID (event.NameUUID) of the site and the customer id, or of
// the site and the email (trimmed, lower-cased) when there is no customer
// id. The same person imported again, from any upload, is the same visitor,
// and so is a Segment message carrying only that userId.
func Visitor(site, customer, email string) event.UUID {
	v, _ := appendVisitor(nil, site, customer, email)
	return v
}

func appendVisitor(name []byte, site, customer, email string) (event.UUID, []byte) {
	if customer != "" {
		return event.NameUUID(name, event.NameCustomer, site, customer)
	}
	return event.NameUUID(name, event.NameEmail, site, email)
}

// EventID returns the event id of the purchase of an imported order: a
// name-based UUID of the site and the order id.
func EventID(site, order string) event.UUID {
	id, _ := appendEventID(nil, site, order)
	return id
}

func appendEventID(name []byte, site, order string) (event.UUID, []byte) {
	return event.NameUUID(name, event.NameOrder, site, order)
}

// mark is the next offset of a partition once an import was appended.
type mark struct {
	partition int
	next      int64
}

// idVersion is the first byte of an import id.
const idVersion = 1

// encodeID makes the import id of marks: base64url (no padding) of
// version | uvarint n | n × (uvarint partition | uvarint next offset).
func encodeID(marks []mark) string {
	b := []byte{idVersion}
	b = binary.AppendUvarint(b, uint64(len(marks)))
	for _, m := range marks {
		b = binary.AppendUvarint(b, uint64(m.partition))
		b = binary.AppendUvarint(b, uint64(m.next))
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeID reads an import id made by encodeID; partitions bounds the
// partition numbers.
func decodeID(id string, partitions int) ([]mark, error) {
	bad := func(why string) error {
		return invalid.Errorf("invalid import id %s: %s", quote.Value(id), why)
	}
	b, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil || len(b) == 0 || !codec.IsBase64URL(id) {
		return nil, bad("not an id POST /v1/import answered")
	}
	if b[0] != idVersion {
		return nil, bad("version " + strconv.Itoa(int(b[0])) + ", this build reads 1")
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, bad("bad partition count")
	}
	b = b[k:]
	marks := make([]mark, 0, n)
	for range n {
		p, k1 := binary.Uvarint(b)
		if k1 <= 0 {
			return nil, bad("truncated")
		}
		off, k2 := binary.Uvarint(b[k1:])
		if k2 <= 0 {
			return nil, bad("truncated")
		}
		if p >= uint64(partitions) || off > 1<<62 {
			return nil, bad("partition or offset out of range")
		}
		if len(marks) > 0 && int(p) <= marks[len(marks)-1].partition {
			return nil, bad("partitions out of order")
		}
		marks = append(marks, mark{int(p), int64(off)})
		b = b[k1+k2:]
	}
	if len(b) != 0 {
		return nil, bad("trailing bytes")
	}
	return marks, nil
}

// Progress is how far the builder has applied an import.
type Progress struct {
	Partitions []PartitionProgress
	Done       bool // every partition's records are applied
}

// PartitionProgress compares one partition's end of an import with the
// builder's committed offset.
type PartitionProgress struct {
	Partition int
	End       int64 // the import's records are below this offset
	Committed int64 // the builder has applied everything below this one
}

// Progress reports how far the builder has applied the import id names.
func (im *Importer) Progress(id string) (Progress, error) {
	marks, err := decodeID(id, im.opts.Log.Partitions())
	if err != nil {
		return Progress{}, err
	}
	pr := Progress{Done: true}
	for _, m := range marks {
		c, err := im.opts.Committed.Offset(m.partition)
		if err != nil {
			return Progress{}, err
		}
		pr.Partitions = append(pr.Partitions, PartitionProgress{Partition: m.partition, End: m.next, Committed: c})
		if c < m.next {
			pr.Done = false
		}
	}
	return pr, nil
}

// AppendJSON appends pr as a JSON object:
// {"done":false,"partitions":[{"partition":0,"end":120,"committed":80}]}.
func (pr *Progress) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"done":`...)
	dst = strconv.AppendBool(dst, pr.Done)
	dst = append(dst, `,"partitions":[`...)
	for i, p := range pr.Partitions {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"partition":`...)
		dst = strconv.AppendInt(dst, int64(p.Partition), 10)
		dst = append(dst, `,"end":`...)
		dst = strconv.AppendInt(dst, p.End, 10)
		dst = append(dst, `,"committed":`...)
		dst = strconv.AppendInt(dst, p.Committed, 10)
		dst = append(dst, '}')
	}
	return append(dst, "]}"...)
}

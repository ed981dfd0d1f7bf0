package workload

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/tracker/event"
)

// AppendJSON appends b as the JSON body the snippet posts to /v1/events
// (see tracker/event's package doc) and returns the extended buffer.
func AppendJSON(dst []byte, b *event.Batch) []byte {
	dst = append(dst, `{"site":`...)
	dst = appendJSONString(dst, b.Site)
	dst = append(dst, `,"v":"`...)
	dst = b.Visitor.Append(dst)
	dst = append(dst, `","events":[`...)
	for i := range b.Events {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendEventJSON(dst, &b.Events[i])
	}
	return append(dst, "]}"...)
}

func appendEventJSON(dst []byte, e *event.Event) []byte {
	dst = append(dst, `{"id":"`...)
	dst = e.ID.Append(dst)
	dst = append(dst, `","t":"`...)
	dst = append(dst, e.Type.String()...)
	dst = append(dst, `","ts":`...)
	dst = strconv.AppendInt(dst, e.TS, 10)
	if e.HasProduct {
		dst = append(dst, `,"product":`...)
		dst = appendProductJSON(dst, &e.Product)
	}
	if e.HasOrder {
		dst = append(dst, `,"order":{"id":`...)
		dst = appendJSONString(dst, e.Order.ID)
		if e.Order.HasTotal {
			dst = append(dst, `,"total":`...)
			dst = strconv.AppendFloat(dst, e.Order.Total, 'f', -1, 64)
		}
		dst = append(dst, `,"items":[`...)
		for i := range e.Order.Items {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendProductJSON(dst, &e.Order.Items[i])
		}
		dst = append(dst, "]}"...)
	}
	if e.Email != "" {
		dst = append(dst, `,"email":`...)
		dst = appendJSONString(dst, e.Email)
	}
	if e.Customer != "" {
		dst = append(dst, `,"customer_id":`...)
		dst = appendJSONString(dst, e.Customer)
	}
	if len(e.Traits) > 0 {
		dst = append(dst, `,"traits":{`...)
		for i, t := range e.Traits {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, t.Key)
			dst = append(dst, ':')
			if t.Kind == event.TraitString {
				dst = appendJSONString(dst, t.Value)
			} else {
				dst = append(dst, t.Value...)
			}
		}
		dst = append(dst, '}')
	}
	if e.URL != "" {
		dst = append(dst, `,"url":`...)
		dst = appendJSONString(dst, e.URL)
	}
	return append(dst, '}')
}

func appendProductJSON(dst []byte, p *event.Product) []byte {
	dst = append(dst, '{')
	sep := false
	str := func(k, v string) {
		if v == "" {
			return
		}
		if sep {
			dst = append(dst, ',')
		}
		sep = true
		dst = append(dst, k...)
		dst = appendJSONString(dst, v)
	}
	str(`"id":`, p.ID)
	str(`"brand":`, p.Brand)
	str(`"category":`, p.Category)
	str(`"age":`, p.Age)
	if p.HasPrice {
		if sep {
			dst = append(dst, ',')
		}
		sep = true
		dst = append(dst, `"price":`...)
		dst = strconv.AppendFloat(dst, p.Price, 'f', -1, 64)
	}
	if p.Qty > 0 {
		if sep {
			dst = append(dst, ',')
		}
		dst = append(dst, `"qty":`...)
		dst = strconv.AppendUint(dst, uint64(p.Qty), 10)
	}
	return append(dst, '}')
}

// appendJSONString appends s as a JSON string.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// AppendRecord appends b's log record to rec and its log key to key, as the
// collector writes them, and returns both buffers.
func AppendRecord(rec, key []byte, b *event.Batch) ([]byte, []byte) {
	return event.AppendBatch(rec, b), event.AppendLogKey(key, b.Site, b.Visitor)
}

// FillStats counts what Fill wrote.
type FillStats struct {
	Batches  int64
	Events   int64
	Visitors int64
}

// Fill writes the whole workload opts (Events must be bounded) into l as
// log records, from workers goroutines (each a shard of opts), appending
// group messages per Append call. progress, if not nil, is called with the
// running event count about every 64k events, from any goroutine.
func Fill(ctx context.Context, l storage.Log, opts Options, workers, group int, progress func(events int64)) (FillStats, error) {
	if opts.Events <= 0 {
		return FillStats{}, fmt.Errorf("cannot fill log: workload events %d must be bounded (> 0)", opts.Events)
	}
	workers = max(workers, 1)
	group = max(group, 1)
	cat := NewCatalog(opts.Seed, opts.Products, opts.Brands)
	var (
		st       FillStats
		done     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for w := range workers {
		o := opts
		o.Shard, o.Shards = w, workers
		g, err := New(o, cat)
		if err != nil {
			return st, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var (
				b    event.Batch
				buf  []byte
				ends []int // end offsets in buf: key, value, key, value …
				msgs = make([]storage.Message, 0, group)
				evs  int64
			)
			flush := func() error {
				msgs = msgs[:0]
				start := 0
				for i := 0; i < len(ends); i += 2 {
					msgs = append(msgs, storage.Message{Key: buf[start:ends[i]], Value: buf[ends[i]:ends[i+1]]})
					start = ends[i+1]
				}
				err := l.Append(ctx, msgs)
				atomic.AddInt64(&st.Batches, int64(len(msgs)))
				buf, ends = buf[:0], ends[:0]
				if n := done.Add(evs); progress != nil && n>>16 != (n-evs)>>16 {
					progress(n)
				}
				evs = 0
				return err
			}
			for g.Next(&b) {
				buf = event.AppendLogKey(buf, b.Site, b.Visitor)
				ends = append(ends, len(buf))
				buf = event.AppendBatch(buf, &b)
				ends = append(ends, len(buf))
				evs += int64(len(b.Events))
				if len(ends) == 2*group {
					if err := flush(); err != nil {
						errOnce.Do(func() { firstErr = err; cancel() })
						return
					}
				}
			}
			if len(ends) > 0 {
				if err := flush(); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
			}
			atomic.AddInt64(&st.Visitors, int64(g.Visitors()))
		}()
	}
	wg.Wait()
	st.Events = done.Load()
	if firstErr != nil {
		return st, fmt.Errorf("cannot fill log: %w", firstErr)
	}
	if progress != nil {
		progress(st.Events)
	}
	return st, nil
}

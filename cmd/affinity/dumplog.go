package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/tracker/event"
)

// runDumpLog prints every event stored in the embedded log under --data, one
// JSON object per line, partition by partition in offset order. The service
// must be stopped: one process at a time may open the log.
func runDumpLog(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("affinity dump-log", flag.ContinueOnError)
	data := fs.String("data", "./data", "directory of the service's state; the log is <data>/log")
	partitions := fs.Int("partitions", 8, "partitions of the log, as it was created (serve --partitions)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	dir := filepath.Join(*data, "log")
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("cannot dump the log: %w", err)
	}
	opts := storage.DefaultEmbeddedOptions(dir)
	opts.Partitions = *partitions
	l, err := storage.OpenEmbeddedLog(opts)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(os.Stdout)
	err = dumpLog(ctx, w, os.Stderr, l)
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if cerr := l.Close(); err == nil {
		err = cerr
	}
	return err
}

// dumpLog writes the events of l to w, and to warn a line per partition
// whose start was trimmed (consumed by the builder and dropped).
func dumpLog(ctx context.Context, w, warn io.Writer, l storage.Log) error {
	var recs []storage.Record
	var b event.Batch
	for p := 0; p < l.Partitions(); p++ {
		first, next, err := l.Offsets(ctx, p)
		if err != nil {
			return err
		}
		if first > 0 {
			fmt.Fprintf(warn, "dump-log: partition %d starts at offset %d: the records below were consumed by the builder and trimmed\n", p, first)
		}
		if first == next {
			continue
		}
		r, err := l.OpenReader(p, first)
		if err != nil {
			return err
		}
		for off := first; off < next; {
			if recs, err = r.Fetch(ctx, recs[:0], 256); err != nil {
				r.Close()
				return fmt.Errorf("cannot read partition %d at offset %d: %w", p, off, err)
			}
			for _, rec := range recs {
				off = rec.Offset + 1
				b.Reset()
				if err := event.DecodeRecord(&b, rec.Value); err != nil {
					return fmt.Errorf("cannot decode record %d of partition %d: %w", rec.Offset, p, err)
				}
				for i := range b.Events {
					line, err := json.Marshal(dumpedEvent(rec, &b, &b.Events[i]))
					if err != nil {
						return err
					}
					if _, err := w.Write(append(line, '\n')); err != nil {
						return err
					}
				}
			}
		}
		r.Close()
	}
	return nil
}

// dumped is one line of dump-log: the event as in the JSON contract, with
// its batch's site, visitor and receive time and its place in the log.
type dumped struct {
	Partition int             `json:"partition"`
	Offset    int64           `json:"offset"`
	Site      string          `json:"site"`
	Visitor   string          `json:"v"`
	Recv      int64           `json:"recv"`
	ID        string          `json:"id"`
	Type      string          `json:"t"`
	TS        int64           `json:"ts"`
	URL       string          `json:"url,omitempty"`
	Product   *dumpedProduct  `json:"product,omitempty"`
	Order     *dumpedOrder    `json:"order,omitempty"`
	Email     string          `json:"email,omitempty"`
	Customer  string          `json:"customer,omitempty"`
	Traits    json.RawMessage `json:"traits,omitempty"`
}

type dumpedProduct struct {
	ID       string   `json:"id,omitempty"`
	Brand    string   `json:"brand,omitempty"`
	Category string   `json:"category,omitempty"`
	Age      string   `json:"age,omitempty"`
	Price    *float64 `json:"price,omitempty"`
	Qty      uint32   `json:"qty,omitempty"`
}

type dumpedOrder struct {
	ID    string          `json:"id,omitempty"`
	Total *float64        `json:"total,omitempty"`
	Items []dumpedProduct `json:"items"`
}

func dumpedEvent(rec storage.Record, b *event.Batch, e *event.Event) *dumped {
	d := &dumped{
		Partition: rec.Partition, Offset: rec.Offset,
		Site: b.Site, Visitor: b.Visitor.String(), Recv: b.Recv,
		ID: e.ID.String(), Type: e.Type.String(), TS: e.TS, URL: e.URL,
		Email: e.Email, Customer: e.Customer,
	}
	if d.Type == "" {
		d.Type = "type" + strconv.Itoa(int(e.Type)) // a newer build's type
	}
	if e.HasProduct {
		p := dumpProduct(&e.Product)
		d.Product = &p
	}
	if e.HasOrder {
		o := &dumpedOrder{ID: e.Order.ID, Items: []dumpedProduct{}}
		if e.Order.HasTotal {
			o.Total = &e.Order.Total
		}
		for i := range e.Order.Items {
			o.Items = append(o.Items, dumpProduct(&e.Order.Items[i]))
		}
		d.Order = o
	}
	if len(e.Traits) > 0 {
		t := []byte{'{'}
		for i, tr := range e.Traits {
			if i > 0 {
				t = append(t, ',')
			}
			k, _ := json.Marshal(tr.Key)
			t = append(append(t, k...), ':')
			if v := []byte(tr.Value); tr.Kind != event.TraitString && json.Valid(v) {
				t = append(t, v...)
			} else {
				v, _ = json.Marshal(tr.Value)
				t = append(t, v...)
			}
		}
		d.Traits = append(t, '}')
	}
	return d
}

func dumpProduct(p *event.Product) dumpedProduct {
	d := dumpedProduct{ID: p.ID, Brand: p.Brand, Category: p.Category, Age: p.Age, Qty: p.Qty}
	if p.HasPrice {
		price := p.Price
		d.Price = &price
	}
	return d
}

// untrimmedLog is a log whose Trim keeps everything (serve
// --log-keep-consumed): what the collector stored stays readable by
// dump-log after the builder has consumed it.
type untrimmedLog struct{ storage.Log }

func (untrimmedLog) Trim(context.Context, int, int64) error { return nil }

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/tracker/event"
)

// runDumpLog prints every event stored in the embedded log under --data, or
// in the Kafka topic --topic on --kafka, one JSON object per line, partition
// by partition in offset order. With the embedded log the service must be
// stopped: one process at a time may open it.
func runDumpLog(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("affinity dump-log", flag.ContinueOnError)
	data := fs.String("data", "./data", "directory of the service's state; the log is <data>/log")
	partitions := fs.Int("log-partitions", storage.DefaultEmbeddedOptions("").Partitions, "partitions of the embedded log, as serve --log-partitions created it")
	brokers := newListFlag()
	fs.Var(brokers, "kafka", "Kafka bootstrap brokers, host:port[,host:port…]: read --topic there instead of the embedded log")
	topic := fs.String("topic", storage.DefaultKafkaOptions().Topic, "Kafka topic of the events, with --kafka")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var (
		l       storage.Log
		trimmed string
		err     error
	)
	if len(brokers.values) > 0 {
		l, err = openDumpKafka(ctx, brokers.values, *topic)
		trimmed = "deleted by the topic's retention"
	} else {
		l, err = openDumpEmbedded(*data, *partitions)
		trimmed = "consumed by the builder and trimmed"
	}
	if err != nil {
		return err
	}
	w := bufio.NewWriter(os.Stdout)
	err = dumpLog(ctx, w, os.Stderr, l, trimmed)
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if cerr := l.Close(); err == nil {
		err = cerr
	}
	return err
}

// openDumpEmbedded opens the embedded log under data.
func openDumpEmbedded(data string, partitions int) (storage.Log, error) {
	dir := filepath.Join(data, "log")
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("cannot dump the log: %w", err)
	}
	opts := storage.DefaultEmbeddedOptions(dir)
	opts.Partitions = partitions
	return storage.OpenEmbeddedLog(opts)
}

// openDumpKafka opens topic on brokers to read it; it never creates the
// topic.
func openDumpKafka(ctx context.Context, brokers []string, topic string) (storage.Log, error) {
	opts := storage.DefaultKafkaOptions(brokers...)
	opts.Topic = topic
	opts.CreateTopic = false
	opts.Logger = log.Printf
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	l, err := storage.OpenKafkaLog(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("cannot dump topic %q: %w", topic, err)
	}
	return l, nil
}

// dumpLog writes the events of l to w, and to warn a line per partition
// whose start is gone: trimmed says why ("consumed by the builder and
// trimmed").
func dumpLog(ctx context.Context, w, warn io.Writer, l storage.Log, trimmed string) error {
	for p := 0; p < l.Partitions(); p++ {
		first, next, err := l.Offsets(ctx, p)
		if err != nil {
			return err
		}
		if first > 0 {
			fmt.Fprintf(warn, "dump-log: partition %d starts at offset %d: the records below were %s\n", p, first, trimmed)
		}
		if first < next {
			if err := dumpPartition(ctx, w, l, p, first, next); err != nil {
				return err
			}
		}
	}
	return nil
}

// dumpPartition writes the events of the records of partition p in
// [first, next) to w.
func dumpPartition(ctx context.Context, w io.Writer, l storage.Log, p int, first, next int64) error {
	r, err := l.OpenReader(p, first)
	if err != nil {
		return err
	}
	defer r.Close()
	var (
		recs []storage.Record
		b    event.Batch
	)
	for off := first; off < next; {
		if recs, err = r.Fetch(ctx, recs[:0], 256); err != nil {
			return fmt.Errorf("cannot read partition %d at offset %d: %w", p, off, err)
		}
		for _, rec := range recs {
			if rec.Offset >= next {
				return nil // appended since the dump started
			}
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
	// Campaign and Recipient are a convert's (the builder's forward of a
	// purchase to a campaign recipient).
	Campaign  uint64  `json:"campaign,omitempty"`
	Recipient *uint32 `json:"recipient,omitempty"`
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
	if e.Campaign != 0 {
		d.Campaign, d.Recipient = e.Campaign, &e.Recipient
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

package campaign_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/affinityhq/affinity/profile/campaign"
	"github.com/affinityhq/affinity/profile/defs"
	"github.com/affinityhq/affinity/profile/profiletest"
)

// benchHeads returns a caught-up Heads holding a campaign of n list
// recipients frozen on a Store, its record and its tokens.
func benchHeads(b *testing.B, n int) (*campaign.Heads, []byte, [][]byte) {
	e := benchList(b, n)
	id, err := e.Campaigns.ReserveID(0)
	if err != nil {
		b.Fatal(err)
	}
	c, err := campaign.ParseSpec("shop", []byte(`{"name":"p","arms":[{"name":"crm","list":"crm"}],"holdout":10,"window":"7d"}`))
	if err != nil {
		b.Fatal(err)
	}
	rec, err := e.Campaigns.Freeze(c, id, nil)
	if err == nil {
		c, err = e.Campaigns.Apply(id, rec)
	}
	if err != nil {
		b.Fatal(err)
	}
	var toks [][]byte
	if err := e.Campaigns.ScanRecipients(c, func(r *campaign.Recipient) bool {
		toks = append(toks, campaign.AppendToken(nil, c.ID, r.Number, &r.MAC))
		return true
	}); err != nil {
		b.Fatal(err)
	}
	h := campaign.NewHeads()
	h.Follow(newTopicAt(topicState{caughtUp: true}))
	if _, err := h.ApplyDefinition(&defs.Record{Kind: defs.KindCampaign, Op: defs.OpPut, Site: "shop", Name: c.IDString(), Body: rec}); err != nil {
		b.Fatal(err)
	}
	return h, rec, toks
}

// BenchmarkHeadsEngagementSite measures a collect node's token check
// (parse, the head from memory, the MAC under the site's cached
// signers; no read), from 2 goroutines as the engagement endpoints
// check: BenchmarkResolve without its point read.
func BenchmarkHeadsEngagementSite(b *testing.B) {
	h, _, toks := benchHeads(b, 10_000)
	runChecks(b, toks, func(tok []byte) error {
		if _, _, ok, err := h.EngagementSite(tok); !ok || err != nil {
			return fmt.Errorf("token %s refused: %v", tok, err)
		}
		return nil
	})
}

// BenchmarkHeadsApply measures a collect node's apply of a campaign
// record of 200k recipients handed whole (an unchunked record): only
// its head is decoded, so the cost does not grow with the recipients.
func BenchmarkHeadsApply(b *testing.B) {
	h, rec, _ := benchHeads(b, 200_000)
	r := &defs.Record{Kind: defs.KindCampaign, Op: defs.OpPut, Site: "shop", Name: "1", Body: rec}
	b.ReportAllocs()
	b.SetBytes(int64(len(rec)))
	for b.Loop() {
		if _, err := h.ApplyDefinition(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHeadsRead measures a collect node's start on a definitions
// topic holding a campaign of 200k recipients in 256 KiB chunks (kfake):
// the time its reader takes to read the topic to its end and hold the
// head, and the heap Heads retains after (the recipients are dropped
// with their chunks: a few hundred bytes of a record of megabytes).
func BenchmarkHeadsRead(b *testing.B) {
	_, rec, _ := benchHeads(b, 200_000)
	brokers := profiletest.StartKafka(b)
	const topic = "defs-bench"
	o := defs.DefaultOptions()
	o.Brokers, o.Topic = brokers, topic
	w, err := defs.New(o, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	if err := w.Start(func(*defs.Record) (any, error) { return nil, nil }); err != nil {
		b.Fatal(err)
	}
	if _, err := w.Submit(context.Background(), &defs.Record{Kind: defs.KindCampaign, Op: defs.OpPut, Site: "shop", Name: "1", Body: rec}); err != nil {
		b.Fatal(err)
	}
	campaign.HeadsOptions(&o)
	var retained uint64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&before)
		r, err := defs.New(o, nil)
		if err != nil {
			b.Fatal(err)
		}
		h := campaign.NewHeads()
		h.Follow(r)
		if err := r.Start(h.ApplyDefinition); err != nil {
			b.Fatal(err)
		}
		if h.Len() != 1 {
			b.Fatalf("%d campaigns held; want 1", h.Len())
		}
		if err := r.Close(); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.GC() // sync.Pools keep their items one GC more
		runtime.ReadMemStats(&after)
		retained = max(retained, after.HeapAlloc-min(after.HeapAlloc, before.HeapAlloc))
		runtime.KeepAlive(h)
	}
	b.ReportMetric(float64(len(rec)), "record-B")
	b.ReportMetric(float64(retained), "retained-B")
}

package campaign_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/affinityhq/affinity/profile/campaign"
	"github.com/affinityhq/affinity/profile/lists"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/tracker/event"
)

// benchList returns an Env whose site "shop" has a list "crm" of n
// emails.
func benchList(b *testing.B, n int) *profiletest.Env {
	e := profiletest.Open(b, profiletest.Options{})
	var csv strings.Builder
	csv.WriteString("email\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&csv, "person%d@example.com\n", i)
	}
	_, bf, err := e.Segments.PutList("shop", "crm", strings.NewReader(csv.String()), lists.FormatCSV)
	if err != nil {
		b.Fatal(err)
	}
	bf.Wait()
	return e
}

// BenchmarkFreeze measures Create of a campaign of 200k and of 1M
// recipients from a list arm (10% holdout, three variants; a segment arm
// reads its members by the same kind of prefix scan): the freeze's rate.
func BenchmarkFreeze(b *testing.B) {
	for _, n := range []int{200_000, 1_000_000} {
		b.Run(fmt.Sprintf("%dk", n/1000), func(b *testing.B) {
			e := benchList(b, n)
			s, err := campaign.New(campaign.Options{State: e.DB, Segments: e.Segments})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				c, err := campaign.ParseSpec("shop", []byte(`{"name":"p","arms":[{"name":"crm","list":"crm","variants":["10%","15%","20%"]}],"holdout":10,"window":"7d"}`))
				if err == nil {
					err = s.Create(c)
				}
				if err != nil {
					b.Fatal(err)
				}
				if c.Recipients() != uint64(n) {
					b.Fatalf("%d recipients; want %d", c.Recipients(), n)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "recipients/s")
		})
	}
}

// BenchmarkFreezeApply measures a campaign of 200k recipients of a list
// arm in a build group: Freeze on the node asked (the record every node
// applies) and Apply on a node holding nothing of it — BenchmarkFreeze's
// Create split in two, with the record between.
func BenchmarkFreezeApply(b *testing.B) {
	const n = 200_000
	e := benchList(b, n)
	other := profiletest.Open(b, profiletest.Options{})
	b.ReportAllocs()
	var recBytes int
	for i := 0; b.Loop(); i++ {
		id, err := e.Campaigns.ReserveID(int64(i))
		if err != nil {
			b.Fatal(err)
		}
		c, err := campaign.ParseSpec("shop", []byte(`{"name":"p","arms":[{"name":"crm","list":"crm","variants":["10%","15%","20%"]}],"holdout":10,"window":"7d"}`))
		if err != nil {
			b.Fatal(err)
		}
		rec, err := e.Campaigns.Freeze(c, id, nil)
		if err != nil {
			b.Fatal(err)
		}
		recBytes = len(rec)
		applied, err := other.Campaigns.Apply(id, rec)
		if err != nil {
			b.Fatal(err)
		}
		if applied.Recipients() != n {
			b.Fatalf("%d recipients; want %d", applied.Recipients(), n)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "recipients/s")
	b.ReportMetric(float64(recBytes)/n, "record-B/recipient")
}

// benchTokens returns an Env with a campaign of n recipients of a list
// arm (10% holdout), and their tokens.
func benchTokens(b *testing.B, n int) (*profiletest.Env, []string) {
	e := benchList(b, n)
	c, err := campaign.ParseSpec("shop", []byte(`{"name":"p","arms":[{"name":"crm","list":"crm"}],"holdout":10,"window":"7d"}`))
	if err == nil {
		err = e.Campaigns.Create(c)
	}
	if err != nil {
		b.Fatal(err)
	}
	var toks []string
	err = e.Campaigns.ScanRecipients(c, func(r *campaign.Recipient) bool {
		toks = append(toks, string(campaign.AppendToken(nil, c.ID, r.Number, &r.MAC)))
		return true
	})
	if err != nil {
		b.Fatal(err)
	}
	return e, toks
}

// BenchmarkEngage measures a builder partition's counting of opens and
// clicks (Counter.Engage: token check, one point read of the recipient
// and one of its engagement key) with a Flush and commit every 1000
// events, over 10k recipients each opening once and clicking once.
func BenchmarkEngage(b *testing.B) {
	e, toks := benchTokens(b, 10_000)
	cnt := e.Campaigns.NewCounter(0)
	batch := e.DB.NewBatch()
	ev := event.Event{Type: event.TypeOpen, TS: 1}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ev.Token = toks[i%len(toks)]
		ev.Type = event.TypeOpen + event.Type(i/len(toks)%2)
		if err := cnt.Engage("shop", &ev); err != nil {
			b.Fatal(err)
		}
		if i++; i%1000 == 0 {
			if err := cnt.Flush(batch); err != nil {
				b.Fatal(err)
			}
			if err := batch.Commit(); err != nil {
				b.Fatal(err)
			}
			cnt.Reset()
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkResolve measures a token check alone (Store.Resolve: parse,
// MAC under the site's cached signers, one point read of the recipient),
// from 2 goroutines as the collector's engagement endpoints check.
func BenchmarkResolve(b *testing.B) {
	e, strs := benchTokens(b, 10_000)
	toks := make([][]byte, len(strs))
	for i, t := range strs {
		toks[i] = []byte(t)
	}
	runChecks(b, toks, func(tok []byte) error {
		_, _, err := e.Campaigns.Resolve(tok)
		return err
	})
}

// runChecks runs check over toks in turn from GOMAXPROCS goroutines, as
// the collector's engagement endpoints check, and reports checks/s.
func runChecks(b *testing.B, toks [][]byte, check func(tok []byte) error) {
	b.ReportAllocs()
	b.SetParallelism(1)
	b.ResetTimer()
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := check(toks[int(next.Add(1))%len(toks)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "checks/s")
}

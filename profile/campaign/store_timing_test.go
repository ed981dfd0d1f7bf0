package campaign_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/affinityhq/affinity/profile/campaign"
	"github.com/affinityhq/affinity/profile/lists"
	"github.com/affinityhq/affinity/profile/profiletest"
)

// benchRecipients is the audience of the freeze benchmarks: a list arm
// (a segment arm reads its members by the same kind of prefix scan).
const benchRecipients = 1_000_000

// BenchmarkFreeze measures Create of a campaign of benchRecipients
// recipients (10% holdout, three variants): the freeze's rate.
func BenchmarkFreeze(b *testing.B) {
	e := profiletest.Open(b, profiletest.Options{})
	var csv strings.Builder
	csv.WriteString("email\n")
	for i := 0; i < benchRecipients; i++ {
		fmt.Fprintf(&csv, "person%d@example.com\n", i)
	}
	_, bf, err := e.Segments.PutList("shop", "crm", strings.NewReader(csv.String()), lists.FormatCSV)
	if err != nil {
		b.Fatal(err)
	}
	bf.Wait()
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
		if c.Recipients() != benchRecipients {
			b.Fatalf("%d recipients; want %d", c.Recipients(), benchRecipients)
		}
	}
	b.ReportMetric(float64(benchRecipients*b.N)/b.Elapsed().Seconds(), "recipients/s")
}

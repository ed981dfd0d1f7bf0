package query_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/affinityhq/affinity/profile/query"
)

// BenchmarkRecipientsExport streams the treated recipients of a campaign
// of 200k recipients (10% holdout), CSV and NDJSON, tokens included: the
// rate the email tool reads at.
func BenchmarkRecipientsExport(b *testing.B) {
	const n = 200_000
	e := newSegEnv(b)
	var csv strings.Builder
	csv.WriteString("email\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&csv, "person%d@example.com\n", i)
	}
	if code, body := e.putList(b, "crm", "text/csv", csv.String()); code != 201 {
		b.Fatalf("put list: %d %s", code, body)
	}
	if code, body := e.Do(b, "POST", "/v1/campaigns/shop", "application/json", []byte(`{"name":"p","arms":[{"name":"crm","list":"crm","variants":["10%","20%"]}],"holdout":10,"window":"7d"}`), true); code != 201 {
		b.Fatalf("create: %d %s", code, body)
	}
	for _, format := range []string{"csv", "ndjson"} {
		b.Run(format, func(b *testing.B) {
			cw := &countWriter{}
			w := bufio.NewWriterSize(cw, 64<<10)
			b.ReportAllocs()
			for b.Loop() {
				cw.rows = 0
				if err := query.WriteRecipients(w, e.Query, "shop", 1, format == "csv"); err != nil {
					b.Fatal(err)
				}
				_ = w.Flush()
			}
			b.ReportMetric(float64(cw.rows*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// countWriter counts the lines written through it.
type countWriter struct{ rows int }

func (c *countWriter) Write(p []byte) (int, error) {
	c.rows += bytes.Count(p, []byte{'\n'})
	return io.Discard.Write(p)
}

package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/affinityhq/affinity/profile/campaign"
)

// The campaign scenario's segment (every imported buyer), list and arms.
const (
	campaignSegment = "buyers"
	CampaignRule    = "count(purchase) >= 1"
	campaignList    = "crm"
	campaignSpec    = `{"name":"bench","arms":[{"name":"behaviour","segment":"` + campaignSegment +
		`"},{"name":"crm","list":"` + campaignList + `"}],"holdout":10,"window":"7d"}`
)

// CampaignOptions configure the campaign scenario: a node as `affinity
// serve` runs it (the query role) with Recipients/2 identified buyers
// (imported orders, one a person) in a segment arm and Recipients/2 other
// emails in a static list arm; it measures the freeze of the campaign
// (holdout 10%), the recipients exports, and report reads idle and under
// ingest.
type CampaignOptions struct {
	// Ingest gives the load generator's settings (Concurrency, Workload,
	// Sample, Dir, Progress) of the ingest beside the report reads.
	Ingest IngestOptions
	// Recipients is the campaign's size: half of them buyers, half list
	// emails.
	Recipients int
	// ReportConns and ReportRate: keep-alive connections and report
	// reads/s offered, open loop, in each measured phase.
	ReportConns int
	ReportRate  float64
	// MaxPhase is the closed-loop ingest phase finding its maximum; Phase
	// each measured report phase.
	MaxPhase, Phase time.Duration
	// Load is the ingest offered beside the second report phase, as a
	// fraction of the maximum found.
	Load float64
	// Settle bounds the wait, before the report reads, for the node's CPU
	// use to fall under a tenth of a core (the freeze's compactions).
	Settle time.Duration
	// Memory is the node's memory budget (--memory); 0: budget.Default.
	Memory int64
}

// DefaultCampaignOptions returns issue 11's scenario: 1M recipients,
// reports at 200/s over 2 connections for 8 s idle and 8 s under ingest
// at half its maximum.
func DefaultCampaignOptions() CampaignOptions {
	return CampaignOptions{
		Ingest:      DefaultIngestOptions(),
		Recipients:  1_000_000,
		ReportConns: 2,
		ReportRate:  200,
		MaxPhase:    3 * time.Second,
		Phase:       8 * time.Second,
		Load:        0.5,
		Settle:      30 * time.Second,
	}
}

// QuickCampaignOptions returns a smoke run of a few seconds.
func QuickCampaignOptions() CampaignOptions {
	o := DefaultCampaignOptions()
	o.Ingest = QuickIngestOptions()
	o.Recipients = 10_000
	o.MaxPhase = time.Second
	o.Phase = 1500 * time.Millisecond
	o.Settle = time.Second
	return o
}

// Issue 11's targets.
const (
	CampaignExportTarget    = 1_000_000 // recipients rows/s
	CampaignReportP99Target = 5.0       // ms, under ingest
)

// RecipientsExport is one stream of GET /v1/campaigns/{site}/{id}/recipients.
type RecipientsExport struct {
	ExportResult
	// Want is the group's size the campaign's head gives: Rows must equal
	// it, and every row be well-formed (an email, a known arm, no variant,
	// a token of the campaign that campaign.ParseToken accepts).
	Want int64 `json:"want_rows"`
	// NodeCPU is the node's CPU time over the export: Rows/NodeCPU is the
	// rate one free core would give, whatever else the machine runs.
	NodeCPU float64 `json:"node_cpu_s"`
}

// CampaignReport is the outcome of the campaign scenario.
type CampaignReport struct {
	Recipients    int     `json:"recipients"`
	ImportSeconds float64 `json:"import_s"` // the buyers' orders POSTed → applied
	ListSeconds   float64 `json:"list_s"`   // PUT of the list → 201
	SegmentSize   int64   `json:"segment_size"`
	ListSize      int64   `json:"list_size"`

	// The freeze: POST /v1/campaigns → 201, its rate, and the node's
	// resident memory before it and at its peak during it.
	FreezeSeconds float64 `json:"freeze_s"`
	FreezePerS    float64 `json:"freeze_recipients_per_s"`
	FreezeCPU     float64 `json:"freeze_node_cpu_s"`
	RSSBeforeMB   float64 `json:"freeze_rss_before_mb"`
	RSSPeakMB     float64 `json:"freeze_rss_peak_mb"`
	Frozen        int64   `json:"frozen"` // the campaign's recipients
	Treated       int64   `json:"treated"`
	Control       int64   `json:"control"`

	Exports []RecipientsExport `json:"exports"`

	SettleSeconds float64       `json:"settle_s"` // the node went quiet after the exports
	ReportConns   int           `json:"report_connections"`
	Idle          LookupResult  `json:"report_idle"`
	UnderIngest   LookupResult  `json:"report_under_ingest"`
	Ingest        IngestFigures `json:"ingest"`
	PeakRSSMB     float64       `json:"node_peak_rss_mb"`
	Timeline      []Sample      `json:"timeline"`
	IngestTL      []Sample      `json:"ingest_timeline"`
}

// RunCampaign runs the campaign scenario.
func RunCampaign(o CampaignOptions) (*CampaignReport, error) {
	in := o.Ingest
	if o.Recipients < 2 || o.ReportConns <= 0 || o.ReportRate <= 0 || o.MaxPhase <= 0 || o.Phase <= 0 || o.Load <= 0 || in.Concurrency <= 0 {
		return nil, fmt.Errorf("cannot run campaign: recipients %d (at least 2), report connections %d and rate %g, phases %s/%s, load %g and concurrency %d must be > 0",
			o.Recipients, o.ReportConns, o.ReportRate, o.MaxPhase, o.Phase, o.Load, in.Concurrency)
	}
	if in.Sample <= 0 {
		in.Sample = 500 * time.Millisecond
	}
	done, err := in.scratchDir("campaign")
	if err != nil {
		return nil, err
	}
	defer done()
	progress := in.progressFunc()
	buyers, listed := o.Recipients/2, o.Recipients-o.Recipients/2
	rep := &CampaignReport{Recipients: o.Recipients, ReportConns: o.ReportConns, Ingest: IngestFigures{Concurrency: in.Concurrency}}

	// 1. A node on an empty log.
	logDir, stateDir := filepath.Join(in.Dir, "campaign-log"), filepath.Join(in.Dir, "campaign-state")
	for _, d := range []string{logDir, stateDir} {
		if err := os.RemoveAll(d); err != nil { // an earlier run in --dir
			return nil, err
		}
	}
	p, err := startQueryNode(&in, logDir, stateDir, o.Memory)
	if err != nil {
		return rep, err
	}
	defer p.stop()
	var br buildResult
	if err := p.run("run", &br, func(int64) {}); err != nil {
		return rep, err
	}
	var qa queryAPI
	if err := p.call("api", &qa); err != nil {
		return rep, err
	}
	c := &queryClient{addr: qa.Addr, http: &http.Client{Timeout: 10 * time.Minute}}

	// 2. The segment arm's audience: a segment, then one imported order
	// per buyer, each identifying its visitor by email.
	if _, err := c.do(http.MethodPut, "/v1/segments/"+benchSite+"/"+campaignSegment, CampaignRule, http.StatusCreated); err != nil {
		return rep, err
	}
	progress(fmt.Sprintf("campaign: importing %d buyers", buyers))
	start := time.Now()
	if err := campaignImport(c, buyers, progress); err != nil {
		return rep, err
	}
	for {
		var def struct {
			Size int64 `json:"size"`
		}
		if err := c.getJSON("/v1/segments/"+benchSite+"/"+campaignSegment, &def); err != nil {
			return rep, err
		}
		if rep.SegmentSize = def.Size; def.Size == int64(buyers) {
			break
		}
		if time.Since(start) > 30*time.Minute {
			return rep, fmt.Errorf("campaign: segment %q has %d members after %s; want %d", CampaignRule, def.Size, time.Since(start).Round(time.Second), buyers)
		}
		progress(fmt.Sprintf("campaign: segment %q: %d of %d members", CampaignRule, def.Size, buyers))
		time.Sleep(100 * time.Millisecond)
	}
	rep.ImportSeconds = time.Since(start).Seconds()

	// 3. The list arm's audience: other emails.
	var list bytes.Buffer
	list.WriteString("email\n")
	for i := range listed {
		fmt.Fprintf(&list, "crm%d@example.com\n", i)
	}
	progress(fmt.Sprintf("campaign: putting a list of %d emails", listed))
	start = time.Now()
	code, lr, err := importRequest(http.MethodPut, "http://"+c.addr+"/v1/lists/"+benchSite+"/"+campaignList, "text/csv", list.Bytes())
	if err != nil {
		return rep, err
	}
	rep.ListSeconds = time.Since(start).Seconds()
	if v, err := fastjson.Parse(lr); code != http.StatusCreated || err != nil || v.GetInt64("emails") != int64(listed) {
		return rep, fmt.Errorf("campaign: PUT list: %d %.300s; want 201 with %d emails", code, lr, listed)
	}
	rep.ListSize = int64(listed)

	// 4. The freeze.
	progress(fmt.Sprintf("campaign: freezing %d recipients", o.Recipients))
	var m0, m1 memReply
	if err := p.call("mem", &m0); err != nil { // resets the peak
		return rep, err
	}
	u0 := p.usage()
	start = time.Now()
	b, err := c.do(http.MethodPost, "/v1/campaigns/"+benchSite, campaignSpec, http.StatusCreated)
	if err != nil {
		return rep, err
	}
	rep.FreezeSeconds = time.Since(start).Seconds()
	rep.FreezeCPU = p.usage().CPUSeconds - u0.CPUSeconds
	if err := p.call("mem", &m1); err != nil {
		return rep, err
	}
	rep.RSSBeforeMB, rep.RSSPeakMB = float64(m0.RSSKB)/1024, float64(m1.HWMKB)/1024
	head, err := fastjson.ParseBytes(b)
	if err != nil {
		return rep, fmt.Errorf("campaign: POST answered %.300s: %w", b, err)
	}
	id := string(head.GetStringBytes("id"))
	rep.Frozen = head.GetInt64("recipients")
	arms := map[string]bool{}
	for _, a := range head.GetArray("arms") {
		arms[string(a.GetStringBytes("name"))] = true
		rep.Treated += a.GetInt64("treated")
		rep.Control += a.GetInt64("control")
	}
	rep.FreezePerS = float64(rep.Frozen) / rep.FreezeSeconds
	if rep.Frozen != int64(o.Recipients) || rep.Treated+rep.Control != rep.Frozen || len(arms) != 2 {
		return rep, fmt.Errorf("campaign: froze %d recipients (%d treated, %d control) in %d arms; want %d in 2", rep.Frozen, rep.Treated, rep.Control, len(arms), o.Recipients)
	}
	cid, _ := strconv.ParseUint(id, 10, 64)

	// 5. The exports, every row checked.
	base := "/v1/campaigns/" + benchSite + "/" + id + "/recipients?"
	for _, x := range []struct {
		name, query string
		want        int64
	}{
		{"csv", "format=csv", rep.Treated},
		{"ndjson", "format=ndjson", rep.Treated},
		{"csv, group=control", "format=csv&group=control", rep.Control},
	} {
		progress(fmt.Sprintf("campaign: exporting %d recipients as %s", x.want, x.name))
		r := RecipientsExport{Want: x.want}
		u0 := p.usage()
		r.ExportResult = c.recipients(x.name, base+x.query, strings.HasPrefix(x.query, "format=csv"), cid, arms)
		r.NodeCPU = p.usage().CPUSeconds - u0.CPUSeconds
		rep.Exports = append(rep.Exports, r)
	}

	// 6. Report reads idle, then beside ingest at Load times its maximum.
	rc := &fasthttp.HostClient{Addr: qa.Addr, MaxConns: o.ReportConns, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	target := lookupTarget{
		path: func(dst []byte, _ *rand.Rand) []byte {
			return append(dst, "/v1/campaigns/"+benchSite+"/"+id+"/report"...)
		},
		ok: func(body []byte) bool {
			return bytes.HasPrefix(body, []byte(`{"id":"`+id+`"`)) && bytes.Contains(body, []byte(`"arms":[`))
		},
	}
	qo := QueryOptions{Ingest: in, LookupConns: o.ReportConns}
	runStart := time.Now()
	reads := func(name string, d time.Duration) LookupResult {
		return runLookups(&qo, rc, p, target, name, d, o.ReportRate, 1, runStart, &rep.Timeline, progress)
	}
	rep.SettleSeconds = settle(p, o.Settle, progress)
	rep.Idle = reads("report-idle", o.Phase)
	err = underIngest(p, in, o.MaxPhase, o.Phase, o.Load, runStart, &rep.IngestTL, &rep.Ingest, func() {
		rep.UnderIngest = reads("report-ingest", o.Phase)
	})
	if err != nil {
		return rep, fmt.Errorf("campaign: %w", err)
	}
	progress("")
	rep.PeakRSSMB = float64(p.usage().MaxRSSKB) / 1024

	var errs []error
	for _, r := range rep.Exports {
		if r.LastError != "" || r.Bad != 0 || r.Rows != r.Want {
			errs = append(errs, fmt.Errorf("campaign: export %s: %d rows, %d bad; want %d: %s", r.Name, r.Rows, r.Bad, r.Want, r.LastError))
		}
	}
	for _, r := range []*LookupResult{&rep.Idle, &rep.UnderIngest} {
		if r.Lookups == 0 || r.OK != r.Lookups {
			errs = append(errs, fmt.Errorf("campaign: %s: %d of %d reports answered 200 with the report: %s", r.Name, r.OK, r.Lookups, r.LastError))
		}
	}
	errs = append(errs, p.stop())
	return rep, errors.Join(errs...)
}

// campaignImport imports one order per buyer (buyer<i>@example.com) and
// waits until the builder applied them.
func campaignImport(c *queryClient, buyers int, progress func(string)) error {
	ts := time.Now().Add(-24 * time.Hour).UnixMilli()
	var body []byte
	for i := range buyers {
		body = append(body, `{"order_id":"B-`...)
		body = strconv.AppendInt(body, int64(i), 10)
		body = append(body, `","email":"buyer`...)
		body = strconv.AppendInt(body, int64(i), 10)
		body = append(body, `@example.com","ts":`...)
		body = strconv.AppendInt(body, ts, 10)
		body = append(body, `,"total":10}`+"\n"...)
	}
	url := "http://" + c.addr + "/v1/import/" + benchSite + "/orders"
	code, resp, err := importRequest(http.MethodPost, url, "application/x-ndjson", body)
	if err != nil {
		return err
	}
	if code != http.StatusAccepted {
		return fmt.Errorf("campaign: POST %s: %d %.300s", url, code, resp)
	}
	v, err := fastjson.Parse(resp)
	if err != nil {
		return fmt.Errorf("campaign: POST %s answered %q: %w", url, resp, err)
	}
	for {
		code, pr, err := importRequest(http.MethodGet, url+"/"+string(v.GetStringBytes("id")), "", nil)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("campaign: GET import progress: %d %.300s", code, pr)
		}
		if strings.HasPrefix(pr, `{"done":true`) {
			return nil
		}
		progress("campaign: import: " + strings.TrimSpace(pr))
		time.Sleep(50 * time.Millisecond)
	}
}

// recipients streams path, an export of the recipients of campaign id,
// and checks every row: an email, an arm of arms, no variant, and a token
// of campaign id that campaign.ParseToken accepts.
func (c *queryClient) recipients(name, path string, csv bool, id uint64, arms map[string]bool) ExportResult {
	var p fastjson.Parser
	return c.stream(name, path, func(line []byte, first bool) (bool, string) {
		if csv && first {
			if string(line) != "email,arm,variant,token\n" {
				return false, "not the CSV header"
			}
			return false, ""
		}
		bad := checkRecipientRow(&p, line, csv, id, arms)
		return bad == "", bad
	})
}

// checkRecipientRow returns what is wrong with one row of a recipients
// export, "" when it is well-formed. A row's fields hold no comma, quote
// or escape: emails are normalised, the arms' names and tokens are the
// bench's own.
// p parses NDJSON rows (reused: the check runs on the machine measured).
func checkRecipientRow(p *fastjson.Parser, line []byte, csv bool, id uint64, arms map[string]bool) string {
	var email, arm, variant, tok []byte
	if csv {
		rest, ok := bytes.CutSuffix(line, []byte{'\n'})
		var ok1, ok2, ok3 bool
		email, rest, ok1 = bytes.Cut(rest, []byte{','})
		arm, rest, ok2 = bytes.Cut(rest, []byte{','})
		variant, tok, ok3 = bytes.Cut(rest, []byte{','})
		if !ok || !ok1 || !ok2 || !ok3 || bytes.IndexByte(tok, ',') >= 0 {
			return "want 4 fields and a line end"
		}
	} else {
		v, err := p.ParseBytes(line)
		if err != nil {
			return err.Error()
		}
		email, arm, variant, tok = v.GetStringBytes("email"), v.GetStringBytes("arm"), v.GetStringBytes("variant"), v.GetStringBytes("token")
	}
	at := bytes.IndexByte(email, '@')
	switch {
	case at <= 0 || !bytes.HasSuffix(email, []byte("@example.com")) || !bytes.HasPrefix(email, []byte("buyer")) && !bytes.HasPrefix(email, []byte("crm")):
		return fmt.Sprintf("email %q", email)
	case !arms[string(arm)]:
		return fmt.Sprintf("arm %q", arm)
	case len(variant) != 0:
		return fmt.Sprintf("variant %q; want none", variant)
	}
	tid, _, _, err := campaign.ParseToken(tok)
	if err != nil {
		return err.Error()
	}
	if tid != id {
		return fmt.Sprintf("token of campaign %d; want %d", tid, id)
	}
	return ""
}

// PrintCampaign writes the campaign figures.
func PrintCampaign(w io.Writer, r *CampaignReport) {
	fmt.Fprintf(w, "campaign: one node as `affinity serve` (collector, embedded log, builder, segments, lists, campaigns, query API) in its own process;\n")
	fmt.Fprintf(w, "  arm behaviour: segment %q of %d buyers (imported in %.1fs); arm crm: a list of %d other emails (PUT in %.1fs); holdout 10%%\n",
		CampaignRule, r.SegmentSize, r.ImportSeconds, r.ListSize, r.ListSeconds)
	fmt.Fprintf(w, "  freeze (POST /v1/campaigns → 201): %d recipients (%d treated, %d control) in %.2fs: %.0f recipients/s, %.1f node CPU-s; node RSS %.0f MB before, peak %.0f MB\n\n",
		r.Frozen, r.Treated, r.Control, r.FreezeSeconds, r.FreezePerS, r.FreezeCPU, r.RSSBeforeMB, r.RSSPeakMB)
	fmt.Fprintf(w, "GET /v1/campaigns/{site}/{id}/recipients, streamed (net/http client, every row checked):\n")
	fmt.Fprintf(w, "%-22s %9s %11s %9s %8s %8s %10s %15s %s\n", "format", "rows", "rows/s", "MB/s", "MB", "seconds", "node CPU-s", "rows/node CPU-s", "check")
	for _, x := range r.Exports {
		check := "ok"
		if x.Rows != x.Want || x.Bad != 0 || x.LastError != "" {
			check = fmt.Sprintf("MISMATCH (want %d) %s", x.Want, x.LastError)
		}
		fmt.Fprintf(w, "%-22s %9d %11.0f %9.1f %8.1f %8.2f %10.2f %15.0f %s\n", x.Name, x.Rows, x.RowsPerS, x.MBPerS, float64(x.Bytes)/1e6, x.Seconds,
			x.NodeCPU, float64(x.Rows)/max(x.NodeCPU, 0.001), check)
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	if len(r.Exports) > 0 {
		fmt.Fprintf(w, "  target ≥ %d rows/s: %s\n", CampaignExportTarget, verdict(r.Exports[0].RowsPerS >= CampaignExportTarget))
	}
	fmt.Fprintf(w, "\nGET /v1/campaigns/{site}/{id}/report, %d keep-alive connections (fasthttp), node quiet %.1fs after the exports:\n", r.ReportConns, r.SettleSeconds)
	fmt.Fprintf(w, "%-14s %10s %10s %8s %8s %9s %8s %8s %6s %6s %16s\n", "phase", "offered/s", "reads/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "200+body", "other", "errors", "node CPU-s")
	for _, x := range []*LookupResult{&r.Idle, &r.UnderIngest} {
		fmt.Fprintf(w, "%-14s %10.0f %10.0f %8.3f %8.3f %9.3f %8.2f %8d %6d %6d %16.2f\n", strings.TrimPrefix(x.Name, "report-"), x.OfferedRPS, x.RPS,
			x.P50ms, x.P99ms, x.P999ms, x.MaxMs, x.OK, x.NotFound+x.Other, x.Errors, x.NodeCores*float64(x.Lookups)/max(x.RPS, 1))
	}
	r.Ingest.print(w)
	fmt.Fprintf(w, "  target report p99 < %.0f ms under ingest: %s (%.3f ms)\n", CampaignReportP99Target, verdict(r.UnderIngest.P99ms < CampaignReportP99Target), r.UnderIngest.P99ms)
	fmt.Fprintf(w, "  node peak RSS over the whole run %.0f MB\n", r.PeakRSSMB)
}

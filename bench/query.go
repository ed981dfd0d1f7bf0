package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/bench/workload"
	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/profile/service"
	"github.com/affinityhq/affinity/storage"
)

// The query scenario's role, its API token and its segment: a rule every
// pre-filled visitor matches (each session of the workload opens with a
// pageview) and that time alone never changes, so its size is the number
// of visitors for the whole run.
const (
	roleQuery    = "query"
	queryToken   = "affinity-bench-query"
	querySegment = "everyone"
	QueryRule    = "count(pageview) >= 1"

	// roleLookupNoop is the lookups' no-op baseline (idle and under
	// ingest); envNoopBody the answer it gives.
	roleLookupNoop = "lookup-noop"
	envNoopBody    = "AFFINITY_BENCH_NOOP_BODY"
)

// QueryOptions configure the query scenario: a node as `affinity serve`
// runs it (collector, embedded log, builder, segment membership, query
// API) pre-filled with Visitors visitors, then visitor lookups idle and
// under ingest, then exports of a segment every visitor is a member of.
type QueryOptions struct {
	// Ingest gives the load generator's settings (Concurrency, Workload
	// seed and catalog, Sample, Dir, Progress); its Workload.Visitors is
	// set to Visitors so that ingest updates the visitors looked up.
	Ingest IngestOptions
	// Visitors pre-filled, EventsPerVisitor events each (sessions of that
	// mean length, so that every visitor appears).
	Visitors         int
	EventsPerVisitor int
	// LookupConns is the number of keep-alive connections of the lookup
	// client; LookupRate the lookups/s it offers, open loop, in the two
	// measured phases (a lookup sent late counts from its scheduled time).
	LookupConns int
	LookupRate  float64
	// MaxPhase is each closed-loop phase finding a maximum (lookups/s,
	// then ingest requests/s); Phase each measured lookup phase.
	MaxPhase, Phase time.Duration
	// Load is the ingest offered during the second lookup phase, as a
	// fraction of the maximum request rate found.
	Load float64
	// Settle bounds the wait, before the lookups, for the node's CPU use
	// to fall under a tenth of a core (background work of the build).
	Settle time.Duration
	// Memory is the node's memory budget (--memory); 0: budget.Default.
	Memory int64
}

// DefaultQueryOptions returns a full run: 200k visitors, lookups at 2000/s
// over 4 connections for 8 s idle and 8 s under ingest at half the maximum.
func DefaultQueryOptions() QueryOptions {
	return QueryOptions{
		Ingest:           DefaultIngestOptions(),
		Visitors:         200_000,
		EventsPerVisitor: 5,
		LookupConns:      4,
		LookupRate:       2000,
		MaxPhase:         3 * time.Second,
		Phase:            8 * time.Second,
		Load:             0.5,
		Settle:           30 * time.Second,
	}
}

// QuickQueryOptions returns a smoke run of a few seconds.
func QuickQueryOptions() QueryOptions {
	o := DefaultQueryOptions()
	o.Ingest = QuickIngestOptions()
	o.Visitors = 5_000
	o.LookupConns = 2
	o.LookupRate = 500
	o.MaxPhase = time.Second
	o.Phase = 1500 * time.Millisecond
	o.Settle = time.Second
	return o
}

// LookupResult is one phase of GET /v1/visitors/{site}/{visitor} of random
// pre-filled visitors.
type LookupResult struct {
	Name       string  `json:"name"`
	OfferedRPS float64 `json:"offered_lookups_per_s"` // 0: closed loop
	Lookups    int64   `json:"lookups"`
	RPS        float64 `json:"lookups_per_s"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	P999ms     float64 `json:"p999_ms"`
	MaxMs      float64 `json:"max_ms"`
	// OK counts 200s whose body is the visitor's profile (it has the
	// pageview every pre-filled visitor made); NotFound 404s; Other any
	// other answer, including a 200 without the profile.
	OK       int64 `json:"ok"`
	NotFound int64 `json:"not_found"`
	Other    int64 `json:"other"`
	Errors   int64 `json:"errors"`
	// CPUusPerLookup is the node process's CPU time per lookup over the
	// closed-loop phase (in the others the node's background work and
	// ingest would be charged to the lookups).
	CPUusPerLookup float64 `json:"node_cpu_us_per_lookup"`
	// NodeCores and LoadgenCores are the CPU time of the node's process
	// and of the bench's own (lookups and ingest load) over the phase, in
	// cores (the machine has 2).
	NodeCores    float64 `json:"node_cores"`
	LoadgenCores float64 `json:"loadgen_cores"`
	// ClientStallMs is the longest the load generator itself overslept a
	// 1 ms sleep during the phase: when it is as long as the worst
	// lookups, the machine stalled, not the node alone.
	ClientStallMs float64 `json:"client_stall_max_ms"`
	LastError     string  `json:"last_error,omitempty"`
}

// ExportResult is one stream of GET /v1/segments/{site}/{name}/members.
type ExportResult struct {
	Name     string  `json:"name"`
	Query    string  `json:"query"`
	Rows     int64   `json:"rows"`
	Bytes    int64   `json:"bytes"`
	Seconds  float64 `json:"seconds"`
	RowsPerS float64 `json:"rows_per_s"`
	MBPerS   float64 `json:"mb_per_s"`
	// The node's resident memory before the export, after it, and at its
	// peak during it (VmHWM, reset just before).
	RSSBeforeMB float64 `json:"rss_before_mb"`
	RSSAfterMB  float64 `json:"rss_after_mb"`
	RSSPeakMB   float64 `json:"rss_peak_during_mb"`
	// Bad counts rows that are neither a member row nor the CSV header (an
	// {"error":…} row ends a failed export).
	Bad       int64  `json:"bad_rows"`
	LastError string `json:"last_error,omitempty"`
}

// QueryReport is the outcome of the query scenario.
type QueryReport struct {
	Visitors     int     `json:"visitors"`
	Events       int64   `json:"events"`
	FillSeconds  float64 `json:"fill_s"`
	BuildSeconds float64 `json:"build_s"`
	BuildEPS     float64 `json:"build_events_per_s"`
	// The segment: its rule, size once backfilled, and the backfill's
	// duration over the existing profiles.
	Rule            string  `json:"rule"`
	SegmentSize     int64   `json:"segment_size"`
	BackfillSeconds float64 `json:"backfill_s"`
	BackfillPerS    float64 `json:"backfill_profiles_per_s"`

	// SettleSeconds is how long the node took to go quiet after the
	// backfill (Settle at most).
	SettleSeconds float64      `json:"settle_s"`
	LookupConns   int          `json:"lookup_connections"`
	LookupMax     LookupResult `json:"lookup_max"`
	Idle          LookupResult `json:"lookup_idle"`
	// IdleBaseline is the idle phase again against a no-op fasthttp
	// process answering every lookup with the node's answer for one
	// visitor, right after it: the latency this machine and this client
	// give a server that does nothing, the floor of Idle.
	IdleBaseline LookupResult `json:"lookup_idle_noop_baseline"`
	IdleOverNoop float64      `json:"p99_idle_over_noop_baseline"`
	UnderIngest  LookupResult `json:"lookup_under_ingest"`
	P99Ratio     float64      `json:"p99_under_ingest_over_idle"`
	P999Ratio    float64      `json:"p999_under_ingest_over_idle"`
	// IngestBaseline is the under-ingest phase again against the no-op
	// process, right after it while the same ingest load runs against
	// the node: the latency that this machine, loaded so (the node's
	// ingest work and the load generator's), gives a server that does
	// nothing, the floor of UnderIngest.
	IngestBaseline LookupResult  `json:"lookup_under_ingest_noop_baseline"`
	IngestOverNoop float64       `json:"p99_under_ingest_over_noop_baseline"`
	Ingest         IngestFigures `json:"ingest"`

	Exports   []ExportResult `json:"exports"`
	PeakRSSMB float64        `json:"node_peak_rss_mb"`
	Timeline  []Sample       `json:"timeline"`        // lookups: RPS and EPS are lookups/s
	IngestTL  []Sample       `json:"ingest_timeline"` // the ingest load beside them
}

// IngestFigures is the ingest load of the query scenario.
type IngestFigures struct {
	Concurrency int `json:"concurrency"`
	// MaxRPS is the rate the node sustains (ingestMax): BurstRPS, a
	// closed-loop burst's, over the burst plus the builder's CatchUpSecs.
	MaxRPS      float64 `json:"max_requests_per_s"`
	BurstRPS    float64 `json:"burst_requests_per_s"`
	CatchUpSecs float64 `json:"catch_up_s"`
	OfferedRPS  float64 `json:"offered_requests_per_s"`
	RPS         float64 `json:"requests_per_s"`
	EPS         float64 `json:"events_per_s"`
	P99ms       float64 `json:"request_p99_ms"`
	Refused     int64   `json:"requests_other_status"`
	Errors      int64   `json:"request_errors"`
}

// print writes the ingest figures' line of a scenario's table.
func (f *IngestFigures) print(w io.Writer) {
	fmt.Fprintf(w, "  ingest beside them, from a process of its own: %d connections, sustains %.0f req/s (a %.0f req/s burst, %.1f s of catch-up after it), %.0f req/s offered: %.0f req/s, %.0f events/s served, p99 %.1f ms; %d non-202, %d errors\n",
		f.Concurrency, f.MaxRPS, f.BurstRPS, f.CatchUpSecs, f.OfferedRPS, f.RPS, f.EPS, f.P99ms, f.Refused, f.Errors)
}

// queryAPI is the query role's answer to "api".
type queryAPI struct {
	Addr string `json:"addr"`
}

// memReply is a role's answer to "mem": resident memory now and at its
// peak since the previous "mem" (VmHWM, reset by each call).
type memReply struct {
	RSSKB int64 `json:"rss_kb"`
	HWMKB int64 `json:"hwm_kb"`
}

// RunQuery runs the query scenario.
func RunQuery(o QueryOptions) (*QueryReport, error) {
	in := o.Ingest
	if o.Visitors <= 0 || o.EventsPerVisitor <= 0 || o.LookupConns <= 0 || o.LookupRate <= 0 ||
		o.MaxPhase <= 0 || o.Phase <= 0 || o.Load <= 0 || in.Concurrency <= 0 {
		return nil, fmt.Errorf("cannot run query: visitors %d, events per visitor %d, lookup connections %d and rate %g, phases %s/%s, load %g and concurrency %d must be > 0",
			o.Visitors, o.EventsPerVisitor, o.LookupConns, o.LookupRate, o.MaxPhase, o.Phase, o.Load, in.Concurrency)
	}
	if in.Workload.Seed == 0 {
		// VisitorSeed 0 would mean "the phase's own seed": ingest would
		// bring new visitors instead of updating the pre-filled ones.
		return nil, errors.New("cannot run query: workload seed 0 (--seed): want another")
	}
	if in.Sample <= 0 {
		in.Sample = 500 * time.Millisecond
	}
	done, err := in.scratchDir("query")
	if err != nil {
		return nil, err
	}
	defer done()
	progress := in.progressFunc()
	w := in.Workload
	w.Visitors = o.Visitors
	w.Events = int64(o.Visitors) * int64(o.EventsPerVisitor)
	w.SessionEvents = o.EventsPerVisitor
	w.Now = nil
	// Ingest updates the pre-filled visitors, with events of its own (its
	// seed moves with each phase).
	in.Workload.Visitors, in.Workload.VisitorSeed = o.Visitors, w.Seed
	rep := &QueryReport{Visitors: o.Visitors, Events: w.Events, Rule: QueryRule, LookupConns: o.LookupConns,
		Ingest: IngestFigures{Concurrency: in.Concurrency}}

	// 1. Pre-fill the log; the node builds the profiles from it.
	logDir, stateDir := filepath.Join(in.Dir, "query-log"), filepath.Join(in.Dir, "query-state")
	for _, d := range []string{logDir, stateDir} {
		if err := os.RemoveAll(d); err != nil { // an earlier run in --dir
			return nil, err
		}
	}
	lo := storage.DefaultEmbeddedOptions(logDir)
	lo.Partitions = benchPartitions
	lo.MaxBytes = benchLogMaxBytes
	l, err := storage.OpenEmbeddedLog(lo)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	st, err := workload.Fill(context.Background(), l, w, 2, 256, func(n int64) {
		progress(fmt.Sprintf("query: filling the log: %d of %d events", n, w.Events))
	})
	if cerr := l.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	rep.FillSeconds = time.Since(start).Seconds()
	if st.Visitors != int64(o.Visitors) {
		return rep, fmt.Errorf("query: the workload made %d visitors; want %d", st.Visitors, o.Visitors)
	}

	p, err := startQueryNode(&in, logDir, stateDir, o.Memory)
	if err != nil {
		return rep, err
	}
	defer p.stop()
	var br buildResult
	err = p.run("run", &br, func(n int64) {
		progress(fmt.Sprintf("query: building profiles: %d of %d events applied", n, w.Events))
	})
	if err != nil {
		return rep, err
	}
	if br.Events != w.Events {
		return rep, fmt.Errorf("query: the builder applied %d events; want %d", br.Events, w.Events)
	}
	rep.BuildSeconds = br.Seconds
	rep.BuildEPS = float64(br.Events) / br.Seconds
	var qa queryAPI
	if err := p.call("api", &qa); err != nil {
		return rep, err
	}
	c := &queryClient{addr: qa.Addr, http: &http.Client{Timeout: 10 * time.Minute}}

	// 2. The segment, backfilled over the existing profiles.
	start = time.Now()
	if _, err := c.do(http.MethodPut, "/v1/segments/"+benchSite+"/"+querySegment, QueryRule, http.StatusCreated); err != nil {
		return rep, err
	}
	for {
		var def struct {
			Size     int64 `json:"size"`
			Backfill struct {
				State   string `json:"state"`
				Scanned int64  `json:"scanned"`
			} `json:"backfill"`
		}
		if err := c.getJSON("/v1/segments/"+benchSite+"/"+querySegment, &def); err != nil {
			return rep, err
		}
		if def.Backfill.State == "done" {
			rep.SegmentSize = def.Size
			break
		}
		progress(fmt.Sprintf("query: backfilling %q: %d profiles scanned, %d members", QueryRule, def.Backfill.Scanned, def.Size))
		if time.Since(start) > 30*time.Minute {
			return rep, fmt.Errorf("query: backfill of %q not done after %s", QueryRule, time.Since(start).Round(time.Second))
		}
		time.Sleep(100 * time.Millisecond)
	}
	rep.BackfillSeconds = time.Since(start).Seconds()
	rep.BackfillPerS = float64(o.Visitors) / rep.BackfillSeconds
	if rep.SegmentSize != int64(o.Visitors) {
		return rep, fmt.Errorf("query: segment %q has %d members; want every one of the %d visitors", QueryRule, rep.SegmentSize, o.Visitors)
	}

	// 3. Lookups: the maximum (closed loop), idle at LookupRate, then at
	// LookupRate while ingest runs at Load times its maximum. "Idle" waits
	// first for the node to settle: the build and the backfill leave
	// compactions and a large heap to collect behind them.
	rep.SettleSeconds = settle(p, o.Settle, progress)
	lc := &fasthttp.HostClient{Addr: qa.Addr, MaxConns: o.LookupConns, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	runStart := time.Now()
	lookups := func(name string, d time.Duration, rate float64) LookupResult {
		return runLookups(&o, lc, p, visitorTarget(o.Visitors, w.Seed), name, d, rate, w.Seed, runStart, &rep.Timeline, progress)
	}
	rep.LookupMax = lookups("lookup-max", o.MaxPhase, 0)
	if r := &rep.LookupMax; r.Lookups > 0 {
		r.CPUusPerLookup = r.NodeCores * o.MaxPhase.Seconds() / float64(r.Lookups) * 1e6
	}
	rep.Idle = lookups("lookup-idle", o.Phase, o.LookupRate)
	if rep.Idle.OK == 0 {
		return rep, fmt.Errorf("query: no lookup answered with a profile: %s", rep.Idle.LastError)
	}
	noop, err := startLookupNoopProc(&o, &in, c, w.Seed)
	if err != nil {
		return rep, err
	}
	defer noop.stop()
	noopLookups := func(name string) LookupResult {
		return runLookups(&o, noop.hc, noop.proc, visitorTarget(o.Visitors, w.Seed), name, o.Phase, o.LookupRate, w.Seed, runStart, &rep.Timeline, progress)
	}
	rep.IdleBaseline = noopLookups("lookup-noop")
	if rep.IdleBaseline.OK == 0 {
		return rep, fmt.Errorf("query: the no-op baseline answered no lookup: %s", rep.IdleBaseline.LastError)
	}
	if rep.IdleBaseline.P99ms > 0 {
		rep.IdleOverNoop = rep.Idle.P99ms / rep.IdleBaseline.P99ms
	}

	// The ingest load runs for both phases: the node's lookups, then the
	// no-op's on the machine so loaded.
	err = underIngest(p, in, o.MaxPhase, 2*o.Phase, o.Load, runStart, &rep.IngestTL, &rep.Ingest, func() {
		rep.UnderIngest = lookups("lookup-ingest", o.Phase, o.LookupRate)
		rep.IngestBaseline = noopLookups("lookup-noop-ingest")
	})
	if err != nil {
		return rep, fmt.Errorf("query: %w", err)
	}
	if rep.Idle.P99ms > 0 {
		rep.P99Ratio = rep.UnderIngest.P99ms / rep.Idle.P99ms
		rep.P999Ratio = rep.UnderIngest.P999ms / rep.Idle.P999ms
	}
	if rep.IngestBaseline.P99ms > 0 {
		rep.IngestOverNoop = rep.UnderIngest.P99ms / rep.IngestBaseline.P99ms
	}
	progress("query: waiting for the builder to catch up")
	if err := p.call("caughtup", &br); err != nil {
		return rep, err
	}

	// 4. Exports of the whole segment, one after the other. Ingest came
	// back to the same visitors: the segment must not have grown.
	var def struct {
		Size int64 `json:"size"`
	}
	if err := c.getJSON("/v1/segments/"+benchSite+"/"+querySegment, &def); err != nil {
		return rep, err
	}
	if def.Size != rep.SegmentSize {
		return rep, fmt.Errorf("query: segment %q has %d members after ingest; want the %d visitors", QueryRule, def.Size, rep.SegmentSize)
	}
	for _, x := range []struct{ name, query string }{
		{"ndjson", "format=ndjson"},
		{"csv", "format=csv"},
		{"ndjson, facts=false", "format=ndjson&facts=false"},
	} {
		progress(fmt.Sprintf("query: exporting %d members as %s", rep.SegmentSize, x.name))
		var m0, m1 memReply
		if err := p.call("mem", &m0); err != nil { // resets the peak
			return rep, err
		}
		r := c.export(x.name, "/v1/segments/"+benchSite+"/"+querySegment+"/members?"+x.query, strings.HasPrefix(x.query, "format=csv"))
		if err := p.call("mem", &m1); err != nil {
			return rep, err
		}
		r.RSSBeforeMB, r.RSSAfterMB, r.RSSPeakMB = float64(m0.RSSKB)/1024, float64(m1.RSSKB)/1024, float64(m1.HWMKB)/1024
		rep.Exports = append(rep.Exports, r)
	}
	progress("")
	rep.PeakRSSMB = float64(p.usage().MaxRSSKB) / 1024
	var errs []error
	for _, r := range rep.Exports {
		if r.LastError != "" || r.Bad != 0 || r.Rows != rep.SegmentSize {
			errs = append(errs, fmt.Errorf("query: export %s: %d rows, %d bad; want %d: %s", r.Name, r.Rows, r.Bad, rep.SegmentSize, r.LastError))
		}
	}
	errs = append(errs, p.stop())
	return rep, errors.Join(errs...)
}

// lookupNoop is the lookups' no-op baseline: a process (role
// lookup-noop) that answers each lookup with the node's answer for one
// visitor and does nothing else, and the client of it. The node's p99
// over the no-op's in the same conditions (idle; under the same ingest
// load) is what the node adds to what this machine and this client cost
// any server (shared vCPUs: the client's own timer and scheduling delays
// are in both).
type lookupNoop struct {
	proc *proc
	hc   *fasthttp.HostClient
}

func startLookupNoopProc(o *QueryOptions, in *IngestOptions, c *queryClient, seed uint64) (*lookupNoop, error) {
	body, err := c.do(http.MethodGet, "/v1/visitors/"+benchSite+"/"+workload.VisitorID(seed, 0).String(), "", http.StatusOK)
	if err != nil {
		return nil, fmt.Errorf("query: the no-op baseline's answer: %w", err)
	}
	np, err := startProc(roleLookupNoop, in.Dir, envNoopBody+"="+string(body))
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	return &lookupNoop{proc: np, hc: &fasthttp.HostClient{Addr: np.addr, MaxConns: o.LookupConns, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}}, nil
}

func (n *lookupNoop) stop() { _ = n.proc.stop() }

// startLookupNoop serves the lookups' floor: fasthttp answering every
// request 200 with the body in envNoopBody, doing nothing else.
func startLookupNoop() (*roleSystem, error) {
	ln, err := listenLoopback()
	if err != nil {
		return nil, err
	}
	body := []byte(os.Getenv(envNoopBody))
	srv := &fasthttp.Server{
		Name: "lookup-noop",
		Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("application/json")
			ctx.SetBody(body)
		},
		NoDefaultContentType: true,
	}
	go srv.Serve(ln)
	return &roleSystem{addr: ln.Addr().String(), close: srv.Shutdown}, nil
}

// startQueryNode starts the query role on the log in logDir and the
// state in stateDir, with the memory budget memory (0: the default).
func startQueryNode(in *IngestOptions, logDir, stateDir string, memory int64) (*proc, error) {
	env := []string{envDir + "=" + logDir, envState + "=" + stateDir, "AFFINITY_BENCH_SAMPLE=" + in.Sample.String()}
	if memory > 0 {
		env = append(env, envMemory+"="+strconv.FormatInt(memory, 10))
	}
	return startProc(roleQuery, in.Dir, env...)
}

// underIngest finds the ingest maximum of the node p (closed loop for
// maxPhase), then starts ingest beside it, open loop at load times that
// maximum, sent by an ingest-load process (not this one, whose lookup
// client it would delay), and runs measure once that load has warmed up
// (ingestWarmup), for phase; it fills fig and appends the ingest samples to
// tl.
func underIngest(p *proc, in IngestOptions, maxPhase, phase time.Duration, load float64, runStart time.Time,
	tl *[]Sample, fig *IngestFigures, measure func()) error {
	ic := &fasthttp.HostClient{Addr: p.addr, MaxConns: in.Concurrency, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	im, err := findIngestMax(&in, ic, "ingest-max", 1, maxPhase, runStart, tl, func() error {
		var br buildResult
		return p.call("caughtup", &br)
	})
	if err != nil {
		return err
	}
	fig.BurstRPS, fig.CatchUpSecs, fig.MaxRPS = im.Burst, im.CatchUp, im.Max
	fig.OfferedRPS = load * fig.MaxRPS
	spec := loadSpec{Addr: p.addr, Concurrency: in.Concurrency, Workload: in.Workload, Sample: in.Sample,
		Phase: ingestWarmup(phase) + phase, Rate: fig.OfferedRPS, Round: 2, RunStart: runStart.UnixNano()}
	lp, err := startIngestLoadProc(spec, in.Dir)
	if err != nil {
		return err
	}
	var (
		lr   loadResult
		lerr error
		wg   sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		lerr = lp.run("run", &lr, func(int64) {})
	}()
	time.Sleep(ingestWarmup(phase))
	measure()
	wg.Wait()
	if serr := lp.stop(); lerr == nil {
		lerr = serr
	}
	if lerr != nil {
		return fmt.Errorf("the ingest beside the lookups: %w", lerr)
	}
	*tl = append(*tl, lr.Samples...)
	fig.RPS, fig.EPS = float64(lr.Req)/lr.Seconds, float64(lr.Events)/lr.Seconds
	fig.P99ms = lr.P99ms
	fig.Refused, fig.Errors = lr.Other, lr.Errs
	return nil
}

// ingestWarmup is how long the ingest load runs before the reads beside it
// are measured: a second, or an eighth of a short phase. The load process
// opens its connections and catches up its schedule in its first half
// second (39-47k events/s against a steady 29-38k, in four query runs): a
// transient of the load generator's start, not the load asked for.
func ingestWarmup(phase time.Duration) time.Duration { return min(time.Second, phase/8) }

// settle waits, at most max, until the role process p uses less than a
// tenth of a core over half a second, and returns how long it waited.
func settle(p *proc, max time.Duration, progress func(string)) float64 {
	start := time.Now()
	u0 := p.usage()
	for time.Since(start) < max {
		time.Sleep(500 * time.Millisecond)
		u1 := p.usage()
		busy := (u1.CPUSeconds - u0.CPUSeconds) / 0.5
		if busy < 0.1 {
			break
		}
		u0 = u1
		progress(fmt.Sprintf("query: waiting for the node to settle: %.0f%% of a core busy", busy*100))
	}
	return time.Since(start).Seconds()
}

// lookupWorker is one lookup connection's figures; the sampler reads and
// resets the interval ones under mu.
type lookupWorker struct {
	mu                     sync.Mutex
	phase, interval        Histogram
	n, ok, notFound, other int64
	errs, in               int64
	lastErr                error
}

// lookupTarget is what runLookups asks for: path appends the path of
// the next request, ok says whether a 200's body is the right answer.
type lookupTarget struct {
	path func(dst []byte, r *rand.Rand) []byte
	ok   func(body []byte) bool
}

// visitorTarget asks GET /v1/visitors/{site}/{visitor} of random
// pre-filled visitors; the right answer has the pageview every one made.
func visitorTarget(visitors int, seed uint64) lookupTarget {
	return lookupTarget{
		path: func(dst []byte, r *rand.Rand) []byte {
			v := workload.VisitorID(seed, r.IntN(visitors))
			return append(append(dst, "/v1/visitors/"+benchSite+"/"...), v.String()...)
		},
		ok: func(body []byte) bool { return bytes.Contains(body, []byte(`"pageview":{"count":`)) },
	}
}

// runLookups sends the requests of target (visitorTarget: GET
// /v1/visitors/{site}/{visitor} of random pre-filled visitors) from
// o.LookupConns workers for d: closed loop with rate 0, else rate
// lookups/s on a fixed schedule. With node, the result has the cores it
// and this process used.
func runLookups(o *QueryOptions, hc *fasthttp.HostClient, node *proc, target lookupTarget, name string, d time.Duration, rate float64, seed uint64,
	runStart time.Time, timeline *[]Sample, progress func(string)) LookupResult {
	var u0, l0 Usage
	t0 := time.Now()
	if node != nil {
		u0, l0 = node.usage(), selfUsage()
	}
	workers := make([]*lookupWorker, o.LookupConns)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for i := range workers {
		w := &lookupWorker{}
		workers[i] = w
		var period, offset time.Duration
		if rate > 0 {
			period = time.Duration(float64(len(workers)) / rate * float64(time.Second))
			offset = period * time.Duration(i) / time.Duration(len(workers))
		}
		r := rand.New(rand.NewPCG(seed, uint64(i)+uint64(len(name))<<32))
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.Header.Set("Authorization", "Bearer "+queryToken)
			var uri []byte
			next := time.Now().Add(offset)
			for !stop.Load() {
				uri = target.path(append(uri[:0], "http://"+hc.Addr...), r)
				req.SetRequestURIBytes(uri)
				start := time.Now()
				if period > 0 {
					// On schedule, latency counts from the send (the
					// client's timer slack is not the node's); behind it,
					// from the scheduled time, so that a stalled node is
					// charged for the lookups it delayed.
					if wait := time.Until(next); wait > 0 {
						time.Sleep(wait)
						start = time.Now()
					} else {
						start = next
					}
					next = next.Add(period)
					if stop.Load() {
						break
					}
				}
				err := hc.DoTimeout(req, resp, 30*time.Second)
				lat := time.Since(start)
				w.mu.Lock()
				w.n++
				w.in++
				w.phase.Record(lat)
				w.interval.Record(lat)
				switch {
				case err != nil:
					w.errs++
					w.lastErr = err
				case resp.StatusCode() == fasthttp.StatusOK && target.ok(resp.Body()):
					w.ok++
				case resp.StatusCode() == fasthttp.StatusNotFound:
					w.notFound++
					w.lastErr = fmt.Errorf("GET %s: status 404: %.200s", uri, resp.Body())
				default:
					w.other++
					w.lastErr = fmt.Errorf("GET %s: status %d: %.200s", uri, resp.StatusCode(), resp.Body())
				}
				w.mu.Unlock()
				if err != nil {
					time.Sleep(10 * time.Millisecond) // do not spin on a dead node
				}
			}
		}()
	}

	var stall atomic.Int64 // ns
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			t := time.Now()
			time.Sleep(time.Millisecond)
			if over := int64(time.Since(t) - time.Millisecond); over > stall.Load() {
				stall.Store(over)
			}
		}
	}()
	start := time.Now()
	last := start
	var ih Histogram
	sample := func(now time.Time, final bool) {
		ih.Reset()
		var n int64
		for _, w := range workers {
			w.mu.Lock()
			ih.Merge(&w.interval)
			w.interval.Reset()
			n += w.in
			w.in = 0
			w.mu.Unlock()
		}
		dt := now.Sub(last).Seconds()
		if dt <= 0 || final && dt < o.Ingest.Sample.Seconds()/2 {
			return
		}
		last = now
		s := Sample{T: now.Sub(runStart).Seconds(), System: name, Round: 1, RPS: float64(n) / dt, EPS: float64(n) / dt,
			P50ms: float64(ih.Quantile(0.5)) / 1e6, P99ms: float64(ih.Quantile(0.99)) / 1e6}
		*timeline = append(*timeline, s)
		progress(fmt.Sprintf("query: %-13s %5.1fs %9.0f lookups/s  p50 %6.2f ms  p99 %6.2f ms",
			name, now.Sub(start).Seconds(), s.RPS, s.P50ms, s.P99ms))
	}
	sampleEvery := o.Ingest.Sample
	if sampleEvery <= 0 {
		sampleEvery = 500 * time.Millisecond
	}
	end := sampleFor(d, sampleEvery, sample, func() {
		stop.Store(true)
		wg.Wait()
	})

	var h Histogram
	r := LookupResult{Name: name, OfferedRPS: rate, ClientStallMs: float64(stall.Load()) / 1e6}
	for _, w := range workers {
		h.Merge(&w.phase)
		r.Lookups += w.n
		r.OK += w.ok
		r.NotFound += w.notFound
		r.Other += w.other
		r.Errors += w.errs
		if w.lastErr != nil {
			r.LastError = w.lastErr.Error()
		}
	}
	r.RPS = float64(r.Lookups) / end.Sub(start).Seconds()
	ms := func(q float64) float64 { return float64(h.Quantile(q)) / 1e6 }
	r.P50ms, r.P99ms, r.P999ms = ms(0.5), ms(0.99), ms(0.999)
	r.MaxMs = float64(h.Max()) / 1e6
	if node != nil {
		u1, l1, dt := node.usage(), selfUsage(), time.Since(t0).Seconds()
		r.NodeCores, r.LoadgenCores = (u1.CPUSeconds-u0.CPUSeconds)/dt, (l1.CPUSeconds-l0.CPUSeconds)/dt
	}
	return r
}

// queryClient talks to the node's query API for the segment calls and the
// exports (net/http: a streamed body read as it comes).
type queryClient struct {
	addr string
	http *http.Client
}

func (c *queryClient) do(method, path, body string, want int) ([]byte, error) {
	req, err := http.NewRequest(method, "http://"+c.addr+path, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+queryToken)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("cannot read the answer to %s %s: %w", method, path, err)
	}
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s %s: status %d: %.300s; want %d", method, path, resp.StatusCode, b, want)
	}
	return b, nil
}

func (c *queryClient) getJSON(path string, v any) error {
	b, err := c.do(http.MethodGet, path, "", http.StatusOK)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("cannot decode the answer to GET %s: %.200s: %w", path, b, err)
	}
	return nil
}

// export streams path and counts its member rows: NDJSON lines that are a
// row ({"visitor":…), or CSV lines after the header that start with a
// visitor id.
func (c *queryClient) export(name, path string, csv bool) ExportResult {
	return c.stream(name, path, func(line []byte, first bool) (bool, string) {
		switch {
		case csv && first:
			return false, ""
		case !csv && bytes.HasPrefix(line, []byte(`{"visitor":"`)),
			csv && len(line) > 37 && line[36] == ',':
			return true, ""
		}
		return false, "not a member row"
	})
}

// stream GETs path and passes each line of the body to check (first:
// the body's first line), which says whether it is a row, or what is
// wrong with it; a line longer than the read buffer is checked by its
// start only.
func (c *queryClient) stream(name, path string, check func(line []byte, first bool) (row bool, bad string)) ExportResult {
	r := ExportResult{Name: name, Query: path}
	req, err := http.NewRequest(http.MethodGet, "http://"+c.addr+path, nil)
	if err != nil {
		r.LastError = err.Error()
		return r
	}
	req.Header.Set("Authorization", "Bearer "+queryToken)
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		r.LastError = err.Error()
		return r
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		r.LastError = fmt.Sprintf("status %d: %.300s", resp.StatusCode, b)
		return r
	}
	br := bufio.NewReaderSize(resp.Body, 256<<10)
	first := true
	partial := false // within a line longer than the buffer
	for {
		line, err := br.ReadSlice('\n')
		r.Bytes += int64(len(line))
		if len(line) > 0 && !partial {
			row, bad := check(line, first)
			first = false
			switch {
			case bad != "":
				r.Bad++
				r.LastError = fmt.Sprintf("row %d: %s: %.300s", r.Rows+r.Bad, bad, line)
			case row:
				r.Rows++
			}
		}
		partial = errors.Is(err, bufio.ErrBufferFull)
		if partial {
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			r.LastError = err.Error()
			break
		}
	}
	r.Seconds = time.Since(start).Seconds()
	if r.Seconds > 0 {
		r.RowsPerS = float64(r.Rows) / r.Seconds
		r.MBPerS = float64(r.Bytes) / r.Seconds / 1e6
	}
	return r
}

// startQuery is the query role: a node as `affinity serve` wires it —
// the collector on the embedded log, the builder with segment membership
// as its hook, the query API on an internal listener — on a pre-filled
// log. "run" waits until the builder has applied it (with progress), "api"
// tells the internal listener's address, "caughtup" waits for the builder,
// "mem" reports resident memory.
func startQuery() (*roleSystem, error) {
	started := time.Now()
	split, err := roleMemory()
	if err != nil {
		return nil, err
	}
	log.Printf("GOMAXPROCS %d", storage.SpareProcs()) // as serve
	lo := storage.DefaultEmbeddedOptions(os.Getenv(envDir))
	lo.Partitions = benchPartitions
	lo.MaxBytes = benchLogMaxBytes
	lo.Logger = log.Printf
	split.ApplyLog(&lo)
	l, err := storage.OpenEmbeddedLog(lo)
	if err != nil {
		return nil, err
	}
	svc, err := service.Open(service.Options{Dir: os.Getenv(envState), Log: l, Memory: split, Logger: log.Printf})
	if err != nil {
		return nil, errors.Join(err, l.Close())
	}
	b := svc.Builder
	srv, err := api.New(api.Options{Token: queryToken, Metrics: []*metrics.Set{svc.Metrics}, Health: svc.Health})
	if err != nil {
		return nil, errors.Join(err, svc.Close(), l.Close())
	}
	svc.Register(srv)
	if err := srv.Listen("127.0.0.1:0"); err != nil {
		return nil, errors.Join(err, svc.Close(), l.Close())
	}
	go srv.Serve()
	stopAPI := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(ctx)
	}
	sys, err := startCollector(l) // closes l when it fails
	if err != nil {
		return nil, errors.Join(err, svc.StopBuilder(), stopAPI(), svc.Close())
	}
	closeCollector := sys.close // shuts the collector down and closes the log
	sys.close = func() error {
		// runNode's order: collector, builder, internal listener, log, state.
		srv.SetDraining()
		return errors.Join(closeCollector(), svc.StopBuilder(), stopAPI(), svc.Close())
	}
	caughtUp := func() (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		err := b.WaitCaughtUp(ctx)
		return buildResult{Events: int64(b.Status().EventsApplied), Seconds: time.Since(started).Seconds()}, err
	}
	sys.run = func(emit func(string)) (any, error) {
		var res any
		err := runWithProgress(emit, func() int64 { return int64(b.Status().EventsApplied) }, func() error {
			var err error
			res, err = caughtUp()
			return err
		})
		return res, err
	}
	sys.commands = map[string]func() (any, error){
		"caughtup": caughtUp,
		"api":      func() (any, error) { return queryAPI{Addr: srv.Addr()}, nil },
		"mem": func() (any, error) {
			m := memReply{RSSKB: procStatusKB("self", "VmRSS:"), HWMKB: procStatusKB("self", "VmHWM:")}
			// Resets VmHWM to the current RSS (Linux ≥ 4.0), so the next
			// call's peak is the peak since this one.
			_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
			return m, nil
		},
	}
	return sys, nil
}

// The lookup targets of issue #10, in ms: p99 idle and under ingest at
// half the node's maximum.
const (
	LookupIdleP99Target   float64 = 1
	LookupIngestP99Target float64 = 10
)

// PrintQuery writes the query figures.
func PrintQuery(w io.Writer, r *QueryReport) {
	fmt.Fprintf(w, "query: one node as `affinity serve` (collector, embedded log, builder, segment membership, query API) in its own process;\n")
	fmt.Fprintf(w, "  %d visitors, %d events pre-filled (filled in %.1fs, built in %.1fs: %.0f events/s)\n",
		r.Visitors, r.Events, r.FillSeconds, r.BuildSeconds, r.BuildEPS)
	fmt.Fprintf(w, "  segment %q: %d members, backfilled in %.1fs (%.0f profiles/s); node quiet %.1fs later\n\n",
		r.Rule, r.SegmentSize, r.BackfillSeconds, r.BackfillPerS, r.SettleSeconds)
	fmt.Fprintf(w, "GET /v1/visitors/{site}/{visitor}, random pre-filled visitors, %d keep-alive connections (fasthttp):\n", r.LookupConns)
	fmt.Fprintf(w, "%-28s %10s %10s %8s %8s %9s %8s %11s %8s %6s %6s %16s %16s\n",
		"phase", "offered/s", "lookups/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "CPU-us/look", "200+body", "other", "errors", "cores node+bench", "loadgen stall ms")
	for _, x := range []struct {
		label string
		r     *LookupResult
	}{{"maximum, closed loop", &r.LookupMax}, {"idle", &r.Idle}, {"idle, no-op baseline", &r.IdleBaseline}, {"under ingest", &r.UnderIngest}, {"under ingest, no-op baseline", &r.IngestBaseline}} {
		off := "closed"
		if x.r.OfferedRPS > 0 {
			off = fmt.Sprintf("%.0f", x.r.OfferedRPS)
		}
		cpu := "-"
		if x.r.CPUusPerLookup > 0 {
			cpu = fmt.Sprintf("%.1f", x.r.CPUusPerLookup)
		}
		fmt.Fprintf(w, "%-28s %10s %10.0f %8.3f %8.3f %9.3f %8.2f %11s %8d %6d %6d %16s %16.1f\n", x.label, off, x.r.RPS,
			x.r.P50ms, x.r.P99ms, x.r.P999ms, x.r.MaxMs, cpu, x.r.OK, x.r.NotFound+x.r.Other, x.r.Errors,
			fmt.Sprintf("%.2f + %.2f", x.r.NodeCores, x.r.LoadgenCores), x.r.ClientStallMs)
	}
	r.Ingest.print(w)
	verdict := func(v, target float64) string {
		if v < target {
			return "met"
		}
		return "MISSED"
	}
	fmt.Fprintf(w, "  idle p99 / no-op baseline's %.2f (%.3f of %.3f ms: the machine and the client give a server doing nothing %.3f)\n",
		r.IdleOverNoop, r.Idle.P99ms, r.IdleBaseline.P99ms, r.IdleBaseline.P99ms)
	fmt.Fprintf(w, "  under ingest p99 / no-op baseline's under the same ingest %.2f (%.3f of %.3f ms: the machine so loaded gives a server doing nothing %.3f)\n",
		r.IngestOverNoop, r.UnderIngest.P99ms, r.IngestBaseline.P99ms, r.IngestBaseline.P99ms)
	fmt.Fprintf(w, "  p99 under ingest / idle %.2f, p99.9 %.2f; target p99 idle < %g ms: %s (%.3f ms); under ingest < %g ms: %s (%.3f ms)\n\n",
		r.P99Ratio, r.P999Ratio, LookupIdleP99Target, verdict(r.Idle.P99ms, LookupIdleP99Target), r.Idle.P99ms,
		LookupIngestP99Target, verdict(r.UnderIngest.P99ms, LookupIngestP99Target), r.UnderIngest.P99ms)
	fmt.Fprintf(w, "GET /v1/segments/{site}/{name}/members, %d members, streamed (net/http client):\n", r.SegmentSize)
	fmt.Fprintf(w, "%-22s %9s %11s %9s %8s %8s %22s %8s\n", "format", "rows", "rows/s", "MB/s", "MB", "seconds", "node RSS before/peak/after MB", "check")
	for _, x := range r.Exports {
		check := "ok"
		if x.Rows != r.SegmentSize || x.Bad != 0 || x.LastError != "" {
			check = "MISMATCH " + x.LastError
		}
		fmt.Fprintf(w, "%-22s %9d %11.0f %9.1f %8.1f %8.2f %29s %8s\n", x.Name, x.Rows, x.RowsPerS, x.MBPerS,
			float64(x.Bytes)/1e6, x.Seconds, fmt.Sprintf("%.0f / %.0f / %.0f", x.RSSBeforeMB, x.RSSPeakMB, x.RSSAfterMB), check)
	}
	fmt.Fprintf(w, "  node peak RSS over the whole run %.0f MB (the build's)\n", r.PeakRSSMB)
}

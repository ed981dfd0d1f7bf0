package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/bench/workload"
	"github.com/affinityhq/affinity/tracker/event"
)

// IngestOptions configure the ingest scenario. Start from
// DefaultIngestOptions.
type IngestOptions struct {
	// Systems to measure, in the order of each round: noop, embedded,
	// kafka, naive, naive-tuned.
	Systems []string
	// Concurrency is the number of closed-loop workers, each with its own
	// keep-alive connection.
	Concurrency int
	// Rounds is how many times every system gets a Phase; the systems
	// take turns within a round.
	Rounds int
	// Phase is the measured time per system per round; Warmup runs once
	// per system before the first round and is not measured.
	Phase, Warmup time.Duration
	// Sample is the interval of the timeline (chart, progress line).
	Sample time.Duration
	// Workload is the traffic; its Now, Shard and Shards are set per worker.
	Workload workload.Options
	// Dir holds the embedded log and the role processes' stderr logs.
	Dir string
	// Verify counts, after the run, what each system's log holds.
	Verify bool
	// Progress, when set, is called with a one-line status at every sample.
	Progress func(line string)
}

// scratchDir sets o.Dir, when empty, to a new temporary directory named
// for scenario; done removes that one (and nothing when Dir was given).
func (o *IngestOptions) scratchDir(scenario string) (done func(), err error) {
	return scratchDir(&o.Dir, scenario)
}

// scratchDir sets *dir, when empty, to a new temporary directory named for
// scenario, or else makes sure *dir exists; done removes the temporary one
// (and nothing when *dir was given).
func scratchDir(dir *string, scenario string) (done func(), err error) {
	if *dir != "" {
		return func() {}, os.MkdirAll(*dir, 0o755)
	}
	d, err := os.MkdirTemp("", "affinity-bench-"+scenario+"-")
	if err != nil {
		return nil, err
	}
	*dir = d
	return func() { os.RemoveAll(d) }, nil
}

// progressFunc returns o.Progress, or one that drops the lines.
func (o *IngestOptions) progressFunc() func(string) {
	if o.Progress != nil {
		return o.Progress
	}
	return func(string) {}
}

// AllIngestSystems lists the ingest systems, in their default order.
var AllIngestSystems = []string{sysNoop, sysEmbedded, sysKafka, sysNaive, sysNaiveTuned}

// systemDesc says what each system is, for reports.
var systemDesc = map[string]string{
	sysNoop:       "(a) no-op fasthttp handler answering 202: the ceiling",
	sysEmbedded:   "(b) affinity collector, embedded log (Badger)",
	sysKafka:      "(c) affinity collector, Kafka log (kfake on loopback)",
	sysNaive:      "(d) naive peer: net/http + encoding/json + kafka-go Writer defaults",
	sysNaiveTuned: "(e) naive peer, Writer tuned like affinity's (2 ms batches, acks=all)",
}

// DefaultIngestOptions returns a full run: 5 rounds of 4 s per system at
// 256 connections, visitors from a 1M-visitor workload. With fewer
// connections a closed loop measures the log's fsync latency (the collector
// answers 202 only after the log acknowledged) rather than throughput.
func DefaultIngestOptions() IngestOptions {
	w := workload.DefaultOptions()
	w.Visitors = 1_000_000
	w.Events = 0
	return IngestOptions{
		Systems:     slices.Clone(AllIngestSystems),
		Concurrency: 256,
		Rounds:      5,
		Phase:       4 * time.Second,
		Warmup:      time.Second,
		Sample:      500 * time.Millisecond,
		Workload:    w,
		Verify:      true,
	}
}

// QuickIngestOptions returns a smoke run that finishes well under a minute.
func QuickIngestOptions() IngestOptions {
	o := DefaultIngestOptions()
	o.Concurrency = 16
	o.Rounds = 2
	o.Phase = 1500 * time.Millisecond
	o.Warmup = 300 * time.Millisecond
	o.Sample = 250 * time.Millisecond
	o.Workload.Visitors = 10_000
	return o
}

// SystemResult is one system's figures over all its measured phases.
type SystemResult struct {
	Name     string    `json:"name"`
	Desc     string    `json:"desc"`
	Requests int64     `json:"requests"`
	Events   int64     `json:"events"`
	Seconds  float64   `json:"seconds"`
	RPS      float64   `json:"requests_per_s"`
	EPS      float64   `json:"events_per_s"`
	P50ms    float64   `json:"p50_ms"`
	P90ms    float64   `json:"p90_ms"`
	P99ms    float64   `json:"p99_ms"`
	P999ms   float64   `json:"p999_ms"`
	MaxMs    float64   `json:"max_ms"`
	Accepted int64     `json:"requests_202"`
	Refused  int64     `json:"requests_other_status"`
	Errors   int64     `json:"request_errors"`
	RoundRPS []float64 `json:"round_requests_per_s"`
	// CPU seconds per million events (accepted or not) during the measured
	// phases: of the system's own process, of the Kafka broker (kfake, for
	// the Kafka systems), and of the load generator.
	CPUPerMEvents float64 `json:"cpu_s_per_m_events"`
	// RunCPUPerMEvents is the system's process CPU from its first phase to
	// the end of the run over all events it was sent: it also charges the
	// background work (compaction, flushes) that spills into the other
	// systems' phases.
	RunCPUPerMEvents    float64 `json:"run_cpu_s_per_m_events"`
	BrokerCPUPerMEvents float64 `json:"broker_cpu_s_per_m_events,omitempty"`
	LoadCPUPerMEvents   float64 `json:"loadgen_cpu_s_per_m_events"`
	PeakRSSMB           float64 `json:"peak_rss_mb"`
	// SentAccepted counts the events of every batch answered 202, warmup
	// included; LogEvents what the system's log holds after the run (-1:
	// not counted). They are equal for a system that loses nothing.
	SentAccepted int64 `json:"events_accepted_total"`
	LogRecords   int64 `json:"log_records"`
	LogEvents    int64 `json:"log_events"`
	// LastError is the last error or non-202 answer seen, if any.
	LastError string `json:"last_error,omitempty"`

	hist      Histogram
	cpuFirst  float64 // process CPU before its first phase; -1 until taken
	allEvents int64   // events sent, warmup included
	cpu       float64
	brkCPU    float64
	loadCPU   float64
}

// Sample is one point of the timeline.
type Sample struct {
	T      float64 `json:"t_s"` // since the start of the run
	System string  `json:"system"`
	Round  int     `json:"round"` // 0 is the warmup
	RPS    float64 `json:"requests_per_s"`
	EPS    float64 `json:"events_per_s"`
	P50ms  float64 `json:"p50_ms"`
	P99ms  float64 `json:"p99_ms"`
}

// Ratio is a throughput ratio between two systems. Value is the median of
// the per-round ratios (each round runs the systems back to back, so a
// round's ratio compares neighbours in time; the median shrugs off a round
// that another tenant of the machine spoiled); Total is the ratio of the
// totals, Min and Max the extreme rounds.
type Ratio struct {
	Name   string  `json:"name"`
	Target float64 `json:"target,omitempty"`
	Value  float64 `json:"value"`
	Total  float64 `json:"total"`
	Min    float64 `json:"round_min"`
	Max    float64 `json:"round_max"`
}

// newRatio returns the Ratio of per-round figures a and b (same rounds)
// and of their totals ta and tb.
func newRatio(name string, target float64, a, b []float64, ta, tb float64) Ratio {
	r := Ratio{Name: name, Target: target, Total: ta / tb}
	var rs []float64
	for i := range min(len(a), len(b)) {
		if b[i] > 0 {
			rs = append(rs, a[i]/b[i])
		}
	}
	if len(rs) == 0 {
		r.Value, r.Min, r.Max = r.Total, r.Total, r.Total
		return r
	}
	slices.Sort(rs)
	r.Min, r.Max = rs[0], rs[len(rs)-1]
	r.Value = rs[len(rs)/2]
	if len(rs)%2 == 0 {
		r.Value = (rs[len(rs)/2-1] + rs[len(rs)/2]) / 2
	}
	return r
}

// IngestReport is the outcome of the ingest scenario.
type IngestReport struct {
	Concurrency     int             `json:"concurrency"`
	Rounds          int             `json:"rounds"`
	PhaseSeconds    float64         `json:"phase_s"`
	MeanBatchEvents float64         `json:"mean_batch_events"`
	Processes       string          `json:"processes"`
	Systems         []*SystemResult `json:"systems"`
	Ratios          []Ratio         `json:"ratios"`
	BrokerRSSMB     float64         `json:"broker_peak_rss_mb,omitempty"`
	LoadgenRSSMB    float64         `json:"loadgen_peak_rss_mb"`
	Timeline        []Sample        `json:"timeline"`
}

// System returns the result of the named system, or nil.
func (r *IngestReport) System(name string) *SystemResult {
	for _, s := range r.Systems {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// loadWorker is one closed-loop client. The sampler reads and resets its
// interval figures under mu.
type loadWorker struct {
	mu       sync.Mutex
	phase    Histogram
	interval Histogram
	// interval and phase counters
	ireq, iev               int64
	preq, pev, p202, pother int64
	perr, acceptedEvents    int64
	lastErr                 error
}

// userAgent is a browser's: the collector drops bot traffic unstored.
const userAgent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"

// RunIngest runs the ingest scenario.
func RunIngest(o IngestOptions) (*IngestReport, error) {
	if len(o.Systems) == 0 || o.Concurrency <= 0 || o.Rounds <= 0 || o.Phase <= 0 {
		return nil, fmt.Errorf("cannot run ingest: need systems, concurrency, rounds and phase > 0 (got %v, %d, %d, %s)",
			o.Systems, o.Concurrency, o.Rounds, o.Phase)
	}
	if o.Sample <= 0 {
		o.Sample = 500 * time.Millisecond
	}
	for _, s := range o.Systems {
		if systemDesc[s] == "" {
			return nil, fmt.Errorf("cannot run ingest: unknown system %q (known: %s)", s, strings.Join(AllIngestSystems, ", "))
		}
	}
	// A --dir that does not exist yet is made, as the other scenarios
	// make theirs.
	done, err := o.scratchDir("ingest")
	if err != nil {
		return nil, fmt.Errorf("cannot run ingest: %w", err)
	}
	defer done()

	// Start the processes: the broker first, then every system.
	var (
		broker *proc
		procs  = map[string]*proc{}
	)
	stopAll := func() {
		for _, p := range procs {
			p.stop()
		}
		if broker != nil {
			broker.stop()
		}
	}
	defer stopAll()
	if slices.ContainsFunc(o.Systems, isKafkaSystem) {
		if broker, err = startProc(roleKfake, o.Dir); err != nil {
			return nil, err
		}
	}
	for _, s := range o.Systems {
		logDir := filepath.Join(o.Dir, s+"-log")
		if err := os.RemoveAll(logDir); err != nil { // a log of an earlier run in --dir
			return nil, err
		}
		env := []string{envDir + "=" + logDir}
		if broker != nil {
			env = append(env, envKafka+"="+broker.addr)
		}
		if procs[s], err = startProc(s, o.Dir, env...); err != nil {
			return nil, err
		}
	}

	rep := &IngestReport{
		Concurrency:  o.Concurrency,
		Rounds:       o.Rounds,
		PhaseSeconds: o.Phase.Seconds(),
		Processes:    "one process per system under test, one for the broker (kfake), the load generator in the parent",
	}
	results := map[string]*SystemResult{}
	clients := map[string]*fasthttp.HostClient{}
	for _, s := range o.Systems {
		results[s] = &SystemResult{Name: s, Desc: systemDesc[s], LogEvents: -1, LogRecords: -1, cpuFirst: -1}
		rep.Systems = append(rep.Systems, results[s])
		clients[s] = &fasthttp.HostClient{
			Addr:                procs[s].addr,
			MaxConns:            o.Concurrency,
			ReadTimeout:         30 * time.Second,
			WriteTimeout:        30 * time.Second,
			MaxIdleConnDuration: time.Minute,
		}
	}

	runStart := time.Now()
	var totalEvents, totalBatches int64
	for round := 0; round <= o.Rounds; round++ {
		phase := o.Phase
		if round == 0 {
			if o.Warmup <= 0 {
				continue
			}
			phase = o.Warmup
		}
		for _, s := range o.Systems {
			res := results[s]
			var b0, s0, l0 Usage
			if broker != nil && isKafkaSystem(s) {
				b0 = broker.usage()
			}
			s0 = procs[s].usage()
			if res.cpuFirst < 0 {
				res.cpuFirst = s0.CPUSeconds
			}
			l0 = selfUsage()
			pr := runPhase(&o, clients[s], s, round, phase, 0, runStart, &rep.Timeline)
			s1 := procs[s].usage()
			l1 := selfUsage()
			res.SentAccepted += pr.acceptedEvents
			res.allEvents += pr.events
			if pr.err != nil {
				res.LastError = pr.err.Error()
			}
			if pr.err != nil && pr.req == 0 {
				return rep, fmt.Errorf("system %s answered no request in round %d: %w", s, round, pr.err)
			}
			if round == 0 {
				continue
			}
			if broker != nil && isKafkaSystem(s) {
				res.brkCPU += broker.usage().CPUSeconds - b0.CPUSeconds
			}
			res.cpu += s1.CPUSeconds - s0.CPUSeconds
			res.loadCPU += l1.CPUSeconds - l0.CPUSeconds
			res.Requests += pr.req
			res.Events += pr.events
			res.Seconds += pr.seconds
			res.Accepted += pr.ok
			res.Refused += pr.other
			res.Errors += pr.errs
			res.hist.Merge(&pr.hist)
			res.RoundRPS = append(res.RoundRPS, float64(pr.req)/pr.seconds)
			totalEvents += pr.events
			totalBatches += pr.req
		}
	}
	if o.Progress != nil {
		o.Progress("")
	}

	for _, s := range o.Systems {
		res := results[s]
		if res.Seconds > 0 {
			res.RPS = float64(res.Requests) / res.Seconds
			res.EPS = float64(res.Events) / res.Seconds
		}
		ms := func(q float64) float64 { return float64(res.hist.Quantile(q)) / 1e6 }
		res.P50ms, res.P90ms, res.P99ms, res.P999ms = ms(0.5), ms(0.9), ms(0.99), ms(0.999)
		res.MaxMs = float64(res.hist.Max()) / 1e6
		if res.Events > 0 {
			res.CPUPerMEvents = res.cpu / float64(res.Events) * 1e6
			res.BrokerCPUPerMEvents = res.brkCPU / float64(res.Events) * 1e6
			res.LoadCPUPerMEvents = res.loadCPU / float64(res.Events) * 1e6
		}
		end := procs[s].usage()
		res.PeakRSSMB = float64(end.MaxRSSKB) / 1024
		if res.allEvents > 0 {
			res.RunCPUPerMEvents = (end.CPUSeconds - res.cpuFirst) / float64(res.allEvents) * 1e6
		}
		if o.Verify && s != sysNoop {
			var c LogCount
			if err := procs[s].call("count", &c); err != nil {
				return rep, err
			}
			res.LogRecords, res.LogEvents = c.Records, c.Events
		}
	}
	if broker != nil {
		rep.BrokerRSSMB = float64(broker.usage().MaxRSSKB) / 1024
	}
	rep.LoadgenRSSMB = float64(selfUsage().MaxRSSKB) / 1024
	if totalBatches > 0 {
		rep.MeanBatchEvents = float64(totalEvents) / float64(totalBatches)
	}
	addRatio := func(name, num, den string, target float64) {
		a, b := results[num], results[den]
		if a == nil || b == nil || b.RPS == 0 {
			return
		}
		rep.Ratios = append(rep.Ratios, newRatio(name, target, a.RoundRPS, b.RoundRPS, a.RPS, b.RPS))
	}
	addRatio("(b)/(a) collector on embedded log / no-op ceiling", sysEmbedded, sysNoop, 0.70)
	addRatio("(c)/(a) collector on Kafka / no-op ceiling", sysKafka, sysNoop, 0)
	addRatio("(c)/(d) collector on Kafka / naive peer", sysKafka, sysNaive, 0)
	addRatio("(c)/(e) collector on Kafka / naive peer, tuned writer", sysKafka, sysNaiveTuned, 0)
	// What (b)/(a) would be if the machine were the bench's alone and both
	// were CPU-bound: CPU time per event is far less disturbed by other
	// tenants than throughput is. The load generator shares the cores, so
	// its CPU counts on both sides.
	if a, b := results[sysEmbedded], results[sysNoop]; a != nil && b != nil && a.Events > 0 && b.Events > 0 {
		x := (b.CPUPerMEvents + b.LoadCPUPerMEvents) / (a.CPUPerMEvents + a.LoadCPUPerMEvents)
		rep.Ratios = append(rep.Ratios, Ratio{Name: "(b)/(a) CPU-bound estimate: (SUT+loadgen CPU/event) of a / of b",
			Target: 0.70, Value: x, Total: x, Min: x, Max: x})
	}

	var errs []error
	for _, s := range o.Systems {
		if err := procs[s].stop(); err != nil {
			errs = append(errs, fmt.Errorf("role %s: %w", s, err))
		}
		delete(procs, s)
	}
	return rep, errors.Join(errs...)
}

// ingestMax is what a closed-loop burst of ingest found: Burst its
// requests/s, CatchUp the seconds the node's builder then took to apply
// what the burst left, and Max the rate the node sustains — the burst's
// requests over the burst plus the catch-up. A burst the collector takes
// faster than the builder applies is not a rate the node holds: a load
// "at half of it" would leave the builder ever further behind and queue
// everything beside it (lookups waited seconds so in issue #10's runs).
type ingestMax struct {
	Burst, CatchUp, Max float64
	Phase               phaseResult
}

// findIngestMax runs ingest closed loop against hc for d, then waits
// (caughtUp) until the node has applied it.
func findIngestMax(in *IngestOptions, hc *fasthttp.HostClient, name string, round int, d time.Duration, runStart time.Time,
	timeline *[]Sample, caughtUp func() error) (ingestMax, error) {
	var m ingestMax
	pr := runPhase(in, hc, name, round, d, 0, runStart, timeline)
	m.Phase = pr
	if pr.req == 0 {
		return m, fmt.Errorf("no ingest request answered: %v", pr.err)
	}
	start := time.Now()
	if err := caughtUp(); err != nil {
		return m, fmt.Errorf("after the ingest maximum: %w", err)
	}
	m.CatchUp = time.Since(start).Seconds()
	m.Burst = float64(pr.req) / pr.seconds
	m.Max = float64(pr.req) / (pr.seconds + m.CatchUp)
	return m, nil
}

func isKafkaSystem(s string) bool { return s == sysKafka || s == sysNaive || s == sysNaiveTuned }

type phaseResult struct {
	req, events, ok, other, errs, acceptedEvents int64
	seconds                                      float64
	hist                                         Histogram
	err                                          error
}

// runPhase drives one system for d with o.Concurrency workers and appends
// the phase's samples to timeline. With rate 0 the workers run a closed
// loop; with a rate (requests/s) they send on a fixed schedule (open loop)
// and latency counts from the scheduled send time, so a stalled server is
// charged for the requests it delayed (no coordinated omission).
func runPhase(o *IngestOptions, hc *fasthttp.HostClient, system string, round int, d time.Duration,
	rate float64, runStart time.Time, timeline *[]Sample) phaseResult {
	workers := make([]*loadWorker, o.Concurrency)
	cat := workload.NewCatalog(o.Workload.Seed, o.Workload.Products, o.Workload.Brands)
	var stop atomic.Bool
	var wg sync.WaitGroup
	uri := "http://" + hc.Addr + "/v1/events"
	for i := range workers {
		w := &loadWorker{}
		workers[i] = w
		wo := o.Workload
		wo.Seed += uint64(round) * 1_000_003 // the same traffic for every system of a round
		wo.Shard, wo.Shards = i, o.Concurrency
		wo.Events = 0
		wo.Now = func() int64 { return time.Now().UnixMilli() }
		g, err := workload.New(wo, cat)
		if err != nil {
			return phaseResult{err: err}
		}
		var period, offset time.Duration
		if rate > 0 {
			period = time.Duration(float64(o.Concurrency) / rate * float64(time.Second))
			offset = period * time.Duration(i) / time.Duration(o.Concurrency)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := time.Now().Add(offset)
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI(uri)
			req.Header.SetMethod(fasthttp.MethodPost)
			req.Header.SetContentType("text/plain;charset=UTF-8")
			req.Header.SetUserAgent(userAgent)
			var (
				b    event.Batch
				body []byte
			)
			for !stop.Load() {
				g.Next(&b)
				body = workload.AppendJSON(body[:0], &b)
				req.SetBodyRaw(body)
				start := time.Now()
				if period > 0 {
					if wait := time.Until(next); wait > 0 {
						time.Sleep(wait)
					}
					start = next
					next = next.Add(period)
					if stop.Load() {
						break
					}
				}
				err := hc.DoTimeout(req, resp, 30*time.Second)
				lat := time.Since(start)
				n := int64(len(b.Events))
				w.mu.Lock()
				w.preq++
				w.ireq++
				w.pev += n
				w.iev += n
				w.phase.Record(lat)
				w.interval.Record(lat)
				switch {
				case err != nil:
					w.perr++
					w.lastErr = err
				case resp.StatusCode() == fasthttp.StatusAccepted:
					w.p202++
					w.acceptedEvents += n
				default:
					w.pother++
					w.lastErr = fmt.Errorf("status %d: %.200s", resp.StatusCode(), resp.Body())
				}
				w.mu.Unlock()
				if err != nil {
					time.Sleep(10 * time.Millisecond) // do not spin on a dead system
				}
			}
		}()
	}

	start := time.Now()
	last := start
	var ih Histogram
	sample := func(now time.Time, final bool) {
		ih.Reset()
		var req, ev int64
		for _, w := range workers {
			w.mu.Lock()
			ih.Merge(&w.interval)
			w.interval.Reset()
			req += w.ireq
			ev += w.iev
			w.ireq, w.iev = 0, 0
			w.mu.Unlock()
		}
		dt := now.Sub(last).Seconds()
		if dt < o.Sample.Seconds()/2 && final {
			// The tail after the deadline: its few in-flight completions
			// over a sliver of time would chart as a spike. The phase
			// totals count them.
			return
		}
		last = now
		if dt <= 0 {
			return
		}
		s := Sample{
			T:      now.Sub(runStart).Seconds(),
			System: system,
			Round:  round,
			RPS:    float64(req) / dt,
			EPS:    float64(ev) / dt,
			P50ms:  float64(ih.Quantile(0.5)) / 1e6,
			P99ms:  float64(ih.Quantile(0.99)) / 1e6,
		}
		*timeline = append(*timeline, s)
		if o.Progress != nil {
			label := fmt.Sprintf("round %d/%d", round, o.Rounds)
			if round == 0 {
				label = "warmup"
			}
			o.Progress(fmt.Sprintf("%-9s %-12s %6.1fs  %9.0f req/s %10.0f events/s  p50 %7.2f ms  p99 %7.2f ms",
				label, system, now.Sub(start).Seconds(), s.RPS, s.EPS, s.P50ms, s.P99ms))
		}
	}
	end := sampleFor(d, o.Sample, sample, func() {
		stop.Store(true)
		wg.Wait()
	})

	pr := phaseResult{seconds: end.Sub(start).Seconds()}
	for _, w := range workers {
		pr.req += w.preq
		pr.events += w.pev
		pr.ok += w.p202
		pr.other += w.pother
		pr.errs += w.perr
		pr.acceptedEvents += w.acceptedEvents
		pr.hist.Merge(&w.phase)
		if w.lastErr != nil {
			pr.err = w.lastErr
		}
	}
	return pr
}

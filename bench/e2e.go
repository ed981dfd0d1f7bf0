package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

const roleE2E = "e2e"

// E2EOptions configure the e2e scenario: HTTP → log → profiles in one
// process (affinity serve's wiring: collector, embedded log, builder).
type E2EOptions struct {
	// Ingest gives the load generator's settings (Concurrency, Workload,
	// Sample, Dir, Progress); its Systems, Rounds and Phase are unused.
	Ingest IngestOptions
	// MaxPhase is the closed-loop phase that finds the maximum request
	// rate; Phase the open-loop phase at Load times that rate.
	MaxPhase, Phase time.Duration
	Load            float64
}

// DefaultE2EOptions returns a full run: 5 s to find the maximum, 10 s at
// half of it.
func DefaultE2EOptions() E2EOptions {
	return E2EOptions{Ingest: DefaultIngestOptions(), MaxPhase: 5 * time.Second, Phase: 10 * time.Second, Load: 0.5}
}

// QuickE2EOptions returns a smoke run of a few seconds.
func QuickE2EOptions() E2EOptions {
	return E2EOptions{Ingest: QuickIngestOptions(), MaxPhase: 1500 * time.Millisecond, Phase: 2 * time.Second, Load: 0.5}
}

// E2EReport is the outcome of the e2e scenario.
type E2EReport struct {
	Concurrency int `json:"concurrency"`
	// MaxRPS is the rate the node sustains (ingestMax): BurstRPS, a
	// closed-loop burst's, over the burst plus the builder's CatchUpSecs.
	MaxRPS      float64 `json:"max_requests_per_s"`
	BurstRPS    float64 `json:"burst_requests_per_s"`
	CatchUpSecs float64 `json:"catch_up_s"`
	OfferedRPS  float64 `json:"offered_requests_per_s"`
	RPS         float64 `json:"requests_per_s"`
	EPS         float64 `json:"events_per_s"`
	P50ms       float64 `json:"request_p50_ms"`
	P99ms       float64 `json:"request_p99_ms"`
	// Lag is from the collector's receive time of a profile's latest event
	// to the builder's commit of that profile (measured in the builder's
	// commit hook), over the open-loop phase.
	LagCount      int64    `json:"lag_samples"`
	LagP50ms      float64  `json:"lag_p50_ms"`
	LagP99ms      float64  `json:"lag_p99_ms"`
	LagMaxMs      float64  `json:"lag_max_ms"`
	CPUPerMEvents float64  `json:"cpu_s_per_m_events"`
	PeakRSSMB     float64  `json:"peak_rss_mb"`
	Accepted      int64    `json:"requests_202"`
	Refused       int64    `json:"requests_other_status"`
	Errors        int64    `json:"request_errors"`
	AppliedEvents int64    `json:"events_applied"`
	SentAccepted  int64    `json:"events_accepted_total"`
	Timeline      []Sample `json:"timeline"`
}

// lagReply is the e2e role's answer to "lag".
type lagReply struct {
	Count   int64   `json:"count"`
	P50ms   float64 `json:"p50_ms"`
	P99ms   float64 `json:"p99_ms"`
	MaxMs   float64 `json:"max_ms"`
	Applied int64   `json:"applied"`
}

// RunE2E runs the e2e scenario.
func RunE2E(o E2EOptions) (*E2EReport, error) {
	in := o.Ingest
	if in.Concurrency <= 0 || o.MaxPhase <= 0 || o.Phase <= 0 || o.Load <= 0 {
		return nil, fmt.Errorf("cannot run e2e: concurrency %d, phases %s/%s and load %g must be > 0", in.Concurrency, o.MaxPhase, o.Phase, o.Load)
	}
	if in.Sample <= 0 {
		in.Sample = 500 * time.Millisecond
	}
	in.Rounds = 2 // round 1 finds the maximum, round 2 is the open loop
	done, err := in.scratchDir("e2e")
	if err != nil {
		return nil, err
	}
	defer done()
	logDir, stateDir := filepath.Join(in.Dir, "e2e-log"), filepath.Join(in.Dir, "e2e-state")
	for _, d := range []string{logDir, stateDir} {
		if err := os.RemoveAll(d); err != nil {
			return nil, err
		}
	}
	p, err := startProc(roleE2E, in.Dir, envDir+"="+logDir, envState+"="+stateDir)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	hc := &fasthttp.HostClient{Addr: p.addr, MaxConns: in.Concurrency, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	rep := &E2EReport{Concurrency: in.Concurrency}
	runStart := time.Now()

	// 1. The maximum, closed loop.
	var lr lagReply
	im, err := findIngestMax(&in, hc, "e2e-max", 1, o.MaxPhase, runStart, &rep.Timeline, func() error { return p.call("caughtup", &lr) })
	if err != nil {
		return rep, fmt.Errorf("e2e: %w", err)
	}
	pr := im.Phase
	rep.SentAccepted += pr.acceptedEvents
	rep.MaxRPS, rep.BurstRPS, rep.CatchUpSecs = im.Max, im.Burst, im.CatchUp
	if err := p.call("lag", &lr); err != nil { // resets the lag histogram
		return rep, err
	}

	// 2. Load·max, open loop.
	rep.OfferedRPS = o.Load * rep.MaxRPS
	u0 := p.usage()
	pr = runPhase(&in, hc, "e2e", 2, o.Phase, rep.OfferedRPS, runStart, &rep.Timeline)
	u1 := p.usage()
	rep.SentAccepted += pr.acceptedEvents
	if err := p.call("caughtup", &lr); err != nil {
		return rep, err
	}
	if err := p.call("lag", &lr); err != nil {
		return rep, err
	}
	if in.Progress != nil {
		in.Progress("")
	}
	rep.RPS, rep.EPS = float64(pr.req)/pr.seconds, float64(pr.events)/pr.seconds
	rep.P50ms, rep.P99ms = float64(pr.hist.Quantile(0.5))/1e6, float64(pr.hist.Quantile(0.99))/1e6
	rep.Accepted, rep.Refused, rep.Errors = pr.ok, pr.other, pr.errs
	rep.LagCount, rep.LagP50ms, rep.LagP99ms, rep.LagMaxMs = lr.Count, lr.P50ms, lr.P99ms, lr.MaxMs
	rep.AppliedEvents = lr.Applied
	if pr.events > 0 {
		rep.CPUPerMEvents = (u1.CPUSeconds - u0.CPUSeconds) / float64(pr.events) * 1e6
	}
	rep.PeakRSSMB = float64(u1.MaxRSSKB) / 1024
	return rep, p.stop()
}

// lagHook records, at each profile commit, how long ago the collector
// received the profile's latest event.
type lagHook struct {
	mu sync.Mutex
	h  Histogram
}

func (l *lagHook) Changed(_ *state.Batch, _ string, _ event.UUID, p *profile.Profile) error {
	if p == nil || p.LastRecv == 0 {
		return nil
	}
	lag := time.Duration(time.Now().UnixMilli()-p.LastRecv) * time.Millisecond
	l.mu.Lock()
	l.h.Record(max(lag, 0))
	l.mu.Unlock()
	return nil
}

// startE2E is the e2e role: the collector on the embedded log and the
// builder consuming it, in one process as `affinity serve` runs them,
// within serve's default memory budget (the Go heap limit and its GC
// pacing included).
func startE2E() (*roleSystem, error) {
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
	so := state.DefaultOptions(os.Getenv(envState))
	so.Logger = log.Printf
	split.ApplyState(&so)
	db, err := state.Open(so)
	if err != nil {
		l.Close()
		return nil, err
	}
	hook := &lagHook{}
	bo := builder.DefaultOptions()
	bo.Log, bo.State, bo.Logger, bo.Hook = l, db, log.Printf, hook
	b, err := builder.New(bo)
	if err == nil {
		err = b.Start()
	}
	if err != nil {
		db.Close()
		l.Close()
		return nil, err
	}
	sys, err := startCollector(l)
	if err != nil {
		b.Close()
		db.Close()
		return nil, err
	}
	closeCollector := sys.close // shuts the collector down and closes the log
	sys.close = func() error {
		return errors.Join(b.Close(), closeCollector(), db.Close())
	}
	sys.commands = map[string]func() (any, error){
		"caughtup": func() (any, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			return lagReply{}, b.WaitCaughtUp(ctx)
		},
		"lag": func() (any, error) {
			hook.mu.Lock()
			defer hook.mu.Unlock()
			r := lagReply{
				Count:   int64(hook.h.Count()),
				P50ms:   float64(hook.h.Quantile(0.5)) / 1e6,
				P99ms:   float64(hook.h.Quantile(0.99)) / 1e6,
				MaxMs:   float64(hook.h.Max()) / 1e6,
				Applied: int64(b.Status().EventsApplied),
			}
			hook.h.Reset()
			return r, nil
		},
	}
	return sys, nil
}

// PrintE2E writes the e2e figures.
func PrintE2E(w io.Writer, r *E2EReport) {
	fmt.Fprintf(w, "e2e: collector + embedded log + builder in one process; %d connections; sustains %.0f req/s (a %.0f req/s burst closed loop, %.1f s of catch-up after it), then %.0f req/s offered open loop\n\n",
		r.Concurrency, r.MaxRPS, r.BurstRPS, r.CatchUpSecs, r.OfferedRPS)
	fmt.Fprintf(w, "  sustained %.0f req/s, %.0f events/s; request p50 %.2f ms, p99 %.2f ms; %d non-202, %d errors\n",
		r.RPS, r.EPS, r.P50ms, r.P99ms, r.Refused, r.Errors)
	verdict := "met"
	if r.LagP99ms >= 1000 {
		verdict = "MISSED"
	}
	fmt.Fprintf(w, "  event-to-profile lag p50 %.0f ms, p99 %.0f ms, max %.0f ms over %d profile commits  target p99 < 1000 ms: %s\n",
		r.LagP50ms, r.LagP99ms, r.LagMaxMs, r.LagCount, verdict)
	fmt.Fprintf(w, "  %.1f CPU-s per M events (the one process), peak RSS %.0f MB; builder applied %d of %d accepted events\n",
		r.CPUPerMEvents, r.PeakRSSMB, r.AppliedEvents, r.SentAccepted)
}

package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/bench/workload"
)

// The ingest-load role sends the open-loop ingest that runs beside the
// query and campaign scenarios' lookups, in a process of its own: its
// hundreds of connections' goroutines and their garbage then do not delay
// the lookup client in the bench process — a shop's traffic and an email
// tool's lookups do not share a Go runtime either. envLoadSpec carries
// its loadSpec as JSON.
const (
	roleIngestLoad = "ingest-load"
	envLoadSpec    = "AFFINITY_BENCH_LOAD"
)

// loadSpec is what an ingest-load process sends, and to which node.
type loadSpec struct {
	Addr        string           `json:"addr"`
	Concurrency int              `json:"concurrency"`
	Workload    workload.Options `json:"workload"`
	Sample      time.Duration    `json:"sample"`
	Phase       time.Duration    `json:"phase"`
	Rate        float64          `json:"rate"`
	Round       int              `json:"round"`
	// RunStart is the bench run's start (Unix ns): the samples' T counts
	// from it, as the bench process's own samples do.
	RunStart int64 `json:"run_start_unix_ns"`
}

// loadResult is an ingest-load process's phase: runPhase's figures.
type loadResult struct {
	Req     int64    `json:"requests"`
	Events  int64    `json:"events"`
	Other   int64    `json:"non_202"`
	Errs    int64    `json:"errors"`
	Seconds float64  `json:"seconds"`
	P99ms   float64  `json:"p99_ms"`
	Samples []Sample `json:"samples"`
}

// startIngestLoad is the ingest-load role: "run" sends its spec's phase
// and answers its loadResult.
func startIngestLoad() (*roleSystem, error) {
	var spec loadSpec
	if err := json.Unmarshal([]byte(os.Getenv(envLoadSpec)), &spec); err != nil {
		return nil, fmt.Errorf("invalid %s: %w", envLoadSpec, err)
	}
	hc := &fasthttp.HostClient{Addr: spec.Addr, MaxConns: spec.Concurrency, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	run := func(func(string)) (any, error) {
		o := IngestOptions{Concurrency: spec.Concurrency, Workload: spec.Workload, Sample: spec.Sample}
		var res loadResult
		pr := runPhase(&o, hc, "ingest", spec.Round, spec.Phase, spec.Rate, time.Unix(0, spec.RunStart), &res.Samples)
		if pr.err != nil {
			return nil, pr.err
		}
		res.Req, res.Events, res.Other, res.Errs = pr.req, pr.events, pr.other, pr.errs
		res.Seconds, res.P99ms = pr.seconds, float64(pr.hist.Quantile(0.99))/1e6
		return res, nil
	}
	return &roleSystem{addr: "-", run: run, close: func() error { hc.CloseIdleConnections(); return nil }}, nil
}

// startIngestLoadProc starts an ingest-load process in dir for spec;
// its "run" sends the phase.
func startIngestLoadProc(spec loadSpec, dir string) (*proc, error) {
	js, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("cannot encode the ingest load: %w", err)
	}
	return startProc(roleIngestLoad, dir, envLoadSpec+"="+string(js))
}

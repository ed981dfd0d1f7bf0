package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/affinityhq/affinity/bench/workload"
	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/state"
)

// The roles of the build scenario and their environment.
const (
	roleBuildAffinity = "build-affinity"
	roleBuildRedis    = "build-redis"
	envState          = "AFFINITY_BENCH_STATE"
	envRedis          = "AFFINITY_BENCH_REDIS"
)

// BuildOptions configure the build scenario. Start from DefaultBuildOptions.
type BuildOptions struct {
	// Workload is what the log is pre-filled with; Events must be bounded.
	Workload workload.Options
	// Rounds is how many times each system applies the whole log, taking
	// turns (affinity from an empty state each time, Redis after FLUSHALL).
	Rounds int
	// RedisServer is the redis-server binary of the peer.
	RedisServer string
	// Dir holds the log, the state and the role logs; empty: a temp dir.
	Dir string
	// Progress, when set, gets a one-line status about every Sample.
	Progress func(string)
	// Sample is the interval of the timeline.
	Sample time.Duration
}

// DefaultBuildOptions returns a full run: 200k visitors, 2M events, 2
// rounds. --build-visitors 1000000 --build-events 10000000 is the design's
// size (a few minutes on 2 cores).
func DefaultBuildOptions() BuildOptions {
	w := workload.DefaultOptions()
	w.Visitors = 200_000
	w.Events = 2_000_000
	return BuildOptions{Workload: w, Rounds: 2, RedisServer: "redis-server", Sample: 500 * time.Millisecond}
}

// QuickBuildOptions returns a smoke run of a few seconds.
func QuickBuildOptions() BuildOptions {
	o := DefaultBuildOptions()
	o.Workload.Visitors = 5_000
	o.Workload.Events = 60_000
	o.Rounds = 1
	o.Sample = 250 * time.Millisecond
	return o
}

// BuildSystem is one system's figures in the build scenario.
type BuildSystem struct {
	Name     string    `json:"name"`
	Desc     string    `json:"desc"`
	Events   int64     `json:"events_applied"` // over all rounds
	Seconds  float64   `json:"seconds"`
	EPS      float64   `json:"events_per_s"`
	RoundEPS []float64 `json:"round_events_per_s"`
	// CPU seconds per million events of the applying process, and of
	// redis-server for the peer.
	CPUPerMEvents       float64 `json:"cpu_s_per_m_events"`
	ServerCPUPerMEvents float64 `json:"server_cpu_s_per_m_events,omitempty"`
	PeakRSSMB           float64 `json:"peak_rss_mb"`
	ServerRSSMB         float64 `json:"server_peak_rss_mb,omitempty"`
	// The applying process's resident memory at the end, anonymous (heap)
	// and file-backed (mmapped tables).
	EndRSSAnonMB float64 `json:"end_rss_anon_mb"`
	EndRSSFileMB float64 `json:"end_rss_file_mb"`

	cpu, serverCPU float64
}

// BuildReport is the outcome of the build scenario.
type BuildReport struct {
	Visitors    int            `json:"visitors"`
	Events      int64          `json:"events"`
	Records     int64          `json:"records"`
	FillSeconds float64        `json:"fill_s"`
	Rounds      int            `json:"rounds"`
	Processes   string         `json:"processes"`
	Systems     []*BuildSystem `json:"systems"`
	Ratio       *Ratio         `json:"ratio,omitempty"`
	// Pending says why the scenario did not run, when it did not.
	Pending  string   `json:"pending,omitempty"`
	Timeline []Sample `json:"timeline,omitempty"`
}

// buildResult is what a build role answers to "run".
type buildResult struct {
	Events  int64   `json:"events"`
	Seconds float64 `json:"seconds"`
}

// RunBuild runs the build scenario.
func RunBuild(o BuildOptions) (*BuildReport, error) {
	if o.Workload.Events <= 0 || o.Rounds <= 0 {
		return nil, fmt.Errorf("cannot run build: events %d and rounds %d must be > 0", o.Workload.Events, o.Rounds)
	}
	if o.Sample <= 0 {
		o.Sample = 500 * time.Millisecond
	}
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "affinity-bench-build-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		o.Dir = d
	}
	progress := func(s string) {
		if o.Progress != nil {
			o.Progress(s)
		}
	}
	rep := &BuildReport{
		Visitors:  o.Workload.Visitors,
		Events:    o.Workload.Events,
		Rounds:    o.Rounds,
		Processes: "each applier in its own process (builder; Redis client), redis-server in its own",
	}

	// Fill the pristine log once; each affinity round works on a copy (the
	// builder trims what it consumed), the peer reads it in place.
	pristine := filepath.Join(o.Dir, "build-log")
	if err := os.RemoveAll(pristine); err != nil { // a log of an earlier run in --dir
		return nil, err
	}
	lo := storage.DefaultEmbeddedOptions(pristine)
	lo.Partitions = benchPartitions
	lo.MaxBytes = benchLogMaxBytes
	l, err := storage.OpenEmbeddedLog(lo)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	st, err := workload.Fill(context.Background(), l, o.Workload, 2, 256, func(n int64) {
		progress(fmt.Sprintf("build: filling the log: %d of %d events", n, o.Workload.Events))
	})
	if cerr := l.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	rep.FillSeconds = time.Since(start).Seconds()
	rep.Records = st.Batches

	redis, err := startRedis(o.RedisServer, o.Dir)
	if err != nil {
		return rep, err
	}
	defer redis.stop()

	aff := &BuildSystem{Name: "affinity", Desc: "affinity profile builder (profile/builder) on the embedded log, state in Badger"}
	peer := &BuildSystem{Name: "redis", Desc: "Redis peer: pipelined ZINCRBY of w*2^((t-L)/H) per visitor and dimension, HINCRBY counts; no dedup, no persistence"}
	rep.Systems = []*BuildSystem{aff, peer}
	runStart := time.Now()
	for round := 1; round <= o.Rounds; round++ {
		// affinity, on a fresh copy of the log and an empty state.
		work := filepath.Join(o.Dir, "work-log")
		stateDir := filepath.Join(o.Dir, "state")
		for _, d := range []string{work, stateDir} {
			if err := os.RemoveAll(d); err != nil {
				return rep, err
			}
		}
		if out, err := exec.Command("cp", "-r", pristine, work).CombinedOutput(); err != nil {
			return rep, fmt.Errorf("cannot copy the log %s: %w: %s", pristine, err, out)
		}
		res, u, err := runBuildRole(roleBuildAffinity, o, round, runStart, &rep.Timeline, progress,
			envDir+"="+work, envState+"="+stateDir)
		if err != nil {
			return rep, err
		}
		aff.add(res, u.CPUSeconds, 0, u.MaxRSSKB, 0)
		aff.EndRSSAnonMB, aff.EndRSSFileMB = float64(u.RSSAnonKB)/1024, float64(u.RSSFileKB)/1024

		// the peer, on an empty Redis.
		if err := redis.do("FLUSHALL"); err != nil {
			return rep, err
		}
		r0 := redis.usage()
		res, u, err = runBuildRole(roleBuildRedis, o, round, runStart, &rep.Timeline, progress,
			envDir+"="+pristine, envRedis+"="+redis.addr)
		if err != nil {
			return rep, err
		}
		r1 := redis.usage()
		peer.add(res, u.CPUSeconds, r1.CPUSeconds-r0.CPUSeconds, u.MaxRSSKB, r1.MaxRSSKB)
		peer.EndRSSAnonMB, peer.EndRSSFileMB = float64(u.RSSAnonKB)/1024, float64(u.RSSFileKB)/1024
	}
	progress("")
	for _, s := range rep.Systems {
		if s.Seconds > 0 {
			s.EPS = float64(s.Events) / s.Seconds
		}
		if s.Events > 0 {
			s.CPUPerMEvents = s.cpu / float64(s.Events) * 1e6
			s.ServerCPUPerMEvents = s.serverCPU / float64(s.Events) * 1e6
		}
	}
	if peer.EPS > 0 {
		r := newRatio("affinity builder / Redis peer, events/s", 2, aff.RoundEPS, peer.RoundEPS, aff.EPS, peer.EPS)
		rep.Ratio = &r
	}
	return rep, nil
}

func (s *BuildSystem) add(r buildResult, cpu, serverCPU float64, rssKB, serverRSSKB int64) {
	s.Events += r.Events
	s.Seconds += r.Seconds
	if r.Seconds > 0 {
		s.RoundEPS = append(s.RoundEPS, float64(r.Events)/r.Seconds)
	}
	s.cpu += cpu
	s.serverCPU += serverCPU
	s.PeakRSSMB = max(s.PeakRSSMB, float64(rssKB)/1024)
	s.ServerRSSMB = max(s.ServerRSSMB, float64(serverRSSKB)/1024)
}

// runBuildRole starts a build role, runs it to the end of the log and
// returns its result and its process's usage.
func runBuildRole(role string, o BuildOptions, round int, runStart time.Time, timeline *[]Sample,
	progress func(string), env ...string) (buildResult, Usage, error) {
	var res buildResult
	p, err := startProc(role, o.Dir, append(env, "AFFINITY_BENCH_SAMPLE="+o.Sample.String())...)
	if err != nil {
		return res, Usage{}, err
	}
	defer p.stop()
	name := strings.TrimPrefix(role, "build-")
	lastN, lastT := int64(0), time.Now()
	err = p.run("run", &res, func(n int64) {
		now := time.Now()
		dt := now.Sub(lastT).Seconds()
		if dt < o.Sample.Seconds()/2 {
			return // the final report right after a tick: a sliver, not a sample
		}
		s := Sample{T: now.Sub(runStart).Seconds(), System: name, Round: round, EPS: float64(n-lastN) / dt}
		*timeline = append(*timeline, s)
		lastN, lastT = n, now
		progress(fmt.Sprintf("build round %d/%d %-9s %9d events applied, %9.0f events/s", round, o.Rounds, name, n, s.EPS))
	})
	if err != nil {
		return res, Usage{}, err
	}
	u := p.usage()
	return res, u, p.stop()
}

// run sends cmd, passes every "progress N" line to progress and decodes
// the final "ok" reply into v.
func (p *proc) run(cmd string, v any, progress func(int64)) error {
	if _, err := io.WriteString(p.stdin, cmd+"\n"); err != nil {
		return fmt.Errorf("cannot send %q to role %s: %w", cmd, p.role, err)
	}
	for {
		line, err := p.stdout.ReadString('\n')
		if err != nil {
			return fmt.Errorf("no answer to %q from role %s: %w (see %s)", cmd, p.role, err, p.errLog)
		}
		line = strings.TrimSpace(line)
		if n, ok := strings.CutPrefix(line, "progress "); ok {
			if x, err := strconv.ParseInt(n, 10, 64); err == nil {
				progress(x)
			}
			continue
		}
		js, ok := strings.CutPrefix(line, "ok ")
		if !ok {
			return fmt.Errorf("role %s answered %q to %q (see %s)", p.role, line, cmd, p.errLog)
		}
		return json.Unmarshal([]byte(js), v)
	}
}

// openBuildLog opens the embedded log a build role reads.
func openBuildLog() (*storage.EmbeddedLog, error) {
	dir := os.Getenv(envDir)
	if dir == "" {
		return nil, fmt.Errorf("cannot open the build log: %s is empty", envDir)
	}
	o := storage.DefaultEmbeddedOptions(dir)
	o.Partitions = benchPartitions
	o.MaxBytes = benchLogMaxBytes
	o.Logger = log.Printf
	return storage.OpenEmbeddedLog(o)
}

func sampleEnv() time.Duration {
	d, err := time.ParseDuration(os.Getenv("AFFINITY_BENCH_SAMPLE"))
	if err != nil || d <= 0 {
		return 500 * time.Millisecond
	}
	return d
}

// runWithProgress runs work, printing "progress <count()>" every sample
// until it returns.
func runWithProgress(emit func(string), count func() int64, work func() error) error {
	done := make(chan error, 1)
	go func() { done <- work() }()
	t := time.NewTicker(sampleEnv())
	defer t.Stop()
	for {
		select {
		case err := <-done:
			emit("progress " + strconv.FormatInt(count(), 10))
			return err
		case <-t.C:
			emit("progress " + strconv.FormatInt(count(), 10))
		}
	}
}

// startBuildAffinity is the affinity side of the build scenario: the
// profile builder applying the whole log to an empty state.
func startBuildAffinity() (*roleSystem, error) {
	l, err := openBuildLog()
	if err != nil {
		return nil, err
	}
	so := state.DefaultOptions(os.Getenv(envState))
	so.Logger = log.Printf
	db, err := state.Open(so)
	if err != nil {
		l.Close()
		return nil, err
	}
	bo := builder.DefaultOptions()
	bo.Log, bo.State, bo.Logger = l, db, log.Printf
	b, err := builder.New(bo)
	if err != nil {
		db.Close()
		l.Close()
		return nil, err
	}
	return &roleSystem{
		addr: "-",
		run: func(emit func(string)) (any, error) {
			start := time.Now()
			err := runWithProgress(emit, func() int64 { return int64(b.Status().EventsApplied) }, func() error {
				if err := b.Start(); err != nil {
					return err
				}
				return b.WaitCaughtUp(context.Background())
			})
			return buildResult{Events: int64(b.Status().EventsApplied), Seconds: time.Since(start).Seconds()}, err
		},
		close: func() error { return errors.Join(b.Close(), db.Close(), l.Close()) },
	}, nil
}

// startBuildRedis is the peer side: the same log applied to Redis.
func startBuildRedis() (*roleSystem, error) {
	l, err := openBuildLog()
	if err != nil {
		return nil, err
	}
	addr := os.Getenv(envRedis)
	return &roleSystem{
		addr: "-",
		run: func(emit func(string)) (any, error) {
			var applied atomic.Int64
			start := time.Now()
			err := runWithProgress(emit, applied.Load, func() error {
				return runRedisPeer(context.Background(), l, addr, &applied)
			})
			return buildResult{Events: applied.Load(), Seconds: time.Since(start).Seconds()}, err
		},
		close: l.Close,
	}, nil
}

// PrintBuild writes the build figures as a table.
func PrintBuild(w io.Writer, r *BuildReport) {
	if r.Pending != "" {
		fmt.Fprintf(w, "build: pending: %s\n", r.Pending)
		return
	}
	fmt.Fprintf(w, "build: %d events of %d visitors in %d log records (filled in %.1fs), %d rounds per system, interleaved; %s\n\n",
		r.Events, r.Visitors, r.Records, r.FillSeconds, r.Rounds, r.Processes)
	fmt.Fprintf(w, "%-10s %12s %12s %16s %13s %22s %15s\n", "system", "events/s", "CPU-s/M ev", "server CPU-s/M", "peak RSS MB", "end RSS anon/file MB", "server RSS MB")
	for _, s := range r.Systems {
		fmt.Fprintf(w, "%-10s %12.0f %12.1f %16.1f %13.0f %22s %15.0f\n", s.Name, s.EPS, s.CPUPerMEvents, s.ServerCPUPerMEvents,
			s.PeakRSSMB, fmt.Sprintf("%.0f / %.0f", s.EndRSSAnonMB, s.EndRSSFileMB), s.ServerRSSMB)
	}
	fmt.Fprintln(w)
	for _, s := range r.Systems {
		fmt.Fprintf(w, "  %-10s %s\n", s.Name, s.Desc)
	}
	if x := r.Ratio; x != nil {
		verdict := "met"
		if x.Value < x.Target {
			verdict = "MISSED"
		}
		fmt.Fprintf(w, "\nratio %s (median of rounds) %.2f  (rounds %.2f-%.2f, totals %.2f)  target >= %.2f: %s\n",
			x.Name, x.Value, x.Min, x.Max, x.Total, x.Target, verdict)
	}
	if len(r.Systems) > 0 {
		fmt.Fprintf(w, "affinity builder events/s: %.0f  target >= 200000: %s\n", r.Systems[0].EPS, map[bool]string{true: "met", false: "MISSED"}[r.Systems[0].EPS >= 200000])
	}
}

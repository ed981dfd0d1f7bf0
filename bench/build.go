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
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/affinityhq/affinity/bench/workload"
	"github.com/affinityhq/affinity/internal/budget"
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
	// Workload is what the log of the main run is pre-filled with; Events
	// must be bounded.
	Workload workload.Options
	// SmallVisitors, when in (0, Workload.Visitors), adds a run before the
	// main one with that many visitors and as many events per visitor
	// (Workload.Events/Workload.Visitors), so that the CPU per event of
	// the two sizes can be compared: the flat-cost ratio.
	SmallVisitors int
	// Rounds is how many times each system applies the whole log of each
	// run, taking turns (affinity from an empty state each time, Redis
	// after FLUSHALL).
	Rounds int
	// Memory is the affinity builder's memory budget (--memory), split by
	// internal/budget as `affinity serve` splits it.
	Memory int64
	// RedisServer is the redis-server binary of the peer.
	RedisServer string
	// Dir holds the log, the state and the role logs; empty: a temp dir.
	Dir string
	// Progress, when set, gets a one-line status about every Sample.
	Progress func(string)
	// Sample is the interval of the timeline, and so the window in which
	// the slowest events/s of a run is found.
	Sample time.Duration
	// Cgroup runs the affinity builder in a memory cgroup limited to the
	// budget + 15%, as a container would (root and a cgroup memory
	// controller needed; without them the report says why it did not).
	Cgroup bool
}

// DefaultBuildOptions returns a full run at the size issue #10 sets: 1M
// visitors and 10M events, after a run of 200k visitors and 2M events for
// the flat-cost ratio; one round each, within the default budget.
func DefaultBuildOptions() BuildOptions {
	w := workload.DefaultOptions()
	w.Visitors = 1_000_000
	w.Events = 10_000_000
	return BuildOptions{Workload: w, SmallVisitors: 200_000, Rounds: 1, Memory: budget.Default,
		RedisServer: "redis-server", Sample: time.Second, Cgroup: true}
}

// QuickBuildOptions returns a smoke run of a few seconds.
func QuickBuildOptions() BuildOptions {
	o := DefaultBuildOptions()
	o.Workload.Visitors = 5_000
	o.Workload.Events = 60_000
	o.SmallVisitors = 1_000
	o.Sample = 250 * time.Millisecond
	return o
}

// BuildSystem is one system's figures in one run of the build scenario.
type BuildSystem struct {
	Name     string    `json:"name"`
	Desc     string    `json:"desc"`
	Events   int64     `json:"events_applied"` // over all rounds
	Seconds  float64   `json:"seconds"`
	EPS      float64   `json:"events_per_s"`
	RoundEPS []float64 `json:"round_events_per_s"`
	// The timeline's windows (BuildOptions.Sample, the last of each round
	// left out: the tail as partitions finish): the slowest, the median
	// and the slowest's share of the median.
	SlowestWindowEPS float64 `json:"slowest_window_events_per_s"`
	MedianWindowEPS  float64 `json:"median_window_events_per_s"`
	SlowestToMedian  float64 `json:"slowest_to_median"`
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
	// The highest anonymous (heap, off-heap caches) and file-backed
	// resident memory of the applying process, sampled every window:
	// the anonymous part is what the process cannot give back; the
	// file-backed part is the kernel's cache of mmapped files, which it
	// reclaims under a memory limit.
	PeakRSSAnonMB float64 `json:"peak_rss_anon_mb,omitempty"`
	PeakRSSFileMB float64 `json:"peak_rss_file_mb,omitempty"`
	// The memory cgroup the affinity builder ran in (BuildOptions.Cgroup):
	// its limit and the highest charge the kernel counted.
	CgroupLimitMB float64 `json:"cgroup_limit_mb,omitempty"`
	CgroupPeakMB  float64 `json:"cgroup_peak_mb,omitempty"`
	// The affinity builder's Badger mutations per applied event, and the
	// interest index's puts and deletes per event (in memory, not among
	// the Badger mutations): figures that say what a change of the state
	// saves, whatever else runs on the machine.
	WritesPerEvent      float64 `json:"state_writes_per_event,omitempty"`
	IndexWritesPerEvent float64 `json:"index_writes_per_event,omitempty"`

	cpu, serverCPU      float64
	writes, indexWrites int64
	windows             []float64
}

// BuildRun is one size of the build scenario: a log of Events events of
// Visitors visitors, applied by each system Rounds times.
type BuildRun struct {
	Visitors    int            `json:"visitors"`
	Events      int64          `json:"events"`
	Records     int64          `json:"records"`
	FillSeconds float64        `json:"fill_s"`
	Systems     []*BuildSystem `json:"systems"`
	Ratio       *Ratio         `json:"ratio,omitempty"`
	// PeakRSSToBudget is the affinity builder's peak RSS over the memory
	// budget, file-backed pages included; PeakAnonToBudget its peak
	// anonymous RSS over the budget, the figure held to the target.
	PeakRSSToBudget  float64  `json:"peak_rss_to_budget"`
	PeakAnonToBudget float64  `json:"peak_anon_to_budget,omitempty"`
	Timeline         []Sample `json:"timeline,omitempty"`
}

// FlatCost compares the affinity builder's CPU per event at two sizes.
type FlatCost struct {
	SmallVisitors      int     `json:"small_visitors"`
	Visitors           int     `json:"visitors"`
	SmallCPUPerMEvents float64 `json:"small_cpu_s_per_m_events"`
	CPUPerMEvents      float64 `json:"cpu_s_per_m_events"`
	Ratio              float64 `json:"ratio"` // large / small
}

// BuildReport is the outcome of the build scenario.
type BuildReport struct {
	Rounds      int     `json:"rounds"`
	Processes   string  `json:"processes"`
	MemoryBytes int64   `json:"memory_bytes"`
	MemoryMB    float64 `json:"memory_mb"`
	// Window is the timeline's sample interval, in which the slowest
	// events/s of each run is found.
	Window string `json:"window"`
	// Runs are the sizes, the smaller first.
	Runs     []*BuildRun `json:"runs"`
	FlatCost *FlatCost   `json:"flat_cost,omitempty"`
	// Pending says why the scenario did not run, when it did not.
	Pending string `json:"pending,omitempty"`
	// Cgroup says where the affinity builder ran: in a memory cgroup of
	// the budget + 15%, or why not.
	Cgroup string `json:"cgroup"`
}

// Targets of issue #10 the build scenario reports against.
const (
	targetBuildEPS        = 150_000
	targetBuildRatio      = 2
	targetSlowestToMedian = 0.3
	targetFlatCost        = 1.3
	targetRSSToBudget     = 1.15
)

// buildResult is what a build role answers to "run".
type buildResult struct {
	Events  int64   `json:"events"`
	Seconds float64 `json:"seconds"`
	// Writes and IndexWrites are the affinity builder's state writes
	// (Badger mutations) and the interest index's share of them.
	Writes      int64 `json:"writes,omitempty"`
	IndexWrites int64 `json:"index_writes,omitempty"`
}

// RunBuild runs the build scenario: the small run, if any, then the main
// one.
func RunBuild(o BuildOptions) (*BuildReport, error) {
	if o.Workload.Events <= 0 || o.Workload.Visitors <= 0 || o.Rounds <= 0 {
		return nil, fmt.Errorf("cannot run build: visitors %d, events %d and rounds %d must be > 0", o.Workload.Visitors, o.Workload.Events, o.Rounds)
	}
	if _, err := budget.New(o.Memory, true); err != nil {
		return nil, fmt.Errorf("cannot run build: %w", err)
	}
	if o.Sample <= 0 {
		o.Sample = time.Second
	}
	done, err := scratchDir(&o.Dir, "build")
	if err != nil {
		return nil, err
	}
	defer done()
	rep := &BuildReport{
		Rounds:      o.Rounds,
		Processes:   "each applier in its own process (builder; Redis client), redis-server in its own",
		MemoryBytes: o.Memory,
		MemoryMB:    float64(o.Memory) / (1 << 20),
		Window:      o.Sample.String(),
	}
	redis, err := startRedis(o.RedisServer, o.Dir)
	if err != nil {
		return rep, err
	}
	defer redis.stop()
	var cg *memoryCgroup
	if o.Cgroup {
		limit := int64(float64(o.Memory) * targetRSSToBudget)
		if cg, err = newMemoryCgroup(fmt.Sprintf("affinity-bench-%d", os.Getpid()), limit); err != nil {
			rep.Cgroup = "not in a memory cgroup: " + err.Error()
		} else {
			defer cg.remove()
			rep.Cgroup = fmt.Sprintf("in a memory cgroup of %.0f MB (the budget + 15%%): %s", float64(limit)/(1<<20), cg.dir)
		}
	} else {
		rep.Cgroup = "not in a memory cgroup (not asked)"
	}

	sizes := []workload.Options{o.Workload}
	if o.SmallVisitors > 0 && o.SmallVisitors < o.Workload.Visitors {
		small := o.Workload
		small.Visitors = o.SmallVisitors
		small.Events = o.Workload.Events * int64(o.SmallVisitors) / int64(o.Workload.Visitors)
		sizes = []workload.Options{small, o.Workload}
	}
	runStart := time.Now() // one time axis for every run's timeline
	for _, w := range sizes {
		run, err := runBuildSize(o, w, redis, cg, runStart)
		if run != nil {
			rep.Runs = append(rep.Runs, run)
		}
		if err != nil {
			return rep, err
		}
	}
	if len(rep.Runs) == 2 {
		small, large := rep.Runs[0].Systems[0], rep.Runs[1].Systems[0]
		if small.CPUPerMEvents > 0 {
			rep.FlatCost = &FlatCost{
				SmallVisitors: rep.Runs[0].Visitors, Visitors: rep.Runs[1].Visitors,
				SmallCPUPerMEvents: small.CPUPerMEvents, CPUPerMEvents: large.CPUPerMEvents,
				Ratio: large.CPUPerMEvents / small.CPUPerMEvents,
			}
		}
	}
	return rep, nil
}

// runBuildSize fills a log with w and has each system apply it o.Rounds
// times.
func runBuildSize(o BuildOptions, w workload.Options, redis *redisServer, cg *memoryCgroup, runStart time.Time) (*BuildRun, error) {
	progress := func(s string) {
		if o.Progress != nil {
			o.Progress(s)
		}
	}
	run := &BuildRun{Visitors: w.Visitors, Events: w.Events}
	// Fill the pristine log once; each affinity round works on a copy (the
	// builder trims what it consumed), the peer reads it in place.
	pristine := filepath.Join(o.Dir, "build-log")
	if err := os.RemoveAll(pristine); err != nil { // a log of an earlier run
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
	st, err := workload.Fill(context.Background(), l, w, 2, 256, func(n int64) {
		progress(fmt.Sprintf("build %d visitors: filling the log: %d of %d events", w.Visitors, n, w.Events))
	})
	if cerr := l.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	run.FillSeconds = time.Since(start).Seconds()
	run.Records = st.Batches

	aff := &BuildSystem{Name: "affinity", Desc: "affinity profile builder (profile/builder) on the embedded log, state in Badger, within --memory " + budget.Format(o.Memory)}
	peer := &BuildSystem{Name: "redis", Desc: "Redis peer: pipelined ZINCRBY of w*2^((t-L)/H) per visitor and dimension, HINCRBY counts; no dedup, no persistence"}
	run.Systems = []*BuildSystem{aff, peer}
	for round := 1; round <= o.Rounds; round++ {
		// affinity, on a fresh copy of the log and an empty state.
		work := filepath.Join(o.Dir, "work-log")
		stateDir := filepath.Join(o.Dir, "state")
		for _, d := range []string{work, stateDir} {
			if err := os.RemoveAll(d); err != nil {
				return run, err
			}
		}
		if out, err := exec.Command("cp", "-r", pristine, work).CombinedOutput(); err != nil {
			return run, fmt.Errorf("cannot copy the log %s: %w: %s", pristine, err, out)
		}
		res, u, err := runBuildRole(roleBuildAffinity, o, aff, cg, round, runStart, &run.Timeline, progress,
			envDir+"="+work, envState+"="+stateDir, envMemory+"="+strconv.FormatInt(o.Memory, 10))
		if err != nil {
			return run, err
		}
		aff.add(res, u.CPUSeconds, 0, u.MaxRSSKB, 0)
		aff.EndRSSAnonMB, aff.EndRSSFileMB = float64(u.RSSAnonKB)/1024, float64(u.RSSFileKB)/1024

		// the peer, on an empty Redis.
		if err := redis.do("FLUSHALL"); err != nil {
			return run, err
		}
		r0 := redis.usage()
		res, u, err = runBuildRole(roleBuildRedis, o, peer, nil, round, runStart, &run.Timeline, progress,
			envDir+"="+pristine, envRedis+"="+redis.addr)
		if err != nil {
			return run, err
		}
		r1 := redis.usage()
		peer.add(res, u.CPUSeconds, r1.CPUSeconds-r0.CPUSeconds, u.MaxRSSKB, r1.MaxRSSKB)
		peer.EndRSSAnonMB, peer.EndRSSFileMB = float64(u.RSSAnonKB)/1024, float64(u.RSSFileKB)/1024
	}
	progress("")
	for _, s := range run.Systems {
		s.finish()
	}
	if peer.EPS > 0 {
		r := newRatio("affinity builder / Redis peer, events/s", targetBuildRatio, aff.RoundEPS, peer.RoundEPS, aff.EPS, peer.EPS)
		run.Ratio = &r
	}
	run.PeakRSSToBudget = aff.PeakRSSMB * (1 << 20) / float64(o.Memory)
	run.PeakAnonToBudget = aff.PeakRSSAnonMB * (1 << 20) / float64(o.Memory)
	return run, nil
}

// finish computes the figures of s from what its rounds added.
func (s *BuildSystem) finish() {
	if s.Seconds > 0 {
		s.EPS = float64(s.Events) / s.Seconds
	}
	if s.Events > 0 {
		s.CPUPerMEvents = s.cpu / float64(s.Events) * 1e6
		s.ServerCPUPerMEvents = s.serverCPU / float64(s.Events) * 1e6
		s.WritesPerEvent = float64(s.writes) / float64(s.Events)
		s.IndexWritesPerEvent = float64(s.indexWrites) / float64(s.Events)
	}
	if len(s.windows) > 0 {
		w := slices.Sorted(slices.Values(s.windows))
		s.SlowestWindowEPS, s.MedianWindowEPS = w[0], median(w)
		if s.MedianWindowEPS > 0 {
			s.SlowestToMedian = s.SlowestWindowEPS / s.MedianWindowEPS
		}
	}
}

// median returns the median of sorted xs.
func median(xs []float64) float64 {
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

func (s *BuildSystem) add(r buildResult, cpu, serverCPU float64, rssKB, serverRSSKB int64) {
	s.Events += r.Events
	s.Seconds += r.Seconds
	if r.Seconds > 0 {
		s.RoundEPS = append(s.RoundEPS, float64(r.Events)/r.Seconds)
	}
	s.cpu += cpu
	s.serverCPU += serverCPU
	s.writes += r.Writes
	s.indexWrites += r.IndexWrites
	s.PeakRSSMB = max(s.PeakRSSMB, float64(rssKB)/1024)
	s.ServerRSSMB = max(s.ServerRSSMB, float64(serverRSSKB)/1024)
}

// runBuildRole starts a build role, runs it to the end of the log and
// returns its result and its process's usage.
// The timeline's samples but the last (the tail as the partitions finish)
// are sys's windows.
func runBuildRole(role string, o BuildOptions, sys *BuildSystem, cg *memoryCgroup, round int, runStart time.Time, timeline *[]Sample,
	progress func(string), env ...string) (buildResult, Usage, error) {
	var res buildResult
	p, err := startProc(role, o.Dir, append(env, "AFFINITY_BENCH_SAMPLE="+o.Sample.String())...)
	if err != nil {
		return res, Usage{}, err
	}
	defer p.stop()
	pid := strconv.Itoa(p.cmd.Process.Pid)
	if cg != nil {
		// Before "run": what it held until now (the opened state) is
		// charged where it was, a few MB.
		if err := cg.add(p.cmd.Process.Pid); err != nil {
			return res, Usage{}, err
		}
	}
	sampleRSS := func() {
		sys.PeakRSSAnonMB = max(sys.PeakRSSAnonMB, float64(procStatusKB(pid, "RssAnon:"))/1024)
		sys.PeakRSSFileMB = max(sys.PeakRSSFileMB, float64(procStatusKB(pid, "RssFile:"))/1024)
	}
	name := strings.TrimPrefix(role, "build-")
	lastN, lastT := int64(0), time.Now()
	var windows []float64
	err = p.run("run", &res, func(n int64) {
		sampleRSS()
		now := time.Now()
		dt := now.Sub(lastT).Seconds()
		if dt < o.Sample.Seconds()/2 {
			return // the final report right after a tick: a sliver, not a sample
		}
		s := Sample{T: now.Sub(runStart).Seconds(), System: name, Round: round, EPS: float64(n-lastN) / dt}
		*timeline = append(*timeline, s)
		windows = append(windows, s.EPS)
		lastN, lastT = n, now
		progress(fmt.Sprintf("build round %d/%d %-9s %9d events applied, %9.0f events/s", round, o.Rounds, name, n, s.EPS))
	})
	if cg != nil {
		cu := cg.usage()
		sys.CgroupLimitMB = float64(o.Memory) / (1 << 20) * targetRSSToBudget
		sys.CgroupPeakMB = max(sys.CgroupPeakMB, float64(cu.PeakBytes)/(1<<20))
		if cu.OOMKills > 0 {
			return res, Usage{}, fmt.Errorf("the kernel killed the affinity builder (%d OOM kills): its memory cgroup's limit, the budget %s + 15%%, was reached (%v)", cu.OOMKills, budget.Format(o.Memory), err)
		}
	}
	if err != nil {
		return res, Usage{}, err
	}
	sampleRSS()
	if len(windows) > 1 {
		sys.windows = append(sys.windows, windows[:len(windows)-1]...)
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

// openBuildLog opens the embedded log a build role reads, sized by split
// when it is set.
func openBuildLog(split *budget.Split) (*storage.EmbeddedLog, error) {
	dir := os.Getenv(envDir)
	if dir == "" {
		return nil, fmt.Errorf("cannot open the build log: %s is empty", envDir)
	}
	o := storage.DefaultEmbeddedOptions(dir)
	o.Partitions = benchPartitions
	o.MaxBytes = benchLogMaxBytes
	o.Logger = log.Printf
	if split != nil {
		split.ApplyLog(&o)
	}
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
// until it returns (and tracing the dips of count, EnvTraceDips).
func runWithProgress(emit func(string), count func() int64, work func() error) error {
	dips := newDipTracer()
	defer dips.stop()
	done := make(chan error, 1)
	go func() { done <- work() }()
	t := time.NewTicker(sampleEnv())
	defer t.Stop()
	for {
		select {
		case err := <-done:
			emit("progress " + strconv.FormatInt(count(), 10))
			return err
		case now := <-t.C:
			n := count()
			emit("progress " + strconv.FormatInt(n, 10))
			dips.observe(now, n)
		}
	}
}

// startBuildAffinity is the affinity side of the build scenario: the
// profile builder applying the whole log to an empty state.
func startBuildAffinity() (*roleSystem, error) {
	split, err := roleMemory()
	if err != nil {
		return nil, err
	}
	l, err := openBuildLog(split)
	if err != nil {
		return nil, err
	}
	so := state.DefaultOptions(os.Getenv(envState))
	split.ApplyState(&so)
	so.Logger = log.Printf
	db, err := state.Open(so)
	if err != nil {
		l.Close()
		return nil, err
	}
	bo := builder.DefaultOptions()
	bo.Log, bo.State, bo.Logger = l, db, log.Printf
	bo.Metrics = metrics.NewSet()
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
			return buildResult{Events: int64(b.Status().EventsApplied), Seconds: time.Since(start).Seconds(),
				Writes:      int64(bo.Metrics.GetOrCreateCounter("affinity_builder_state_writes_total").Get()),
				IndexWrites: int64(bo.Metrics.GetOrCreateCounter("affinity_builder_index_writes_total").Get()),
			}, err
		},
		close: func() error { return errors.Join(b.Close(), db.Close(), l.Close()) },
	}, nil
}

// startBuildRedis is the peer side: the same log applied to Redis.
func startBuildRedis() (*roleSystem, error) {
	l, err := openBuildLog(nil)
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

// PrintBuild writes the build figures: a table per run, then the targets
// of issue #10 each run is held to, then the flat-cost ratio.
func PrintBuild(w io.Writer, r *BuildReport) {
	if r.Pending != "" {
		fmt.Fprintf(w, "build: pending: %s\n", r.Pending)
		return
	}
	verdict := func(ok bool) string { return map[bool]string{true: "met", false: "MISSED"}[ok] }
	for _, run := range r.Runs {
		fmt.Fprintf(w, "build: %d events of %d visitors in %d log records (filled in %.1fs), %d rounds per system, interleaved; %s\n\n",
			run.Events, run.Visitors, run.Records, run.FillSeconds, r.Rounds, r.Processes)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "system\tevents/s\tslowest %[1]s\tmedian %[1]s\tslowest/median\tCPU-s/M ev\tserver CPU-s/M\tbudget MB\tpeak RSS MB\tend RSS anon/file MB\tserver RSS MB\t\n", r.Window)
		for _, s := range run.Systems {
			budgetMB := "-"
			if s.Name == "affinity" {
				budgetMB = fmt.Sprintf("%.0f", r.MemoryMB)
			}
			slowest, med, share := "-", "-", "-" // a run shorter than two windows
			if s.MedianWindowEPS > 0 {
				slowest, med, share = fmt.Sprintf("%.0f", s.SlowestWindowEPS), fmt.Sprintf("%.0f", s.MedianWindowEPS), fmt.Sprintf("%.2f", s.SlowestToMedian)
			}
			fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%.1f\t%.1f\t%s\t%.0f\t%.0f / %.0f\t%.0f\t\n", s.Name, s.EPS,
				slowest, med, share, s.CPUPerMEvents, s.ServerCPUPerMEvents,
				budgetMB, s.PeakRSSMB, s.EndRSSAnonMB, s.EndRSSFileMB, s.ServerRSSMB)
		}
		tw.Flush()
		fmt.Fprintln(w)
		for _, s := range run.Systems {
			fmt.Fprintf(w, "  %-10s %s\n", s.Name, s.Desc)
		}
		fmt.Fprintln(w)
		if x := run.Ratio; x != nil {
			fmt.Fprintf(w, "  ratio %s (median of rounds) %.2f  (rounds %.2f-%.2f, totals %.2f)  target >= %.2f: %s\n",
				x.Name, x.Value, x.Min, x.Max, x.Total, x.Target, verdict(x.Value >= x.Target))
		}
		if len(run.Systems) > 0 {
			a := run.Systems[0]
			fmt.Fprintf(w, "  affinity builder events/s %.0f  target >= %d: %s\n", a.EPS, targetBuildEPS, verdict(a.EPS >= targetBuildEPS))
			if a.MedianWindowEPS > 0 {
				fmt.Fprintf(w, "  affinity slowest %s window / median %.2f (%.0f of %.0f events/s)  target >= %.2f: %s\n", r.Window,
					a.SlowestToMedian, a.SlowestWindowEPS, a.MedianWindowEPS, targetSlowestToMedian, verdict(a.SlowestToMedian >= targetSlowestToMedian))
			} else {
				fmt.Fprintf(w, "  affinity slowest %s window: not measured, the run was shorter than two windows\n", r.Window)
			}
			fmt.Fprintf(w, "  affinity peak anonymous RSS / memory budget %.2f (%.0f of %.0f MB, sampled every %s)  target <= %.2f: %s\n",
				run.PeakAnonToBudget, a.PeakRSSAnonMB, r.MemoryMB, r.Window, targetRSSToBudget, verdict(run.PeakAnonToBudget > 0 && run.PeakAnonToBudget <= targetRSSToBudget))
			where := r.Cgroup
			if a.CgroupLimitMB > 0 {
				where = fmt.Sprintf("in a memory cgroup of %.0f MB: peak charge %.0f MB, no OOM kill", a.CgroupLimitMB, a.CgroupPeakMB)
			}
			fmt.Fprintf(w, "  affinity peak RSS / memory budget %.2f with file-backed pages (%.0f MB; file-backed peak %.0f MB, the mmapped tables the kernel reclaims under a limit); %s\n",
				run.PeakRSSToBudget, a.PeakRSSMB, a.PeakRSSFileMB, where)
			fmt.Fprintf(w, "  affinity Badger writes per event %.2f; interest index changes per event %.2f (in memory)\n", a.WritesPerEvent, a.IndexWritesPerEvent)
		}
		fmt.Fprintln(w)
	}
	if f := r.FlatCost; f != nil {
		fmt.Fprintf(w, "flat cost: affinity CPU-s per million events %.1f at %d visitors, %.1f at %d: ratio %.2f  target <= %.2f: %s\n",
			f.SmallCPUPerMEvents, f.SmallVisitors, f.CPUPerMEvents, f.Visitors, f.Ratio, targetFlatCost, verdict(f.Ratio <= targetFlatCost))
	}
}

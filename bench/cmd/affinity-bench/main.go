// Command affinity-bench runs affinity's benchmarks against peers measured in
// the same run (see package bench): prints the figures as tables, writes
// them as JSON to --out and charts them as SVG beside it.
//
//	go run ./bench/cmd/affinity-bench                 # every scenario, ~5 min
//	go run ./bench/cmd/affinity-bench --quick         # smoke run, < 1 min
//	go run ./bench/cmd/affinity-bench --scenario ingest --rounds 5 --phase 10s
//	go run ./bench/cmd/affinity-bench --scenario soak  # 10 min, not in the default set
//	go run ./bench/cmd/affinity-bench --scenario campaign  # 1M recipients, ~3 min, not in the default set
//	go run ./bench/cmd/affinity-bench --scenario cluster   # 1 vs 2 build nodes, a move; ~10 min, not in the default set
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/affinityhq/affinity/bench"
	"github.com/affinityhq/affinity/internal/budget"
)

func main() {
	bench.RunRole() // a re-executed system under test never returns from here
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "affinity-bench: %s\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("affinity-bench", flag.ContinueOnError)
	quick := fs.Bool("quick", false, "smoke run: every scenario in under a minute (figures are not meaningful)")
	scenarios := fs.String("scenario", "ingest,build,e2e,query", "scenarios to run, comma-separated: ingest, build, e2e, query, import, soak (10 min), campaign (1M recipients, minutes), cluster (build nodes in a group, a move; minutes); the last three not in the default set, campaign in --quick's")
	out := fs.String("out", "bench-report.json", "JSON report path; the SVG charts go beside it (<name>-ingest.svg, -build.svg, -e2e.svg, -query.svg)")
	dir := fs.String("dir", "", "scratch directory for logs and state (default: a temporary one, removed after)")
	seed := fs.Uint64("seed", 1, "workload seed: the same seed gives the same traffic")
	cpuprofile := fs.String("cpuprofile", "", "directory where every system-under-test process writes <role>.pprof (go tool pprof -top)")
	traceDips := fs.String("trace-dips", "", "directory where a build process writes a Go execution trace of the seconds around each of its first 3 dips below 0.3 of its median 1-s rate, <role>-dip-<n>.trace (go tool trace)")

	in := bench.DefaultIngestOptions()
	systems := fs.String("systems", strings.Join(in.Systems, ","), "ingest systems, in round order: "+strings.Join(bench.AllIngestSystems, ","))
	conc := fs.Int("concurrency", in.Concurrency, "ingest: closed-loop workers, one keep-alive connection each")
	rounds := fs.Int("rounds", in.Rounds, "ingest: rounds; each system gets one phase per round")
	phase := fs.Duration("phase", in.Phase, "ingest: measured duration of one system's phase")
	warmup := fs.Duration("warmup", in.Warmup, "ingest: unmeasured warmup per system before the first round")
	visitors := fs.Int("visitors", in.Workload.Visitors, "ingest: distinct visitors of the traffic")

	bo := bench.DefaultBuildOptions()
	bVisitors := fs.Int("build-visitors", bo.Workload.Visitors, "build: distinct visitors in the pre-filled log")
	bEvents := fs.Int64("build-events", bo.Workload.Events, "build: events in the pre-filled log")
	bSmall := fs.Int("build-small-visitors", bo.SmallVisitors, "build: visitors of the run before the main one, events scaled alike, for the flat-cost ratio; 0: none")
	bRounds := fs.Int("build-rounds", bo.Rounds, "build: rounds; each system applies the whole log of each run once per round")
	fs.BoolVar(&bo.Cgroup, "build-cgroup", bo.Cgroup, "build: run the affinity builder in a memory cgroup of --memory + 15%, as a container's limit (needs root and a cgroup memory controller; the report says when it could not)")
	memory := budget.Bytes(bo.Memory)
	fs.Var(&memory, "memory", "build, query, campaign: memory budget of the affinity node (affinity --memory), e.g. 512MiB, 4GiB")
	sMemory := budget.Bytes(bench.DefaultSoakOptions().Memory)
	fs.Var(&sMemory, "soak-memory", "soak: memory budget of the node (affinity --memory); peak RSS must stay within it + 15%")
	redis := fs.String("redis-server", bo.RedisServer, "build: the redis-server binary of the Redis peer")

	eo := bench.DefaultE2EOptions()
	eLoad := fs.Float64("e2e-load", eo.Load, "e2e: offered load as a fraction of the maximum found first")
	ePhase := fs.Duration("e2e-phase", eo.Phase, "e2e: duration of the open-loop phase")

	io := bench.DefaultImportOptions()
	fs.IntVar(&io.Orders, "import-orders", io.Orders, "import: orders of the upload (4 a person)")
	fs.StringVar(&io.Format, "import-format", io.Format, "import: syntax of the upload, ndjson or csv")

	qo := bench.DefaultQueryOptions()
	qVisitors := fs.Int("query-visitors", qo.Visitors, "query: visitors pre-filled in the node, each a member of the exported segment")
	qMembers := fs.Int("query-members", 0, "query: members of the exported segment; pre-fills max(this, --query-visitors) visitors")
	qRate := fs.Float64("query-lookup-rate", qo.LookupRate, "query: visitor lookups/s offered (open loop) idle and under ingest")
	qConns := fs.Int("query-lookup-conns", qo.LookupConns, "query: keep-alive connections of the lookup client")
	qPhase := fs.Duration("query-phase", qo.Phase, "query: duration of each measured lookup phase")
	qLoad := fs.Float64("query-load", qo.Load, "query: ingest offered beside the lookups, as a fraction of its maximum found first")
	co := bench.DefaultCampaignOptions()
	cRecipients := fs.Int("campaign-recipients", co.Recipients, "campaign: recipients of the campaign frozen, half a segment of imported buyers, half a list")
	cRate := fs.Float64("campaign-report-rate", co.ReportRate, "campaign: report reads/s offered (open loop) idle and under ingest")
	clo := bench.DefaultClusterOptions()
	clVisitors := fs.Int("cluster-visitors", clo.Workload.Visitors, "cluster: visitors in the pre-written topic of 8 partitions (the default: 100k a partition)")
	clEvents := fs.Int64("cluster-events", 0, "cluster: events in the topic; 0: 5 per visitor")
	clSession := fs.Duration("cluster-session-timeout", clo.SessionTimeout, "cluster: the nodes' --group-session-timeout (and --group-rebalance-timeout): bounds how long a killed node's partitions wait")
	so := bench.DefaultSoakOptions()
	sDuration := fs.Duration("soak-duration", so.Duration, "soak: duration at the offered load (the first --soak-warmup not compared)")
	sWarmup := fs.Duration("soak-warmup", so.Warmup, "soak: start of the soak not compared for flatness (memtables and caches fill)")
	sLoad := fs.Float64("soak-load", so.Load, "soak: offered ingest as a fraction of the maximum found first")
	sBinary := fs.String("soak-binary", "", "soak, cluster: the affinity binary to run; empty: go build it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuprofile != "" {
		if err := os.MkdirAll(*cpuprofile, 0o755); err != nil {
			return err
		}
		os.Setenv(bench.EnvCPUProfile, *cpuprofile) // inherited by the role processes
	}
	if *traceDips != "" {
		if err := os.MkdirAll(*traceDips, 0o755); err != nil {
			return err
		}
		os.Setenv(bench.EnvTraceDips, *traceDips)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	if *quick {
		in = bench.QuickIngestOptions()
		bo = bench.QuickBuildOptions()
		eo = bench.QuickE2EOptions()
		qo = bench.QuickQueryOptions()
		so = bench.QuickSoakOptions()
		co = bench.QuickCampaignOptions()
		clo = bench.QuickClusterOptions()
		if !set["scenario"] {
			*scenarios += ",campaign"
		}
	}
	override := func(name string, apply func()) {
		if set[name] || !*quick {
			apply()
		}
	}
	override("systems", func() { in.Systems = strings.Split(*systems, ",") })
	override("concurrency", func() { in.Concurrency = *conc })
	override("rounds", func() { in.Rounds = *rounds })
	override("phase", func() { in.Phase = *phase })
	override("warmup", func() { in.Warmup = *warmup })
	override("visitors", func() { in.Workload.Visitors = *visitors })
	override("build-visitors", func() { bo.Workload.Visitors = *bVisitors })
	override("build-events", func() { bo.Workload.Events = *bEvents })
	override("build-small-visitors", func() { bo.SmallVisitors = *bSmall })
	override("build-rounds", func() { bo.Rounds = *bRounds })
	bo.Memory, qo.Memory, so.Memory = int64(memory), int64(memory), int64(sMemory)
	override("e2e-load", func() { eo.Load = *eLoad })
	override("e2e-phase", func() { eo.Phase = *ePhase })
	override("query-visitors", func() { qo.Visitors = *qVisitors })
	override("query-members", func() { qo.Visitors = max(qo.Visitors, *qMembers) })
	override("query-lookup-rate", func() { qo.LookupRate = *qRate })
	override("query-lookup-conns", func() { qo.LookupConns = *qConns })
	override("query-phase", func() { qo.Phase = *qPhase })
	override("query-load", func() { qo.Load = *qLoad })
	override("campaign-recipients", func() { co.Recipients = *cRecipients })
	override("campaign-report-rate", func() { co.ReportRate = *cRate })
	co.Memory = int64(memory)
	override("soak-duration", func() { so.Duration = *sDuration })
	override("soak-warmup", func() { so.Warmup = *sWarmup })
	override("soak-load", func() { so.Load = *sLoad })
	so.Binary = *sBinary
	override("cluster-visitors", func() { clo.Workload.Visitors = *clVisitors; clo.Workload.Events = 5 * int64(*clVisitors) })
	override("cluster-events", func() {
		if *clEvents > 0 {
			clo.Workload.Events = *clEvents
		}
	})
	override("cluster-session-timeout", func() { clo.SessionTimeout, clo.RebalanceTimeout = *clSession, *clSession })
	clo.Memory, clo.Binary, clo.Dir, clo.Workload.Seed = int64(memory), *sBinary, *dir, *seed
	clo.Kafka = os.Getenv("AFFINITY_KAFKA")
	bo.RedisServer = *redis
	in.Workload.Seed, bo.Workload.Seed = *seed, *seed
	in.Dir, bo.Dir, io.Dir = *dir, *dir, *dir
	progress := newProgress(os.Stderr)
	in.Progress, bo.Progress, io.Progress, clo.Progress = progress, progress, progress, progress
	// e2e drives the collector as ingest does, at ingest's concurrency.
	eo.Ingest.Concurrency, eo.Ingest.Workload, eo.Ingest.Dir, eo.Ingest.Progress = in.Concurrency, in.Workload, in.Dir, progress
	qo.Ingest.Concurrency, qo.Ingest.Workload, qo.Ingest.Dir, qo.Ingest.Progress = in.Concurrency, in.Workload, in.Dir, progress
	co.Ingest.Concurrency, co.Ingest.Workload, co.Ingest.Dir, co.Ingest.Progress = in.Concurrency, in.Workload, in.Dir, progress
	so.Ingest.Concurrency, so.Ingest.Workload.Seed, so.Ingest.Dir, so.Ingest.Progress = in.Concurrency, *seed, in.Dir, progress

	rep := &bench.Report{Started: time.Now().UTC(), Command: "affinity-bench " + strings.Join(args, " "), Machine: bench.ThisMachine()}
	base := strings.TrimSuffix(*out, ".json")
	fmt.Printf("affinity-bench: %d CPUs (%s), GOMAXPROCS %d, %s, load average %s at start\n\n",
		rep.Machine.CPUs, rep.Machine.CPUModel, rep.Machine.GOMAXPROCS, rep.Machine.Go, rep.Machine.LoadAvg)
	var failed []string
	for _, sc := range strings.Split(*scenarios, ",") {
		switch strings.TrimSpace(sc) {
		case "ingest":
			r, err := bench.RunIngest(in)
			if r != nil {
				rep.Ingest = r
				bench.PrintIngest(os.Stdout, r)
				names := make([]string, len(r.Systems))
				for i, s := range r.Systems {
					names[i] = s.Name
				}
				if err := bench.WriteSVG(base+"-ingest.svg", "affinity ingest: events/s and latency per system, interleaved rounds", r.Timeline, names); err != nil {
					return err
				}
			}
			if err != nil {
				failed = append(failed, "ingest: "+err.Error())
			}
		case "build":
			r, err := bench.RunBuild(bo)
			if r != nil {
				rep.Build = r
				bench.PrintBuild(os.Stdout, r)
				var timeline []bench.Sample
				for _, run := range r.Runs {
					timeline = append(timeline, run.Timeline...)
				}
				if len(timeline) > 0 {
					if err := bench.WriteSVG(base+"-build.svg", "affinity build: events/s applied, affinity vs Redis peer, each run in turn", timeline, []string{"affinity", "redis"}); err != nil {
						return err
					}
				}
			}
			if err != nil {
				failed = append(failed, "build: "+err.Error())
			}
		case "e2e":
			r, err := bench.RunE2E(eo)
			if r != nil {
				rep.E2E = r
				bench.PrintE2E(os.Stdout, r)
				if err := bench.WriteSVG(base+"-e2e.svg", "affinity e2e: HTTP -> log -> profiles, maximum then open loop", r.Timeline, []string{"e2e-max", "e2e"}); err != nil {
					return err
				}
			}
			if err != nil {
				failed = append(failed, "e2e: "+err.Error())
			}
		case "query":
			r, err := bench.RunQuery(qo)
			if r != nil {
				rep.Query = r
				bench.PrintQuery(os.Stdout, r)
				if len(r.Timeline) > 0 {
					if err := bench.WriteSVGUnit(base+"-query.svg", "affinity query: GET /v1/visitors, maximum, idle, then under ingest at half its maximum; each beside a no-op server's",
						"lookups/s", r.Timeline, []string{"lookup-max", "lookup-idle", "lookup-noop", "lookup-ingest", "lookup-noop-ingest"}); err != nil {
						return err
					}
				}
			}
			if err != nil {
				failed = append(failed, "query: "+err.Error())
			}
		case "import":
			r, err := bench.RunImport(io)
			if r != nil {
				rep.Import = r
				bench.PrintImport(os.Stdout, r)
			}
			if err != nil {
				failed = append(failed, "import: "+err.Error())
			}
		case "campaign":
			r, err := bench.RunCampaign(co)
			if r != nil {
				rep.Campaign = r
				bench.PrintCampaign(os.Stdout, r)
			}
			if err != nil {
				failed = append(failed, "campaign: "+err.Error())
			}
		case "soak":
			r, err := bench.RunSoak(so)
			if r != nil {
				rep.Soak = r
				bench.PrintSoak(os.Stdout, r)
			}
			if err != nil {
				failed = append(failed, "soak: "+err.Error())
			}
		case "cluster":
			r, err := bench.RunCluster(clo)
			if r != nil {
				rep.Cluster = r
				bench.PrintCluster(os.Stdout, r)
				if len(r.Timeline) > 0 {
					if err := bench.WriteSVG(base+"-cluster.svg", "affinity cluster: events/s applied by the build nodes: 1 node, 2 nodes, a SIGKILL's survivor, a node joining with no state",
						r.Timeline, []string{"1-node", "2-nodes", "survivor-takeover", "joiner-rebuild"}); err != nil {
						return err
					}
				}
			}
			if err != nil {
				failed = append(failed, "cluster: "+err.Error())
			}
		case "":
		default:
			return fmt.Errorf("unknown scenario %q (--scenario): want ingest, build, e2e, query, import, soak, campaign or cluster", sc)
		}
		fmt.Println()
	}
	if err := rep.WriteJSON(*out); err != nil {
		return err
	}
	fmt.Printf("report: %s, charts: %s-*.svg\n", *out, base)
	if len(failed) > 0 {
		return fmt.Errorf("%s", strings.Join(failed, "; "))
	}
	return nil
}

// newProgress returns the live status line: rewritten in place on a
// terminal, a line every few seconds otherwise.
func newProgress(f *os.File) func(string) {
	st, err := f.Stat()
	tty := err == nil && st.Mode()&os.ModeCharDevice != 0
	var last time.Time
	return func(line string) {
		if tty {
			if line == "" {
				fmt.Fprint(f, "\r\033[K")
				return
			}
			fmt.Fprintf(f, "\r\033[K%s", line)
			return
		}
		if line != "" && time.Since(last) >= 3*time.Second {
			last = time.Now()
			fmt.Fprintln(f, line)
		}
	}
}

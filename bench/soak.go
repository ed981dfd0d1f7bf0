package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// SoakOptions configure the soak scenario: the real `affinity serve`
// binary under ingest at Load times its maximum, visitor lookups, and every
// Every a segment change and an export of it, for Duration; its resident
// memory, open files and goroutines at the start and at the end must be
// flat, and nothing may fail.
type SoakOptions struct {
	// Ingest gives the load generator's settings (Concurrency, Workload
	// seed, Sample, Dir); its Workload.Visitors is set to Visitors, so that
	// the lookups find the visitors ingest made.
	Ingest IngestOptions
	// Binary is the affinity binary; "": built with `go build` into Dir.
	Binary string
	// Duration is the soak after the maximum is found; Warmup, its first
	// part, is not compared (memtables and caches fill); the start figures
	// are the highest over Window after Warmup, the end ones the highest
	// over the last Window. Stats is how often they are read.
	Duration, Warmup, Window, Stats time.Duration
	// MaxPhase is the closed-loop phase that finds the maximum request
	// rate the node sustains: its requests over the phase plus the time
	// the builder then takes to catch up (a burst the collector takes
	// faster than the builder applies is not a rate the node holds for
	// ten minutes). Load is the fraction of it offered, open loop, for
	// Duration.
	MaxPhase time.Duration
	Load     float64
	// Memory is the node's --memory budget; its peak anonymous RSS must
	// stay within it plus 15%. A soak at a budget the caches fill within the warmup
	// judges flatness, not caches still growing toward a larger bound.
	Memory int64
	// Visitors is the visitor population of the traffic.
	Visitors int
	// LookupConns connections offer LookupRate lookups/s of random
	// visitors of the population (404 until ingest has seen one).
	LookupConns int
	LookupRate  float64
	// Every is the period of the segment change and the export.
	Every time.Duration
	// The flatness tolerances: end over start at most RSSGrowth (a
	// fraction) of the anonymous memory (the highest of each window),
	// FDGrowth open files and GoroutineGrowth goroutines (the median of
	// each window: requests in flight come and go in spikes; a leak moves
	// the median), each or that fraction of the start figure, whichever is
	// more.
	RSSGrowth       float64
	FDGrowth        int
	GoroutineGrowth int
}

// DefaultSoakOptions returns the full soak: 10 minutes at half load, 200k
// visitors, lookups at 200/s, a segment change and an export every minute.
func DefaultSoakOptions() SoakOptions {
	in := DefaultIngestOptions()
	in.Sample = 5 * time.Second
	return SoakOptions{
		Ingest:          in,
		Duration:        10 * time.Minute,
		Warmup:          2 * time.Minute,
		Window:          time.Minute,
		Stats:           5 * time.Second,
		MaxPhase:        20 * time.Second,
		Load:            0.5,
		Memory:          2 << 30,
		Visitors:        200_000,
		LookupConns:     2,
		LookupRate:      200,
		Every:           time.Minute,
		RSSGrowth:       0.25,
		FDGrowth:        32,
		GoroutineGrowth: 32,
	}
}

// QuickSoakOptions returns a smoke soak of about 20 s.
func QuickSoakOptions() SoakOptions {
	o := DefaultSoakOptions()
	o.Ingest = QuickIngestOptions()
	o.Ingest.Sample = time.Second
	o.Duration, o.Warmup, o.Window, o.Stats = 16*time.Second, 4*time.Second, 3*time.Second, 500*time.Millisecond
	o.MaxPhase = 2 * time.Second
	o.Visitors = 10_000
	o.LookupRate = 100
	o.Every = 4 * time.Second
	// Seconds of a fresh node are not a steady state (its memtables and
	// caches are filling): the bounds catch a leak of a connection or a
	// goroutine per request, not memory drift, which only the full soak
	// can judge.
	o.RSSGrowth = 10
	return o
}

// NodeStats are the node process's figures at one instant.
type NodeStats struct {
	T          float64 `json:"t_s"`
	RSSMB      float64 `json:"rss_mb"`
	AnonMB     float64 `json:"rss_anon_mb"`
	FileMB     float64 `json:"rss_file_mb"`
	OpenFiles  int     `json:"open_files"`
	Goroutines int     `json:"goroutines"`
}

// SoakReport is the outcome of the soak scenario.
type SoakReport struct {
	Seconds     float64 `json:"seconds"`
	Visitors    int     `json:"visitors"`
	MaxRPS      float64 `json:"max_requests_per_s"`
	OfferedRPS  float64 `json:"offered_requests_per_s"`
	RPS         float64 `json:"requests_per_s"`
	EPS         float64 `json:"events_per_s"`
	IngestP99ms float64 `json:"request_p99_ms"`
	Requests    int64   `json:"requests"`
	// Lookups: 200 with the profile, 404 (not seen yet), p99.
	Lookups      int64   `json:"lookups"`
	LookupsFound int64   `json:"lookups_found"`
	Lookups404   int64   `json:"lookups_not_found"`
	LookupP99ms  float64 `json:"lookup_p99_ms"`
	// Segment changes and exports made, and the rows exported.
	Changes    int   `json:"segment_changes"`
	Exports    int   `json:"exports"`
	ExportRows int64 `json:"export_rows"`

	StartMax NodeStats `json:"start"` // highest over Window after Warmup
	EndMax   NodeStats `json:"end"`   // highest over the last Window
	// StartMedian, EndMedian: the medians over the same windows.
	StartMedian NodeStats `json:"start_median"`
	EndMedian   NodeStats `json:"end_median"`
	PeakRSSMB   float64   `json:"peak_rss_mb"`
	PeakAnonMB  float64   `json:"peak_rss_anon_mb"`
	MemoryMB    float64   `json:"memory_mb"` // the node's --memory
	// BurstRPS is the closed-loop phase's rate; MaxRPS divides its
	// requests by the phase plus the builder's catch-up after it.
	BurstRPS    float64     `json:"burst_requests_per_s"`
	CatchUpSecs float64     `json:"catch_up_s"`
	Series      []NodeStats `json:"series"`
	Flat        bool        `json:"flat"`
	Tolerance   string      `json:"tolerance"`
	// Errors lists every failure: non-202 ingest, lookups other than 200
	// and 404, failed changes and exports, node log errors, the node's
	// exit. Empty in a good run.
	Errors   []string `json:"errors"`
	Timeline []Sample `json:"timeline"`
}

// RunSoak runs the soak scenario.
func RunSoak(o SoakOptions) (*SoakReport, error) {
	in := o.Ingest
	if o.Duration <= 0 || o.Warmup < 0 || o.Window <= 0 || o.Warmup+2*o.Window > o.Duration || o.Stats <= 0 ||
		o.MaxPhase <= 0 || o.Load <= 0 || o.Visitors <= 0 || o.LookupConns <= 0 || o.LookupRate <= 0 || o.Every <= 0 || in.Concurrency <= 0 {
		return nil, fmt.Errorf("cannot run soak: want positive durations with warmup %s + 2 windows of %s within %s, and positive load, visitors, lookups and concurrency",
			o.Warmup, o.Window, o.Duration)
	}
	if in.Workload.Seed == 0 {
		return nil, errors.New("cannot run soak: workload seed 0 (--seed): want another")
	}
	done, err := in.scratchDir("soak")
	if err != nil {
		return nil, err
	}
	defer done()
	progress := in.progressFunc()
	in.Workload.Visitors, in.Workload.VisitorSeed = o.Visitors, in.Workload.Seed
	bin, err := affinityBinary(o.Binary, in.Dir, progress)
	if err != nil {
		return nil, fmt.Errorf("soak: %w", err)
	}
	data := filepath.Join(in.Dir, "soak-data")
	if err := os.RemoveAll(data); err != nil {
		return nil, err
	}
	n, err := startNode(bin, filepath.Join(in.Dir, "soak-node.log"), "serve", "--data", data, "--site", benchSite,
		"--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--memory", strconv.FormatInt(o.Memory, 10))
	if err != nil {
		return nil, err
	}
	defer n.kill()
	rep := &SoakReport{Visitors: o.Visitors, Tolerance: fmt.Sprintf("end over start: anonymous RSS (highest) +%.0f%%, open files +%d, goroutines +%d (medians; or that share of start)",
		o.RSSGrowth*100, o.FDGrowth, o.GoroutineGrowth)}
	fail := func(format string, args ...any) { rep.Errors = append(rep.Errors, fmt.Sprintf(format, args...)) }

	// 1. The maximum, closed loop; then the soak at Load of it.
	runStart := time.Now()
	ic := &fasthttp.HostClient{Addr: n.collector, MaxConns: in.Concurrency, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	quiet := in
	quiet.Progress = nil
	im, err := findIngestMax(&quiet, ic, "soak-max", 0, o.MaxPhase, runStart, &rep.Timeline, func() error { return n.waitCaughtUp(5 * time.Minute) })
	pr := im.Phase
	if err != nil {
		return rep, fmt.Errorf("soak: %w", err)
	}
	if pr.other != 0 || pr.errs != 0 {
		fail("ingest at the maximum: %d non-202, %d errors: %v", pr.other, pr.errs, pr.err)
	}
	rep.BurstRPS, rep.CatchUpSecs, rep.MaxRPS = im.Burst, im.CatchUp, im.Max
	rep.OfferedRPS = o.Load * rep.MaxRPS

	var (
		wg       sync.WaitGroup
		lookups  LookupResult
		soakDone = make(chan struct{})
		mu       sync.Mutex // guards rep.Errors, rep.Series from the goroutines
	)
	failLocked := func(format string, args ...any) { mu.Lock(); fail(format, args...); mu.Unlock() }
	soakStart := time.Now()
	wg.Add(3)
	go func() {
		defer wg.Done()
		pr = runPhase(&quiet, ic, "soak", 1, o.Duration, rep.OfferedRPS, runStart, &rep.Timeline)
	}()
	go func() {
		defer wg.Done()
		qo := QueryOptions{Ingest: quiet, Visitors: o.Visitors, LookupConns: o.LookupConns}
		lc := &fasthttp.HostClient{Addr: n.api, MaxConns: o.LookupConns, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
		var tl []Sample
		lookups = runLookups(&qo, lc, nil, visitorTarget(qo.Visitors, in.Workload.Seed), "soak-lookup", o.Duration, o.LookupRate, in.Workload.Seed, runStart, &tl, func(string) {})
	}()
	// Stats every o.Stats; a segment change and an export every o.Every.
	go func() {
		defer wg.Done()
		c := &queryClient{addr: n.api, http: &http.Client{Timeout: time.Minute}}
		stats := time.NewTicker(o.Stats)
		defer stats.Stop()
		every := time.NewTicker(o.Every)
		defer every.Stop()
		rules := []string{"count(view) >= 1", "count(view) >= 2 or count(cart) >= 1"}
		change := func() {
			rule := rules[rep.Changes%len(rules)]
			want := http.StatusOK
			if rep.Changes == 0 {
				want = http.StatusCreated
			}
			if _, err := c.do(http.MethodPut, "/v1/segments/"+benchSite+"/soak", rule, want); err != nil {
				failLocked("segment change %d: %s", rep.Changes+1, err)
			}
			rep.Changes++
		}
		change()
		for {
			select {
			case <-soakDone:
				return
			case <-stats.C:
				st, err := n.stats(time.Since(soakStart))
				if err != nil {
					failLocked("node stats: %s", err)
					continue
				}
				mu.Lock()
				rep.Series = append(rep.Series, st)
				mu.Unlock()
				progress(fmt.Sprintf("soak %5.0fs of %.0fs: RSS %.0f MB (anon %.0f), %d open files, %d goroutines",
					st.T, o.Duration.Seconds(), st.RSSMB, st.AnonMB, st.OpenFiles, st.Goroutines))
			case <-every.C:
				x := c.export("soak", "/v1/segments/"+benchSite+"/soak/members?format=ndjson", false)
				rep.Exports++
				rep.ExportRows += x.Rows
				if x.LastError != "" || x.Bad != 0 {
					failLocked("export %d: %d rows, %d bad: %s", rep.Exports, x.Rows, x.Bad, x.LastError)
				}
				change()
			}
		}
	}()
	time.Sleep(o.Duration)
	close(soakDone)
	wg.Wait()
	rep.Seconds = time.Since(soakStart).Seconds()
	progress("")

	rep.Requests = pr.req
	rep.RPS, rep.EPS = float64(pr.req)/pr.seconds, float64(pr.events)/pr.seconds
	rep.IngestP99ms = float64(pr.hist.Quantile(0.99)) / 1e6
	if pr.other != 0 || pr.errs != 0 {
		fail("ingest: %d non-202, %d errors of %d requests: %v", pr.other, pr.errs, pr.req, pr.err)
	}
	rep.Lookups, rep.LookupsFound, rep.Lookups404, rep.LookupP99ms = lookups.Lookups, lookups.OK, lookups.NotFound, lookups.P99ms
	if lookups.Other != 0 || lookups.Errors != 0 {
		fail("lookups: %d answered neither 200 with the profile nor 404, %d errors: %s", lookups.Other, lookups.Errors, lookups.LastError)
	}

	// 2. Flat: the figures of the first window after the warmup against
	// those of the last window; and within the memory budget throughout.
	w0, w1 := o.Warmup.Seconds(), (o.Warmup + o.Window).Seconds()
	e0 := rep.Seconds - o.Window.Seconds()
	var start, end []NodeStats
	for _, s := range rep.Series {
		if s.T >= w0 && s.T < w1 {
			start = append(start, s)
		}
		if s.T >= e0 {
			end = append(end, s)
		}
		rep.PeakRSSMB, rep.PeakAnonMB = max(rep.PeakRSSMB, s.RSSMB), max(rep.PeakAnonMB, s.AnonMB)
	}
	rep.StartMax, rep.StartMedian = windowStats(start)
	rep.EndMax, rep.EndMedian = windowStats(end)
	grow := func(start float64, frac float64, abs int) float64 { return start + max(frac*start, float64(abs)) }
	s, e := rep.StartMax, rep.EndMax
	sm, em := rep.StartMedian, rep.EndMedian
	rep.Flat = s.AnonMB > 0 && e.AnonMB <= s.AnonMB*(1+o.RSSGrowth) &&
		float64(em.OpenFiles) <= grow(float64(sm.OpenFiles), 0.25, o.FDGrowth) &&
		float64(em.Goroutines) <= grow(float64(sm.Goroutines), 0.25, o.GoroutineGrowth)
	if !rep.Flat {
		fail("not flat: start anon RSS %.0f MB (highest), %d files, %d goroutines (medians); end %.0f MB, %d, %d (%s)",
			s.AnonMB, sm.OpenFiles, sm.Goroutines, e.AnonMB, em.OpenFiles, em.Goroutines, rep.Tolerance)
	}
	rep.MemoryMB = float64(o.Memory) / (1 << 20)
	// The anonymous memory is what the node holds; the file-backed rest is
	// the kernel's cache of the state's mmapped tables, dropped under
	// memory pressure, and grows with the data, not with time.
	if rep.PeakAnonMB > 1.15*rep.MemoryMB {
		fail("peak anonymous RSS %.0f MB over the --memory budget %.0f MB + 15%%", rep.PeakAnonMB, rep.MemoryMB)
	}

	// 3. A clean stop, and a log without errors.
	if err := n.stop(time.Minute); err != nil {
		fail("node stop: %s", err)
	}
	for _, l := range n.errorLines() {
		fail("node log: %s", l)
	}
	if len(rep.Errors) > 0 {
		return rep, fmt.Errorf("soak: %d errors, first: %s", len(rep.Errors), rep.Errors[0])
	}
	return rep, nil
}

func maxStats(a, b NodeStats) NodeStats {
	return NodeStats{T: max(a.T, b.T), RSSMB: max(a.RSSMB, b.RSSMB), AnonMB: max(a.AnonMB, b.AnonMB), FileMB: max(a.FileMB, b.FileMB),
		OpenFiles: max(a.OpenFiles, b.OpenFiles), Goroutines: max(a.Goroutines, b.Goroutines)}
}

// affinityBinary returns bin, or when it is empty the affinity binary
// built into dir (go build, from the module of the working directory).
func affinityBinary(bin, dir string, progress func(string)) (string, error) {
	if bin != "" {
		return bin, nil
	}
	progress("building the affinity binary")
	bin = filepath.Join(dir, "affinity")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/affinityhq/affinity/cmd/affinity").CombinedOutput(); err != nil {
		return "", fmt.Errorf("cannot build the affinity binary: %w\n%s", err, out)
	}
	return bin, nil
}

// nodeProc is a running affinity binary (not a bench role: the product
// itself, as an operator runs it).
type nodeProc struct {
	cmd            *exec.Cmd
	collector, api string // host:port
	logPath        string
	done           chan struct{}
	waitErr        error

	mu     sync.Mutex
	errors []string // log lines that report errors
	tail   []string // the last log lines (the log file goes with the bench's directory)
}

// logTail returns the node's last log lines.
func (n *nodeProc) logTail() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.tail...)
}

var (
	// nodeListening: the collector is "-" for `affinity build`.
	nodeListening = regexp.MustCompile(`listening collector=(?:http://)?(\S+) api=http://(\S+)`)
	// nodeErrorLine matches what the node logs only when something failed.
	nodeErrorLine = regexp.MustCompile(`ERROR|BUG:|panic|fatal error|cannot |failed`)
)

// startNode runs bin with args and queryToken as its API token, its stderr
// copied to logPath, and waits until it listens.
func startNode(bin, logPath string, args ...string) (*nodeProc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	n := &nodeProc{cmd: exec.Command(bin, args...), logPath: logPath, done: make(chan struct{})}
	n.cmd.Env = append(os.Environ(), "AFFINITY_API_TOKEN="+queryToken)
	stderr, err := n.cmd.StderrPipe()
	if err != nil {
		f.Close()
		return nil, err
	}
	if err := n.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("cannot start %s: %w", bin, err)
	}
	found := make(chan []string, 1)
	go func() {
		defer f.Close()
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(f, line)
			if m := nodeListening.FindStringSubmatch(line); m != nil {
				found <- m
			}
			n.mu.Lock()
			if nodeErrorLine.MatchString(line) {
				n.errors = append(n.errors, line)
			}
			if len(n.tail) == 8 {
				n.tail = append(n.tail[:0], n.tail[1:]...)
			}
			n.tail = append(n.tail, line)
			n.mu.Unlock()
		}
		n.waitErr = n.cmd.Wait()
		close(n.done)
	}()
	select {
	case m := <-found:
		n.collector, n.api = m[1], m[2]
		return n, nil
	case <-n.done:
		return nil, fmt.Errorf("%s exited before listening: %v (see %s)", bin, n.waitErr, logPath)
	case <-time.After(time.Minute):
		n.kill()
		return nil, fmt.Errorf("%s did not listen within a minute (see %s)", bin, logPath)
	}
}

// stats reads the node's memory and open files from /proc and its
// goroutines from /metrics (go_goroutines).
func (n *nodeProc) stats(t time.Duration) (NodeStats, error) {
	pid := strconv.Itoa(n.cmd.Process.Pid)
	st := NodeStats{
		T:      t.Seconds(),
		RSSMB:  float64(procStatusKB(pid, "VmRSS:")) / 1024,
		AnonMB: float64(procStatusKB(pid, "RssAnon:")) / 1024,
		FileMB: float64(procStatusKB(pid, "RssFile:")) / 1024,
	}
	fds, err := os.ReadDir("/proc/" + pid + "/fd")
	if err != nil {
		return st, fmt.Errorf("cannot count the open files of the node: %w", err)
	}
	st.OpenFiles = len(fds)
	c := &queryClient{addr: n.api, http: &http.Client{Timeout: 30 * time.Second}}
	b, err := c.do(http.MethodGet, "/metrics", "", http.StatusOK)
	if err != nil {
		return st, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			st.Goroutines, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if st.Goroutines == 0 {
		return st, errors.New("no go_goroutines in /metrics")
	}
	return st, nil
}

// waitCaughtUp waits until the node's builder has applied everything in
// its log: affinity_builder_lag_records is 0 on every partition.
func (n *nodeProc) waitCaughtUp(timeout time.Duration) error {
	c := &queryClient{addr: n.api, http: &http.Client{Timeout: 30 * time.Second}}
	deadline := time.Now().Add(timeout)
	for {
		b, err := c.do(http.MethodGet, "/metrics", "", http.StatusOK)
		if err != nil {
			return err
		}
		lag, seen := 0.0, false
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "affinity_builder_lag_records{"); ok {
				if _, v, ok := strings.Cut(rest, "} "); ok {
					x, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
					lag += x
					seen = true
				}
			}
		}
		if !seen {
			return errors.New("no affinity_builder_lag_records in /metrics")
		}
		if lag == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the builder still lags %.0f records after %s", lag, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// windowStats returns the highest and the median of each figure of ss.
func windowStats(ss []NodeStats) (hi, med NodeStats) {
	if len(ss) == 0 {
		return hi, med
	}
	for _, s := range ss {
		hi = maxStats(hi, s)
	}
	mid := func(x []float64) float64 { slices.Sort(x); return x[len(x)/2] }
	var rss, anon, file, fds, gs []float64
	for _, s := range ss {
		rss, anon, file = append(rss, s.RSSMB), append(anon, s.AnonMB), append(file, s.FileMB)
		fds, gs = append(fds, float64(s.OpenFiles)), append(gs, float64(s.Goroutines))
	}
	med = NodeStats{T: ss[len(ss)/2].T, RSSMB: mid(rss), AnonMB: mid(anon), FileMB: mid(file), OpenFiles: int(mid(fds)), Goroutines: int(mid(gs))}
	return hi, med
}

// stop sends SIGTERM and waits up to timeout for a clean exit.
func (n *nodeProc) stop(timeout time.Duration) error {
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-n.done:
		if n.waitErr != nil {
			return fmt.Errorf("exited with %v after SIGTERM; its log ends: %s", n.waitErr, strings.Join(n.logTail(), " | "))
		}
		return nil
	case <-time.After(timeout):
		n.kill()
		return fmt.Errorf("did not exit within %s of SIGTERM: killed; its log ends: %s", timeout, strings.Join(n.logTail(), " | "))
	}
}

func (n *nodeProc) kill() {
	select {
	case <-n.done:
	default:
		n.cmd.Process.Kill()
		<-n.done
	}
}

func (n *nodeProc) errorLines() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.errors...)
}

// PrintSoak writes the soak figures.
func PrintSoak(w io.Writer, r *SoakReport) {
	fmt.Fprintf(w, "soak: the affinity binary (serve, --memory %.0f MiB) for %.0fs: ingest at %.0f req/s offered (%.0f%% of the %.0f req/s maximum: a %.0f req/s burst and %.1f s for the builder to catch up), lookups, a segment change and an export every period\n",
		r.MemoryMB, r.Seconds, r.OfferedRPS, 100*r.OfferedRPS/max(r.MaxRPS, 1), r.MaxRPS, r.BurstRPS, r.CatchUpSecs)
	fmt.Fprintf(w, "  ingest: %d requests, %.0f req/s, %.0f events/s, p99 %.1f ms; lookups: %d (%d found, %d not seen yet), p99 %.2f ms; %d segment changes, %d exports (%d rows)\n",
		r.Requests, r.RPS, r.EPS, r.IngestP99ms, r.Lookups, r.LookupsFound, r.Lookups404, r.LookupP99ms, r.Changes, r.Exports, r.ExportRows)
	fmt.Fprintf(w, "%-34s %9s %9s %9s %11s %11s\n", "node", "RSS MB", "anon MB", "file MB", "open files", "goroutines")
	for _, x := range []struct {
		label string
		s     NodeStats
	}{{"start (highest, window after warmup)", r.StartMax}, {"start (median)", r.StartMedian},
		{"end (highest, last window)", r.EndMax}, {"end (median)", r.EndMedian}} {
		fmt.Fprintf(w, "%-34s %9.0f %9.0f %9.0f %11d %11d\n", x.label, x.s.RSSMB, x.s.AnonMB, x.s.FileMB, x.s.OpenFiles, x.s.Goroutines)
	}
	verdict := "flat"
	if !r.Flat {
		verdict = "NOT FLAT"
	}
	fmt.Fprintf(w, "  %s (tolerance: %s); peak RSS %.0f MB (anonymous %.0f MB) of a %.0f MB budget; errors: %d\n", verdict, r.Tolerance, r.PeakRSSMB, r.PeakAnonMB, r.MemoryMB, len(r.Errors))
	for i, e := range r.Errors {
		if i == 10 {
			fmt.Fprintf(w, "  … %d more\n", len(r.Errors)-i)
			break
		}
		fmt.Fprintf(w, "  error: %s\n", e)
	}
}

package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// Machine describes where a run happened.
type Machine struct {
	GOOS       string `json:"goos"`
	GOARCH     string `json:"goarch"`
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPUModel   string `json:"cpu_model,omitempty"`
	Go         string `json:"go"`
	LoadAvg    string `json:"loadavg_at_start,omitempty"`
}

// ThisMachine describes the machine the bench runs on.
func ThisMachine() Machine {
	m := Machine{
		GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, CPUs: runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0), Go: runtime.Version(),
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	return m
}

// Report is everything one run of the bench measured: the JSON of --out.
type Report struct {
	Started  time.Time       `json:"started"`
	Command  string          `json:"command"`
	Machine  Machine         `json:"machine"`
	Ingest   *IngestReport   `json:"ingest,omitempty"`
	Build    *BuildReport    `json:"build,omitempty"`
	E2E      *E2EReport      `json:"e2e,omitempty"`
	Query    *QueryReport    `json:"query,omitempty"`
	Soak     *SoakReport     `json:"soak,omitempty"`
	Import   *ImportReport   `json:"import,omitempty"`
	Campaign *CampaignReport `json:"campaign,omitempty"`
	Cluster  *ClusterReport  `json:"cluster,omitempty"`
}

// WriteJSON writes r, indented, to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("cannot write report %s: %w", path, err)
	}
	return nil
}

// PrintIngest writes the ingest figures as a table.
func PrintIngest(w io.Writer, r *IngestReport) {
	fmt.Fprintf(w, "ingest: %d connections, closed loop, %d rounds x %.1fs per system, interleaved; %.2f events per request; %s\n\n",
		r.Concurrency, r.Rounds, r.PhaseSeconds, r.MeanBatchEvents, r.Processes)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\treq/s\tevents/s\tp50 ms\tp99 ms\tp99.9 ms\tCPU-s/M ev\t(whole run)\tbroker CPU-s/M\tloadgen CPU-s/M\tpeak RSS MB\tnon-202\terrors\t")
	for _, s := range r.Systems {
		brk := "-"
		if isKafkaSystem(s.Name) {
			brk = fmt.Sprintf("%.1f", s.BrokerCPUPerMEvents)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.2f\t%.2f\t%.2f\t%.1f\t(%.1f)\t%s\t%.1f\t%.0f\t%d\t%d\t\n",
			s.Name, s.RPS, s.EPS, s.P50ms, s.P99ms, s.P999ms, s.CPUPerMEvents, s.RunCPUPerMEvents, brk, s.LoadCPUPerMEvents, s.PeakRSSMB, s.Refused, s.Errors)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, s := range r.Systems {
		fmt.Fprintf(w, "  %-12s %s", s.Name, s.Desc)
		if s.LogEvents >= 0 {
			mark := "ok"
			if s.LogEvents != s.SentAccepted {
				mark = "MISMATCH"
			}
			fmt.Fprintf(w, "; log holds %d events of %d accepted (%s)", s.LogEvents, s.SentAccepted, mark)
		}
		if s.LastError != "" {
			fmt.Fprintf(w, "; last error: %.120s", s.LastError)
		}
		fmt.Fprintln(w)
	}
	if r.BrokerRSSMB > 0 {
		fmt.Fprintf(w, "  kfake broker peak RSS %.0f MB; load generator peak RSS %.0f MB\n", r.BrokerRSSMB, r.LoadgenRSSMB)
	}
	fmt.Fprintln(w, "\nratios: median of the per-round ratios (each round runs the systems back to back)")
	for _, x := range r.Ratios {
		target := ""
		if x.Target > 0 {
			verdict := "met"
			if x.Value < x.Target {
				verdict = "MISSED"
			}
			target = fmt.Sprintf("  target >= %.2f: %s", x.Target, verdict)
		}
		fmt.Fprintf(w, "ratio %-66s %6.2f  (rounds %.2f-%.2f, totals %.2f)%s\n", x.Name, x.Value, x.Min, x.Max, x.Total, target)
	}
}

// systemColors are the chart colours, by system.
var systemColors = map[string]string{
	sysNoop: "#7f7f7f", sysEmbedded: "#1f77b4", sysKafka: "#2ca02c",
	sysNaive: "#d62728", sysNaiveTuned: "#ff7f0e", "e2e-max": "#9467bd", "e2e": "#1f77b4",
	"affinity": "#1f77b4", "redis": "#d62728",
	"lookup-max": "#7f7f7f", "lookup-idle": "#2ca02c", "lookup-ingest": "#d62728",
	"lookup-noop": "#bcbd22", "lookup-noop-ingest": "#ff7f0e",
	"1-node": "#7f7f7f", "2-nodes": "#1f77b4", "survivor-takeover": "#d62728", "joiner-rebuild": "#2ca02c",
}

// WriteSVG draws the timeline: throughput (events/s) on top, p50 and p99
// latency (log scale) below, one colour per system.
func WriteSVG(path, title string, timeline []Sample, systems []string) error {
	return WriteSVGUnit(path, title, "events/s", timeline, systems)
}

// WriteSVGUnit is WriteSVG with the throughput (Sample.EPS) in unit.
func WriteSVGUnit(path, title, unit string, timeline []Sample, systems []string) error {
	var b strings.Builder
	const (
		W, left, right   = 960, 70, 170
		top1, h1, gap    = 40, 220, 60
		top2, h2, bottom = top1 + h1 + gap, 220, 40
		H                = top2 + h2 + bottom
		pw               = W - left - right
	)
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", W, H)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", left, xmlEscape(title))
	var tmax, emax, lmin, lmax float64 = 1, 1, math.Inf(1), 0
	for _, s := range timeline {
		tmax = max(tmax, s.T)
		emax = max(emax, s.EPS)
		if s.P50ms > 0 {
			lmin = min(lmin, s.P50ms)
		}
		lmax = max(lmax, s.P99ms)
	}
	emax = niceCeil(emax)
	hasLatency := lmax > 0
	if math.IsInf(lmin, 1) {
		lmin, lmax = 0.1, 1
	}
	lo, hi := math.Floor(math.Log10(lmin)), math.Ceil(math.Log10(max(lmax, lmin*10)))
	x := func(t float64) float64 { return left + t/tmax*pw }
	y1 := func(v float64) float64 { return top1 + h1 - v/emax*h1 }
	y2 := func(v float64) float64 {
		v = max(v, math.Pow(10, lo))
		return top2 + h2 - (math.Log10(v)-lo)/(hi-lo)*h2
	}
	// Axes and grids.
	for i := 0; i <= 4; i++ {
		v := emax * float64(i) / 4
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n",
			left, left+pw, y1(v), y1(v), left-6, y1(v)+4, siFormat(v))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", left, top1-6, xmlEscape(unit))
	for e := lo; e <= hi && hasLatency; e++ {
		v := math.Pow(10, e)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%g</text>`+"\n",
			left, left+pw, y2(v), y2(v), left-6, y2(v)+4, v)
	}
	latLabel := "latency ms (log): p99 solid, p50 dashed; thin lines: warmup"
	if !hasLatency {
		latLabel = "latency: not measured in this scenario"
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", left, top2-6, latLabel)
	step := niceCeil(tmax / 10)
	for t := 0.0; t <= tmax; t += step {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%gs</text>`+"\n", x(t), top2+h2+18, t)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#eee"/>`+"\n", x(t), x(t), top1, top1+h1)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#eee"/>`+"\n", x(t), x(t), top2, top2+h2)
	}
	// One polyline per phase (a run of samples of one system and round).
	for i := 0; i < len(timeline); {
		j := i
		for j < len(timeline) && timeline[j].System == timeline[i].System && timeline[j].Round == timeline[i].Round {
			j++
		}
		seg := timeline[i:j]
		c := systemColors[seg[0].System]
		if c == "" {
			c = "#000"
		}
		width := "2"
		if seg[0].Round == 0 {
			width = "1" // warmup
		}
		var p1 strings.Builder
		for _, s := range seg {
			fmt.Fprintf(&p1, "%.1f,%.1f ", x(s.T), y1(s.EPS))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="%s" points="%s"/>`+"\n", c, width, p1.String())
		// Latency lines break over intervals in which nothing completed.
		for k := 0; k < len(seg); {
			for k < len(seg) && seg[k].P99ms <= 0 {
				k++
			}
			m := k
			for m < len(seg) && seg[m].P99ms > 0 {
				m++
			}
			if m > k {
				var p50, p99 strings.Builder
				for _, s := range seg[k:m] {
					fmt.Fprintf(&p50, "%.1f,%.1f ", x(s.T), y2(s.P50ms))
					fmt.Fprintf(&p99, "%.1f,%.1f ", x(s.T), y2(s.P99ms))
				}
				if m-k == 1 { // a lone point: draw it as a dot
					fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>`+"\n", x(seg[k].T), y2(seg[k].P99ms), c)
				}
				fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="%s" points="%s"/>`+"\n", c, width, p99.String())
				fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1" stroke-dasharray="4 3" points="%s"/>`+"\n", c, p50.String())
			}
			k = m
		}
		i = j
	}
	for i, s := range systems {
		c := systemColors[s]
		yy := top1 + 10 + i*20
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="14" height="4" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n",
			left+pw+12, yy, c, left+pw+32, yy+6, xmlEscape(s))
	}
	b.WriteString("</svg>\n")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("cannot write chart %s: %w", path, err)
	}
	return nil
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func siFormat(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", math.Round(v/1e4)/100)
	case v >= 1e3:
		return fmt.Sprintf("%gk", math.Round(v/10)/100)
	}
	return fmt.Sprintf("%g", v)
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}

// sampleFor calls sample every interval for d, then stop (which ends the
// phase's workers and waits for them), then sample once more, final, at the
// returned end time.
func sampleFor(d, every time.Duration, sample func(now time.Time, final bool), stop func()) (end time.Time) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for done := false; !done; {
		select {
		case now := <-tick.C:
			sample(now, false)
		case <-deadline.C:
			done = true
		}
	}
	stop()
	end = time.Now()
	sample(end, true)
	return end
}

package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/internal/budget"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/tracker"
	"github.com/affinityhq/affinity/tracker/event"
)

// The environment of a role process. A bench binary (the command or a test
// binary) calls RunRole first thing; when AFFINITY_BENCH_ROLE is set it is a
// system under test and never returns.
const (
	envRole  = "AFFINITY_BENCH_ROLE"
	envKafka = "AFFINITY_BENCH_KAFKA"
	envDir   = "AFFINITY_BENCH_DIR"
	// envMemory is the memory budget of the build and query roles, in
	// bytes (internal/budget); empty: budget.Default.
	envMemory = "AFFINITY_BENCH_MEMORY"
	// EnvCPUProfile, when set to a directory, makes every role process
	// write its CPU profile there as <role>.pprof, and its heap profile,
	// taken as it is told to stop, as <role>.heap.
	EnvCPUProfile = "AFFINITY_BENCH_CPUPROFILE"
)

// Topics of the Kafka systems, seeded in kfake with benchPartitions each.
const (
	topicCollector   = "affinity-events"
	topicNaive       = "naive-events"
	topicNaiveTuned  = "naive-tuned-events"
	benchPartitions  = 8
	benchSite        = "demo"
	roleKfake        = "kfake"
	sysNoop          = "noop"
	sysEmbedded      = "embedded"
	sysKafka         = "kafka"
	sysNaive         = "naive"
	sysNaiveTuned    = "naive-tuned"
	benchLogMaxBytes = 64 << 30
)

// Usage is a process's resource use so far (getrusage RUSAGE_SELF), and
// its resident memory now split into anonymous (heap) and file-backed
// (mmapped files, e.g. Badger's tables) pages, from /proc on Linux.
type Usage struct {
	CPUSeconds float64 `json:"cpu_s"`
	MaxRSSKB   int64   `json:"max_rss_kb"`
	RSSAnonKB  int64   `json:"rss_anon_kb,omitempty"`
	RSSFileKB  int64   `json:"rss_file_kb,omitempty"`
}

func selfUsage() Usage {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return Usage{}
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	u := Usage{CPUSeconds: tv(ru.Utime) + tv(ru.Stime), MaxRSSKB: int64(ru.Maxrss)}
	u.RSSAnonKB = procStatusKB("self", "RssAnon:")
	u.RSSFileKB = procStatusKB("self", "RssFile:")
	return u
}

// procStatusKB returns a "kB" field of /proc/<pid>/status, 0 if unknown.
func procStatusKB(pid, field string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb
		}
	}
	return 0
}

// LogCount is what a system's log holds.
type LogCount struct {
	Records int64 `json:"records"`
	Events  int64 `json:"events"`
}

// RunRole runs the role named by AFFINITY_BENCH_ROLE, if any, and exits the
// process when it is done; without the variable it returns at once.
//
// A role process prints "ready <addr>" on stdout once it serves, then
// answers the commands it reads on stdin, one a line: "usage" (its Usage as
// JSON) and "count" (its log's LogCount as JSON). It stops at EOF.
func RunRole() {
	role := os.Getenv(envRole)
	if role == "" {
		return
	}
	log.SetPrefix("bench " + role + ": ")
	if err := runRole(role); err != nil {
		log.Printf("%s", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// roleSystem is a system under test inside its role process.
type roleSystem struct {
	addr  string
	count func(ctx context.Context) (LogCount, error)
	// run, for the build roles, does the work once, emitting "progress"
	// lines, and returns the result.
	run func(emit func(line string)) (any, error)
	// commands are further commands of the role, by name.
	commands map[string]func() (any, error)
	close    func() error
}

func runRole(role string) error {
	var (
		sys *roleSystem
		err error
	)
	brokers := strings.Split(os.Getenv(envKafka), ",")
	switch role {
	case roleKfake:
		sys, err = startKfake()
	case sysNoop:
		sys, err = startNoop()
	case sysEmbedded:
		sys, err = startCollectorEmbedded(os.Getenv(envDir))
	case sysKafka:
		sys, err = startCollectorKafka(brokers)
	case sysNaive:
		sys, err = startNaive(brokers, topicNaive, false)
	case sysNaiveTuned:
		sys, err = startNaive(brokers, topicNaiveTuned, true)
	case roleBuildAffinity:
		sys, err = startBuildAffinity()
	case roleBuildRedis:
		sys, err = startBuildRedis()
	case roleE2E:
		sys, err = startE2E()
	case roleQuery:
		sys, err = startQuery()
	case roleLookupNoop:
		sys, err = startLookupNoop()
	case roleIngestLoad:
		sys, err = startIngestLoad()
	default:
		return fmt.Errorf("unknown role %q in %s", role, envRole)
	}
	if err != nil {
		return err
	}
	if dir := os.Getenv(EnvCPUProfile); dir != "" {
		f, err := os.Create(filepath.Join(dir, role+".pprof"))
		if err != nil {
			return fmt.Errorf("cannot create CPU profile (%s): %w", EnvCPUProfile, err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	defer func() {
		if err := sys.close(); err != nil {
			log.Printf("close: %s", err)
		}
	}()
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(out, "ready %s\n", sys.addr)
	out.Flush()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var reply any
		switch cmd := in.Text(); cmd {
		case "usage":
			reply = selfUsage()
		case "run":
			if sys.run == nil {
				fmt.Fprintf(out, "error role %s has nothing to run\n", role)
				out.Flush()
				continue
			}
			res, err := sys.run(func(line string) {
				fmt.Fprintln(out, line)
				out.Flush()
			})
			if err != nil {
				fmt.Fprintf(out, "error %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
				out.Flush()
				continue
			}
			reply = res
		case "count":
			if sys.count == nil {
				reply = LogCount{}
				break
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			c, err := sys.count(ctx)
			cancel()
			if err != nil {
				fmt.Fprintf(out, "error %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
				out.Flush()
				continue
			}
			reply = c
		default:
			fn := sys.commands[cmd]
			if fn == nil {
				fmt.Fprintf(out, "error unknown command %q\n", cmd)
				out.Flush()
				continue
			}
			res, err := fn()
			if err != nil {
				fmt.Fprintf(out, "error %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
				out.Flush()
				continue
			}
			reply = res
		}
		js, _ := json.Marshal(reply)
		fmt.Fprintf(out, "ok %s\n", js)
		out.Flush()
	}
	if dir := os.Getenv(EnvCPUProfile); dir != "" {
		// Before sys.close: the heap as the running system held it.
		if hf, err := os.Create(filepath.Join(dir, role+".heap")); err == nil {
			pprof.Lookup("heap").WriteTo(hf, 0)
			hf.Close()
		}
	}
	return nil
}

// roleMemory splits the budget in envMemory as `affinity serve` does (the
// roles run the embedded log) and sets the process's Go heap limit.
func roleMemory() (*budget.Split, error) {
	total := int64(budget.Default)
	if v := os.Getenv(envMemory); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("invalid %s %q: %w", envMemory, v, err)
		}
		total = n
	}
	s, err := budget.New(total, true)
	if err != nil {
		return nil, err
	}
	s.SetGoMemLimit()
	log.Printf("%s", s)
	return &s, nil
}

func startKfake() (*roleSystem, error) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1),
		kfake.SeedTopics(benchPartitions, topicCollector, topicNaive, topicNaiveTuned))
	if err != nil {
		return nil, fmt.Errorf("cannot start kfake: %w", err)
	}
	return &roleSystem{
		addr:  strings.Join(c.ListenAddrs(), ","),
		close: func() error { c.Close(); return nil },
	}, nil
}

func listenLoopback() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("cannot listen on loopback: %w", err)
	}
	return ln, nil
}

// startNoop serves the ceiling: fasthttp answering every request 202 with
// a body like the collector's, doing nothing else.
func startNoop() (*roleSystem, error) {
	ln, err := listenLoopback()
	if err != nil {
		return nil, err
	}
	body := []byte(`{"accepted":0}`)
	srv := &fasthttp.Server{
		Name: "noop",
		Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.SetStatusCode(fasthttp.StatusAccepted)
			ctx.SetContentType("application/json")
			ctx.SetBody(body)
		},
		NoDefaultContentType: true,
	}
	go srv.Serve(ln)
	return &roleSystem{addr: ln.Addr().String(), close: srv.Shutdown}, nil
}

func startCollector(l storage.Log) (*roleSystem, error) {
	opts := tracker.DefaultOptions()
	opts.Sites = []tracker.Site{{Key: benchSite}}
	opts.Log = l
	opts.Logger = log.Printf
	c, err := tracker.New(opts)
	if err != nil {
		l.Close()
		return nil, err
	}
	if err := c.Listen("127.0.0.1:0"); err != nil {
		l.Close()
		return nil, err
	}
	go c.Serve()
	return &roleSystem{
		addr:  c.Addr(),
		count: func(ctx context.Context) (LogCount, error) { return countLog(ctx, l, countRecord) },
		close: func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return errors.Join(c.Shutdown(ctx), l.Close())
		},
	}, nil
}

func startCollectorEmbedded(dir string) (*roleSystem, error) {
	if dir == "" {
		return nil, fmt.Errorf("cannot start %s: %s is empty", sysEmbedded, envDir)
	}
	opts := storage.DefaultEmbeddedOptions(dir)
	opts.Partitions = benchPartitions
	opts.MaxBytes = benchLogMaxBytes
	opts.Logger = log.Printf
	l, err := storage.OpenEmbeddedLog(opts)
	if err != nil {
		return nil, err
	}
	return startCollector(l)
}

func startCollectorKafka(brokers []string) (*roleSystem, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := storage.DefaultKafkaOptions(brokers...)
	opts.Topic = topicCollector
	opts.Partitions = benchPartitions
	opts.Logger = log.Printf
	l, err := storage.OpenKafkaLog(ctx, opts)
	if err != nil {
		return nil, err
	}
	return startCollector(l)
}

// countRecord counts the events of one collector log record.
func countRecord(b *event.Batch, v []byte) (int, error) {
	if err := event.DecodeRecord(b, v); err != nil {
		return 0, err
	}
	return len(b.Events), nil
}

// countLog reads every record of every partition of l, up to the offsets
// it has now, and counts records and (through count) events.
func countLog(ctx context.Context, l storage.Log, count func(*event.Batch, []byte) (int, error)) (LogCount, error) {
	var (
		c    LogCount
		b    event.Batch
		recs []storage.Record
	)
	for p := range l.Partitions() {
		first, next, err := l.Offsets(ctx, p)
		if err != nil {
			return c, err
		}
		if first >= next {
			continue
		}
		r, err := l.OpenReader(p, first)
		if err != nil {
			return c, err
		}
		for off := first; off < next; {
			recs, err = r.Fetch(ctx, recs[:0], 4096)
			if err != nil {
				r.Close()
				return c, fmt.Errorf("cannot read partition %d at offset %d: %w", p, off, err)
			}
			for i := range recs {
				if recs[i].Offset >= next {
					break
				}
				n, err := count(&b, recs[i].Value)
				if err != nil {
					r.Close()
					return c, fmt.Errorf("cannot decode partition %d offset %d: %w", p, recs[i].Offset, err)
				}
				c.Records++
				c.Events += int64(n)
				off = recs[i].Offset + 1
			}
		}
		r.Close()
	}
	return c, nil
}

// The naive peer: what a team writes in an afternoon. net/http, the batch
// decoded by encoding/json into structs, checked, stamped, re-encoded as
// JSON and produced as one message per request (keyed site|visitor, as
// affinity does: one message per event would be slower still) through a
// kafka-go Writer. The plain peer keeps the Writer's defaults (round-robin
// balancer, batches of 100 or 1 s, acks=none); the tuned one sets what
// affinity's log sets (2 ms batches of up to 1000, acks=all, snappy,
// murmur2 keys).
type naiveBatch struct {
	Site   string       `json:"site"`
	V      string       `json:"v"`
	Events []naiveEvent `json:"events"`
	Recv   int64        `json:"received_at"`
}

type naiveEvent struct {
	ID         string         `json:"id"`
	T          string         `json:"t"`
	TS         int64          `json:"ts"`
	Product    *naiveProduct  `json:"product,omitempty"`
	Order      *naiveOrder    `json:"order,omitempty"`
	Email      string         `json:"email,omitempty"`
	CustomerID string         `json:"customer_id,omitempty"`
	Traits     map[string]any `json:"traits,omitempty"`
	URL        string         `json:"url,omitempty"`
}

type naiveProduct struct {
	ID       string   `json:"id,omitempty"`
	Brand    string   `json:"brand,omitempty"`
	Category string   `json:"category,omitempty"`
	Age      string   `json:"age,omitempty"`
	Price    *float64 `json:"price,omitempty"`
	Qty      int      `json:"qty,omitempty"`
}

type naiveOrder struct {
	ID    string         `json:"id,omitempty"`
	Total *float64       `json:"total,omitempty"`
	Items []naiveProduct `json:"items,omitempty"`
}

var naiveTypes = map[string]bool{"pageview": true, "view": true, "cart": true, "uncart": true, "purchase": true, "identify": true}

func startNaive(brokers []string, topic string, tuned bool) (*roleSystem, error) {
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic}
	if tuned {
		w.BatchTimeout = 2 * time.Millisecond
		w.BatchSize = 1000
		w.RequiredAcks = kafka.RequireAll
		w.Compression = kafka.Snappy
		w.Balancer = kafka.Murmur2Balancer{}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/events", func(rw http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(rw, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		var b naiveBatch
		if err := json.NewDecoder(http.MaxBytesReader(rw, r.Body, 64<<10)).Decode(&b); err != nil {
			http.Error(rw, "bad batch: "+err.Error(), http.StatusBadRequest)
			return
		}
		if b.Site != benchSite {
			http.Error(rw, "unknown site", http.StatusForbidden)
			return
		}
		if len(b.V) != 36 || len(b.Events) == 0 || len(b.Events) > 100 {
			http.Error(rw, "bad visitor or event count", http.StatusBadRequest)
			return
		}
		for i := range b.Events {
			if len(b.Events[i].ID) != 36 || !naiveTypes[b.Events[i].T] {
				http.Error(rw, "bad event "+strconv.Itoa(i), http.StatusBadRequest)
				return
			}
		}
		b.Recv = time.Now().UnixMilli()
		value, err := json.Marshal(&b)
		if err != nil {
			http.Error(rw, err.Error(), http.StatusInternalServerError)
			return
		}
		if err := w.WriteMessages(r.Context(), kafka.Message{Key: []byte(b.Site + "|" + b.V), Value: value}); err != nil {
			http.Error(rw, "cannot store: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(rw, `{"accepted":%d}`, len(b.Events))
	})
	ln, err := listenLoopback()
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)

	// The count reads the topic back through affinity's own Kafka reader.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ro := storage.DefaultKafkaOptions(brokers...)
	ro.Topic = topic
	ro.CreateTopic = false
	rl, err := storage.OpenKafkaLog(ctx, ro)
	if err != nil {
		srv.Close()
		return nil, err
	}
	return &roleSystem{
		addr: ln.Addr().String(),
		count: func(ctx context.Context) (LogCount, error) {
			return countLog(ctx, rl, func(_ *event.Batch, v []byte) (int, error) {
				var b struct {
					Events []json.RawMessage `json:"events"`
				}
				err := json.Unmarshal(v, &b)
				return len(b.Events), err
			})
		},
		close: func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return errors.Join(srv.Shutdown(ctx), w.Close(), rl.Close())
		},
	}, nil
}

// proc is a role process, seen from the parent.
type proc struct {
	role   string
	addr   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	errLog string // the file its stderr goes to
}

// startProc starts the bench binary in role, with env added, its stderr
// going to <dir>/<role>.log, and waits for it to be ready.
func startProc(role, dir string, env ...string) (*proc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("cannot find the bench binary to re-execute: %w", err)
	}
	p := &proc{role: role, errLog: filepath.Join(dir, role+".log")}
	errf, err := os.Create(p.errLog)
	if err != nil {
		return nil, fmt.Errorf("cannot create %s: %w", p.errLog, err)
	}
	defer errf.Close()
	p.cmd = exec.Command(exe)
	p.cmd.Env = append(os.Environ(), append([]string{envRole + "=" + role}, env...)...)
	p.cmd.Stderr = errf
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.stdout = bufio.NewReader(out)
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot start role %s: %w", role, err)
	}
	ready := make(chan error, 1)
	go func() {
		line, err := p.stdout.ReadString('\n')
		if err != nil {
			ready <- fmt.Errorf("role %s exited before it was ready: %w (see %s)", role, err, p.errLog)
			return
		}
		addr, ok := strings.CutPrefix(strings.TrimSpace(line), "ready ")
		if !ok {
			ready <- fmt.Errorf("role %s said %q; want ready <addr>", role, line)
			return
		}
		p.addr = addr
		ready <- nil
	}()
	select {
	case err = <-ready:
	case <-time.After(time.Minute):
		err = fmt.Errorf("role %s not ready after a minute (see %s)", role, p.errLog)
	}
	if err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// call sends cmd and decodes the JSON reply into v.
func (p *proc) call(cmd string, v any) error {
	if _, err := io.WriteString(p.stdin, cmd+"\n"); err != nil {
		return fmt.Errorf("cannot send %q to role %s: %w", cmd, p.role, err)
	}
	line, err := p.stdout.ReadString('\n')
	if err != nil {
		return fmt.Errorf("no answer to %q from role %s: %w (see %s)", cmd, p.role, err, p.errLog)
	}
	js, ok := strings.CutPrefix(strings.TrimSpace(line), "ok ")
	if !ok {
		return fmt.Errorf("role %s answered %q to %q", p.role, strings.TrimSpace(line), cmd)
	}
	return json.Unmarshal([]byte(js), v)
}

func (p *proc) usage() Usage {
	var u Usage
	if err := p.call("usage", &u); err != nil {
		log.Printf("%s", err)
	}
	return u
}

// stop closes the process's stdin, which makes it shut down, and waits for
// it (killing it after 15 s).
func (p *proc) stop() error {
	p.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		return fmt.Errorf("role %s did not stop within 15s: killed", p.role)
	}
}

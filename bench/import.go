package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fastjson"

	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/profile/importer"
	"github.com/affinityhq/affinity/profile/service"
	"github.com/affinityhq/affinity/storage"
)

// ImportOptions configure the import scenario. Start from
// DefaultImportOptions.
type ImportOptions struct {
	// Orders is the size of the upload (4 orders a person, 1-3 items each:
	// importer.SampleUpload).
	Orders int
	// Format is the upload's syntax: ndjson or csv.
	Format string
	// Dir is the scratch directory; "": a temporary one, removed after.
	Dir string
	// Progress, if set, receives a status line now and then.
	Progress func(string)
}

// DefaultImportOptions returns the scenario of issue 12: 200k orders.
func DefaultImportOptions() ImportOptions {
	return ImportOptions{Orders: 200_000, Format: "ndjson"}
}

// ImportTarget is issue 12's goal: orders/s applied on 2 cores.
const ImportTarget = 100_000

// ImportReport is the outcome of the import scenario.
type ImportReport struct {
	Orders      int     `json:"orders"`
	Persons     int     `json:"persons"`
	Format      string  `json:"format"`
	Bytes       int     `json:"bytes"`
	PostSeconds float64 `json:"post_seconds"` // POST sent → 202 (parsed, checked, in the log)
	Seconds     float64 `json:"seconds"`      // POST sent → the builder applied every order
	OrdersPerS  float64 `json:"orders_per_s"` // Orders / Seconds
	AgainPerS   float64 `json:"again_per_s"`  // the same upload again, every order dropped as applied
	// CPUPer100k is the CPU time of this process (node and client: one
	// POST and the progress polls) from POST to applied, per 100k orders.
	CPUPer100k      float64 `json:"cpu_s_per_100k_orders"`
	AgainCPUPer100k float64 `json:"again_cpu_s_per_100k_orders"`
	Target          float64 `json:"target_per_s"`
}

// RunImport runs the import scenario in this process: a node as `affinity
// serve` wires its profile side (embedded log, service.Open, the query API
// on a loopback listener), one upload over HTTP, then GET of its import id
// until done; then the same upload again. With EnvCPUProfile set, the
// first upload's CPU profile goes to <dir>/import.pprof.
func RunImport(o ImportOptions) (*ImportReport, error) {
	format := importer.FormatNDJSON
	ct := "application/x-ndjson"
	if o.Format == "csv" {
		format, ct = importer.FormatCSV, "text/csv"
	}
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "affinity-bench-import-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	} else {
		dir = filepath.Join(dir, "import")
		_ = os.RemoveAll(dir)
	}
	lo := storage.DefaultEmbeddedOptions(filepath.Join(dir, "log"))
	lo.Partitions = benchPartitions
	lo.MaxBytes = benchLogMaxBytes
	l, err := storage.OpenEmbeddedLog(lo)
	if err != nil {
		return nil, err
	}
	svc, err := service.Open(service.Options{Dir: filepath.Join(dir, "state"), Log: l, Logger: log.Printf})
	if err != nil {
		return nil, errors.Join(err, l.Close())
	}
	srv, err := api.New(api.Options{Token: queryToken, Metrics: []*metrics.Set{svc.Metrics}, Health: svc.Health})
	if err != nil {
		return nil, errors.Join(err, svc.Close(), l.Close())
	}
	svc.Register(srv)
	if err := srv.Listen("127.0.0.1:0"); err != nil {
		return nil, errors.Join(err, svc.Close(), l.Close())
	}
	go srv.Serve()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = svc.Close()
		_ = l.Close()
	}()
	body := importer.SampleUpload(format, o.Orders)
	base := "http://" + srv.Addr() + "/v1/import/shop/orders"
	r := &ImportReport{Orders: o.Orders, Format: format.String(), Bytes: len(body), Target: ImportTarget}
	once := func() (post, all, cpu float64, persons int, err error) {
		start, u0 := time.Now(), selfUsage()
		defer func() { cpu = selfUsage().CPUSeconds - u0.CPUSeconds }()
		code, resp, err := importRequest(http.MethodPost, base, ct, body)
		if err != nil {
			return 0, 0, 0, 0, err
		}
		if code != http.StatusAccepted {
			return 0, 0, 0, 0, fmt.Errorf("POST %s: %d %s", base, code, resp)
		}
		post = time.Since(start).Seconds()
		v, err := fastjson.Parse(resp)
		if err != nil {
			return 0, 0, 0, 0, fmt.Errorf("POST answered %q: %w", resp, err)
		}
		id := string(v.GetStringBytes("id"))
		for {
			code, pr, err := importRequest(http.MethodGet, base+"/"+id, "", nil)
			if err != nil {
				return 0, 0, 0, 0, err
			}
			if code != http.StatusOK {
				return 0, 0, 0, 0, fmt.Errorf("GET progress: %d %s", code, pr)
			}
			if strings.HasPrefix(pr, `{"done":true`) {
				break
			}
			if o.Progress != nil {
				o.Progress("import: " + strings.TrimSpace(pr))
			}
			time.Sleep(10 * time.Millisecond)
		}
		return post, time.Since(start).Seconds(), 0, v.GetInt("persons"), nil
	}
	if dir := os.Getenv(EnvCPUProfile); dir != "" {
		f, err := os.Create(filepath.Join(dir, "import.pprof"))
		if err != nil {
			return nil, fmt.Errorf("cannot create CPU profile (%s): %w", EnvCPUProfile, err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
	}
	var cpu float64
	r.PostSeconds, r.Seconds, cpu, r.Persons, err = once()
	if os.Getenv(EnvCPUProfile) != "" {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return r, err
	}
	r.OrdersPerS = float64(o.Orders) / r.Seconds
	r.CPUPer100k = cpu / float64(o.Orders) * 1e5
	_, again, cpu, _, err := once()
	if err != nil {
		return r, err
	}
	r.AgainPerS = float64(o.Orders) / again
	r.AgainCPUPer100k = cpu / float64(o.Orders) * 1e5
	if o.Progress != nil {
		o.Progress("")
	}
	return r, nil
}

func importRequest(method, url, contentType string, body []byte) (int, string, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+queryToken)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// PrintImport writes r as a table.
func PrintImport(w io.Writer, r *ImportReport) {
	fmt.Fprintf(w, "import: %d orders (%s, %.1f MB), %d persons\n", r.Orders, r.Format, float64(r.Bytes)/1e6, r.Persons)
	fmt.Fprintf(w, "  POST → 202 (parsed, checked, in the log)  %8.2f s\n", r.PostSeconds)
	fmt.Fprintf(w, "  POST → applied by the builder             %8.2f s  %9.0f orders/s  (target ≥ %.0f)  %5.2f CPU-s per 100k orders\n", r.Seconds, r.OrdersPerS, r.Target, r.CPUPer100k)
	fmt.Fprintf(w, "  the same upload again (all dropped)                  %9.0f orders/s                   %5.2f CPU-s per 100k orders\n", r.AgainPerS, r.AgainCPUPer100k)
}

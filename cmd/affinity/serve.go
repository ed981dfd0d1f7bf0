package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/tracker"
)

// commonFlags are the flags of every role.
type commonFlags struct {
	data            string
	listen          string
	apiListen       string
	apiToken        string
	sites           *listFlag
	acceptWindow    time.Duration
	shutdownTimeout time.Duration
	demo            bool // serve only: the demo shop at /demo/
}

func addCommonFlags(fs *flag.FlagSet) *commonFlags {
	c := &commonFlags{sites: newListFlag("demo")}
	fs.StringVar(&c.data, "data", "./data", "directory of the service's state (event log, profiles, API token)")
	fs.StringVar(&c.listen, "listen", "127.0.0.1:8080", "address of the public collector (the snippet posts here)")
	fs.StringVar(&c.apiListen, "api-listen", "127.0.0.1:8081", "address of the internal listener: /healthz, /metrics, /debug/pprof, the query API")
	fs.StringVar(&c.apiToken, "api-token", "", "bearer token of the internal listener; empty: generated once and kept in <data>/api-token")
	fs.Var(c.sites, "site", "site keys that may post, KEY or KEY=ORIGIN|ORIGIN; repeatable or comma-separated")
	c.acceptWindow = 7 * 24 * time.Hour
	fs.Var(durationFlag{&c.acceptWindow}, "accept-window", "oldest client timestamp accepted, before the receive time (s, m, h, d, w)")
	c.shutdownTimeout = 30 * time.Second
	fs.Var(durationFlag{&c.shutdownTimeout}, "shutdown-timeout", "how long a graceful shutdown waits for in-flight batches")
	return c
}

func runServe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("affinity serve", flag.ContinueOnError)
	c := addCommonFlags(fs)
	logBytes := fs.Int64("log-max-bytes", 1<<30, "disk budget of the embedded event log not yet consumed; past it the collector answers 503")
	partitions := fs.Int("partitions", 8, "partitions of the embedded event log, fixed when it is created")
	keepConsumed := fs.Bool("log-keep-consumed", false, "never trim the embedded log, so that dump-log shows every stored event (tests, debugging); it then fills up to --log-max-bytes")
	fs.BoolVar(&c.demo, "demo", false, "also serve a demo shop at /demo/ on the collector, with a live panel of the visitor's own profile (not for production)")
	pf := addProfileFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	opts := storage.DefaultEmbeddedOptions(filepath.Join(c.data, "log"))
	opts.MaxBytes = *logBytes
	opts.Partitions = *partitions
	opts.Logger = log.Printf
	l, err := storage.OpenEmbeddedLog(opts)
	if err != nil {
		return err
	}
	if *keepConsumed {
		return runNode(ctx, c, untrimmedLog{l}, pf)
	}
	return runNode(ctx, c, l, pf)
}

func runCollect(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("affinity collect", flag.ContinueOnError)
	c := addCommonFlags(fs)
	brokers := newListFlag()
	fs.Var(brokers, "kafka", "Kafka bootstrap brokers, host:port[,host:port…] (required)")
	ko := storage.DefaultKafkaOptions()
	fs.StringVar(&ko.Topic, "topic", ko.Topic, "Kafka topic of the events")
	fs.IntVar(&ko.Partitions, "partitions", ko.Partitions, "partitions of the topic when it has to be created")
	fs.IntVar(&ko.ReplicationFactor, "replication-factor", ko.ReplicationFactor, "replication factor of the topic when it has to be created")
	fs.StringVar(&ko.Compression, "compression", ko.Compression, "compression of produced batches: snappy, lz4, zstd, gzip, none")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if len(brokers.values) == 0 {
		return errors.New("no Kafka brokers: set --kafka host:port (or AFFINITY_KAFKA)")
	}
	ko.Brokers = brokers.values
	ko.Logger = log.Printf
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	l, err := storage.OpenKafkaLog(octx, ko)
	if err != nil {
		return err
	}
	return runNode(ctx, c, l, nil)
}

// runNode serves the collector on l and the internal listener until ctx is
// done, then shuts down in the order that loses nothing: /healthz turns 503
// so load balancers stop sending, the collector stops accepting and finishes
// its in-flight batches (each acknowledged by the log or refused), the
// builder (when pf is set: serve) commits its current batch and stops, the
// log flushes and closes, the state DB closes, the internal listener stops
// last.
func runNode(ctx context.Context, c *commonFlags, l storage.Log, pf *profileFlags) (err error) {
	defer func() {
		if l != nil {
			if cerr := l.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("cannot close the event log: %w", cerr)
			}
		}
	}()
	sites, err := tracker.ParseSites(c.sites.values)
	if err != nil {
		return err
	}
	token, err := loadAPIToken(c.apiToken, c.data)
	if err != nil {
		return err
	}

	var prof *profiles // the builder and query API on <data>/state (serve)
	if pf != nil {
		if prof, err = openProfiles(c.data, pf, l, nil); err != nil {
			return err
		}
		defer func() { // runs before the log's Close: the builder stops first
			if cerr := prof.close(); cerr != nil && err == nil {
				err = cerr
			}
		}()
	}

	collectorMetrics := metrics.NewSet()
	co := tracker.DefaultOptions()
	co.Sites = sites
	co.Decode.AcceptWindow = c.acceptWindow
	co.Log = l
	co.Metrics = collectorMetrics
	extra, err := newCollectorExtra(c.demo, sites, token) // /sdk.js, /demo/
	if err != nil {
		return err
	}
	co.Extra = extra.Handle
	collector, err := tracker.New(co)
	if err != nil {
		return err
	}
	apiOpts := api.Options{
		Token:   token,
		Metrics: []*metrics.Set{collectorMetrics},
		Health:  collector.Health,
	}
	if prof != nil {
		apiOpts.Metrics = append(apiOpts.Metrics, prof.set)
		apiOpts.Health = joinHealth(collector.Health, prof.health)
		apiOpts.Status = prof.status
	}
	internal, err := api.New(apiOpts)
	if err != nil {
		return err
	}
	if prof != nil {
		prof.register(internal)
	}
	if err := collector.Listen(c.listen); err != nil {
		return err
	}
	if err := internal.Listen(c.apiListen); err != nil {
		return err
	}
	extra.setAPIAddr(internal.Addr())

	errc := make(chan error, 2)
	go func() { errc <- wrapServeErr("collector", collector.Serve()) }()
	go func() { errc <- wrapServeErr("internal listener", internal.Serve()) }()
	log.Printf("listening collector=http://%s api=http://%s data=%s sites=%s",
		collector.Addr(), internal.Addr(), c.data, strings.Join(c.sites.values, ","))

	select {
	case <-ctx.Done():
		log.Printf("shutting down: signal received")
	case err = <-errc:
		log.Printf("shutting down: %v", err)
	}

	sctx, cancel := context.WithTimeout(context.Background(), c.shutdownTimeout)
	defer cancel()
	step := func(name string, fn func() error) {
		start := time.Now()
		serr := fn()
		log.Printf("shutdown: %s in %s", name, time.Since(start).Round(time.Millisecond))
		if serr != nil {
			log.Printf("shutdown: %s: %v", name, serr)
			if err == nil {
				err = serr
			}
		}
	}
	internal.SetDraining()
	step("collector drained", func() error { return collector.Shutdown(sctx) })
	if prof != nil {
		step("builder stopped after its current batch", prof.stopBuilder)
	}
	step("event log flushed and closed", func() error {
		cerr := l.Close()
		l = nil
		return cerr
	})
	if prof != nil {
		step("state closed", prof.close)
	}
	step("internal listener stopped", func() error { return internal.Shutdown(sctx) })
	return err
}

func wrapServeErr(name string, err error) error {
	if err == nil {
		return fmt.Errorf("%s stopped", name)
	}
	return fmt.Errorf("%s failed: %w", name, err)
}

// loadAPIToken returns the configured token, or the one kept in
// <data>/api-token, generating and storing it (mode 0600) on first start.
func loadAPIToken(configured, data string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	path := filepath.Join(data, "api-token")
	b, err := os.ReadFile(path)
	if err == nil {
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
		return "", fmt.Errorf("API token file %s is empty: delete it or set --api-token", path)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("cannot read API token: %w", err)
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("cannot generate API token: %w", err)
	}
	t := hex.EncodeToString(raw[:])
	if err := os.MkdirAll(data, 0o755); err != nil {
		return "", fmt.Errorf("cannot create data directory: %w", err)
	}
	if err := os.WriteFile(path, []byte(t+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("cannot store API token: %w", err)
	}
	log.Printf("generated an API token for the internal listener, kept in %s", path)
	return t, nil
}

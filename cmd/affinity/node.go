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
	"github.com/affinityhq/affinity/profile/service"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/tracker"
)

// A node is one affinity process: the collector (serve, collect), the
// profile side (serve, build) or both, on one event log, with the internal
// listener. The three commands differ only in the log they open and the
// roles they run; runNode does the rest.

// nodeFlags are the flags of every command.
type nodeFlags struct {
	data            string
	apiListen       string
	apiToken        string
	shutdownTimeout time.Duration
}

func addNodeFlags(fs *flag.FlagSet) *nodeFlags {
	n := &nodeFlags{shutdownTimeout: 30 * time.Second}
	fs.StringVar(&n.data, "data", "./data", "directory of the node's state (event log, profiles, API token)")
	fs.StringVar(&n.apiListen, "api-listen", "127.0.0.1:8081", "address of the internal listener: /healthz, /metrics, /debug/pprof, the query API")
	fs.StringVar(&n.apiToken, "api-token", "", "bearer token of the internal listener; empty: generated once and kept in <data>/api-token")
	fs.Var(durationFlag{&n.shutdownTimeout}, "shutdown-timeout", "how long a graceful shutdown waits for in-flight requests")
	return n
}

// collectorFlags are the flags of the commands that run the collector.
type collectorFlags struct {
	listen       string
	sites        *listFlag
	siteRates    *listFlag
	acceptWindow time.Duration
	demo         bool // serve only: the demo shop at /demo/
}

func addCollectorFlags(fs *flag.FlagSet) *collectorFlags {
	c := &collectorFlags{sites: newListFlag("demo"), siteRates: newListFlag(), acceptWindow: tracker.DefaultOptions().Decode.AcceptWindow}
	fs.StringVar(&c.listen, "listen", "127.0.0.1:8080", "address of the public collector (the snippet posts here)")
	fs.Var(c.sites, "site", "site keys that may post, KEY or KEY=ORIGIN|ORIGIN; repeatable or comma-separated")
	fs.Var(c.siteRates, "site-rate", "events per second a site may post, KEY=N[:BURST] (BURST events at once, default N); beyond it the collector answers 429; repeatable or comma-separated (default: no limit)")
	fs.Var(durationFlag{&c.acceptWindow}, "accept-window", "oldest client timestamp accepted, before the receive time (s, m, h, d, w)")
	return c
}

// kafkaFlags are the flags of the commands on Kafka (collect, build).
type kafkaFlags struct {
	brokers *listFlag
	opts    storage.KafkaOptions
}

func addKafkaFlags(fs *flag.FlagSet) *kafkaFlags {
	k := &kafkaFlags{brokers: newListFlag(), opts: storage.DefaultKafkaOptions()}
	fs.Var(k.brokers, "kafka", "Kafka bootstrap brokers, host:port[,host:port…] (required)")
	fs.StringVar(&k.opts.Topic, "topic", k.opts.Topic, "Kafka topic of the events")
	fs.IntVar(&k.opts.Partitions, "topic-partitions", k.opts.Partitions, "partitions of the topic when it has to be created")
	fs.IntVar(&k.opts.ReplicationFactor, "replication-factor", k.opts.ReplicationFactor, "replication factor of the topic when it has to be created")
	fs.StringVar(&k.opts.Compression, "compression", k.opts.Compression, "compression of produced batches: snappy, lz4, zstd, gzip, none")
	return k
}

// open opens the Kafka log of topic (the event topic when empty).
func (k *kafkaFlags) open(ctx context.Context, topic string) (*storage.KafkaLog, error) {
	if len(k.brokers.values) == 0 {
		return nil, errors.New("no Kafka brokers: set --kafka host:port (or AFFINITY_KAFKA)")
	}
	o := k.opts
	o.Brokers = k.brokers.values
	o.Logger = log.Printf
	if topic != "" {
		o.Topic = topic
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return storage.OpenKafkaLog(ctx, o)
}

func runServe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("affinity serve", flag.ContinueOnError)
	nf := addNodeFlags(fs)
	cf := addCollectorFlags(fs)
	fs.BoolVar(&cf.demo, "demo", false, "also serve a demo shop at /demo/ on the collector, with a live panel of the visitor's own profile (not for production)")
	pf := addProfileFlags(fs)
	lo := storage.DefaultEmbeddedOptions("")
	fs.Int64Var(&lo.MaxBytes, "log-max-bytes", lo.MaxBytes, "disk budget, in bytes, of the embedded event log not yet consumed; past it the collector answers 503")
	fs.IntVar(&lo.Partitions, "log-partitions", lo.Partitions, "partitions of the embedded event log, fixed when it is created")
	keepConsumed := fs.Bool("log-keep-consumed", false, "never trim the embedded log, so that dump-log shows every stored event (tests, debugging); it then fills up to --log-max-bytes")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	lo.Dir = filepath.Join(nf.data, "log")
	lo.Logger = log.Printf
	el, err := storage.OpenEmbeddedLog(lo)
	if err != nil {
		return err
	}
	var l storage.Log = el
	if *keepConsumed {
		l = untrimmedLog{el}
	}
	return runNode(ctx, nf, l, cf, pf)
}

func runCollect(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("affinity collect", flag.ContinueOnError)
	nf := addNodeFlags(fs)
	cf := addCollectorFlags(fs)
	kf := addKafkaFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	l, err := kf.open(ctx, "")
	if err != nil {
		return err
	}
	return runNode(ctx, nf, l, cf, nil)
}

// runBuild runs the profile builder against Kafka: it consumes the owned
// partitions of the topic into <data>/state and serves the query API.
func runBuild(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("affinity build", flag.ContinueOnError)
	nf := addNodeFlags(fs)
	kf := addKafkaFlags(fs)
	pf := addProfileFlags(fs)
	own := fs.String("own", "", "partitions of the topic this builder consumes, e.g. 0-3,8; empty: all")
	changesTopic := fs.String("changes-topic", "affinity-segment-changes", "Kafka topic the segments' change records are produced to (key site|segment, JSON value); empty: none")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var err error
	if pf.owned, err = parsePartitions(*own); err != nil {
		return err
	}
	l, err := kf.open(ctx, "")
	if err != nil {
		return err
	}
	if *changesTopic != "" {
		cl, err := kf.open(ctx, *changesTopic)
		if err != nil {
			return errors.Join(fmt.Errorf("cannot open the changes topic (--changes-topic): %w", err), l.Close())
		}
		pf.changes = cl
	}
	return runNode(ctx, nf, l, nil, pf)
}

// runNode runs the collector (cf set) and the profile side (pf set) on l,
// with the internal listener, until ctx is done; then it shuts down in the
// order that loses nothing: /healthz turns 503 so load balancers stop
// sending; the collector stops accepting and finishes its in-flight batches
// (each acknowledged by the log or refused); the builder commits its
// current batch and stops; the internal listener lets in-flight queries
// finish; the log flushes and closes; the state DB closes last. runNode
// owns l (and pf.changes) and closes them.
func runNode(ctx context.Context, nf *nodeFlags, l storage.Log, cf *collectorFlags, pf *profileFlags) (err error) {
	closers := []func() error{l.Close} // on an early return; the shutdown below runs them in order
	if pf != nil && pf.changes != nil {
		closers = append(closers, pf.changes.Close)
	}
	defer func() {
		for _, c := range closers {
			err = errors.Join(err, c())
		}
	}()
	token, err := loadAPIToken(nf.apiToken, nf.data)
	if err != nil {
		return err
	}

	ao := api.Options{Token: token, Logger: log.Printf}
	var health []func(context.Context) error
	var prof *service.Service
	if pf != nil {
		if prof, err = openProfiles(nf.data, pf, l); err != nil {
			return err
		}
		closers = append([]func() error{prof.StopBuilder}, append(closers, prof.Close)...)
		ao.Metrics = append(ao.Metrics, prof.Metrics)
		ao.Status = prof.Status
		health = append(health, prof.Health)
	}
	var collector *tracker.Collector
	var extra *collectorExtra
	if cf != nil {
		sites, err := cf.parseSites()
		if err != nil {
			return err
		}
		co := tracker.DefaultOptions()
		co.Sites = sites
		co.Decode.AcceptWindow = cf.acceptWindow
		co.Log = l
		co.Metrics = metrics.NewSet()
		co.Logger = log.Printf
		if extra, err = newCollectorExtra(cf.demo, sites, token); err != nil { // /sdk.js, /demo/
			return err
		}
		co.Extra = extra.Handle
		if collector, err = tracker.New(co); err != nil {
			return err
		}
		ao.Metrics = append(ao.Metrics, co.Metrics)
		health = append(health, collector.Health)
	}
	ao.Health = joinHealth(health...)
	internal, err := api.New(ao)
	if err != nil {
		return err
	}
	if prof != nil {
		prof.Register(internal)
		registerBackup(internal, prof, l)
	}

	errc := make(chan error, 2)
	collectorURL := "-"
	if collector != nil {
		if err := collector.Listen(cf.listen); err != nil {
			return err
		}
		collectorURL = "http://" + collector.Addr()
	}
	if err := internal.Listen(nf.apiListen); err != nil {
		return err
	}
	removeAddr, err := writeAPIAddr(nf.data, internal.Addr()) // for affinity backup
	if err != nil {
		return err
	}
	defer removeAddr()
	if collector != nil {
		extra.setAPIAddr(internal.Addr())
		go func() { errc <- wrapServeErr("collector", collector.Serve()) }()
	}
	go func() { errc <- wrapServeErr("internal listener", internal.Serve()) }()
	roles := []string{}
	if collector != nil {
		roles = append(roles, "collector", "sites="+strings.Join(cf.sites.values, ","))
	}
	if prof != nil {
		roles = append(roles, "builder", "partitions="+partitionsString(pf.owned))
	}
	log.Printf("listening collector=%s api=http://%s data=%s %s", collectorURL, internal.Addr(), nf.data, strings.Join(roles, " "))

	select {
	case <-ctx.Done():
		log.Printf("shutting down: signal received")
	case err = <-errc:
		log.Printf("shutting down: %v", err)
	}

	sctx, cancel := context.WithTimeout(context.Background(), nf.shutdownTimeout)
	defer cancel()
	step := func(name string, fn func() error) {
		start := time.Now()
		serr := fn()
		log.Printf("shutdown: %s in %s", name, time.Since(start).Round(time.Millisecond))
		if serr != nil {
			log.Printf("shutdown: %s: %v", name, serr)
			err = errors.Join(err, serr)
		}
	}
	internal.SetDraining()
	if collector != nil {
		step("collector drained", func() error { return collector.Shutdown(sctx) })
	}
	if prof != nil {
		step("builder stopped after its current batch", prof.StopBuilder)
	}
	step("internal listener stopped", func() error { return internal.Shutdown(sctx) })
	closers = nil
	step("event log flushed and closed", l.Close)
	if pf != nil && pf.changes != nil {
		step("changes topic closed", pf.changes.Close)
	}
	if prof != nil {
		step("state closed", prof.Close)
	}
	return err
}

func wrapServeErr(name string, err error) error {
	if err == nil {
		return fmt.Errorf("%s stopped", name)
	}
	return fmt.Errorf("%s failed: %w", name, err)
}

// joinHealth returns a health check that fails when any of checks fails.
func joinHealth(checks ...func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		for _, c := range checks {
			if err := c(ctx); err != nil {
				return err
			}
		}
		return nil
	}
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

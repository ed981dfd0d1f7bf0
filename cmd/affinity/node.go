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
	"runtime/pprof"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/affinityhq/affinity/internal/duration"
	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/profile/campaign"
	"github.com/affinityhq/affinity/profile/cluster"
	"github.com/affinityhq/affinity/profile/console"
	"github.com/affinityhq/affinity/profile/defs"
	"github.com/affinityhq/affinity/profile/service"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/diskwatch"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker"
)

// A node is one affinity process: the collector (serve, collect), the
// profile side (serve, build) or both, on one event log, with the internal
// listener. The three commands differ only in the log they open and the
// roles they run; runNode does the rest, and type node has the one close
// path.

// nodeFlags are the flags of every command.
type nodeFlags struct {
	data            string
	apiListen       string
	apiToken        string
	shutdownTimeout time.Duration
	// minFree is --min-free-disk, for the commands with Badger databases
	// under --data (serve, build); -1 for collect.
	minFree int64
}

func addNodeFlags(fs *flag.FlagSet) *nodeFlags {
	n := &nodeFlags{shutdownTimeout: 30 * time.Second, minFree: -1}
	fs.StringVar(&n.data, "data", "./data", "directory of the node's state (event log, profiles, API token)")
	fs.StringVar(&n.apiListen, "api-listen", "127.0.0.1:8081", "address of the internal listener: /healthz, /metrics, /debug/pprof, the query API")
	fs.StringVar(&n.apiToken, "api-token", "", "bearer token of the internal listener; empty: generated once and kept in <data>/api-token")
	fs.Var(durationFlag{&n.shutdownTimeout}, "shutdown-timeout", "bound of the whole graceful shutdown (s, m, h); a step still running then is named in the log and the process exits with status 1")
	return n
}

// addMinFreeFlag adds --min-free-disk, whose default is the disk space the
// node's Badger databases may still write once writes stop (headroom, as
// diskwatch.Headroom computes it from their sizes); parts says which.
func (n *nodeFlags) addMinFreeFlag(fs *flag.FlagSet, headroom int64, parts string) {
	n.minFree = headroom
	fs.Var(bytesFlag{&n.minFree}, "min-free-disk",
		"free space to keep on the filesystem of --data (bytes, or with a unit: 512MiB, 2GB); below it the collector answers 503 with Retry-After, "+
			"the builder pauses and /healthz is 503, until space is freed; 0 turns the check off. The default is what Badger may still write "+
			"after writes stop (memtable WALs, their flushes, one L0 compaction), from the configured sizes: "+parts)
}

// openWatcher starts the disk watcher of --data for serve and build; nil
// for collect.
func (n *nodeFlags) openWatcher() (*diskwatch.Watcher, error) {
	if n.minFree < 0 {
		return nil, nil
	}
	wo := diskwatch.DefaultOptions(n.data)
	wo.MinFree, wo.Metrics, wo.Logger = n.minFree, metrics.NewSet(), log.Printf
	return diskwatch.New(wo)
}

// collectorFlags are the flags of the commands that run the collector.
type collectorFlags struct {
	listen       string
	sites        *listFlag
	siteRates    *listFlag
	writeKeys    *listFlag
	redirects    *listFlag
	acceptWindow time.Duration
	demo         bool // serve only: the demo shop at /demo/
	// defs is collect's reader of the definitions topic, for /e/'s
	// tokens (campaign.Heads); nil: none.
	defs *defs.Options
}

func addCollectorFlags(fs *flag.FlagSet) *collectorFlags {
	c := &collectorFlags{sites: newListFlag("demo"), siteRates: newListFlag(), writeKeys: newListFlag(), redirects: newListFlag(), acceptWindow: tracker.DefaultOptions().Decode.AcceptWindow}
	fs.StringVar(&c.listen, "listen", "127.0.0.1:8080", "address of the public collector (the snippet posts here)")
	fs.Var(c.sites, "site", "site keys that may post, KEY or KEY=ORIGIN|ORIGIN; repeatable or comma-separated")
	fs.Var(c.siteRates, "site-rate", "events per second a site may post, KEY=N[:BURST] (BURST events at once, default N); beyond it the collector answers 429; repeatable or comma-separated (default: no limit)")
	fs.Var(c.writeKeys, "write-key", "secret write key of a site for server-side events, SITE=SECRET (at least 16 bytes, never the public site key): "+
		"turns on the Segment-compatible API (POST /v1/batch, /v1/track, /v1/identify, /v1/page …), which takes it as the HTTP Basic auth username; repeatable or comma-separated (default: off)")
	fs.Var(c.redirects, "redirect-origin", "origin a campaign email's click (GET /e/c/{token}?to=URL) may redirect to, SITE=https://shop.example; repeatable or comma-separated (default: none, every click refused as an open redirect)")
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
	logRoom, stateRoom := lo.DiskHeadroom(), state.DefaultOptions("").DiskHeadroom()
	nf.addMinFreeFlag(fs, logRoom+stateRoom, fmt.Sprintf("event log %s + state %s", diskwatch.FormatBytes(logRoom), diskwatch.FormatBytes(stateRoom)))
	fs.Int64Var(&lo.MaxBytes, "log-max-bytes", lo.MaxBytes, "disk budget, in bytes, of the embedded event log not yet consumed; past it the collector answers 503")
	fs.IntVar(&lo.Partitions, "log-partitions", lo.Partitions, "partitions of the embedded event log, fixed when it is created")
	keepConsumed := fs.Bool("log-keep-consumed", false, "never trim the embedded log, so that dump-log shows every stored event (tests, debugging); it then fills up to --log-max-bytes")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	split, err := pf.useMemory(true)
	if err != nil {
		return err
	}
	split.ApplyLog(&lo)
	log.Printf("GOMAXPROCS %d (unless the GOMAXPROCS variable sets it: two Ps per CPU, so that a goroutine waiting on the disk leaves one to lookups)", storage.SpareProcs())
	w, err := nf.openWatcher()
	if err != nil {
		return err
	}
	lo.Dir = filepath.Join(nf.data, "log")
	lo.Logger, lo.OnBadgerError = log.Printf, w.Fault
	el, err := storage.OpenEmbeddedLog(lo)
	if err == nil {
		err = w.Watch(lo.Dir)
	}
	if err != nil {
		return errors.Join(err, closeIfOpen(el), w.Close())
	}
	var l storage.Log = el
	if *keepConsumed {
		l = untrimmedLog{el}
	}
	return runNode(ctx, nf, w, l, cf, pf)
}

// closeIfOpen closes l unless it is nil.
func closeIfOpen(l *storage.EmbeddedLog) error {
	if l == nil {
		return nil
	}
	return l.Close()
}

func runCollect(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("affinity collect", flag.ContinueOnError)
	nf := addNodeFlags(fs)
	cf := addCollectorFlags(fs)
	kf := addKafkaFlags(fs)
	defsTopic := addCollectDefsFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cf.defs = collectDefsOptions(*defsTopic, kf)
	l, err := kf.open(ctx, "")
	if err != nil {
		return err
	}
	return runNode(ctx, nf, nil, l, cf, nil)
}

// runBuild runs the profile builder against Kafka: it consumes the owned
// partitions of the topic into <data>/state and serves the query API.
func runBuild(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("affinity build", flag.ContinueOnError)
	nf := addNodeFlags(fs)
	kf := addKafkaFlags(fs)
	pf := addProfileFlags(fs)
	stateRoom := state.DefaultOptions("").DiskHeadroom()
	nf.addMinFreeFlag(fs, stateRoom, "state "+diskwatch.FormatBytes(stateRoom))
	own := fs.String("own", "", "partitions of the topic this builder consumes, e.g. 0-3,8; empty: those --group assigns it")
	gf := addGroupFlags(fs)
	changesTopic := fs.String("changes-topic", "affinity-segment-changes", "Kafka topic the segments' change records are produced to (key site|segment, JSON value), which a build group's new owner of a partition also reads whole for the feed emitted before the move; empty: none")
	df := addDefsFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if _, err := pf.useMemory(false); err != nil {
		return err
	}
	var err error
	if pf.owned, err = parsePartitions(*own); err != nil {
		return err
	}
	if pf.owned == nil { // a member of --group: its partitions come with each generation
		pf.owned, pf.group = []int{}, gf
		gf.brokers, gf.topic, gf.metrics = kf.brokers.values, kf.opts.Topic, metrics.NewSet()
	}
	pf.defs = df.options(fs, pf.group != nil, kf)
	w, err := nf.openWatcher()
	if err != nil {
		return err
	}
	l, err := kf.open(ctx, "")
	if err != nil {
		return errors.Join(err, w.Close())
	}
	if *changesTopic != "" {
		cl, err := kf.open(ctx, *changesTopic)
		if err != nil {
			return errors.Join(fmt.Errorf("cannot open the changes topic (--changes-topic): %w", err), l.Close(), w.Close())
		}
		pf.changes = cl
	}
	return runNode(ctx, nf, w, l, nil, pf)
}

// node is one running affinity process. Its fields are set as start brings
// each component up, and close takes down exactly those: one path for a
// failed start and for a shutdown.
type node struct {
	nf *nodeFlags
	// watch is the disk watcher of --data (serve, build; nil for collect):
	// the collector refuses and the builder pauses while it fails.
	watch   *diskwatch.Watcher
	log     storage.Log
	changes storage.Log // build: the Kafka topic of the segments' changes

	prof      *service.Service // serve, build
	member    *cluster.Member  // build in a group
	directory *cluster.Directory
	collector *tracker.Collector
	extra     *collectorExtra // /sdk.js and /demo/ on the collector
	defs      *defs.Log       // collect: its reader of the definitions topic
	heads     *campaign.Heads // collect: the campaigns it read there
	internal  *api.Server
	// removeAddr deletes <data>/api-addr, written for `affinity backup`
	// once the internal listener is bound.
	removeAddr func()
	errc       chan error // a listener that stopped serving
}

// runNode runs the collector (cf set) and the profile side (pf set) on l,
// with the internal listener, until ctx is done or a listener fails; then
// it closes the node. runNode owns w, l (and pf.changes) and closes them.
func runNode(ctx context.Context, nf *nodeFlags, w *diskwatch.Watcher, l storage.Log, cf *collectorFlags, pf *profileFlags) error {
	n := &node{nf: nf, watch: w, log: l, errc: make(chan error, 2)}
	if pf != nil {
		n.changes = pf.changes
	}
	err := n.start(cf, pf)
	if err == nil {
		select {
		case <-ctx.Done():
			log.Printf("shutting down: signal received")
		case err = <-n.errc:
			log.Printf("shutting down: %v", err)
		}
	}
	return errors.Join(err, n.close())
}

// start opens the profile side and the collector, binds both listeners and
// serves them, and logs the one "listening" line.
func (n *node) start(cf *collectorFlags, pf *profileFlags) error {
	token, err := loadAPIToken(n.nf.apiToken, n.nf.data)
	if err != nil {
		return err
	}
	ao := api.Options{Token: token, Logger: log.Printf}
	if pf != nil && pf.group != nil {
		pf.group.token = token // its person evaluator's hand-offs
	}
	var health []func(context.Context) error
	if n.watch != nil {
		ao.Metrics = append(ao.Metrics, n.watch.Metrics())
		health = append(health, func(context.Context) error { return n.watch.Err() })
	}
	if pf != nil {
		if n.prof, err = openProfiles(n.nf.data, pf, n.log, n.watch); err != nil {
			return err
		}
		ao.Metrics = append(ao.Metrics, n.prof.Metrics)
		ao.Status = n.prof.Status
		if pf.group != nil {
			ao.Metrics = append(ao.Metrics, pf.group.metrics)
			ao.Status = func(dst []byte) []byte { return n.clusterStatus(n.prof.Status(dst)) }
		}
		health = append(health, n.prof.Health)
	}
	if cf != nil {
		set, err := n.newCollector(cf, token)
		if err != nil {
			return err
		}
		ao.Metrics = append(ao.Metrics, set)
		health = append(health, n.collector.Health)
		if n.defs != nil {
			ao.Status = n.campaignsStatus
		}
	}
	if n.prof != nil && n.extra != nil && n.extra.site != "" {
		if err := defineDemoSegments(n.prof.Segments, n.extra.site); err != nil {
			return err
		}
	}
	ao.Health = joinHealth(health...)
	if n.internal, err = api.New(ao); err != nil {
		return err
	}
	if n.prof != nil {
		n.prof.Register(n.internal)
		registerBackup(n.internal, n.prof, n.log)
		console.Register(n.internal) // /console/: pages calling the query API above
	}

	collectorURL := "-"
	if n.collector != nil {
		if err := n.collector.Listen(cf.listen); err != nil {
			return err
		}
		collectorURL = "http://" + n.collector.Addr()
	}
	if err := n.internal.Listen(n.nf.apiListen); err != nil {
		return err
	}
	if n.removeAddr, err = writeAPIAddr(n.nf.data, n.internal.Addr()); err != nil { // for affinity backup
		return err
	}
	if pf != nil && pf.group != nil {
		if err := n.startMember(pf.group, n.internal.Addr()); err != nil {
			return err
		}
	}
	if n.collector != nil {
		n.extra.setAPIAddr(n.internal.Addr())
		go func() { n.errc <- wrapServeErr("collector", n.collector.Serve()) }()
	}
	go func() { n.errc <- wrapServeErr("internal listener", n.internal.Serve()) }()
	roles := []string{}
	if n.collector != nil {
		roles = append(roles, "collector", "sites="+strings.Join(cf.sites.values, ","))
	}
	if n.prof != nil {
		if pf.group != nil {
			roles = append(roles, "builder", "group="+pf.group.opts.Group, "api="+n.member.API())
		} else {
			roles = append(roles, "builder", "partitions="+partitionsString(pf.owned))
		}
	}
	log.Printf("listening collector=%s api=http://%s data=%s %s", collectorURL, n.internal.Addr(), n.nf.data, strings.Join(roles, " "))
	return nil
}

// newCollector creates the collector of the sites of cf on the node's log
// and returns its metrics.
func (n *node) newCollector(cf *collectorFlags, token string) (*metrics.Set, error) {
	sites, err := cf.parseSites()
	if err != nil {
		return nil, err
	}
	co := tracker.DefaultOptions()
	co.Sites = sites
	co.Decode.AcceptWindow = cf.acceptWindow
	co.Log = n.log
	if n.watch != nil {
		co.Writable = n.watch.Err
	}
	co.Metrics = metrics.NewSet()
	co.Logger = log.Printf
	if n.extra, err = newCollectorExtra(cf.demo, sites, token); err != nil {
		return nil, err
	}
	co.Extra = n.extra.Handle
	switch {
	case n.prof != nil:
		co.Engagement = n.prof.Campaigns
	case cf.defs != nil: // collect: the campaigns' heads from the topic
		if co.Engagement, err = n.followCampaigns(cf.defs); err != nil {
			return nil, err
		}
	}
	n.collector, err = tracker.New(co)
	return co.Metrics, err
}

// followCampaigns starts collect's reader of the definitions topic and
// returns the campaigns' heads it keeps; /e/ answers 503 until it has
// read the topic to its end, without holding the collector's start.
func (n *node) followCampaigns(o *defs.Options) (*campaign.Heads, error) {
	var err error
	if n.defs, err = defs.New(*o, nil); err != nil {
		return nil, err
	}
	n.heads = campaign.NewHeads()
	n.heads.Follow(n.defs)
	if _, err := n.defs.Follow(n.heads.ApplyDefinition); err != nil {
		return nil, err
	}
	return n.heads, nil
}

// campaignsStatus appends collect's line of /healthz: where its reader
// of the definitions topic is and the campaigns it holds.
func (n *node) campaignsStatus(dst []byte) []byte {
	return fmt.Appendf(dst, "definitions topic=%s applied=%d caught_up=%t campaigns=%d\n", n.defs.Topic(), n.defs.Applied(), n.defs.CaughtUp(), n.heads.Len())
}

// close shuts down what start brought up, in the order that loses nothing:
// /healthz turns 503 so load balancers stop sending; the collector stops
// accepting and finishes its in-flight batches (each acknowledged by the
// log or refused); the builder commits its current batch and stops; the
// internal listener lets in-flight queries finish; the log flushes and
// closes; the state database closes last. Each step logs how long it took.
//
// --shutdown-timeout bounds the whole of it: a step still running when the
// time is up (a Badger flush retrying forever into a removed directory) is
// named in the log, the steps after it are skipped, and close returns an
// error, so that the process exits with status 1 instead of hanging.
// dumpGoroutines writes every goroutine's stack to
// <data>/shutdown-goroutines.txt (stderr when that cannot be written), so
// that a stuck shutdown step can be diagnosed after the process is gone.
func (n *node) dumpGoroutines() {
	path := filepath.Join(n.nf.data, "shutdown-goroutines.txt")
	f, err := os.Create(path)
	if err != nil {
		log.Printf("shutdown: goroutines follow (cannot write %s: %v)", path, err)
		_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
		return
	}
	err = pprof.Lookup("goroutine").WriteTo(f, 2)
	if err = errors.Join(err, f.Close()); err != nil {
		log.Printf("shutdown: cannot write the goroutines to %s: %v", path, err)
		return
	}
	log.Printf("shutdown: the goroutines' stacks are in %s", path)
}

func (n *node) close() error {
	timeout := n.nf.shutdownTimeout
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var errs []error
	stuck := false
	step := func(name string, fn func() error) {
		if stuck {
			log.Printf("shutdown: %s skipped", name)
			return
		}
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- fn() }()
		select {
		case err := <-done:
			log.Printf("shutdown: %s in %s", name, time.Since(start).Round(time.Millisecond))
			if err != nil {
				log.Printf("shutdown: %s: %v", name, err)
				errs = append(errs, err)
			}
		case <-ctx.Done():
			stuck = true
			err := fmt.Errorf("shutdown: step %q did not finish within --shutdown-timeout %s; exiting without it", name, duration.Format(timeout))
			log.Printf("%s", err)
			n.dumpGoroutines()
			errs = append(errs, err)
		}
	}
	if n.internal != nil {
		n.internal.SetDraining()
	}
	if n.collector != nil {
		step("collector drained", func() error { return n.collector.Shutdown(ctx) })
	}
	if n.defs != nil {
		step("definitions reader stopped", n.defs.Close)
	}
	if n.member != nil {
		// Own nothing first, then leave: the group moves the partitions
		// at once instead of after the session timeout.
		step("left the consumer group", n.member.Close)
	}
	if n.directory != nil {
		_ = n.directory.Close()
	}
	if n.prof != nil {
		step("builder stopped after its current batch", n.prof.StopBuilder)
	}
	if n.internal != nil {
		step("internal listener stopped", func() error { return n.internal.Shutdown(ctx) })
	}
	if n.removeAddr != nil {
		n.removeAddr()
	}
	step("event log flushed and closed", n.log.Close)
	if n.changes != nil {
		step("changes topic closed", n.changes.Close)
	}
	if n.prof != nil {
		step("state closed", n.prof.Close)
	}
	if n.watch != nil {
		n.watch.Close()
	}
	return errors.Join(errs...)
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

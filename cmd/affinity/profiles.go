package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/VictoriaMetrics/metrics"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/query"
	"github.com/affinityhq/affinity/profile/segment"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/state"
)

// profileFlags are the flags of the roles that build profiles (serve,
// build): the scoring configuration and the builder's resources.
type profileFlags struct {
	cfg        *profile.Config
	cacheBytes int64
	blockCache int64
	// rules holds the thresholds of the segments' lifecycle and rfm.*.
	rules segment.Config
	// owned are the log partitions this builder consumes (build --own);
	// nil: all.
	owned []int
	// changes, set by build, is the Kafka changes topic the segments'
	// change records are produced to (changes.go).
	changes storage.Log
}

func addProfileFlags(fs *flag.FlagSet) *profileFlags {
	pf := &profileFlags{cfg: profile.DefaultConfig(), rules: segment.DefaultConfig()}
	fs.Var(configFlag{pf.rules.SetLifecycle, true}, "lifecycle",
		"a threshold of the segments' lifecycle stages: new=DUR, active=N/DUR, lapsing=DUR or lost=DUR; repeatable (defaults new=30d, active=2/180d, lapsing=60d, lost=365d)")
	fs.Var(configFlag{pf.rules.SetRFM, false}, "rfm",
		"the 4 ascending edges of one RFM axis of the segments: r=DUR,DUR,DUR,DUR, f=N,N,N,N or m=N,N,N,N; repeatable (defaults r=30d,90d,180d,365d f=2,3,5,10 m=50,100,250,500)")
	fs.Var(configFlag{pf.cfg.SetHalfLife, true}, "half-life",
		"half-life of interest scores, DUR (every dimension) or DIM=DUR, DIM one of brand, category, age, price, product; s, m, h, d, w; repeatable (default 14d)")
	fs.Var(configFlag{pf.cfg.SetWeight, true}, "weight",
		"weight of an event type, EVENT=W or EVENT.DIM=W, e.g. cart=3, uncart.product=-3; repeatable (defaults: view 1, cart 3, purchase 5, uncart.product -3)")
	fs.Var(configFlag{pf.cfg.SetTopK, true}, "top-k",
		"values kept per dimension, K or DIM=K (0 turns a dimension off); repeatable (default 32)")
	fs.Var(configFlag{pf.cfg.SetPriceBands, false}, "price-bands",
		"ascending upper edges of the price bands, comma-separated (default 10,25,50,100,250)")
	fs.Int64Var(&pf.cacheBytes, "profile-cache-bytes", builder.DefaultOptions().CacheBytes,
		"memory, in bytes, of the builder's cache of hot profiles")
	fs.Int64Var(&pf.blockCache, "state-block-cache-bytes", state.DefaultOptions("").BlockCacheBytes,
		"memory, in bytes, of the state database's block cache")
	return pf
}

// configFlag applies each value to the scoring configuration as it is set;
// multi splits a value on commas first (for the environment variable).
type configFlag struct {
	set   func(string) error
	multi bool
}

func (f configFlag) String() string { return "" }

func (f configFlag) Set(s string) error {
	if !f.multi {
		return f.set(s)
	}
	for _, v := range strings.Split(s, ",") {
		if err := f.set(strings.TrimSpace(v)); err != nil {
			return err
		}
	}
	return nil
}

// profiles is the profile side of a node: the state DB under <data>/state,
// the builder consuming the log into it, and the query API reading it.
type profiles struct {
	db  *state.DB
	b   *builder.Builder
	q   *query.Handler
	seg *membership.Engine // segment membership, the builder's Hook
	set *metrics.Set

	stopOnce, closeOnce sync.Once
	stopErr, closeErr   error
}

// openProfiles opens the state DB and starts the builder on the partitions
// pf.owned of l (nil: all).
func openProfiles(data string, pf *profileFlags, l storage.Log) (*profiles, error) {
	so := state.DefaultOptions(filepath.Join(data, "state"))
	so.BlockCacheBytes = pf.blockCache
	so.Logger = log.Printf
	db, err := state.Open(so)
	if err != nil {
		return nil, err
	}
	p := &profiles{db: db, set: metrics.NewSet()}
	mo := membership.DefaultOptions() // segments: the builder's Hook
	mo.State, mo.Config, mo.Metrics, mo.Logger = db, pf.cfg, p.set, log.Printf
	if pf.changes != nil {
		mo.Sink = changesSink(pf.changes)
	}
	mo.Rules = pf.rules
	if p.seg, err = membership.New(mo); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	bo := builder.DefaultOptions()
	bo.Log, bo.State, bo.Config, bo.Hook = l, db, pf.cfg, p.seg
	bo.Partitions = pf.owned
	bo.Metrics = p.set
	bo.Logger = log.Printf
	bo.CacheBytes = pf.cacheBytes
	if p.b, err = builder.New(bo); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	qo := query.DefaultOptions()
	qo.State, qo.Builder, qo.Config, qo.Metrics, qo.Segments = db, p.b, pf.cfg, p.set, p.seg
	if p.q, err = query.New(qo); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	if err := p.b.Start(); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	if err := p.seg.Start(p.b); err != nil {
		return nil, errors.Join(err, p.b.Close(), db.Close())
	}
	return p, nil
}

// register adds the query API to the internal listener.
func (p *profiles) register(s *api.Server) { p.q.Register(s) }

// health reports the builder's health (for /healthz).
func (p *profiles) health(ctx context.Context) error { return p.b.Health(ctx) }

// status appends the builder's progress (events applied, lag per
// partition) for the body of /healthz.
func (p *profiles) status(dst []byte) []byte { return p.b.Status().AppendText(dst) }

// stopBuilder lets the builder commit the batch it is applying and stop.
func (p *profiles) stopBuilder() error {
	p.stopOnce.Do(func() { p.stopErr = errors.Join(p.seg.Close(), p.b.Close()) })
	return p.stopErr
}

// close stops the builder if needed and closes the state DB. Idempotent.
func (p *profiles) close() error {
	p.closeOnce.Do(func() { p.closeErr = errors.Join(p.stopBuilder(), p.db.Close()) })
	return p.closeErr
}

// parsePartitions parses "0-3,8" into partition numbers; "" is nil (all).
func parsePartitions(s string) ([]int, error) {
	var ps []int
	for _, r := range strings.Split(s, ",") {
		if r = strings.TrimSpace(r); r == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(r, "-")
		a, err := strconv.Atoi(lo)
		b := a
		if err == nil && isRange {
			b, err = strconv.Atoi(hi)
		}
		if err != nil || a < 0 || b < a {
			return nil, fmt.Errorf("invalid partitions %q: want N, N-M, comma-separated", s)
		}
		for p := a; p <= b; p++ {
			ps = append(ps, p)
		}
	}
	return ps, nil
}

// partitionsString prints owned partitions for the log, "all" for nil.
func partitionsString(owned []int) string {
	if owned == nil {
		return "all"
	}
	return strings.Trim(strings.Join(strings.Fields(fmt.Sprint(owned)), ","), "[]")
}

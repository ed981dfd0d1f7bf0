package main

import (
	"flag"
	"fmt"
	"log"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/profile/segment"
	"github.com/affinityhq/affinity/profile/service"
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

// openProfiles starts the profile side of a node (profile/service) on l,
// with its state under <data>/state.
func openProfiles(data string, pf *profileFlags, l storage.Log) (*service.Service, error) {
	so := service.Options{
		Dir:             filepath.Join(data, "state"),
		Log:             l,
		Config:          pf.cfg,
		Rules:           &pf.rules,
		Partitions:      pf.owned,
		CacheBytes:      pf.cacheBytes,
		BlockCacheBytes: pf.blockCache,
		Logger:          log.Printf,
	}
	if pf.changes != nil {
		so.ChangesSink = changesSink(pf.changes)
	}
	return service.Open(so)
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

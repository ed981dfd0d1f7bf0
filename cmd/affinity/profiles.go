package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/affinityhq/affinity/internal/budget"
	"github.com/affinityhq/affinity/internal/duration"
	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/defs"
	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/query"
	"github.com/affinityhq/affinity/profile/segment"
	"github.com/affinityhq/affinity/profile/service"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/diskwatch"
	"github.com/affinityhq/affinity/tracker/event"
)

// profileFlags are the flags of the roles that build profiles (serve,
// build): the scoring configuration and the builder's resources.
type profileFlags struct {
	cfg *profile.Config
	// memory is the node's memory budget (--memory); split is its split,
	// set by useMemory once the flags are parsed.
	memory budget.Bytes
	split  *budget.Split
	// catalogBytes bounds a catalog upload (query.Options.MaxCatalogBytes).
	catalogBytes int
	// retention deletes visitors idle that long (builder.Options.Retention).
	retention time.Duration
	// rules holds the thresholds of the segments' lifecycle and rfm.*.
	rules segment.Config
	// owned are the log partitions this builder consumes (build --own);
	// nil: all; empty: those the consumer group (group) assigns.
	owned []int
	// group, for build without --own: the consumer group it joins.
	group *groupFlags
	// changes, set by build, is the Kafka changes topic the segments'
	// change records are produced to (changes.go).
	changes storage.Log
	// defs, set by build, is its definitions topic (defs.go); nil: the
	// definitions apply to this node alone.
	defs *defs.Options
}

func addProfileFlags(fs *flag.FlagSet) *profileFlags {
	pf := &profileFlags{cfg: profile.DefaultConfig(), rules: segment.DefaultConfig(), memory: budget.Default}
	fs.Var(&pf.memory, "memory",
		"memory budget of the node, e.g. 512MiB, 4GiB: split among the databases' memtables and caches, the hot-profile cache and the Go heap limit (GOMEMLIMIT; a lower one in the environment wins)")
	fs.Var(configFlag{pf.rules.SetLifecycle, pf.lifecycleString, true}, "lifecycle",
		"a threshold of the segments' lifecycle stages: new=DUR, active=N/DUR, lapsing=DUR or lost=DUR; repeatable")
	fs.Var(configFlag{pf.rules.SetRFM, pf.rfmString, false}, "rfm",
		"the 4 ascending edges of one RFM axis of the segments: r=DUR,DUR,DUR,DUR, f=N,N,N,N or m=N,N,N,N; repeatable")
	fs.Var(configFlag{pf.cfg.SetHalfLife, pf.halfLifeString, true}, "half-life",
		"half-life of interest scores, DUR (every dimension) or DIM=DUR, DIM one of brand, category, age, price, product; s, m, h, d, w; repeatable")
	fs.Var(configFlag{pf.cfg.SetWeight, pf.weightString, true}, "weight",
		"weight of an event type, EVENT=W or EVENT.DIM=W, e.g. cart=3, uncart.product=-3; repeatable")
	fs.Var(configFlag{pf.cfg.SetTopK, pf.topKString, true}, "top-k",
		"values kept per dimension, K or DIM=K (0 turns a dimension off); repeatable")
	fs.Var(configFlag{pf.cfg.SetPriceBands, pf.priceBandsString, false}, "price-bands",
		"ascending upper edges of the price bands, comma-separated")
	fs.Var(configFlag{pf.cfg.SetIndexDims, func() string { return strings.Join(pf.cfg.IndexDims(), ",") }, false}, "index-dims",
		"dimensions in the interest index, comma-separated, or all or none: each costs the builder index writes per event; /v1/interests and index-served backfills need their dimension in it (a change rebuilds or drops entries at the next start)")
	fs.IntVar(&pf.catalogBytes, "catalog-max-bytes", query.DefaultOptions().MaxCatalogBytes,
		"largest catalog upload, in bytes after gunzip; a larger PUT is refused with 413")
	fs.Var(durationFlag{&pf.retention}, "retention",
		"delete a visitor with no event for this long (event time; s, m, h, d, w), once, with \"expired\" exits from its segments; 0: off")
	return pf
}

// configFlag applies each value to the scoring configuration as it is set;
// multi splits a value on commas first (for the environment variable).
// show prints the configuration's current values: before parsing, the
// defaults -h shows.
type configFlag struct {
	set   func(string) error
	show  func() string
	multi bool
}

func (f configFlag) String() string {
	if f.show == nil { // the zero value the flag package probes
		return ""
	}
	return f.show()
}

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

func (pf *profileFlags) lifecycleString() string {
	l := pf.rules.Lifecycle
	return fmt.Sprintf("new=%s,active=%d/%s,lapsing=%s,lost=%s", segment.FormatDuration(l.New),
		l.ActiveMin, segment.FormatDuration(l.ActiveWindow), segment.FormatDuration(l.Lapsing), segment.FormatDuration(l.Lost))
}

func (pf *profileFlags) rfmString() string {
	r := pf.rules.RFM
	var rs, fs, ms []string
	for i := range r.Recency {
		rs = append(rs, segment.FormatDuration(r.Recency[i]))
		fs = append(fs, formatFloat(r.Frequency[i]))
		ms = append(ms, formatFloat(r.Monetary[i]))
	}
	return "r=" + strings.Join(rs, ",") + " f=" + strings.Join(fs, ",") + " m=" + strings.Join(ms, ",")
}

func (pf *profileFlags) halfLifeString() string {
	return perDim(func(d profile.Dim) string { return duration.Format(pf.cfg.HalfLife(d)) })
}

func (pf *profileFlags) topKString() string {
	return perDim(func(d profile.Dim) string { return strconv.Itoa(pf.cfg.TopK(d)) })
}

func (pf *profileFlags) priceBandsString() string {
	var s []string
	for _, b := range pf.cfg.PriceBands() {
		s = append(s, formatFloat(b))
	}
	return strings.Join(s, ",")
}

// weightString prints the non-zero weights as --weight takes them: EVENT=W
// when W is the same on every dimension, else EVENT.DIM=W.
func (pf *profileFlags) weightString() string {
	var s []string
	for t := event.Type(1); t < event.NumTypes; t++ {
		w := func(d profile.Dim) string { return formatFloat(pf.cfg.Weight(t, d)) }
		if all := perDim(w); !strings.Contains(all, "=") {
			if all != "0" {
				s = append(s, t.String()+"="+all)
			}
			continue
		}
		for d := range profile.Dim(profile.NumDims) {
			if v := w(d); v != "0" {
				s = append(s, t.String()+"."+d.String()+"="+v)
			}
		}
	}
	return strings.Join(s, ",")
}

// perDim prints one value when val is the same on every dimension, else
// DIM=VAL for each, comma-separated.
func perDim(val func(profile.Dim) string) string {
	first, same := val(0), true
	var s []string
	for d := range profile.Dim(profile.NumDims) {
		v := val(d)
		same = same && v == first
		s = append(s, d.String()+"="+v)
	}
	if same {
		return first
	}
	return strings.Join(s, ",")
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// openProfiles starts the profile side of a node (profile/service) on l,
// with its state under <data>/state, paused while w fails (w may be nil).
func openProfiles(data string, pf *profileFlags, l storage.Log, w *diskwatch.Watcher) (*service.Service, error) {
	so := service.Options{
		Dir:             filepath.Join(data, "state"),
		Log:             l,
		Config:          pf.cfg,
		Rules:           &pf.rules,
		Partitions:      pf.owned,
		Memory:          pf.split,
		MaxCatalogBytes: pf.catalogBytes,
		Retention:       pf.retention,
		Logger:          log.Printf,
	}
	so.Definitions = pf.defs
	if pf.changes != nil {
		so.ChangesSink = membership.LogSink(pf.changes)
	}
	if pf.group != nil {
		so.Marks, so.GroupToken = pf.group.marks, pf.group.token
		if pf.changes != nil {
			so.ChangesHistory = membership.LogHistory(pf.changes)
		}
	}
	if w != nil {
		so.Writable, so.OnBadgerError = w.Err, w.Fault
	}
	s, err := service.Open(so)
	if err != nil {
		return nil, err
	}
	if w != nil {
		if err := w.Watch(so.Dir); err != nil {
			return nil, errors.Join(err, s.Close())
		}
	}
	return s, nil
}

// useMemory splits the --memory budget for a node with or without the
// embedded log, sets the process's Go heap limit and logs the split; the
// profile side takes its part when it opens.
func (pf *profileFlags) useMemory(embeddedLog bool) (budget.Split, error) {
	s, err := budget.New(int64(pf.memory), embeddedLog)
	if err != nil {
		return s, err
	}
	pf.split = &s
	limit := s.SetGoMemLimit()
	log.Printf("%s; Go heap limit in force %s", s, budget.Format(limit))
	return s, nil
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

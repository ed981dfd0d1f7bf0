// Package service wires the profile side of an affinity node: the state
// database, segment membership as the builder's Hook, the builder consuming
// the event log, and the query API reading the state. `affinity serve` and
// `affinity build` run it, and so does bench's query scenario: one wiring.
package service

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/affinityhq/affinity/internal/budget"
	"github.com/affinityhq/affinity/internal/logger"
	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/profile/campaign"
	"github.com/affinityhq/affinity/profile/defs"
	"github.com/affinityhq/affinity/profile/importer"
	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/query"
	"github.com/affinityhq/affinity/profile/segment"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/state"
)

// The segment engine tells retention's deletes from erasures.
var _ builder.Expirer = (*membership.Engine)(nil)

// Options configures a Service. Dir and Log are required; zero fields get
// the defaults of the packages they configure.
type Options struct {
	// Dir is the directory of the state database.
	Dir string
	// Log is the event log the builder consumes. The Service does not close it.
	Log storage.Log
	// Config is the scoring configuration; nil: profile.DefaultConfig().
	Config *profile.Config
	// Rules holds the thresholds of the segments' lifecycle and rfm.*;
	// nil: segment.DefaultConfig().
	Rules *segment.Config
	// Partitions are the log partitions the builder owns; nil: all.
	Partitions []int
	// Memory, if set, sizes the state database's memtables and block cache
	// and the builder's hot-profile cache; nil: their packages' defaults.
	// The Go heap limit of the split is the process's to set
	// (budget.Split.SetGoMemLimit), not the Service's.
	Memory *budget.Split
	// MaxCatalogBytes bounds one catalog upload; 0: the query API's default.
	MaxCatalogBytes int
	// ChangesSink, if set, receives the segments' change records (the
	// Kafka changes topic of `affinity build`).
	ChangesSink func(ctx context.Context, cs []membership.Change) error
	// ChangesHistory, if set, reads the changes topic whole: a group
	// member's new owner of a partition copies what was emitted before it
	// took it over from it (membership.Options.History).
	ChangesHistory func(ctx context.Context, fn func(value []byte) error) error
	// Marks, if set, are a group member's emission marks (cluster.Marks):
	// the sequencer's Gate and the builder's EmitMark, so that each change
	// record goes out once across the group.
	Marks EmissionMarks
	// GroupToken, if set, makes the node a build group member whose person
	// evaluator evaluates the persons of its partitions over the group and
	// hands the others' marks to their evaluators with this API token
	// (membership.Persons, query.Handler.Persons).
	GroupToken string
	// Logger receives errors and warnings; nil discards them.
	Logger logger.Logger
	// Now is the clock of segment membership and the query API; nil:
	// time.Now. Tests set it.
	Now func() time.Time
	// Retention, if positive, deletes visitors with no event for that long
	// (builder.Options.Retention); 0: off.
	Retention time.Duration
	// SyncInterval is how often the builder fsyncs the state and trims the
	// log; 0: the builder's default.
	SyncInterval time.Duration
	// Writable, if set, pauses the builder while it fails
	// (builder.Options.Writable): the node's disk watcher.
	Writable func() error
	// OnBadgerError, if set, sees every error the state's Badger logs
	// (state.Options.OnBadgerError).
	OnBadgerError func(msg string)
	// Definitions, if set, is the definitions topic the query API writes
	// segments, webhooks, lists and catalog uploads to, and the node
	// applies them from (profile/defs); nil: they apply locally.
	Definitions *defs.Options
}

// EmissionMarks are what cluster.Marks give the segment engine and the
// builder.
type EmissionMarks interface {
	membership.Gate
	Mark(partition int) int64
}

// Service is a running profile side. Open starts it; StopBuilder and Close
// stop it.
type Service struct {
	DB       *state.DB
	Builder  *builder.Builder
	Segments *membership.Engine
	// Campaigns is the campaign store: the builder counts into it, the
	// query API serves it, the collector resolves tokens with it.
	Campaigns *campaign.Store
	Query     *query.Handler
	// Definitions is the definitions topic's consumer; nil without
	// Options.Definitions.
	Definitions *defs.Log
	// Metrics holds the series of the builder, segments and query API.
	Metrics *metrics.Set

	stopOnce, closeOnce sync.Once
	stopErr, closeErr   error
}

// Open opens the state database under opts.Dir and starts the builder and
// segment membership on it.
func Open(opts Options) (*Service, error) {
	if opts.Config == nil {
		opts.Config = profile.DefaultConfig()
	}
	so := state.DefaultOptions(opts.Dir)
	if opts.Memory != nil {
		opts.Memory.ApplyState(&so)
	}
	so.Logger, so.OnBadgerError = opts.Logger, opts.OnBadgerError
	db, err := state.Open(so)
	if err != nil {
		return nil, err
	}
	s := &Service{DB: db, Metrics: metrics.NewSet()}
	mo := membership.DefaultOptions()
	mo.State, mo.Config, mo.Metrics, mo.Logger, mo.Sink = db, opts.Config, s.Metrics, opts.Logger, opts.ChangesSink
	if opts.Now != nil {
		mo.Now = opts.Now
	}
	if opts.Marks != nil {
		mo.Gate, mo.History = opts.Marks, opts.ChangesHistory
	}
	if opts.Rules != nil {
		mo.Rules = *opts.Rules
	}
	if s.Segments, err = membership.New(mo); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	if s.Campaigns, err = campaign.New(campaign.Options{State: db, Segments: s.Segments, Now: opts.Now}); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	s.Segments.SetCampaigns(s.Campaigns) // received(), converted()
	bo := builder.DefaultOptions()
	bo.Log, bo.State, bo.Config, bo.Hook = opts.Log, db, opts.Config, s.Segments
	bo.Counter = func(p int) builder.Counter { return s.Campaigns.NewCounter(p) }
	bo.Partitions, bo.Metrics, bo.Logger, bo.SyncInterval = opts.Partitions, s.Metrics, opts.Logger, opts.SyncInterval
	bo.Writable, bo.Retention, bo.Erasures = opts.Writable, opts.Retention, s.Segments.EachErased
	if opts.Marks != nil {
		bo.EmitMark = opts.Marks.Mark
	}
	if opts.Now != nil {
		bo.Now = opts.Now
	}
	if s.Builder, err = builder.New(bo); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	imo := importer.Options{Log: opts.Log, Committed: db, Metrics: s.Metrics}
	qo := query.DefaultOptions()
	if qo.Importer, err = importer.New(imo); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	qo.State, qo.Builder, qo.Config, qo.Metrics, qo.Segments, qo.Logger = db, s.Builder, opts.Config, s.Metrics, s.Segments, opts.Logger
	qo.Campaigns = s.Campaigns
	if opts.Now != nil {
		qo.Now = opts.Now
	}
	if opts.MaxCatalogBytes > 0 {
		qo.MaxCatalogBytes = opts.MaxCatalogBytes
	}
	if opts.Definitions != nil {
		if s.Definitions, err = defs.New(*opts.Definitions, db); err != nil {
			return nil, errors.Join(err, db.Close())
		}
		qo.Definitions = s.Definitions
	}
	if s.Query, err = query.New(qo); err != nil {
		return nil, errors.Join(err, s.closeDefinitions(), db.Close())
	}
	if opts.GroupToken != "" {
		// A member evaluates the persons of its partitions over the group.
		s.Segments.SetPersons(s.Query.Persons(opts.Log.Partitions(), opts.GroupToken))
	}
	if err := s.Builder.Start(); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	if err := s.Segments.Start(s.Builder); err != nil {
		return nil, errors.Join(err, s.Builder.Close(), db.Close())
	}
	if s.Definitions != nil {
		// The node answers once it holds every definition on the topic.
		if err := s.Definitions.Start(s.Query.ApplyDefinition); err != nil {
			return nil, errors.Join(err, s.Close())
		}
	}
	return s, nil
}

// closeDefinitions stops the definitions consumer, if any.
func (s *Service) closeDefinitions() error {
	if s.Definitions == nil {
		return nil
	}
	return s.Definitions.Close()
}

// Register adds the query and segment API to the internal listener.
func (s *Service) Register(srv *api.Server) { s.Query.Register(srv) }

// Health reports the builder's health (for /healthz).
func (s *Service) Health(ctx context.Context) error { return s.Builder.Health(ctx) }

// Status appends the builder's progress (events applied, lag per
// partition) for the body of /healthz, and where the definitions
// consumer is.
func (s *Service) Status(dst []byte) []byte {
	dst = s.Builder.Status().AppendText(dst)
	if s.Definitions != nil {
		dst = fmt.Appendf(dst, "definitions topic=%s applied=%d\n", s.Definitions.Topic(), s.Definitions.Applied())
	}
	return dst
}

// StopBuilder lets the builder commit the batch it is applying and stop,
// with segment membership. Idempotent.
func (s *Service) StopBuilder() error {
	s.stopOnce.Do(func() { s.stopErr = errors.Join(s.closeDefinitions(), s.Segments.Close(), s.Builder.Close()) })
	return s.stopErr
}

// Close stops the builder if needed and closes the state database.
// Idempotent.
func (s *Service) Close() error {
	s.closeOnce.Do(func() { s.closeErr = errors.Join(s.StopBuilder(), s.DB.Close()) })
	return s.closeErr
}

package profiletest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/profile/campaign"
	"github.com/affinityhq/affinity/profile/defs"
	"github.com/affinityhq/affinity/profile/importer"
	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/query"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// Token is the bearer token of the query API an Env serves.
const Token = "test-token"

// waitFor bounds every wait for the builder and membership.
const waitFor = 20 * time.Second

// NoHook, as Options.Hook, runs the builder without a Hook.
var NoHook builder.Hook = noHook{}

type noHook struct{}

func (noHook) Changed(*state.Batch, string, event.UUID, *profile.Profile) error { return nil }

// Options configures an Env. The zero value is an Env with segment
// membership and two log partitions, without the query API.
type Options struct {
	// Dir holds the log (Dir/log) and the state (Dir/state), so that an
	// Env reopened on the same Dir finds both; "": a new t.TempDir().
	Dir string
	// Partitions is the number of log partitions; 0: 2.
	Partitions int
	// Clock is the clock of membership and the query API; nil: a new
	// Clock, reading real time until the test sets it.
	Clock *Clock
	// Hook is the builder's Hook: nil: segment membership (Env.Segments);
	// NoHook: none.
	Hook builder.Hook
	// Membership, if set, adjusts the options of segment membership.
	Membership func(*membership.Options)
	// Serve starts the query API on 127.0.0.1:0 (Env.URL) behind Token.
	Serve bool
	// Query, if set, adjusts the options of the query API (with Serve).
	Query func(*query.Options)
	// Builder, if set, adjusts the options of the builder.
	Builder func(*builder.Options)
	// Definitions, if set (with Serve), makes the query API write its
	// definitions to that topic and apply them from it (Env.Definitions).
	Definitions *defs.Options
	// State, if set, adjusts the state DB's options before it opens.
	State func(*state.Options)
	// Events, if set, is the event log the Env reads and appends to
	// instead of an embedded one of its own: a Kafka topic several Envs
	// (nodes of a build group) share. The Env does not close it.
	Events storage.Log
}

// Env is a running profile side in one directory. Open starts it; it
// closes at the end of the test, or earlier by Close.
type Env struct {
	Dir string
	// Log is the Env's own embedded log; nil with Options.Events.
	Log *storage.EmbeddedLog
	// Events is the log the builder reads: Log, or Options.Events.
	Events   storage.Log
	DB       *state.DB
	Builder  *builder.Builder
	Segments *membership.Engine // nil unless it is the Hook
	// Campaigns is the campaign store the builder counts into and the
	// query API serves; nil unless Segments is set.
	Campaigns *campaign.Store
	Query     *query.Handler // nil unless Options.Serve
	// Definitions is the definitions topic's consumer; nil unless
	// Options.Definitions.
	Definitions *defs.Log
	URL         string // of the query API: "http://127.0.0.1:port"
	Config      *profile.Config
	Metrics     *metrics.Set // of the builder, membership and query API
	Clock       *Clock
	// MembershipOptions are the options membership was created with.
	MembershipOptions membership.Options

	srv    *api.Server
	closed bool
}

// Open starts an Env for opts and closes it when t ends.
func Open(t testing.TB, opts Options) *Env {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Partitions == 0 {
		opts.Partitions = 2
	}
	if opts.Clock == nil {
		opts.Clock = &Clock{}
	}
	e := &Env{Dir: opts.Dir, Config: profile.DefaultConfig(), Metrics: metrics.NewSet(), Clock: opts.Clock}
	var err error
	e.Events = opts.Events
	if e.Events == nil {
		lo := storage.DefaultEmbeddedOptions(filepath.Join(opts.Dir, "log"))
		lo.Partitions = opts.Partitions
		if e.Log, err = storage.OpenEmbeddedLog(lo); err != nil {
			t.Fatalf("cannot open log: %s", err)
		}
		e.Events = e.Log
	}
	so := state.DefaultOptions(filepath.Join(opts.Dir, "state"))
	if opts.State != nil {
		opts.State(&so)
	}
	if e.DB, err = state.Open(so); err != nil {
		if e.Log != nil {
			_ = e.Log.Close()
		}
		t.Fatalf("cannot open state: %s", err)
	}
	t.Cleanup(func() { e.Close(t) })

	bo := builder.DefaultOptions()
	bo.Log, bo.State, bo.Config, bo.Metrics, bo.Hook = e.Events, e.DB, e.Config, e.Metrics, opts.Hook
	bo.SyncInterval, bo.Logger = 20*time.Millisecond, t.Logf
	switch opts.Hook {
	case nil:
		mo := membership.DefaultOptions()
		mo.State, mo.Config, mo.Metrics, mo.Now, mo.Logger = e.DB, e.Config, e.Metrics, e.Clock.Now, t.Logf
		if opts.Membership != nil {
			opts.Membership(&mo)
		}
		if e.Segments, err = membership.New(mo); err != nil {
			t.Fatalf("cannot create membership: %s", err)
		}
		e.MembershipOptions, bo.Hook, bo.Erasures = mo, e.Segments, e.Segments.EachErased
		if e.Campaigns, err = campaign.New(campaign.Options{State: e.DB, Segments: e.Segments, Now: e.Clock.Now}); err != nil {
			t.Fatalf("cannot create the campaign store: %s", err)
		}
		e.Segments.SetCampaigns(e.Campaigns)
		bo.Counter = func(p int) builder.Counter { return e.Campaigns.NewCounter(p) }
	case NoHook:
		bo.Hook = nil
	}
	if opts.Builder != nil {
		opts.Builder(&bo)
	}
	if e.Builder, err = builder.New(bo); err != nil {
		t.Fatalf("cannot create builder: %s", err)
	}
	if err := e.Builder.Start(); err != nil {
		t.Fatalf("cannot start builder: %s", err)
	}
	if e.Segments != nil {
		if err := e.Segments.Start(e.Builder); err != nil {
			t.Fatalf("cannot start membership: %s", err)
		}
	}
	if opts.Serve {
		e.serve(t, opts.Query, opts.Definitions)
	}
	return e
}

func (e *Env) serve(t testing.TB, tune func(*query.Options), do *defs.Options) {
	t.Helper()
	qo := query.DefaultOptions()
	qo.State, qo.Builder, qo.Config, qo.Metrics, qo.Now = e.DB, e.Builder, e.Config, e.Metrics, e.Clock.Now
	if e.Segments != nil {
		qo.Segments, qo.Campaigns = e.Segments, e.Campaigns
	}
	var err error
	if qo.Importer, err = importer.New(importer.Options{Log: e.Events, Committed: e.DB, Metrics: e.Metrics, Now: e.Clock.Now}); err != nil {
		t.Fatalf("cannot create the importer: %s", err)
	}
	if do != nil {
		o := *do
		o.Logger = t.Logf
		if e.Definitions, err = defs.New(o, e.DB); err != nil {
			t.Fatalf("cannot open the definitions topic: %s", err)
		}
		qo.Definitions = e.Definitions
	}
	if tune != nil {
		tune(&qo)
	}
	if e.Query, err = query.New(qo); err != nil {
		t.Fatalf("cannot create the query API: %s", err)
	}
	if e.Definitions != nil {
		if err := e.Definitions.Start(e.Query.ApplyDefinition); err != nil {
			t.Fatalf("cannot start the definitions consumer: %s", err)
		}
	}
	if e.srv, err = api.New(api.Options{Token: Token}); err != nil {
		t.Fatalf("cannot create the API server: %s", err)
	}
	e.Query.Register(e.srv)
	if err := e.srv.Listen("127.0.0.1:0"); err != nil {
		t.Fatalf("cannot listen: %s", err)
	}
	go func() { _ = e.srv.Serve() }()
	e.URL = "http://" + e.srv.Addr()
}

// Close stops the Env in the order of a node's shutdown: API, membership,
// builder, log, state. Idempotent.
func (e *Env) Close(t testing.TB) {
	t.Helper()
	if e.closed {
		return
	}
	e.closed = true
	if e.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.srv.Shutdown(ctx); err != nil {
			t.Errorf("API server Shutdown: %s", err)
		}
	}
	if e.Definitions != nil {
		if err := e.Definitions.Close(); err != nil {
			t.Errorf("definitions Close: %s", err)
		}
	}
	if e.Segments != nil {
		if err := e.Segments.Close(); err != nil {
			t.Errorf("membership Close: %s", err)
		}
	}
	if e.Builder != nil {
		if err := e.Builder.Close(); err != nil {
			t.Errorf("builder Close: %s", err)
		}
	}
	if e.Log != nil {
		if err := e.Log.Close(); err != nil {
			t.Errorf("log Close: %s", err)
		}
	}
	if err := e.DB.Close(); err != nil {
		t.Errorf("state Close: %s", err)
	}
}

// Append appends each batch to the log as one record.
func (e *Env) Append(t testing.TB, batches ...*event.Batch) {
	t.Helper()
	msgs := make([]storage.Message, len(batches))
	for i, b := range batches {
		msgs[i] = storage.Message{Key: event.AppendLogKey(nil, b.Site, b.Visitor), Value: event.AppendBatch(nil, b)}
	}
	if err := e.Events.Append(context.Background(), msgs); err != nil {
		t.Fatalf("cannot append: %s", err)
	}
}

// Wait returns when the builder has applied everything appended so far
// and what it forwarded while applying it (campaign conversions),
// membership has evaluated the persons it marked and sequenced the change
// records that made.
func (e *Env) Wait(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	// Until the log holds no more than the builder applied: applying a
	// purchase of a campaign recipient appends its convert event.
	for head := e.logged(t); ; {
		if err := e.Builder.WaitCaughtUp(ctx); err != nil {
			t.Fatalf("builder did not catch up: %s (%+v)", err, e.Builder.Status())
		}
		now := e.logged(t)
		if now == head {
			break
		}
		head = now
	}
	if e.Segments != nil {
		if _, err := e.Segments.RunPersons(ctx); err != nil {
			t.Fatalf("cannot evaluate the persons: %s", err)
		}
		if _, err := e.Segments.Sequence(ctx); err != nil {
			t.Fatalf("cannot sequence the changes: %s", err)
		}
	}
}

// logged returns the number of records appended to the log.
func (e *Env) logged(t testing.TB) int64 {
	t.Helper()
	var n int64
	for p := range e.Events.Partitions() {
		_, next, err := e.Events.Offsets(context.Background(), p)
		if err != nil {
			t.Fatalf("cannot read the offsets of partition %d: %s", p, err)
		}
		n += next
	}
	return n
}

// VisitorOn returns the n-th visitor (Visitor(n), n ≥ from) whose batches
// go to log partition part: for tests of visitors on different partitions.
func (e *Env) VisitorOn(site string, part, from int) event.UUID {
	for n := from; ; n++ {
		v := Visitor(n)
		if e.Events.Partition(event.AppendLogKey(nil, site, v)) == part {
			return v
		}
	}
}

// Send appends the batches and waits until they are applied.
func (e *Env) Send(t testing.TB, batches ...*event.Batch) {
	t.Helper()
	e.Append(t, batches...)
	e.Wait(t)
}

// Advance sets the clock to ms (Unix ms), runs the membership work that
// fell due and sequences its change records.
func (e *Env) Advance(t testing.TB, ms int64) {
	t.Helper()
	e.Clock.Set(ms)
	if _, err := e.Segments.RunDue(context.Background()); err != nil {
		t.Fatalf("cannot run due work: %s", err)
	}
	if _, err := e.Segments.RunPersons(context.Background()); err != nil {
		t.Fatalf("cannot evaluate the persons: %s", err)
	}
	if _, err := e.Segments.Sequence(context.Background()); err != nil {
		t.Fatalf("cannot sequence the changes: %s", err)
	}
}

// Profile returns the stored profile of visitor v on site, nil if none.
func (e *Env) Profile(t testing.TB, site string, v event.UUID) *profile.Profile {
	t.Helper()
	data, ok, err := e.DB.Profile(site, v, nil)
	if err != nil {
		t.Fatalf("cannot read the profile of %s/%s: %s", site, v, err)
	}
	if !ok {
		return nil
	}
	p := &profile.Profile{}
	if err := profile.DecodeProfile(p, data); err != nil {
		t.Fatalf("cannot decode the profile of %s/%s: %s", site, v, err)
	}
	return p
}

// Do sends a request to the query API, with Token if auth, and returns the
// status and body.
func (e *Env) Do(t testing.TB, method, path, contentType string, body []byte, auth bool) (int, string) {
	t.Helper()
	h := http.Header{}
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	return e.DoHeader(t, method, path, h, body, auth)
}

// DoHeader sends a request with the headers h to the query API, with Token
// if auth, and returns the status and body.
func (e *Env) DoHeader(t testing.TB, method, path string, h http.Header, body []byte, auth bool) (int, string) {
	t.Helper()
	code, _, b := e.DoResponse(t, method, path, h, body, auth)
	return code, b
}

// DoResponse is DoHeader that also returns the response's headers.
func (e *Env) DoResponse(t testing.TB, method, path string, h http.Header, body []byte, auth bool) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+Token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// Get sends an authorized GET to the query API.
func (e *Env) Get(t testing.TB, path string) (int, string) {
	t.Helper()
	return e.Do(t, http.MethodGet, path, "", nil, true)
}

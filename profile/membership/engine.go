package membership

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/affinityhq/affinity/internal/logger"
	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/lists"
	"github.com/affinityhq/affinity/profile/people"
	"github.com/affinityhq/affinity/profile/segment"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// Options configures an Engine.
type Options struct {
	// State is the state DB the builder writes. Required.
	State *state.DB
	// Config is the scoring configuration of the builder. Required.
	Config *profile.Config
	// Rules holds the thresholds of lifecycle and rfm.*.
	Rules segment.Config
	// Now is the clock membership is evaluated by. Default time.Now. Tests
	// drive time with it and call RunDue.
	Now func() time.Time
	// Metrics receives the counters. Nil: a private set.
	Metrics *metrics.Set
	// Logger receives errors. Nil discards them.
	Logger logger.Logger

	// Client sends webhooks. Default: an http.Client with a 10 s timeout.
	Client *http.Client
	// WebhookBatch is the most change records one delivery carries.
	// Default 100.
	WebhookBatch int
	// WebhookMinBackoff and WebhookMaxBackoff bound the wait after a failed
	// delivery, doubling from the first to the second. Default 1 s, 5 min.
	WebhookMinBackoff, WebhookMaxBackoff time.Duration
	// Sink, if set, receives every sequenced change record (the Kafka
	// changes topic) before it counts as published; an error retries.
	Sink func(ctx context.Context, cs []Change) error
	// Gate, if set, makes each change record of an events partition go
	// out once across the nodes of a cluster (profile/cluster.Marks): the
	// sequencer moves a partition's records only while the gate says this
	// node emits them, drops those at or below the partition's mark as the
	// generation began (the old owners' mark; a reconcile's floor lets its
	// own records at it through), and reports the marks it reached. Nil:
	// every record moves.
	Gate Gate
	// History, if set, reads the changes topic (what Sink produced, every
	// node's) from its start to its end as of the call, calling fn with
	// each record's value; an error of fn ends it. With a Gate, a new
	// owner of a partition copies the records emitted before it took the
	// partition over from it (TakeOver). Nil: the feed by source at or
	// below a mark holds this node's re-application instead.
	History func(ctx context.Context, fn func(value []byte) error) error
	// Persons, if set, makes the person evaluator one of a build group's:
	// it evaluates the persons of the partitions this node serves and
	// hands the others' marks to their evaluators (person.go). Nil: one
	// node evaluates every person over its own state.
	Persons Persons
	// MaxDueSleep bounds how long the scheduler sleeps before looking at
	// the due index again (the earliest due moves as profiles change).
	// Default 1 s.
	MaxDueSleep time.Duration
	// HistoryStep is how often the size of every segment is sampled into
	// its history (History). Default 1 min.
	HistoryStep time.Duration
}

// DefaultOptions returns the defaults of the optional fields.
func DefaultOptions() Options {
	return Options{
		Rules:             segment.DefaultConfig(),
		Now:               time.Now,
		WebhookBatch:      100,
		WebhookMinBackoff: time.Second,
		WebhookMaxBackoff: 5 * time.Minute,
		MaxDueSleep:       time.Second,
		HistoryStep:       time.Minute,
	}
}

// Gate is the sequencer's view of a cluster's emission marks. A
// partition's mark is the highest source offset (state.Source.Offset)
// whose change records some node moved into its feed and produced: the
// records of a commit at or below it went out, those above did not.
type Gate interface {
	// Emits returns whether this node emits partition p's records now (it
	// owns p in the group's current generation) and p's mark then; a record
	// of a partition it does not emit stays in the outbox until it does.
	Emits(p int) (ok bool, mark int64)
	// Generation names the current ownership: it changes whenever the
	// set of partitions this node emits may have.
	Generation() int32
	// Emitted records that every change record of each partition in marks
	// with a source offset at or below its value was moved and produced,
	// if generation is still the current one (else it does nothing).
	Emitted(generation int32, marks map[int]int64) error
}

// Visitor runs fn with a visitor's current profile serialised with the
// builder's apply of that visitor, and commits what fn adds to the batch:
// profile/builder.Builder.Visit.
type Visitor interface {
	Visit(site string, visitor event.UUID, fn func(b *state.Batch, p *profile.Profile) error) error
}

// Engine keeps segment membership. See the package doc.
type Engine struct {
	opts Options
	db   *state.DB
	cfg  *profile.Config
	logf func(string, ...any)
	m    engineMetrics

	campaigns atomic.Pointer[Campaigns]   // SetCampaigns
	sampler   atomic.Pointer[partSampler] // SampleByPartition

	mu    sync.RWMutex
	sites map[string]*siteSegs // compiled rules per site, loaded lazily

	visitor Visitor
	pool    sync.Pool // *scratch

	outbox     outboxIDs
	evaluating evaluating
	seqMu      sync.Mutex // one sequencer at a time
	// moved is, per events partition, the highest source offset of a
	// record the sequencer moved in the Gate's generation movedGen (under
	// seqMu).
	moved    map[int]int64
	movedGen int32
	// begun is, per events partition, its mark when the sequencer first
	// saw it emitted in generation movedGen (under seqMu): the old owners'
	// mark. The Gate's mark moves up as this node emits, but a record of
	// this node at or below a mark it moved itself is its own, not
	// another node's: a due exit or backfill at the partition's offset
	// after its last event commit there.
	begun map[int]int64
	// histPending are the partitions whose feed waits for TakeOver's copy
	// of the changes topic; histGen counts the TakeOvers (under histMu).
	histMu      sync.Mutex
	histPending map[int]bool
	histGen     uint64
	// histFloors are the partitions whose mark at the last TakeOver was
	// below their history mark (the group's committed offsets were lost):
	// the sequencer holds their records at or below it back (takeover.go).
	// Read per record without histMu.
	histFloors atomic.Pointer[map[int]int64]
	// reconFloors are the partitions reconciled at their marks: the
	// sequencer lets their records at the mark from the floor on through
	// (reconcile.go). Written under seqMu, read per record without it.
	reconFloors atomic.Pointer[map[int]reconcileFloor]
	// scrubMu is held shared by a webhook delivery from reading the feed to
	// its answer, and exclusively by Scrub: after Scrub no delivery carries
	// what it removed.
	scrubMu sync.RWMutex
	// erasures counts Erase's writes of 'U' keys, so that TakeOver's copy
	// reads them again before it commits (erase.go).
	erasures atomic.Uint64
	lastSeq  atomic.Uint64

	nextDue  atomic.Int64
	lastThin atomic.Int64 // the hour (ms / 3.6e6) the size history was last thinned
	dueWake  chan struct{}
	seqWake  chan struct{}

	// The person evaluator (person.go): marks get unique ids; personMu
	// lets one evaluation run at a time, which owns person.
	markID     atomic.Uint64
	personWake chan struct{}
	personMu   sync.Mutex
	// handOffFailed: a person round failed; the loop waits before the next.
	handOffFailed atomic.Bool
	persons       atomic.Pointer[Persons] // Options.Persons, SetPersons
	person        people.Person
	moves         personMoves // RestorePersons (person_move.go)

	bfMu        sync.Mutex
	backfills   map[string]*Backfill // by site|name
	listChanges map[string]*Backfill // by site|list name

	lists *lists.Store

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	started   atomic.Bool
	closeOnce sync.Once
}

type engineMetrics struct {
	evals, entries, exits, dueRuns, sequenced *metrics.Counter
	emittedBefore                             *metrics.Counter
	deliveries, deliveryErrors, errors        *metrics.Counter
	scrubbed                                  *metrics.Counter
	// stale counts outbox records of a segment deleted (and maybe
	// created again) since they were evaluated: dropped.
	stale *metrics.Counter
}

type siteSegs struct {
	segs    []*seg
	persons int // how many of segs are per person
}

type seg struct {
	name string
	rule *segment.Rule
	gen  uint64
	id   uint64
	per  Per
	// created is Definition.Created, which the records carry.
	created int64
}

// scratch is the per-call space of an evaluation.
type scratch struct {
	subj        segment.ProfileSubject
	lists       siteLists
	campaigns   siteCampaigns
	old, cur    vstate
	key, val    []byte
	facts       []byte
	vbuf, oldVB []byte
	// person is the key of the person evaluated, "" for a visitor, and
	// visitors its visitors.
	person   string
	visitors []event.UUID
}

// New returns an Engine for opts. Give it to the builder as its Hook, then
// Start it with the builder.
func New(opts Options) (*Engine, error) {
	def := DefaultOptions()
	if opts.State == nil || opts.Config == nil {
		return nil, errors.New("BUG: membership.New needs Options.State and Options.Config")
	}
	if opts.Rules == (segment.Config{}) {
		opts.Rules = def.Rules
	}
	if err := opts.Rules.Validate(); err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = def.Now
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.NewSet()
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.WebhookBatch <= 0 {
		opts.WebhookBatch = def.WebhookBatch
	}
	if opts.WebhookMinBackoff <= 0 {
		opts.WebhookMinBackoff = def.WebhookMinBackoff
	}
	if opts.WebhookMaxBackoff < opts.WebhookMinBackoff {
		opts.WebhookMaxBackoff = max(def.WebhookMaxBackoff, opts.WebhookMinBackoff)
	}
	if opts.MaxDueSleep <= 0 {
		opts.MaxDueSleep = def.MaxDueSleep
	}
	if opts.HistoryStep <= 0 {
		opts.HistoryStep = def.HistoryStep
	}
	s := opts.Metrics
	e := &Engine{
		opts:        opts,
		db:          opts.State,
		cfg:         opts.Config,
		logf:        opts.Logger.Printf,
		sites:       map[string]*siteSegs{},
		dueWake:     make(chan struct{}, 1),
		seqWake:     make(chan struct{}, 1),
		personWake:  make(chan struct{}, 1),
		backfills:   map[string]*Backfill{},
		listChanges: map[string]*Backfill{},
		lists:       lists.New(opts.State, opts.Now),
		moved:       map[int]int64{},
		begun:       map[int]int64{},
		m: engineMetrics{
			evals:          s.NewCounter(`affinity_segment_evaluations_total`),
			entries:        s.NewCounter(`affinity_segment_entries_total`),
			exits:          s.NewCounter(`affinity_segment_exits_total`),
			dueRuns:        s.NewCounter(`affinity_segment_due_reevaluations_total`),
			sequenced:      s.NewCounter(`affinity_segment_changes_sequenced_total`),
			emittedBefore:  s.NewCounter(`affinity_segment_changes_emitted_elsewhere_total`),
			deliveries:     s.NewCounter(`affinity_segment_webhook_deliveries_total`),
			deliveryErrors: s.NewCounter(`affinity_segment_webhook_failures_total`),
			errors:         s.NewCounter(`affinity_segment_errors_total`),
			scrubbed:       s.NewCounter(`affinity_segment_changes_scrubbed_total`),
			stale:          s.NewCounter(`affinity_segment_changes_stale_total`),
		},
	}
	if opts.Persons != nil {
		e.SetPersons(opts.Persons)
	}
	e.nextDue.Store(never)
	e.pool.New = func() any {
		sc := &scratch{subj: segment.ProfileSubject{Cfg: opts.Config}, lists: siteLists{store: e.lists}, campaigns: siteCampaigns{src: &e.campaigns}}
		sc.subj.Lists, sc.subj.Campaigns = &sc.lists, &sc.campaigns
		return sc
	}
	if err := e.loadCounters(); err != nil {
		return nil, err
	}
	if err := e.loadMarkID(); err != nil {
		return nil, err
	}
	return e, nil
}

// loadCounters reads the last sequence number and the highest outbox id.
func (e *Engine) loadCounters() error {
	v, ok, err := e.db.Ext([]byte{prefixSeq}, nil)
	if err != nil {
		return fmt.Errorf("cannot read the change sequence: %w", err)
	}
	if ok {
		seq, err := parseU64(v)
		if err != nil {
			return fmt.Errorf("cannot read the change sequence: %w", err)
		}
		e.lastSeq.Store(seq)
	}
	var maxID uint64
	err = e.db.ScanExt([]byte{prefixOutbox}, func(key, _ []byte) bool {
		if len(key) == 9 {
			maxID = max(maxID, uint64(key[1])<<56|uint64(key[2])<<48|uint64(key[3])<<40|uint64(key[4])<<32|
				uint64(key[5])<<24|uint64(key[6])<<16|uint64(key[7])<<8|uint64(key[8]))
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("cannot read the change outbox: %w", err)
	}
	e.outbox.restore(maxID)
	return nil
}

// Start runs the due scheduler, the change sequencer, the webhook
// deliveries, the size history's sampler and any backfill a restart
// interrupted; v re-evaluates visitors serialised with the builder (the
// builder itself).
func (e *Engine) Start(v Visitor) error {
	if v == nil {
		return errors.New("BUG: membership.Start needs a Visitor")
	}
	if e.started.Swap(true) {
		return errors.New("cannot start membership: already started")
	}
	e.visitor = v
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.wg.Add(5)
	go e.historyLoop()
	go e.dueLoop()
	go e.personLoop()
	go e.sequenceLoop()
	go e.webhookLoop()
	if err := e.resumeListChanges(); err != nil {
		return err
	}
	return e.resumeBackfills()
}

// Close stops the background work (a running backfill stops between two
// visitors and resumes on the next Start). Call it before the builder's
// Close. It is idempotent.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		if e.cancel != nil {
			e.cancel()
		}
		e.wg.Wait()
	})
	return nil
}

func (e *Engine) now() int64 { return e.opts.Now().UnixMilli() }

func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Changed implements profile/builder.Hook: it re-evaluates the segments of
// site for the changed profile at the clock's now and adds the membership,
// due and change writes to b. A deleted profile (p nil) is an erasure: its
// memberships, due entry and memberships list go, with no change record —
// a record would have to name the visitor or its email, which erasure
// forgets (DESIGN.md, "Identity"); Scrub then removes its past records.
func (e *Engine) Changed(b *state.Batch, site string, visitor event.UUID, p *profile.Profile) error {
	ss, err := e.segmentsIn(b, site)
	if err != nil {
		return err
	}
	if ss.persons > 0 && (p == nil || p.Email != "" || p.Customer != "") {
		kind := byte(markEvent)
		if p == nil {
			kind = markErased
		}
		if err := e.putVisitorMark(b, site, visitor, kind); err != nil {
			return err
		}
	}
	if p == nil {
		return e.reevaluate(b, site, visitor, nil, ss, e.now(), whyErased, false)
	}
	if len(ss.segs) == ss.persons {
		return nil
	}
	return e.reevaluate(b, site, visitor, p, ss, e.now(), "event", false)
}

// Expired implements profile/builder.Expirer: the visitor of p is deleted
// for the builder's retention, and leaves every segment it is in with a
// change record "expired" that carries its email, as any exit does.
func (e *Engine) Expired(b *state.Batch, site string, visitor event.UUID, p *profile.Profile) error {
	ss, err := e.segmentsIn(b, site)
	if err != nil {
		return err
	}
	if ss.persons > 0 {
		if err := e.putVisitorMark(b, site, visitor, markExpired); err != nil {
			return err
		}
	}
	return e.reevaluate(b, site, visitor, p, ss, e.now(), whyExpired, false)
}

// The reasons of evaluations of a deleted visitor: an erased one records
// no change, an expired one leaves its segments.
const (
	whyErased  = "erased"
	whyExpired = "expired"
)

// reevaluate evaluates every segment of ss for the profile at instant at
// and writes the differences from the stored state. With catchUp (the
// scheduler), it goes on evaluating at each next flip that is already
// past, so that every change is recorded at its exact instant.
func (e *Engine) reevaluate(b *state.Batch, site string, visitor event.UUID, p *profile.Profile, ss *siteSegs, at int64, why string, catchUp bool) error {
	sc := e.pool.Get().(*scratch)
	defer e.pool.Put(sc)
	return e.reevaluateIn(b, sc, site, visitor, p, ss, at, why, catchUp)
}

// reevaluateIn is reevaluate in sc, whose person says whether visitor is
// a visitor or a person (then its PersonID).
func (e *Engine) reevaluateIn(b *state.Batch, sc *scratch, site string, visitor event.UUID, p *profile.Profile, ss *siteSegs, at int64, why string, catchUp bool) error {
	if err := e.loadVState(sc, site, visitor); err != nil {
		return err
	}
	return e.evaluateFrom(b, sc, site, visitor, p, ss, at, why, catchUp)
}

// loadVState reads the stored state of visitor into sc.old (its bytes in
// sc.oldVB).
func (e *Engine) loadVState(sc *scratch, site string, visitor event.UUID) error {
	sc.key = appendVisitorKey(sc.key[:0], site, visitor)
	var (
		found bool
		err   error
	)
	sc.oldVB, found, err = e.db.Ext(sc.key, sc.oldVB)
	if err != nil {
		return fmt.Errorf("cannot read the memberships of visitor %s of site %q: %w", visitor, site, err)
	}
	sc.old.reset()
	if found {
		if err := decodeVState(&sc.old, sc.oldVB); err != nil {
			e.logf("membership: visitor %s of site %q: %s; starting over", visitor, site, err)
			sc.old.reset()
		}
	}
	return nil
}

// evaluateFrom is reevaluateIn from the state in sc.old: the writes are
// the differences from it, and the 'V' key is written when the result
// differs from the stored one (sc.oldVB).
func (e *Engine) evaluateFrom(b *state.Batch, sc *scratch, site string, visitor event.UUID, p *profile.Profile, ss *siteSegs, at int64, why string, catchUp bool) error {
	copyVState(&sc.cur, &sc.old)
	sc.lists.reset(site)
	sc.campaigns.reset(site)
	now := e.now()
	for i := 0; ; i++ {
		next, err := e.evalAt(b, sc, site, visitor, p, ss, at, why)
		if err == nil && sc.lists.err != nil {
			err = fmt.Errorf("cannot evaluate the segments of visitor %s of site %q: %w", visitor, site, sc.lists.err)
		}
		if err == nil && sc.campaigns.err != nil {
			err = fmt.Errorf("cannot evaluate the segments of visitor %s of site %q: %w", visitor, site, sc.campaigns.err)
		}
		if err != nil {
			return err
		}
		sc.cur.due = next
		if !catchUp || next > now || next == never || i >= 64 {
			break
		}
		at = next
	}
	return e.writeState(b, sc, site, visitor)
}

func copyVState(dst, src *vstate) {
	dst.reset()
	dst.due, dst.email = src.due, src.email
	dst.member = append(dst.member, src.member...)
}

// evalAt evaluates the segments at instant at against sc.cur, updating it
// and writing membership keys and change records; it returns the earliest
// next flip.
func (e *Engine) evalAt(b *state.Batch, sc *scratch, site string, visitor event.UUID, p *profile.Profile, ss *siteSegs, at int64, why string) (int64, error) {
	next := int64(never)
	email := ""
	if p != nil {
		email = p.Email
		sc.subj.P = p
	} else if sc.person != "" && why != whyErased {
		email = sc.cur.email // a person gone: its exits carry its email
	}
	emailChanged := email != sc.cur.email
	sc.cur.email = email
	for _, sg := range ss.segs {
		if (sg.per == PerPerson) != (sc.person != "") {
			continue
		}
		member, n := false, int64(never)
		if p != nil && why != whyExpired {
			member, n = sg.rule.Eval(&sc.subj, at)
			e.m.evals.Inc()
		}
		next = min(next, n)
		i := sc.cur.find(sg.name)
		if i >= 0 && sc.cur.member[i].id != sg.id {
			// A deleted segment's, under a name used again.
			sc.cur.member = append(sc.cur.member[:i], sc.cur.member[i+1:]...)
			i = -1
		}
		switch {
		case member && i < 0:
			sc.cur.member = append(sc.cur.member, vmember{name: sg.name, id: sg.id, entered: at})
			if err := e.putMember(b, sc, site, sg.name, visitor, at, email); err != nil {
				return 0, err
			}
			if err := e.record(b, sc, sg, site, visitor, p, email, true, at, why); err != nil {
				return 0, err
			}
		case member && (emailChanged || sc.person != ""):
			if err := e.putMember(b, sc, site, sg.name, visitor, sc.cur.member[i].entered, email); err != nil {
				return 0, err
			}
		case !member && i >= 0:
			sc.cur.member = append(sc.cur.member[:i], sc.cur.member[i+1:]...)
			sc.key = appendMemberKey(sc.key[:0], site, sg.name, visitor)
			if err := b.ExtDelete(sc.key); err != nil {
				return 0, err
			}
			if err := e.record(b, sc, sg, site, visitor, p, email, false, at, why); err != nil {
				return 0, err
			}
		}
	}
	// Memberships of segments deleted since: their keys went with the
	// segment, only the visitor's list remembers them.
	for i := 0; i < len(sc.cur.member); {
		if s := ss.find(sc.cur.member[i].name); s == nil || s.id != sc.cur.member[i].id {
			sc.cur.member = append(sc.cur.member[:i], sc.cur.member[i+1:]...)
			continue
		}
		i++
	}
	return next, nil
}

// count sets persons.
func (ss *siteSegs) count() {
	ss.persons = 0
	for _, s := range ss.segs {
		if s.per == PerPerson {
			ss.persons++
		}
	}
}

func (ss *siteSegs) find(name string) *seg {
	for _, s := range ss.segs {
		if s.name == name {
			return s
		}
	}
	return nil
}

func (e *Engine) putMember(b *state.Batch, sc *scratch, site, name string, visitor event.UUID, entered int64, email string) error {
	sc.key = appendMemberKey(sc.key[:0], site, name, visitor)
	if sc.person != "" {
		sc.val = appendPersonMemberValue(sc.val[:0], entered, email, sc.person, sc.visitors)
	} else {
		sc.val = appendMemberValue(sc.val[:0], entered, email)
	}
	return b.ExtSet(sc.key, sc.val)
}

// record adds a change record to the outbox of b. An erased visitor
// leaves with none: its erasure forgets it. A person whose last visitor
// was erased leaves with a record that names its id alone (person key
// erasedPersonKey, no email, no facts): its leave must outlive its
// evaluator's state, which a move replaces with what the changes topic
// says (person_move.go), and a consumer learns to drop the person.
func (e *Engine) record(b *state.Batch, sc *scratch, sg *seg, site string, visitor event.UUID, p *profile.Profile, email string, entered bool, at int64, why string) error {
	person := sc.person
	if why == whyErased {
		if person == "" {
			return nil
		}
		person, email, p = erasedPersonKey(visitor), "", nil
	}
	sc.facts = sc.facts[:0]
	if p != nil {
		sc.facts = sg.rule.AppendFacts(sc.facts, &sc.subj, at)
	} else {
		sc.facts = append(sc.facts, "{}"...)
	}
	c := Change{Site: site, Segment: sg.name, Visitor: visitor, Email: email, Entered: entered, At: at, Why: why, Facts: string(sc.facts), Created: sg.created, Person: person}
	c.Src, _ = b.NextSource()
	if sc.person != "" {
		var err error
		if c.Src, err = e.personSource(site, sc.person); err != nil {
			return err
		}
	}
	if entered {
		e.m.entries.Inc()
	} else {
		e.m.exits.Inc()
	}
	sc.key = appendOutboxKey(sc.key[:0], e.outbox.take(b))
	sc.val = appendOutbox(sc.val[:0], &c)
	if err := b.ExtSet(sc.key, sc.val); err != nil {
		return err
	}
	poke(e.seqWake)
	return nil
}

// writeState writes the visitor's 'V' key and moves its due entry, when
// they changed.
func (e *Engine) writeState(b *state.Batch, sc *scratch, site string, visitor event.UUID) error {
	old, cur := &sc.old, &sc.cur
	if cur.due == never {
		cur.due = 0
	}
	if old.due != cur.due {
		if old.due != 0 {
			sc.key = e.appendDue(sc, old.due, site, visitor)
			if err := b.ExtDelete(sc.key); err != nil {
				return err
			}
		}
		if cur.due != 0 {
			sc.key = e.appendDue(sc, cur.due, site, visitor)
			if err := b.ExtSet(sc.key, nil); err != nil {
				return err
			}
			if sc.person != "" {
				poke(e.personWake)
			} else if cur.due < e.nextDue.Load() {
				e.nextDue.Store(cur.due)
				poke(e.dueWake)
			}
		}
	}
	sc.key = appendVisitorKey(sc.key[:0], site, visitor)
	if cur.due == 0 && len(cur.member) == 0 {
		if len(sc.oldVB) > 0 {
			return b.ExtDelete(sc.key)
		}
		return nil
	}
	sc.vbuf = appendVState(sc.vbuf[:0], cur)
	if string(sc.vbuf) == string(sc.oldVB) {
		return nil
	}
	return b.ExtSet(sc.key, sc.vbuf)
}

// appendDue puts in sc.key the due entry of the evaluated visitor: a 'T'
// key, or for a person a due mark of the person evaluator.
func (e *Engine) appendDue(sc *scratch, due int64, site string, visitor event.UUID) []byte {
	if sc.person != "" {
		return appendPersonMark(sc.key[:0], due, site, markDue, sc.person)
	}
	return appendDueKey(sc.key[:0], due, site, visitor)
}

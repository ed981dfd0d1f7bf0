package tracker

import (
	"strconv"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"github.com/affinityhq/affinity/tracker/event"
)

// The collector's own refusal reasons, beside the contract's (event.Reasons).
const (
	reasonBadContentType = "bad_content_type"
	reasonBadEncoding    = "bad_encoding"
	reasonBadMethod      = "bad_method"
	reasonBadOrigin      = "bad_origin"
	reasonBadRequest     = "bad_request"
	reasonBadWriteKey    = "bad_write_key"   // the Segment API: no or an unknown write key
	reasonSegmentOff     = "segment_api_off" // the Segment API without --write-key
	reasonEngagementOff  = "engagement_off"  // /e/ on a collector without state (collect --defs-topic "")
	reasonTokenUnchecked = "token_unchecked" // /e/: the token's campaign cannot be told now (503)
	reasonBadToken       = "bad_token"       // /e/: a token that does not check
	reasonOpenRedirect   = "open_redirect"   // /e/c/: a target of an origin not listed
	reasonLogUnavailable = "log_unavailable"
	reasonLowDisk        = "low_disk"
	reasonStorageFailing = "storage_failing"
	reasonNotFound       = "not_found"
	reasonRateLimited    = "rate_limited"
	reasonTooLarge       = "too_large"
	reasonUnknownSite    = "unknown_site"
)

// collectorReasons lists every reason the collector itself may give.
var collectorReasons = []string{
	reasonBadContentType, reasonBadEncoding, reasonBadMethod, reasonBadOrigin, reasonBadRequest,
	reasonLogUnavailable, reasonLowDisk, reasonNotFound, reasonRateLimited, reasonStorageFailing,
	reasonTooLarge, reasonUnknownSite, reasonBadWriteKey, reasonSegmentOff,
	reasonEngagementOff, reasonTokenUnchecked, reasonBadToken, reasonOpenRedirect,
}

// knownStatuses are the statuses the collector and its Extra handler answer;
// their counters exist from the start so that the hot path never formats a
// series name nor takes a lock.
var knownStatuses = []int{200, 202, 204, 304, 400, 401, 403, 404, 405, 413, 415, 429, 500, 503}

// collectorMetrics are the collector's Prometheus series.
type collectorMetrics struct {
	set            *metrics.Set
	eventsAccepted *metrics.Counter
	botBatches     *metrics.Counter
	botEvents      *metrics.Counter
	logErrors      *metrics.Counter
	appendSeconds  *metrics.PrometheusHistogram
	inflight       atomic.Int64
	// The Segment API: its requests per call, and its messages
	// acknowledged without an event (group calls).
	segmentCalls   []*metrics.Counter
	segmentIgnored *metrics.Counter

	// Read-only after construction: safe without a lock.
	statuses map[int]*metrics.Counter
	refused  map[string]*metrics.Counter
	evRef    map[string]*metrics.Counter
}

func newCollectorMetrics(set *metrics.Set) *collectorMetrics {
	m := &collectorMetrics{
		set:            set,
		eventsAccepted: set.NewCounter(`affinity_collector_events_accepted_total`),
		botBatches:     set.NewCounter(`affinity_collector_bot_batches_dropped_total`),
		botEvents:      set.NewCounter(`affinity_collector_bot_events_dropped_total`),
		logErrors:      set.NewCounter(`affinity_collector_log_append_errors_total`),
		appendSeconds:  set.NewPrometheusHistogram(`affinity_collector_log_append_seconds`),
		statuses:       map[int]*metrics.Counter{},
		refused:        map[string]*metrics.Counter{},
		evRef:          map[string]*metrics.Counter{},
	}
	m.segmentIgnored = set.NewCounter(`affinity_collector_segment_messages_ignored_total`)
	for c := event.SegmentBatch; c <= event.SegmentGroup; c++ {
		m.segmentCalls = append(m.segmentCalls, set.NewCounter(`affinity_collector_segment_requests_total{call="`+c.String()+`"}`))
	}
	set.NewGauge(`affinity_collector_inflight_batches`, func() float64 { return float64(m.inflight.Load()) })
	for _, s := range knownStatuses {
		m.statuses[s] = set.NewCounter(`affinity_collector_requests_total{status="` + strconv.Itoa(s) + `"}`)
	}
	for _, r := range append(event.Reasons(), collectorReasons...) {
		m.refused[r] = set.NewCounter(`affinity_collector_batches_refused_total{reason="` + r + `"}`)
		m.evRef[r] = set.NewCounter(`affinity_collector_events_refused_total{reason="` + r + `"}`)
	}
	return m
}

func (m *collectorMetrics) countStatus(status int) {
	c := m.statuses[status]
	if c == nil {
		// A status outside knownStatuses (only an Extra handler can give
		// one): rare, so the set's own locking is fine.
		c = m.set.GetOrCreateCounter(`affinity_collector_requests_total{status="` + strconv.Itoa(status) + `"}`)
	}
	c.Inc()
}

func (m *collectorMetrics) segmentCall(c event.SegmentCall) { m.segmentCalls[c].Inc() }

func (m *collectorMetrics) batchesRefused(reason string) {
	if c := m.refused[reason]; c != nil {
		c.Inc()
	}
}

func (m *collectorMetrics) eventsRefused(reason string, n int) {
	if c := m.evRef[reason]; c != nil {
		c.Add(n)
	}
}

package tracker

import (
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"github.com/affinityhq/affinity/storage"
)

// collectorMetrics are the collector's Prometheus series. Series with a label
// from a closed set (status, reason) are created on first use and cached, so
// the hot path does not format names.
type collectorMetrics struct {
	set            *metrics.Set
	eventsAccepted *metrics.Counter
	botBatches     *metrics.Counter
	botEvents      *metrics.Counter
	logErrors      *metrics.Counter
	appendSeconds  *metrics.PrometheusHistogram
	inflight       atomic.Int64

	mu       sync.Mutex
	statuses map[int]*metrics.Counter
	refused  map[string]*metrics.Counter
	evRef    map[string]*metrics.Counter
}

func newCollectorMetrics(set *metrics.Set, lg storage.Log) *collectorMetrics {
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
	set.NewGauge(`affinity_collector_inflight_batches`, func() float64 { return float64(m.inflight.Load()) })
	return m
}

func (m *collectorMetrics) countStatus(status int) {
	m.mu.Lock()
	c := m.statuses[status]
	if c == nil {
		c = m.set.GetOrCreateCounter(`affinity_collector_requests_total{status="` + strconv.Itoa(status) + `"}`)
		m.statuses[status] = c
	}
	m.mu.Unlock()
	c.Inc()
}

func (m *collectorMetrics) batchesRefused(reason string) {
	m.mu.Lock()
	c := m.refused[reason]
	if c == nil {
		c = m.set.GetOrCreateCounter(`affinity_collector_batches_refused_total{reason="` + reason + `"}`)
		m.refused[reason] = c
	}
	m.mu.Unlock()
	c.Inc()
}

func (m *collectorMetrics) eventsRefused(reason string, n int) {
	m.mu.Lock()
	c := m.evRef[reason]
	if c == nil {
		c = m.set.GetOrCreateCounter(`affinity_collector_events_refused_total{reason="` + reason + `"}`)
		m.evRef[reason] = c
	}
	m.mu.Unlock()
	c.Add(n)
}

package builder

import (
	"fmt"

	"github.com/VictoriaMetrics/metrics"

	"github.com/affinityhq/affinity/storage/state"
)

// builderMetrics are the builder's counters on its metrics.Set.
type builderMetrics struct {
	eventsApplied  *metrics.Counter
	dedupHits      *metrics.Counter
	orderDedupHits *metrics.Counter
	// conversionsForwarded counts the convert events appended to the log
	// for campaign recipients (again after a crash: at least once).
	conversionsForwarded *metrics.Counter
	catalogMisses        *metrics.Counter
	records              *metrics.Counter
	badRecords           *metrics.Counter
	commits              *metrics.Counter
	stateWrites          *metrics.Counter
	// indexWrites counts the interest index puts and deletes, applied
	// in memory by the commit (not among stateWrites: not stored).
	indexWrites    *metrics.Counter
	commitErrors   *metrics.Counter
	cacheHits      *metrics.Counter
	cacheMisses    *metrics.Counter
	cacheEvictions *metrics.Counter
	deletes        *metrics.Counter
	expired        *metrics.Counter
	// erasedSkipped counts the records skipped as an erased visitor's
	// from before its erasure (erased.go).
	erasedSkipped *metrics.Counter
	batchDuration *metrics.Histogram
}

func newBuilderMetrics(set *metrics.Set, db *state.DB) *builderMetrics {
	// The interest index is on the Go heap (budget: README "--memory").
	set.GetOrCreateGauge("affinity_state_interest_entries", func() float64 { return float64(db.InterestEntries()) })
	set.GetOrCreateGauge("affinity_state_interest_bytes", func() float64 {
		return float64(db.InterestBytes())
	})
	return &builderMetrics{
		eventsApplied:        set.GetOrCreateCounter("affinity_builder_events_applied_total"),
		dedupHits:            set.GetOrCreateCounter("affinity_builder_dedup_hits_total"),
		orderDedupHits:       set.GetOrCreateCounter("affinity_builder_order_dedup_hits_total"),
		catalogMisses:        set.GetOrCreateCounter("affinity_builder_catalog_misses_total"),
		conversionsForwarded: set.GetOrCreateCounter("affinity_builder_conversions_forwarded_total"),
		records:              set.GetOrCreateCounter("affinity_builder_records_total"),
		badRecords:           set.GetOrCreateCounter("affinity_builder_bad_records_total"),
		commits:              set.GetOrCreateCounter("affinity_builder_commits_total"),
		stateWrites:          set.GetOrCreateCounter("affinity_builder_state_writes_total"),
		indexWrites:          set.GetOrCreateCounter("affinity_builder_index_writes_total"),
		commitErrors:         set.GetOrCreateCounter("affinity_builder_commit_errors_total"),
		cacheHits:            set.GetOrCreateCounter("affinity_builder_cache_hits_total"),
		cacheMisses:          set.GetOrCreateCounter("affinity_builder_cache_misses_total"),
		cacheEvictions:       set.GetOrCreateCounter("affinity_builder_cache_evictions_total"),
		deletes:              set.GetOrCreateCounter("affinity_builder_visitors_deleted_total"),
		expired:              set.GetOrCreateCounter("affinity_builder_visitors_expired_total"),
		erasedSkipped:        set.GetOrCreateCounter("affinity_builder_erased_records_skipped_total"),
		batchDuration:        set.GetOrCreateHistogram("affinity_builder_apply_batch_duration_seconds"),
	}
}

// partitionGauges are the names of a partition's gauges, by format.
var partitionGauges = [...]string{
	`affinity_builder_lag_records{partition="%d"}`,
	`affinity_builder_consumed_offset{partition="%d"}`,
	`affinity_builder_cache_bytes{partition="%d"}`,
}

// registerPartition adds the gauges of partition pt. A partition owned
// again after a revoke registers its new gauges: the old ones are gone.
func registerPartition(set *metrics.Set, pt *partition) {
	values := [len(partitionGauges)]func() float64{
		func() float64 { return float64(pt.lag()) },
		func() float64 { return float64(pt.consumed.Load()) },
		func() float64 { return float64(pt.cacheBytes.Load()) },
	}
	for i, name := range partitionGauges {
		set.GetOrCreateGauge(fmt.Sprintf(name, pt.id), values[i])
	}
}

// unregisterPartition removes the gauges of a revoked partition.
func unregisterPartition(set *metrics.Set, pt *partition) {
	for _, name := range partitionGauges {
		set.UnregisterMetric(fmt.Sprintf(name, pt.id))
	}
}

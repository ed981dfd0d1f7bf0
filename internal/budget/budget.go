package budget

import (
	"fmt"
	"math"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/affinityhq/affinity/profile/builder"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/state"
)

const (
	// Default is the budget of a node that is not told one. 4 GiB, not
	// the 1 GiB of the smallest VM: at 1 GiB the Go heap limit keeps the
	// GC running and the builder spent 1.3-2.2x the CPU per event of a
	// 4 GiB budget (bench build, 200k visitors); until the state engine
	// needs less, a smaller budget is the operator's informed choice.
	Default = 4 << 30
	// Min is the smallest budget New accepts.
	Min = 384 << 20

	mib = 1 << 20

	// memTables is the number of memtables of each database: one being
	// written, two being flushed.
	memTables = 3
	// Per byte of memtable: the arena (size plus a transaction's room, on
	// the Go heap) and the write-ahead file (mmapped), in tenths.
	memTableHeapTenths = 13
	memTableFileTenths = 10

	// maxStateMemTable caps the state's memtables. Badger allocates the
	// next memtable's arena (its size plus ~30%) and zeroes it while it
	// holds the DB's lock, which every commit and read takes, so each
	// rotation stops the builder for as long as that takes. On the
	// bench's VM a page its host must back anew costs ~30 µs: a 64 MiB
	// memtable stopped every partition for 0.58–0.75 s, the slowest
	// second of builds at 1M and at 10M visitors (README "Performance",
	// issue #10). 32 MiB halves that; eight of 16 MiB made compactions
	// run all the time.
	maxStateMemTable = 32 * mib

	// minWorkHeap is the least Go heap left for the work itself.
	minWorkHeap = 64 * mib
)

// Split is a budget divided among its parts. Zero fields of the embedded
// log mean the node has none (build).
type Split struct {
	// Total is the budget, in bytes.
	Total int64

	// The state database (state.Options).
	StateMemTableBytes   int64
	StateNumMemTables    int
	StateBlockCacheBytes int64

	// The embedded log (storage.EmbeddedOptions); zero without one.
	LogMemTableBytes   int64
	LogNumMemTables    int
	LogBlockCacheBytes int64

	// ProfileCacheBytes is the state's off-heap cache of committed
	// profiles (state.Options.VisitorCacheBytes; fastcache takes at least
	// 32 MiB), read by lookups and by the builder. The builder's small
	// decoded tier stays at its default and is counted in the Go heap
	// (WorkHeapBytes).
	ProfileCacheBytes int64

	// ReserveBytes is kept outside the Go heap for mmapped table pages,
	// stacks and the binary.
	ReserveBytes int64

	// GoMemLimit is the Go heap limit (debug.SetMemoryLimit): Total less
	// the memtables' mmapped files, the profile cache and the reserve.
	GoMemLimit int64
}

// New splits total bytes; embeddedLog says whether the node runs the
// embedded log (serve) or not (build, on Kafka). A budget below Min is
// refused with an error that names --memory.
func New(total int64, embeddedLog bool) (Split, error) {
	if total < Min {
		return Split{}, fmt.Errorf("memory budget %s is below the minimum %s: raise --memory", Format(total), Format(Min))
	}
	s := Split{Total: total, ReserveBytes: max(total/10, 32*mib)}
	if embeddedLog {
		// The log is written once and read soon after: small memtables,
		// a small cache. Its defaults (16 MiB each) from 2 GiB up.
		s.LogMemTableBytes = clamp(total/128, 4*mib, 16*mib)
		s.LogNumMemTables = memTables
		s.LogBlockCacheBytes = clamp(total/128, 4*mib, 16*mib)
	}
	s.StateMemTableBytes = clamp(total/32, 8*mib, maxStateMemTable)
	s.StateNumMemTables = memTables
	// What is left after the reserve, the memtables and the log's cache:
	// a fifth to the block cache, a quarter to the (off-heap) profile
	// cache, and the rest to the Go heap.
	rest := total - s.ReserveBytes - s.memTableBytes(memTableHeapTenths+memTableFileTenths) - s.LogBlockCacheBytes
	s.StateBlockCacheBytes = max(rest/5, 8*mib)
	s.ProfileCacheBytes = max(rest/4, 32*mib)
	s.GoMemLimit = total - s.ReserveBytes - s.memTableBytes(memTableFileTenths) - s.ProfileCacheBytes
	if w := s.WorkHeapBytes(); w < minWorkHeap {
		return Split{}, fmt.Errorf("BUG: memory budget %s leaves %s of Go heap to work in, below %s", Format(total), Format(w), Format(minWorkHeap))
	}
	return s, nil
}

func clamp(v, lo, hi int64) int64 { return min(max(v, lo), hi) }

// memTableBytes is the memtables of both databases times tenths/10.
func (s Split) memTableBytes(tenths int64) int64 {
	n := s.StateMemTableBytes*int64(s.StateNumMemTables) + s.LogMemTableBytes*int64(s.LogNumMemTables)
	return n * tenths / 10
}

// WorkHeapBytes is the Go heap left for the work itself: the limit less
// the memtable arenas, the block caches and the builder's decoded profile
// tier.
func (s Split) WorkHeapBytes() int64 {
	return s.GoMemLimit - s.memTableBytes(memTableHeapTenths) - s.StateBlockCacheBytes - s.LogBlockCacheBytes - decodedTierBytes
}

// decodedTierBytes is the builder's decoded profile tier, on the Go heap.
var decodedTierBytes = builder.DefaultOptions().CacheBytes

// Sum is what the parts add up to; it never exceeds Total.
func (s Split) Sum() int64 {
	return s.ReserveBytes + s.memTableBytes(memTableFileTenths) + s.ProfileCacheBytes + s.GoMemLimit
}

// ApplyState sets the state database's memtables, block cache and
// visitor cache.
func (s Split) ApplyState(o *state.Options) {
	o.MemTableBytes, o.NumMemTables, o.BlockCacheBytes = s.StateMemTableBytes, s.StateNumMemTables, s.StateBlockCacheBytes
	o.VisitorCacheBytes = s.ProfileCacheBytes
}

// ApplyLog sets the embedded log's memtables and block cache; a Split
// without a log leaves o as it is.
func (s Split) ApplyLog(o *storage.EmbeddedOptions) {
	if s.LogNumMemTables == 0 {
		return
	}
	o.MemTableBytes, o.NumMemTables, o.BlockCacheBytes = s.LogMemTableBytes, s.LogNumMemTables, s.LogBlockCacheBytes
}

// SetGoMemLimit sets the process's Go heap limit to GoMemLimit, or leaves
// a lower one set by the GOMEMLIMIT environment variable, starts pacing
// the GC against that limit (gcpace.go: unless GOGC is set), and returns
// the limit in force.
func (s Split) SetGoMemLimit() int64 {
	limit := min(debug.SetMemoryLimit(-1), s.GoMemLimit)
	debug.SetMemoryLimit(limit)
	paceGC()
	return limit
}

// String prints the split for a node's start-up line.
func (s Split) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "memory=%s: state memtables %dx%s, block cache %s", Format(s.Total),
		s.StateNumMemTables, Format(s.StateMemTableBytes), Format(s.StateBlockCacheBytes))
	if s.LogNumMemTables > 0 {
		fmt.Fprintf(&b, "; log memtables %dx%s, block cache %s", s.LogNumMemTables, Format(s.LogMemTableBytes), Format(s.LogBlockCacheBytes))
	}
	fmt.Fprintf(&b, "; profile cache %s; Go heap limit %s (%s to work in); reserve %s",
		Format(s.ProfileCacheBytes), Format(s.GoMemLimit), Format(s.WorkHeapBytes()), Format(s.ReserveBytes))
	return b.String()
}

// Bytes is a byte count that reads and prints with units ("1GiB",
// "512MiB", "1.5GiB", "2GB", "1000000"); it is a flag.Value.
type Bytes int64

// String prints b with the largest binary unit that keeps it short.
func (b Bytes) String() string { return Format(int64(b)) }

// Set parses s (see Parse).
func (b *Bytes) Set(s string) error {
	n, err := Parse(s)
	if err != nil {
		return err
	}
	*b = Bytes(n)
	return nil
}

var units = []struct {
	name string
	mult float64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40},
	{"b", 1},
}

// Parse reads a byte count: a number (decimals allowed) and a unit, KiB,
// MiB, GiB, TiB (powers of 1024; K, M, G, T alone mean the same), KB, MB,
// GB, TB (powers of 1000) or B; no unit is bytes. Case does not matter.
func Parse(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := 1.0
	for _, u := range units {
		if num, ok := strings.CutSuffix(t, u.name); ok {
			t, mult = strings.TrimSpace(num), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) || v*mult >= math.MaxInt64 {
		return 0, fmt.Errorf("invalid byte count %q: want a number and a unit, e.g. 1GiB, 512MiB, 2GB", s)
	}
	return int64(v * mult), nil
}

// Format prints n bytes in the largest binary unit it reaches: whole
// when it is ("1GiB"), else to one decimal ("1.5GiB").
func Format(n int64) string {
	names := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i, u := 0, int64(1)
	for i+1 < len(names) && n >= u<<10 {
		i, u = i+1, u<<10
	}
	if n%u == 0 {
		return strconv.FormatInt(n/u, 10) + names[i]
	}
	return strconv.FormatFloat(float64(n)/float64(u), 'f', 1, 64) + names[i]
}

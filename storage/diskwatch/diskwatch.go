package diskwatch

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/dgraph-io/badger/v4"

	"github.com/affinityhq/affinity/internal/logger"
)

// ErrLowDisk is wrapped by Err while the free space of the watched
// filesystem is below Options.MinFree.
var ErrLowDisk = errors.New("free disk space below the floor")

// ErrStorage is wrapped by Err while a watched directory is gone or a
// storage error was reported with Fault.
var ErrStorage = errors.New("storage failing")

// Options configures a Watcher.
type Options struct {
	// Dir is the data directory, created if missing. Its filesystem's
	// free space is compared with MinFree.
	Dir string
	// MinFree is the floor of free bytes (--min-free-disk); below it Err
	// wraps ErrLowDisk. 0 turns the check off.
	MinFree int64
	// Interval is how often the free space and the directories are
	// checked. Default 1 s.
	Interval time.Duration
	// FaultHold is how long one storage error reported with Fault keeps
	// Err failing. Default 10 s: a Badger flush that fails logs again every
	// second, so a lasting failure keeps it failing without a gap.
	FaultHold time.Duration
	// Metrics receives the watcher's gauges. Nil: a private set.
	Metrics *metrics.Set
	// Logger receives the changes of state (low, gone, back). Nil discards.
	Logger logger.Logger
}

// DefaultOptions returns the defaults for dir; MinFree must still be set.
func DefaultOptions(dir string) Options {
	return Options{Dir: dir, Interval: time.Second, FaultHold: 10 * time.Second}
}

// Watcher tells whether the node may write: see the package doc. Create it
// with New; Close stops it.
type Watcher struct {
	opts Options

	// state is the current verdict; nil while writes may go ahead.
	state atomic.Pointer[error]

	free     atomic.Int64 // bytes available to the process, as last seen
	low      atomic.Bool
	gone     atomic.Bool
	faults   *metrics.Counter
	faultAt  atomic.Int64 // Unix ns of the last Fault, 0 for none
	faultMsg atomic.Pointer[string]

	mu   sync.Mutex // guards dirs and the checks
	dirs []watchedDir

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// watchedDir is a directory, held open, and the identity it had when
// watched. The open handle tells a removed directory even when a new one
// under the same name got the same inode number: the removed one has no
// links left.
type watchedDir struct {
	path     string
	f        *os.File
	dev, ino uint64
}

// New creates Dir if needed, checks it once and starts checking it every
// Interval. A filesystem already below the floor is not an error: the
// watcher starts in the low-disk state.
func New(opts Options) (*Watcher, error) {
	def := DefaultOptions(opts.Dir)
	if opts.Dir == "" {
		return nil, errors.New("cannot watch data directory: Options.Dir is empty")
	}
	if opts.MinFree < 0 {
		return nil, fmt.Errorf("cannot watch data directory %q: MinFree=%d is negative (--min-free-disk)", opts.Dir, opts.MinFree)
	}
	if opts.Interval <= 0 {
		opts.Interval = def.Interval
	}
	if opts.FaultHold <= 0 {
		opts.FaultHold = def.FaultHold
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.NewSet()
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create data directory %q: %w", opts.Dir, err)
	}
	w := &Watcher{opts: opts, stop: make(chan struct{}), done: make(chan struct{})}
	if err := w.Watch(opts.Dir); err != nil {
		return nil, err
	}
	set := opts.Metrics
	set.NewGauge(`affinity_data_free_bytes`, func() float64 { return float64(w.free.Load()) })
	set.NewGauge(`affinity_data_min_free_bytes`, func() float64 { return float64(opts.MinFree) })
	set.NewGauge(`affinity_data_low_disk`, func() float64 { return boolGauge(w.low.Load()) })
	set.NewGauge(`affinity_data_dir_gone`, func() float64 { return boolGauge(w.gone.Load()) })
	w.faults = set.NewCounter(`affinity_storage_errors_total`)
	w.check()
	go w.loop()
	return w, nil
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Watch adds dir (a database directory under Dir, once it is open) to the
// directories that must stay where they are: if it is removed or replaced,
// Err fails until the process restarts.
func (w *Watcher) Watch(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cannot watch directory %q: %w", dir, err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return fmt.Errorf("cannot watch directory %q: %w", dir, err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		f.Close()
		return fmt.Errorf("cannot watch %q: not a directory", dir)
	}
	w.mu.Lock()
	w.dirs = append(w.dirs, watchedDir{dir, f, uint64(st.Dev), uint64(st.Ino)})
	w.mu.Unlock()
	return nil
}

// check returns an error wrapping ErrStorage when d was removed or
// replaced.
func (d *watchedDir) check() error {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(d.f.Fd()), &st); err == nil && st.Nlink == 0 {
		return fmt.Errorf("data directory %q is gone (removed while the node ran): writes cannot be made durable; restart the node on a restored --data: %w", d.path, ErrStorage)
	}
	if err := syscall.Stat(d.path, &st); err != nil {
		return fmt.Errorf("data directory %q is gone (%v): writes cannot be made durable; restart the node on a restored --data: %w", d.path, err, ErrStorage)
	}
	if uint64(st.Dev) != d.dev || uint64(st.Ino) != d.ino {
		return fmt.Errorf("data directory %q was replaced while the node ran: writes cannot be made durable; restart the node: %w", d.path, ErrStorage)
	}
	return nil
}

// Err returns nil while the node may write; otherwise the reason, wrapping
// ErrLowDisk or ErrStorage. It is one atomic load: the collector calls it
// for every batch.
func (w *Watcher) Err() error {
	if p := w.state.Load(); p != nil {
		return *p
	}
	return nil
}

// Metrics returns the set the watcher's series are on.
func (w *Watcher) Metrics() *metrics.Set { return w.opts.Metrics }

// Free returns the free bytes of Dir's filesystem as last checked.
func (w *Watcher) Free() int64 { return w.free.Load() }

// Fault reports a storage error seen elsewhere (Badger's error log, through
// logger.BadgerLogger.OnError): Err fails at once and for FaultHold after
// the last one.
func (w *Watcher) Fault(msg string) {
	w.faults.Inc()
	w.faultMsg.Store(&msg)
	w.faultAt.Store(time.Now().UnixNano())
	w.check()
}

// Close stops the checks. It is idempotent.
func (w *Watcher) Close() error {
	w.once.Do(func() {
		close(w.stop)
		<-w.done
		w.mu.Lock()
		for _, d := range w.dirs {
			d.f.Close()
		}
		w.mu.Unlock()
	})
	return nil
}

func (w *Watcher) loop() {
	defer close(w.done)
	t := time.NewTicker(w.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.check()
		}
	}
}

// check looks at the directories, the free space and the last fault, and
// publishes the verdict. A state change is logged once.
func (w *Watcher) check() {
	w.mu.Lock()
	defer w.mu.Unlock()
	prev := w.Err()

	var err error
	for i := range w.dirs {
		if err = w.dirs[i].check(); err != nil {
			break
		}
	}
	w.gone.Store(err != nil)

	if err == nil {
		var st syscall.Statfs_t
		if serr := syscall.Statfs(w.opts.Dir, &st); serr != nil {
			err = fmt.Errorf("cannot read the free space of data directory %q: %v: %w", w.opts.Dir, serr, ErrStorage)
		} else {
			free := int64(st.Bavail) * int64(st.Bsize)
			w.free.Store(free)
			low := w.opts.MinFree > 0 && free < w.opts.MinFree
			w.low.Store(low)
			if low {
				err = fmt.Errorf("free disk space of %q is %s (%d bytes), below the floor of %s (%d bytes, --min-free-disk): ingest is refused and the builder paused until space is freed: %w",
					w.opts.Dir, FormatBytes(free), free, FormatBytes(w.opts.MinFree), w.opts.MinFree, ErrLowDisk)
			}
		}
	}

	if at := w.faultAt.Load(); err == nil && at != 0 && time.Since(time.Unix(0, at)) < w.opts.FaultHold {
		err = fmt.Errorf("storage error %s ago: %s: %w", time.Since(time.Unix(0, at)).Round(time.Millisecond), *w.faultMsg.Load(), ErrStorage)
	}

	if err == nil {
		w.state.Store(nil)
		if prev != nil {
			w.opts.Logger.Printf("diskwatch: writable again: %s free in %q", FormatBytes(w.free.Load()), w.opts.Dir)
		}
		return
	}
	w.state.Store(&err)
	if prev == nil || kind(prev) != kind(err) {
		w.opts.Logger.Printf("diskwatch: not writable: %s", err)
	}
}

// kind tells a change of state from a new message in the same state (the
// free bytes move; a fault's age grows).
func kind(err error) int {
	switch {
	case errors.Is(err, ErrLowDisk):
		return 1
	case err != nil:
		return 2
	}
	return 0
}

// Headroom returns the disk space a Badger database with options o may
// still write once its writes stop, which a free-space floor must leave:
// the active memtable's WAL filling up and the next one's (2 ×
// MemTableSize: writes stop within one check Interval, not at once), every
// memtable flushed to an L0 table of about its size (NumMemtables ×
// MemTableSize), and one L0 → base compaction writing its output before it
// deletes its input (NumLevelZeroTables tables of MemTableSize and the
// BaseLevelSize they merge into). valueLog adds one value log file
// (ValueLogFileSize) for a database whose values can reach ValueThreshold;
// below it Badger keeps values in the LSM tree and never writes the value
// log.
//
// Badger creates these files at their full size as sparse files and fills
// them through mmap: a write into a page the filesystem has no block for is
// SIGBUS, not an error. That is why a full disk crashed the process, and
// why the floor counts the files Badger has yet to fill.
func Headroom(o badger.Options, valueLog bool) int64 {
	mem := o.MemTableSize
	h := int64(o.NumMemtables+2)*mem + int64(o.NumLevelZeroTables)*mem + o.BaseLevelSize
	if valueLog {
		h += o.ValueLogFileSize
	}
	return h
}

// FormatBytes prints n in the largest binary unit that keeps it at or
// above 1 ("884MiB", "1.5GiB", "512B"), as ParseBytes reads it.
func FormatBytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f, u := float64(n), 0
	for u+1 < len(units) && (f >= 1024 || f <= -1024) {
		f /= 1024
		u++
	}
	return strconv.FormatFloat(math.Round(f*10)/10, 'f', -1, 64) + units[u]
}

// ParseBytes reads a byte count: an integer or decimal with an optional
// unit, B, KB/MB/GB/TB (powers of 1000) or KiB/MiB/GiB/TiB (powers of
// 1024); "512MiB", "1.5GB", "1073741824".
func ParseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := len(s)
	for i > 0 && (s[i-1] < '0' || s[i-1] > '9') && s[i-1] != '.' {
		i--
	}
	num, unit := strings.TrimSpace(s[:i]), strings.TrimSpace(s[i:])
	mult, ok := byteUnits[strings.ToLower(unit)]
	if !ok {
		return 0, fmt.Errorf("invalid byte count %q: unknown unit %q (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)", s, unit)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || f*mult > math.MaxInt64/2 {
		return 0, fmt.Errorf("invalid byte count %q: want a non-negative number with an optional unit, e.g. 512MiB", s)
	}
	return int64(math.Round(f * mult)), nil
}

var byteUnits = map[string]float64{
	"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

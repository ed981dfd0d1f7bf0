package diskwatch

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/dgraph-io/badger/v4"
)

func TestParseFormatBytes(t *testing.T) {
	f := func(in string, want int64) {
		t.Helper()
		got, err := ParseBytes(in)
		if err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	f("0", 0)
	f("1073741824", 1<<30)
	f("512MiB", 512<<20)
	f("512 mib", 512<<20)
	f("1.5GiB", 3<<29)
	f("10MB", 10e6)
	f("2KB", 2000)
	f("7B", 7)
	for _, bad := range []string{"", "MiB", "-1", "12XB", "1e400GiB", "1..2MB"} {
		if n, err := ParseBytes(bad); err == nil {
			t.Errorf("ParseBytes(%q) = %d; want an error", bad, n)
		}
	}
	g := func(n int64, want string) {
		t.Helper()
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q; want %q", n, got, want)
		}
		if back, err := ParseBytes(want); err != nil || (n%(1<<20) == 0 && back != n) {
			t.Errorf("ParseBytes(FormatBytes(%d)) = %d, %v", n, back, err)
		}
	}
	g(512, "512B")
	g(884<<20, "884MiB")
	g(3<<29, "1.5GiB")
	g(1<<40, "1TiB")
}

func TestHeadroom(t *testing.T) {
	o := badger.DefaultOptions("").WithMemTableSize(16 << 20).WithNumMemtables(3)
	// 5 memtables' worth of WAL and flushes, 5 L0 tables, the 10 MiB base.
	want := int64((3+2)*16+5*16+10) << 20
	if got := Headroom(o, false); got != want {
		t.Errorf("Headroom = %s; want %s", FormatBytes(got), FormatBytes(want))
	}
	if got := Headroom(o, true); got != want+o.ValueLogFileSize {
		t.Errorf("Headroom with a value log = %s; want %s", FormatBytes(got), FormatBytes(want+o.ValueLogFileSize))
	}
}

// waitErr polls w until ok(w.Err()) or fails after 5 s.
func waitErr(t *testing.T, w *Watcher, what string, ok func(error) bool) error {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := w.Err()
		if ok(err) {
			return err
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: Err() = %v after 5s", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWatcherLowDisk(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions(dir)
	o.MinFree = 1 << 62 // more than any disk: low from the first check
	o.Interval = 10 * time.Millisecond
	o.Metrics = metrics.NewSet()
	w, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	err = w.Err()
	if !errors.Is(err, ErrLowDisk) {
		t.Fatalf("Err() = %v; want ErrLowDisk at once", err)
	}
	for _, s := range []string{dir, "--min-free-disk", "bytes"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("reason %q does not say %q", err, s)
		}
	}
	if w.Free() <= 0 {
		t.Errorf("Free() = %d", w.Free())
	}
	var sb strings.Builder
	o.Metrics.WritePrometheus(&sb)
	if !strings.Contains(sb.String(), "affinity_data_low_disk 1") {
		t.Errorf("metrics do not show the low disk:\n%s", sb.String())
	}
}

func TestWatcherDirGone(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "log")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	o := DefaultOptions(dir)
	o.Interval = 10 * time.Millisecond
	w, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Watch(sub); err != nil {
		t.Fatal(err)
	}
	if err := w.Err(); err != nil {
		t.Fatalf("Err() = %v on a healthy directory", err)
	}
	// Replaced: removed and made again under the same name.
	if err := os.Remove(sub); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	// The new directory may get the old one's inode number: the watcher
	// still tells it from the removed one it holds open.
	waitErr(t, w, "replaced", func(err error) bool { return errors.Is(err, ErrStorage) })
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	err = waitErr(t, w, "removed", func(err error) bool { return err != nil && strings.Contains(err.Error(), "is gone") })
	if !errors.Is(err, ErrStorage) {
		t.Errorf("Err() = %v; want ErrStorage", err)
	}
}

func TestWatcherFault(t *testing.T) {
	o := DefaultOptions(t.TempDir())
	o.Interval = 10 * time.Millisecond
	o.FaultHold = 200 * time.Millisecond
	w, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Fault("log: badger: error flushing memtable to disk: no such file or directory, retrying")
	err = w.Err()
	if !errors.Is(err, ErrStorage) || !strings.Contains(err.Error(), "flushing memtable") {
		t.Fatalf("Err() = %v right after Fault; want the fault", err)
	}
	waitErr(t, w, "after FaultHold", func(err error) bool { return err == nil })
}

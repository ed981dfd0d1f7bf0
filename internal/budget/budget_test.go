package budget

import (
	"strings"
	"testing"

	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/state"
)

func TestNewSplit(t *testing.T) {
	const mib, gib = 1 << 20, 1 << 30
	for _, tc := range []struct {
		total    int64
		log      bool
		stateMem int64 // one state memtable
		logMem   int64 // one log memtable; 0: no log
	}{
		{Min, true, 12 * mib, 4 * mib},
		{Min, false, 12 * mib, 0},
		{512 * mib, true, 16 * mib, 4 * mib},
		{gib, true, 32 * mib, 8 * mib},
		{gib, false, 32 * mib, 0},
		{3 * gib / 4, true, 24 * mib, 6 * mib},
		{Default, true, 32 * mib, 16 * mib},
		{2 * gib, true, 32 * mib, 16 * mib},
		{8 * gib, true, 32 * mib, 16 * mib},
		{64 * gib, false, 32 * mib, 0},
	} {
		s, err := New(tc.total, tc.log)
		if err != nil {
			t.Errorf("New(%s, %v): %v", Format(tc.total), tc.log, err)
			continue
		}
		name := Format(tc.total)
		if got := s.Sum(); got > tc.total {
			t.Errorf("%s: parts sum to %d; want <= %d (%s)", name, got, tc.total, s)
		}
		if s.StateMemTableBytes != tc.stateMem || s.LogMemTableBytes != tc.logMem {
			t.Errorf("%s: memtables state %d, log %d; want %d, %d", name, s.StateMemTableBytes, s.LogMemTableBytes, tc.stateMem, tc.logMem)
		}
		if (s.LogNumMemTables > 0) != tc.log || (s.LogBlockCacheBytes > 0) != tc.log {
			t.Errorf("%s: log memtables %d, cache %d with log=%v", name, s.LogNumMemTables, s.LogBlockCacheBytes, tc.log)
		}
		if s.StateNumMemTables < 2 || s.StateBlockCacheBytes < 8*mib || s.ProfileCacheBytes < 8*mib {
			t.Errorf("%s: below a sensible minimum: %s", name, s)
		}
		if w := s.WorkHeapBytes(); w < minWorkHeap || w < tc.total/8 {
			t.Errorf("%s: %d bytes of Go heap to work in; want >= max(64MiB, total/8): %s", name, w, s)
		}
		if s.GoMemLimit >= tc.total || s.GoMemLimit < tc.total/2 {
			t.Errorf("%s: Go heap limit %d; want in [total/2, total)", name, s.GoMemLimit)
		}
	}
}

func TestNewRefusesTinyBudget(t *testing.T) {
	for _, total := range []int64{0, 1 << 20, Min - 1} {
		_, err := New(total, true)
		if err == nil || !strings.Contains(err.Error(), "--memory") {
			t.Errorf("New(%d): error %v; want one naming --memory", total, err)
		}
	}
}

func TestApply(t *testing.T) {
	s, err := New(Default, true)
	if err != nil {
		t.Fatal(err)
	}
	so := state.DefaultOptions("x")
	s.ApplyState(&so)
	if so.MemTableBytes != s.StateMemTableBytes || so.NumMemTables != s.StateNumMemTables || so.BlockCacheBytes != s.StateBlockCacheBytes ||
		so.VisitorCacheBytes != s.ProfileCacheBytes {
		t.Errorf("state options %+v; want the split's %s", so, s)
	}
	lo := storage.DefaultEmbeddedOptions("x")
	s.ApplyLog(&lo)
	if lo.MemTableBytes != s.LogMemTableBytes || lo.NumMemTables != s.LogNumMemTables || lo.BlockCacheBytes != s.LogBlockCacheBytes {
		t.Errorf("log options %+v; want the split's %s", lo, s)
	}
	noLog, err := New(Default, false)
	if err != nil {
		t.Fatal(err)
	}
	lo = storage.DefaultEmbeddedOptions("x")
	noLog.ApplyLog(&lo)
	if def := storage.DefaultEmbeddedOptions("x"); lo.MemTableBytes != def.MemTableBytes || lo.NumMemTables != def.NumMemTables || lo.BlockCacheBytes != def.BlockCacheBytes {
		t.Errorf("a split without a log changed the log's options: %+v", lo)
	}
}

func TestParseFormat(t *testing.T) {
	f := func(in string, want int64, text string) {
		t.Helper()
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", in, got, err, want)
		}
		if s := Format(want); s != text {
			t.Errorf("Format(%d) = %q; want %q", want, s, text)
		}
	}
	f("1GiB", 1<<30, "1GiB")
	f("1gib", 1<<30, "1GiB")
	f("512MiB", 512<<20, "512MiB")
	f("1.5GiB", 3<<29, "1.5GiB")
	f("2G", 2<<30, "2GiB")
	f("2GB", 2e9, "1.9GiB")
	f("1000", 1000, "1000B")
	f("4096", 4096, "4KiB")
	f(" 64 MiB ", 64<<20, "64MiB")
	for _, bad := range []string{"", "GiB", "-1GiB", "1XB", "1e30TiB", "NaN"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q): no error", bad)
		}
	}
	var b Bytes
	if err := b.Set("768MiB"); err != nil || b.String() != "768MiB" {
		t.Errorf("Bytes.Set(768MiB): %v, %s", err, b)
	}
}

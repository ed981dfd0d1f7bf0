package state

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestValueLogGC rewrites profiles large enough for the value log many
// times, and checks that the GC gives the garbage's disk back and that
// every visitor still reads its latest profile.
func TestValueLogGC(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(Options{Dir: dir, MemTableBytes: 1 << 20, ValueLogFileBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const visitors, rounds = 2000, 40
	prof := func(v, round int) []byte {
		return bytes.Repeat([]byte{byte(v), byte(v >> 8), byte(round)}, 200) // 600 B ≥ valueThreshold
	}
	for round := range rounds {
		b := db.NewBatch()
		for v := range visitors {
			if err := b.PutVisitor("s", [16]byte{byte(v), byte(v >> 8)}, prof(v, round), nil); err != nil {
				t.Fatal(err)
			}
			if b.Len() >= 500 {
				if err := b.Commit(); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	before := vlogBytes(t, dir)
	if before < rounds*visitors*600 {
		t.Fatalf("value log holds %d bytes after %d profile writes of 600 B: profiles are not in the value log", before, rounds*visitors)
	}
	// The GC learns which values are garbage from compactions: L0's
	// tables (one per memtable flushed) compact into L1 in the background
	// once there are enough of them; the GC is then tried until it finds
	// its garbage.
	rewrote := 0
	for deadline := time.Now().Add(30 * time.Second); rewrote == 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		rewrote += db.RunValueLogGC()
	}
	for range 8 {
		rewrote += db.RunValueLogGC()
	}
	after := vlogBytes(t, dir)
	if rewrote == 0 || after > before/2 {
		t.Fatalf("value log GC rewrote %d files: %d bytes before, %d after; want less than half left (live data is %d bytes)", rewrote, before, after, visitors*600)
	}
	t.Logf("value log GC rewrote %d files: %d bytes before, %d after (live data %d bytes)", rewrote, before, after, visitors*600)
	for v := range visitors {
		got, ok, err := db.Profile("s", [16]byte{byte(v), byte(v >> 8)}, nil)
		if err != nil || !ok || !bytes.Equal(got, prof(v, rounds-1)) {
			t.Fatalf("visitor %d after GC: ok %v, err %v, profile of the last round %v", v, ok, err, bytes.Equal(got, prof(v, rounds-1)))
		}
	}
}

func vlogBytes(t *testing.T, dir string) int64 {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range es {
		if !strings.HasSuffix(e.Name(), ".vlog") {
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

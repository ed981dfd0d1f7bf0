package backup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// openTestDB opens a real Badger database in a temporary directory with n
// keys k000000… whose values are v<i> padded to grow with i.
func openTestDB(t *testing.T, n int) *badger.DB {
	t.Helper()
	db, err := openDB(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	wb := db.NewWriteBatch()
	for i := range n {
		if err := wb.Set(fmt.Appendf(nil, "k%06d", i), bytes.Repeat(fmt.Appendf(nil, "v%d", i), 1+i%50)); err != nil {
			t.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	return db
}

func readAll(t *testing.T, db *badger.DB) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			got[string(it.Item().Key())] = string(v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// writeTestFile writes a backup of state (and log, if not nil).
func writeTestFile(t *testing.T, state, log *badger.DB) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, time.UnixMilli(1767225600000))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Section(State, func(w io.Writer) (int64, error) { return Dump(state, w) }); err != nil {
		t.Fatal(err)
	}
	if log != nil {
		if err := w.Section(Log, func(w io.Writer) (int64, error) { return Dump(log, w) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	state, log := openTestDB(t, 3000), openTestDB(t, 17)
	file := writeTestFile(t, state, log)

	dir := t.TempDir()
	dirs := map[Section]string{State: filepath.Join(dir, "state"), Log: filepath.Join(dir, "log")}
	info, err := Restore(bytes.NewReader(file), dirs)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Created.Equal(time.UnixMilli(1767225600000)) || len(info.Sections) != 2 ||
		info.Sections[0].Section != State || info.Sections[0].Keys != 3000 ||
		info.Sections[1].Section != Log || info.Sections[1].Keys != 17 {
		t.Fatalf("info %+v; want created 2026-01-01, state 3000 keys, log 17 keys", info)
	}
	for s, src := range map[Section]*badger.DB{State: state, Log: log} {
		db, err := openDB(dirs[s])
		if err != nil {
			t.Fatal(err)
		}
		got, want := readAll(t, db), readAll(t, src)
		db.Close()
		if len(got) != len(want) {
			t.Fatalf("%s: restored %d keys; want %d", s, len(got), len(want))
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("%s: key %q restored as %q; want %q", s, k, got[k], v)
			}
		}
	}

	// Restoring again into the same directories is refused, untouched.
	if _, err := Restore(bytes.NewReader(file), dirs); err == nil {
		t.Fatal("restore into non-empty directories was taken")
	}
}

// TestRefusesBadFiles cuts a backup file at many points and flips bytes in
// it: every one is refused with ErrCorrupt before anything is written.
func TestRefusesBadFiles(t *testing.T) {
	file := writeTestFile(t, openTestDB(t, 500), openTestDB(t, 5))
	var bad [][]byte
	for cut := 0; cut < len(file); cut += 1 + len(file)/97 {
		bad = append(bad, file[:cut])
	}
	bad = append(bad, file[:len(file)-1], append(append([]byte{}, file...), 0))
	for _, at := range []int{3, len(Magic), len(Magic) + 3, headerLen + 10, len(file) / 2, len(file) - 7, len(file) - 2} {
		b := append([]byte{}, file...)
		b[at] ^= 0x20
		bad = append(bad, b)
	}
	for i, b := range bad {
		dir := t.TempDir()
		_, err := Restore(bytes.NewReader(b), map[Section]string{State: filepath.Join(dir, "s"), Log: filepath.Join(dir, "l")})
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("bad file %d (%d of %d bytes): error %v; want ErrCorrupt", i, len(b), len(file), err)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Fatalf("bad file %d: restore wrote %s before refusing", i, ents[0].Name())
		}
	}
	if _, err := Verify(bytes.NewReader(file[:len(file)/2])); err == nil || !bytes.Contains([]byte(err.Error()), []byte("truncated")) {
		t.Errorf("a truncated file: error %v; want it to say truncated", err)
	}
}

// TestDumpIsOneSnapshot writes to a database while it is dumped: the dump
// holds each write batch whole or not at all.
func TestDumpIsOneSnapshot(t *testing.T) {
	db := openTestDB(t, 0)
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			// Each transaction sets every key to the same value.
			err := db.Update(func(txn *badger.Txn) error {
				v := fmt.Appendf(nil, "%d", i)
				if err := txn.Set([]byte("a"), v); err != nil {
					return err
				}
				for j := range 50 {
					if err := txn.Set(fmt.Appendf(nil, "m%02d", j), v); err != nil {
						return err
					}
				}
				return txn.Set([]byte("z"), v)
			})
			if err != nil {
				done <- err
				return
			}
		}
	}()
	defer func() {
		close(stop)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}()
	for range 50 {
		var buf bytes.Buffer
		if _, err := Dump(db, &buf); err != nil {
			t.Fatal(err)
		}
		vals := map[string]bool{}
		r := bufio.NewReader(&buf)
		for {
			if _, err := readBytes(r); err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			v, err := readBytes(r)
			if err != nil {
				t.Fatal(err)
			}
			vals[string(v)] = true
		}
		if len(vals) > 1 {
			t.Fatalf("one dump holds values of %d transactions; want one", len(vals))
		}
	}
}

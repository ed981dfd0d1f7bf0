package backup

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/dgraph-io/badger/v4"
)

// maxRecord bounds a key or value read back, so that a corrupt length
// cannot make Load allocate without bound; Badger's own limit on a value
// is 1 GiB, the state's and the log's values are far smaller.
const maxRecord = 256 << 20

// Dump writes every live key and value of db as of one read timestamp —
// one read-only transaction, so a concurrent commit is wholly in the copy
// or wholly out — as records uvarint(len key) | key | uvarint(len value) |
// value, in key order. It returns how many it wrote.
func Dump(db *badger.DB, w io.Writer) (keys int64, err error) {
	var lenBuf [2 * binary.MaxVarintLen64]byte
	err = db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			err := item.Value(func(v []byte) error {
				k := item.Key()
				if _, err := w.Write(binary.AppendUvarint(lenBuf[:0], uint64(len(k)))); err != nil {
					return err
				}
				if _, err := w.Write(k); err != nil {
					return err
				}
				if _, err := w.Write(binary.AppendUvarint(lenBuf[:0], uint64(len(v)))); err != nil {
					return err
				}
				_, err := w.Write(v)
				return err
			})
			if err != nil {
				return err
			}
			keys++
		}
		return nil
	})
	return keys, err
}

// Load writes the records of r (as Dump wrote them) into db, a new
// database, and returns how many.
func Load(db *badger.DB, r io.Reader) (keys int64, err error) {
	br := bufio.NewReaderSize(r, 256<<10)
	wb := db.NewWriteBatch()
	defer wb.Cancel()
	for {
		k, err := readBytes(br)
		if err == io.EOF {
			break
		}
		if err != nil {
			return keys, fmt.Errorf("cannot read key %d: %w", keys, err)
		}
		v, err := readBytes(br)
		if err != nil {
			return keys, fmt.Errorf("cannot read the value of key %d: %w", keys, noEOF(err))
		}
		if err := wb.Set(k, v); err != nil {
			return keys, fmt.Errorf("cannot write key %d: %w", keys, err)
		}
		keys++
	}
	if err := wb.Flush(); err != nil {
		return keys, fmt.Errorf("cannot write keys: %w", err)
	}
	return keys, nil
}

// readBytes reads uvarint(len) | bytes into a new slice (a WriteBatch keeps
// what it is given until it flushes).
func readBytes(br *bufio.Reader) ([]byte, error) {
	n, err := binary.ReadUvarint(br)
	if err != nil {
		return nil, err
	}
	if n > maxRecord {
		return nil, fmt.Errorf("length %d above %d: %w", n, maxRecord, ErrCorrupt)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		return nil, noEOF(err)
	}
	return b, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// OpenDir opens the Badger database in dir, which must exist, for a backup
// of a stopped node. It fails when a process holds the database.
func OpenDir(dir string) (*badger.DB, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("cannot open %q: %w", dir, err)
	}
	return openDB(dir)
}

func openDB(dir string) (*badger.DB, error) {
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithMetricsEnabled(false))
	if err != nil {
		return nil, fmt.Errorf("cannot open %q: %w", dir, err)
	}
	return db, nil
}

// Verify reads a whole backup file and checks every checksum.
func Verify(r io.Reader) (Info, error) {
	return Read(r, func(_ Section, r io.Reader) error {
		_, err := io.Copy(io.Discard, r)
		return err
	})
}

// Restore verifies the backup file f whole, then loads each section into
// a new Badger database in dirs[section], which must not exist or be
// empty. Nothing is written unless the file verifies; on a later error
// the caller removes what was written.
func Restore(f io.ReadSeeker, dirs map[Section]string) (Info, error) {
	info, err := Verify(f)
	if err != nil {
		return info, err
	}
	for _, s := range info.Sections {
		dir := dirs[s.Section]
		if dir == "" {
			return info, fmt.Errorf("BUG: no directory for section %s", s.Section)
		}
		if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
			return info, fmt.Errorf("cannot restore %s into %q: the directory is not empty", s.Section, dir)
		} else if err != nil && !errors.Is(err, os.ErrNotExist) {
			return info, fmt.Errorf("cannot restore %s into %q: %w", s.Section, dir, err)
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return info, fmt.Errorf("cannot rewind backup file: %w", err)
	}
	return Read(f, func(s Section, r io.Reader) error {
		db, err := openDB(dirs[s])
		if err != nil {
			return err
		}
		_, err = Load(db, r)
		return errors.Join(err, db.Close())
	})
}

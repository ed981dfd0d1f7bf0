package lists

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/affinityhq/affinity/internal/codec"
	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/storage/state"
)

// CheckName reports whether name is a valid list name: 1..128 bytes of
// ASCII letters, digits, '_', '-' and '.' (as segment names).
func CheckName(name string) error { return invalid.Name("list name", name) }

func checkSite(site string) error {
	if site == "" || len(site) > state.MaxSiteLen {
		return invalid.Errorf("invalid site %s: want 1..%d bytes", quote.Value(site), state.MaxSiteLen)
	}
	return nil
}

// Store keeps the lists of every site in the state DB. See the package doc.
type Store struct {
	db  *state.DB
	now func() time.Time

	mu    sync.RWMutex
	gens  map[string]*cached // site\x00name → the generation readers see
	locks map[string]*sync.Mutex
	seeds [2]maphash.Seed // of the hashes of emails and customer ids

	keys sync.Pool // *[]byte
}

// New returns the Store of the lists in db, on the clock now (nil:
// time.Now) for their created and updated times.
func New(db *state.DB, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	s := &Store{db: db, now: now, gens: map[string]*cached{}, locks: map[string]*sync.Mutex{}, seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}}
	s.keys.New = func() any { return new([]byte) }
	return s
}

// Lock locks the writes of one list: hold it from Put or Delete until
// Settle. It returns the unlock.
func (s *Store) Lock(site, name string) (unlock func()) {
	s.mu.Lock()
	l := s.locks[site+"\x00"+name]
	if l == nil {
		l = &sync.Mutex{}
		s.locks[site+"\x00"+name] = l
	}
	s.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// Head returns the stored head of a list, deleted (Gen 0) or not.
func (s *Store) Head(site, name string) (Meta, bool, error) {
	m := Meta{Site: site, Name: name}
	if err := checkSite(site); err != nil {
		return m, false, err
	}
	v, ok, err := s.db.Ext(appendHeadKey(nil, site, name), nil)
	if err != nil || !ok {
		return m, false, err
	}
	if err := decodeHead(&m, v); err != nil {
		return m, false, fmt.Errorf("list %q of site %q: %w", name, site, err)
	}
	return m, true, nil
}

// Meta returns the head of a list that exists (not deleted).
func (s *Store) Meta(site, name string) (Meta, bool, error) {
	m, ok, err := s.Head(site, name)
	return m, ok && m.Gen != 0, err
}

// Metas returns the lists of site that exist, in name order.
func (s *Store) Metas(site string) ([]Meta, error) {
	if err := checkSite(site); err != nil {
		return nil, err
	}
	var (
		ms   []Meta
		derr error
	)
	prefix := codec.AppendString([]byte{prefixHead}, site)
	err := s.db.ScanExt(prefix, func(k, v []byte) bool {
		m := Meta{Site: site}
		_, m.Name, derr = decodeHeadKey(k)
		if derr == nil {
			derr = decodeHead(&m, v)
		}
		if derr != nil {
			derr = fmt.Errorf("list key %q of site %q: %w", k, site, derr)
			return false
		}
		if m.Gen != 0 {
			ms = append(ms, m)
		}
		return true
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read the lists of site %q: %w", site, err)
	}
	return ms, nil
}

// Unsettled returns every list, of any site, whose last Put or Delete was
// not settled (a restart interrupted its re-evaluation).
func (s *Store) Unsettled() ([]Meta, error) {
	var (
		ms   []Meta
		derr error
	)
	err := s.db.ScanExt([]byte{prefixHead}, func(k, v []byte) bool {
		var m Meta
		m.Site, m.Name, derr = decodeHeadKey(k)
		if derr == nil {
			derr = decodeHead(&m, v)
		}
		if derr != nil {
			derr = fmt.Errorf("list key %q: %w", k, derr)
			return false
		}
		if m.Unsettled {
			ms = append(ms, m)
		}
		return true
	})
	if err == nil {
		err = derr
	}
	return ms, err
}

// Put parses an upload of format f from r and makes it the list's rows:
// written under a new generation, then made visible by one commit of the
// head, which keeps the previous generation as Pending (0: the list was
// new) and marks the list Unsettled. A bad row returns an *invalid.Error
// naming its line, and the list is unchanged. The caller holds
// Lock(site, name), re-evaluates what depends on Diff(m.Pending, m.Gen)
// and calls Settle.
func (s *Store) Put(site, name string, r io.Reader, f Format) (m Meta, err error) {
	return s.PutAt(site, name, r, f, s.now())
}

// PutAt is Put of an upload made at now: a list applied from the
// definitions topic carries its writer's clock, so that every node
// stores the same created and updated times.
func (s *Store) PutAt(site, name string, r io.Reader, f Format, now time.Time) (m Meta, err error) {
	if err := checkSite(site); err != nil {
		return m, err
	}
	if err := CheckName(name); err != nil {
		return m, err
	}
	old, found, err := s.Head(site, name)
	if err != nil {
		return m, err
	}
	if old.Unsettled {
		return m, fmt.Errorf("BUG: list %q of site %q: its last change is not settled", name, site)
	}
	gen := old.Gen + 1
	prefix := appendGenKey(nil, site, name, gen)
	// Rows an upload interrupted by a crash left under this generation.
	if _, err := s.db.DeleteExtPrefix(prefix); err != nil {
		return m, fmt.Errorf("cannot clear list %q of site %q: %w", name, site, err)
	}
	var emails, customers values
	rows, lastLine := uint64(0), 0
	err = Parse(r, f, func(line int, email, customer []byte) error {
		if line != lastLine {
			rows, lastLine = rows+1, line
		}
		if email != nil {
			emails.add(email)
		} else {
			customers.add(customer)
		}
		return nil
	})
	if err != nil {
		return m, err
	}
	w, err := s.db.NewExtWriter()
	if err != nil {
		return m, err
	}
	err = emails.write(w, prefix, kindEmail)
	if err == nil {
		err = customers.write(w, prefix, kindCustomer)
	}
	if err == nil {
		err = w.Flush()
	} else {
		w.Cancel()
	}
	if err != nil {
		if _, derr := s.db.DeleteExtPrefix(prefix); derr != nil {
			err = fmt.Errorf("%w; and cannot drop the rows written: %s", err, derr)
		}
		return m, fmt.Errorf("cannot store list %q of site %q: %w", name, site, err)
	}
	m = Meta{Site: site, Name: name, Gen: gen, Rows: rows, Emails: uint64(emails.n), Customers: uint64(customers.n), Created: now.UnixMilli(), Unsettled: true}
	m.Updated = m.Created
	if found && old.Gen != 0 {
		m.Created, m.Pending = old.Created, old.Gen
	}
	if err := s.setHead(&m); err != nil {
		return m, err
	}
	return m, nil
}

// Delete makes the list absent for readers at once; its rows stay stored
// as m.Pending until Settle. The caller holds Lock(site, name) and settles
// it as after a Put.
func (s *Store) Delete(site, name string) (m Meta, found bool, err error) {
	m, found, err = s.Meta(site, name)
	if err != nil || !found {
		return m, found, err
	}
	if m.Unsettled {
		return m, false, fmt.Errorf("BUG: list %q of site %q: its last change is not settled", name, site)
	}
	m.Gen, m.Pending, m.Updated, m.Unsettled = 0, m.Gen, s.now().UnixMilli(), true
	return m, true, s.setHead(&m)
}

// setHead commits the head m and shows its generation to Contains.
func (s *Store) setHead(m *Meta) error {
	b := s.db.NewBatch()
	if err := b.ExtSet(appendHeadKey(nil, m.Site, m.Name), appendHead(nil, m)); err != nil {
		return err
	}
	if err := b.Commit(); err != nil {
		return fmt.Errorf("cannot store list %q of site %q: %w", m.Name, m.Site, err)
	}
	s.mu.Lock()
	s.gens[m.Site+"\x00"+m.Name] = &cached{gen: m.Gen}
	s.mu.Unlock()
	return nil
}

// Settle ends the change m (a Put or Delete) once the caller re-evaluated
// what depends on it: it drops the rows of the previous generation and
// marks the list settled (or removes the head of a deleted list). The
// caller holds Lock(site, name).
func (s *Store) Settle(m Meta) error {
	site, name := m.Site, m.Name
	if m.Pending != 0 {
		if _, err := s.db.DeleteExtPrefix(appendGenKey(nil, site, name, m.Pending)); err != nil {
			return fmt.Errorf("cannot drop generation %d of list %q of site %q: %w", m.Pending, name, site, err)
		}
	}
	m, found, err := s.Head(site, name)
	if err != nil || !found || !m.Unsettled {
		return err
	}
	if m.Gen != 0 {
		m.Pending, m.Unsettled = 0, false
		return s.setHead(&m)
	}
	b := s.db.NewBatch()
	if err := b.ExtDelete(appendHeadKey(nil, site, name)); err != nil {
		return err
	}
	if err := b.Commit(); err != nil {
		return fmt.Errorf("cannot delete list %q of site %q: %w", name, site, err)
	}
	return nil
}

// cached is what Contains knows of a list: the generation readers see
// (0: none) and, loaded on first use, the sorted hashes of its rows.
type cached struct {
	gen    uint64
	once   sync.Once
	hashes []uint64
	err    error
}

// cachedGen returns the cache entry of a list, reading its head on a miss.
func (s *Store) cachedGen(site, name string) (*cached, error) {
	k := site + "\x00" + name
	s.mu.RLock()
	c := s.gens[k]
	s.mu.RUnlock()
	if c != nil {
		return c, nil
	}
	m, _, err := s.Head(site, name)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// A setHead since the read above stored the newer one.
	if c = s.gens[k]; c == nil {
		c = &cached{gen: m.Gen}
		s.gens[k] = c
	}
	return c, nil
}

func (s *Store) seed(kind byte) maphash.Seed {
	if kind == kindEmail {
		return s.seeds[0]
	}
	return s.seeds[1]
}

// load reads the hashes of the rows of c's generation.
func (s *Store) load(site, name string, c *cached) {
	c.err = s.ScanGen(site, name, c.gen, func(email, customer []byte) bool {
		if email != nil {
			c.hashes = append(c.hashes, maphash.Bytes(s.seed(kindEmail), email))
		} else {
			c.hashes = append(c.hashes, maphash.Bytes(s.seed(kindCustomer), customer))
		}
		return true
	})
	slices.Sort(c.hashes)
}

// Contains reports whether the list holds email (normalised as
// state.NormalizeEmail does) or customer; "" matches nothing. A list that
// does not exist holds nothing. A list's first lookup loads the 64-bit
// hashes of its rows (8 bytes a row, kept until the list changes); then a
// value not in the list costs a binary search, one in it a point read that
// confirms it.
func (s *Store) Contains(site, name, email, customer string) (bool, error) {
	if email == "" && customer == "" {
		return false, nil
	}
	c, err := s.cachedGen(site, name)
	if err != nil || c.gen == 0 {
		return false, err
	}
	c.once.Do(func() { s.load(site, name, c) })
	if c.err != nil {
		return false, c.err
	}
	bp := s.keys.Get().(*[]byte)
	defer s.keys.Put(bp)
	prefix := appendGenKey((*bp)[:0], site, name, c.gen)
	n := len(prefix)
	for _, v := range []struct {
		kind byte
		s    string
	}{{kindEmail, email}, {kindCustomer, customer}} {
		if v.s == "" {
			continue
		}
		if _, ok := slices.BinarySearch(c.hashes, maphash.String(s.seed(v.kind), v.s)); !ok {
			continue
		}
		prefix = append(prefix[:n], v.kind)
		key := append(prefix, v.s...)
		*bp = key
		in := false
		_, err := s.db.SeekExt(key[:n+1], key, func(_, block []byte) error {
			_, err := eachInBlock(block, func(val []byte) bool {
				in = string(val) == v.s
				return string(val) < v.s
			})
			return err
		})
		if err != nil || in {
			return in, err
		}
	}
	return false, nil
}

// Scan calls fn with the emails of the list's current generation, then
// its customer ids, each in byte order, until fn returns false. It reports
// whether the list exists. email and customer are valid only during the
// call.
func (s *Store) Scan(site, name string, fn func(email, customer []byte) bool) (bool, error) {
	m, found, err := s.Meta(site, name)
	if err != nil || !found {
		return found, err
	}
	return true, s.ScanGen(site, name, m.Gen, fn)
}

// ScanGen is Scan of one generation.
func (s *Store) ScanGen(site, name string, gen uint64, fn func(email, customer []byte) bool) error {
	prefix := appendGenKey(nil, site, name, gen)
	var derr error
	err := s.db.ScanExt(prefix, func(k, v []byte) bool {
		k = k[len(prefix):]
		var stopped bool
		switch {
		case len(k) > 1 && k[0] == kindEmail:
			stopped, derr = eachInBlock(v, func(val []byte) bool { return fn(val, nil) })
		case len(k) > 1 && k[0] == kindCustomer:
			stopped, derr = eachInBlock(v, func(val []byte) bool { return fn(nil, val) })
		default:
			derr = fmt.Errorf("bad row key %q", k)
		}
		if derr != nil {
			derr = fmt.Errorf("list %q of site %q: %w", name, site, derr)
		}
		return derr == nil && !stopped
	})
	if err == nil {
		err = derr
	}
	return err
}

// Diff calls fn with every email and customer id that is in exactly one of
// generations a and b of a list (0: the empty list), until fn returns
// false. It holds the rows of a in memory.
func (s *Store) Diff(site, name string, a, b uint64, fn func(email, customer []byte) bool) error {
	var (
		arena []byte
		ends  []int // arena[ends[i-1]:ends[i]] is row i of a: kind, value
	)
	if a != 0 {
		err := s.ScanGen(site, name, a, func(email, customer []byte) bool {
			arena = appendRow(arena, email, customer)
			ends = append(ends, len(arena))
			return true
		})
		if err != nil {
			return err
		}
	}
	row := func(i int) []byte {
		if i == 0 {
			return arena[:ends[0]]
		}
		return arena[ends[i-1]:ends[i]]
	}
	emit := func(r []byte) bool {
		if r[0] == kindEmail {
			return fn(r[1:], nil)
		}
		return fn(nil, r[1:])
	}
	// Both scans are in key order: kind, then value.
	i, stopped := 0, false
	var cur []byte
	if b != 0 {
		err := s.ScanGen(site, name, b, func(email, customer []byte) bool {
			cur = appendRow(cur[:0], email, customer)
			for ; i < len(ends); i++ {
				c := bytes.Compare(row(i), cur)
				if c > 0 {
					break
				}
				if c == 0 {
					i++
					return true
				}
				if !emit(row(i)) {
					stopped = true
					return false
				}
			}
			if !emit(cur) {
				stopped = true
				return false
			}
			return true
		})
		if err != nil || stopped {
			return err
		}
	}
	for ; i < len(ends); i++ {
		if !emit(row(i)) {
			return nil
		}
	}
	return nil
}

func appendRow(dst, email, customer []byte) []byte {
	if email != nil {
		return append(append(dst, kindEmail), email...)
	}
	return append(append(dst, kindCustomer), customer...)
}

// values collects the values of one kind of an upload, to be written
// sorted and without duplicates.
type values struct {
	arena []byte
	ends  []uint32 // value i is arena[ends[i-1]:ends[i]]
	n     int      // distinct values, after write
}

func (vs *values) add(v []byte) {
	vs.arena = append(vs.arena, v...)
	vs.ends = append(vs.ends, uint32(len(vs.arena)))
}

func (vs *values) at(i int) []byte {
	start := uint32(0)
	if i > 0 {
		start = vs.ends[i-1]
	}
	return vs.arena[start:vs.ends[i]]
}

// write sorts the values, drops duplicates and writes them in blocks
// under prefix | kind.
func (vs *values) write(w *state.ExtWriter, prefix []byte, kind byte) error {
	idx := make([]int32, len(vs.ends))
	for i := range idx {
		idx[i] = int32(i)
	}
	slices.SortFunc(idx, func(a, b int32) int { return bytes.Compare(vs.at(int(a)), vs.at(int(b))) })
	var (
		block      [][]byte
		size       int
		key, value []byte
	)
	flush := func() error {
		if len(block) == 0 {
			return nil
		}
		key = append(append(append(key[:0], prefix...), kind), block[len(block)-1]...)
		value = appendBlock(value[:0], block)
		block, size = block[:0], 0
		return w.Set(key, value)
	}
	var last []byte
	for j, i := range idx {
		v := vs.at(int(i))
		if j > 0 && bytes.Equal(v, last) {
			continue
		}
		last = v
		vs.n++
		block = append(block, v)
		if size += len(v); len(block) >= blockMax || size >= blockBytes {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

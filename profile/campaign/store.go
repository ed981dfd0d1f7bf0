package campaign

import (
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/affinityhq/affinity/internal/codec"
	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/profile/lists"
	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// Options configures a Store.
type Options struct {
	// State is the state DB. Required.
	State *state.DB
	// Segments reads the segment arms' members and, through its Lists,
	// the list arms' emails. Required.
	Segments *membership.Engine
	// Now is the clock of the freeze; nil: time.Now.
	Now func() time.Time
}

// Store keeps the campaigns of every site. See the package doc.
type Store struct {
	db   *state.DB
	segs *membership.Engine
	now  func() time.Time

	create sync.Mutex // serialises Create (the id sequence, secrets)

	mu      sync.RWMutex
	heads   map[uint64]*Campaign // read-only once cached
	secrets map[secretKey]*siteSecret

	// bySite holds each site's campaigns, read by the builder for every
	// purchase (Counter.Convert): a site without campaigns costs a map
	// lookup. Replaced whole by loadSites, under sitesMu, after every
	// Create and Delete and in New.
	bySite  atomic.Pointer[map[string][]*Campaign]
	sitesMu sync.Mutex
}

// secretKey names a site's token secret of one generation.
type secretKey struct {
	site string
	gen  uint32
}

// siteSecret is a cached token secret with its signers: a token check
// takes one from the pool rather than keying a new HMAC (a dozen
// allocations and two SHA-256 blocks a check).
type siteSecret struct {
	key     []byte
	signers sync.Pool // *signer under key
}

// mac returns the MAC of recipient n of campaign c; safe for concurrent
// use.
func (ss *siteSecret) mac(c *Campaign, n uint32) [macLen]byte {
	sg, _ := ss.signers.Get().(*signer)
	if sg == nil {
		sg = newSigner(ss.key)
	}
	m := sg.mac(c, n)
	ss.signers.Put(sg)
	return m
}

// signs reports whether mac is the MAC of recipient n of campaign c
// under the secret: the one check of a token's signature.
func (ss *siteSecret) signs(c *Campaign, n uint32, mac *[macLen]byte) bool {
	want := ss.mac(c, n)
	return hmac.Equal(want[:], mac[:])
}

// ErrNotFound is returned for a campaign that does not exist.
var ErrNotFound = errors.New("no such campaign")

// New returns the Store of the campaigns in opts.State.
func New(opts Options) (*Store, error) {
	if opts.State == nil || opts.Segments == nil {
		return nil, errors.New("BUG: campaign.New needs Options.State and Options.Segments")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Store{db: opts.State, segs: opts.Segments, now: opts.Now, heads: map[uint64]*Campaign{}, secrets: map[secretKey]*siteSecret{}}
	if err := s.loadSites(); err != nil {
		return nil, err
	}
	return s, nil
}

// loadSites reads every campaign's head into bySite: O(campaigns), run
// when the set of campaigns changes.
func (s *Store) loadSites() error {
	s.sitesMu.Lock()
	defer s.sitesMu.Unlock()
	m := map[string][]*Campaign{}
	var derr error
	err := s.db.ScanExt([]byte{prefixHead}, func(k, v []byte) bool {
		if len(k) != 1+8 {
			derr = fmt.Errorf("BUG: campaign head key %x has a bad length", k)
			return false
		}
		c := &Campaign{ID: binary.BigEndian.Uint64(k[1:])}
		if derr = decodeHead(c, v); derr != nil {
			derr = fmt.Errorf("campaign %d: %w", c.ID, derr)
			return false
		}
		m[c.Site] = append(m[c.Site], c)
		return true
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return fmt.Errorf("cannot read the campaigns: %w", err)
	}
	s.bySite.Store(&m)
	return nil
}

// siteCampaigns returns the campaigns of site, oldest first; shared, do
// not modify.
func (s *Store) siteCampaigns(site string) []*Campaign {
	return (*s.bySite.Load())[site]
}

// Get returns campaign id of site; ErrNotFound when there is none (or it
// is another site's). The Campaign is shared: do not modify it.
func (s *Store) Get(site string, id uint64) (*Campaign, error) {
	c, err := s.head(id)
	if err == nil && c.Site != site {
		err = ErrNotFound
	}
	return c, err
}

// head returns campaign id, cached after its first read.
func (s *Store) head(id uint64) (*Campaign, error) {
	s.mu.RLock()
	c := s.heads[id]
	s.mu.RUnlock()
	if c != nil {
		return c, nil
	}
	v, ok, err := s.db.Ext(appendHeadKey(nil, id), nil)
	if err != nil {
		return nil, fmt.Errorf("cannot read campaign %d: %w", id, err)
	}
	if !ok {
		return nil, ErrNotFound
	}
	c = &Campaign{ID: id}
	if err := decodeHead(c, v); err != nil {
		return nil, fmt.Errorf("campaign %d: %w", id, err)
	}
	s.mu.Lock()
	s.heads[id] = c
	s.mu.Unlock()
	return c, nil
}

// List returns the campaigns of site, oldest first.
func (s *Store) List(site string) ([]*Campaign, error) {
	prefix := codec.AppendString([]byte{prefixSite}, site)
	var ids []uint64
	err := s.db.ScanExtKeys(prefix, func(k []byte) bool {
		if len(k) == len(prefix)+8 {
			ids = append(ids, binary.BigEndian.Uint64(k[len(prefix):]))
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("cannot list the campaigns of site %q: %w", site, err)
	}
	cs := make([]*Campaign, 0, len(ids))
	for _, id := range ids {
		c, err := s.head(id)
		if errors.Is(err, ErrNotFound) {
			continue // deleted since the scan
		}
		if err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	return cs, nil
}

// Delete deletes campaign id of site: its head first (its tokens stop
// resolving at once), then its recipients and counters. found is false
// when there was none.
func (s *Store) Delete(site string, id uint64) (found bool, err error) {
	c, err := s.Get(site, id)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	b := s.db.NewBatch()
	err = errors.Join(b.ExtDelete(appendHeadKey(nil, id)), b.ExtDelete(appendSiteKey(nil, c.Site, id)))
	if err == nil {
		err = b.Commit()
	}
	if err != nil {
		return true, fmt.Errorf("cannot delete campaign %d of site %q: %w", id, site, err)
	}
	s.mu.Lock()
	delete(s.heads, id)
	s.mu.Unlock()
	return true, errors.Join(s.loadSites(), s.dropKeys(id))
}

// dropKeys deletes the recipients and counters of campaign id.
func (s *Store) dropKeys(id uint64) error {
	for _, p := range [...]byte{prefixRecipient, prefixEmail, prefixCounter, prefixEngagement} {
		if _, err := s.db.DeleteExtPrefix(prefixOf(p, id)); err != nil {
			return fmt.Errorf("cannot drop the keys of campaign %d: %w", id, err)
		}
	}
	return nil
}

// secret returns the site's token secret of generation gen; with create,
// generation 1 is created when the site has none. Callers of create hold
// s.create.
func (s *Store) secret(site string, gen uint32, create bool) (*siteSecret, error) {
	k := secretKey{site, gen}
	s.mu.RLock()
	ss := s.secrets[k]
	s.mu.RUnlock()
	if ss != nil {
		return ss, nil
	}
	var sec []byte
	key := appendSecretKey(nil, site, gen)
	v, ok, err := s.db.Ext(key, nil)
	if err != nil {
		return nil, fmt.Errorf("cannot read the campaign secret of site %q: %w", site, err)
	}
	switch {
	case ok:
		if sec, err = decodeSecret(v); err != nil {
			return nil, fmt.Errorf("campaign secret of site %q: %w", site, err)
		}
	case !create:
		return nil, fmt.Errorf("no campaign secret %d of site %q", gen, site)
	default:
		sec = make([]byte, secretLen)
		if _, err := rand.Read(sec); err != nil {
			return nil, fmt.Errorf("cannot make a campaign secret: %w", err)
		}
		v := appendSecretValue(sec, s.now().UnixMilli())
		b := s.db.NewBatch()
		if err := b.ExtSet(key, v); err != nil {
			return nil, err
		}
		if err := b.Commit(); err != nil {
			return nil, fmt.Errorf("cannot store the campaign secret of site %q: %w", site, err)
		}
	}
	ss = &siteSecret{key: sec}
	s.mu.Lock()
	if prev := s.secrets[k]; prev != nil {
		ss = prev // another check cached it first
	} else {
		s.secrets[k] = ss
	}
	s.mu.Unlock()
	return ss, nil
}

// nextID returns a new campaign id, never given before (the sequence is
// committed before the campaign's keys are written). Callers hold
// s.create.
func (s *Store) nextID() (uint64, error) {
	id, _, err := s.readSeq()
	if err != nil {
		return 0, err
	}
	id++
	b := s.db.NewBatch()
	if err := b.ExtSet([]byte{prefixSeq}, binary.BigEndian.AppendUint64(nil, id)); err != nil {
		return 0, err
	}
	if err := b.Commit(); err != nil {
		return 0, fmt.Errorf("cannot store the campaign sequence: %w", err)
	}
	return id, nil
}

// readSeq reads the campaign sequence: the last id given and, when ids
// are reserved on a definitions topic (ReserveID), the topic offset after
// the last reservation counted (else 0).
func (s *Store) readSeq() (id uint64, after int64, err error) {
	v, ok, err := s.db.Ext([]byte{prefixSeq}, nil)
	switch {
	case err != nil:
		return 0, 0, fmt.Errorf("cannot read the campaign sequence: %w", err)
	case !ok:
		return 0, 0, nil
	case len(v) == 16:
		after = int64(binary.BigEndian.Uint64(v[8:]))
	case len(v) != 8:
		return 0, 0, fmt.Errorf("campaign sequence %x: want 8 or 16 bytes", v)
	}
	return binary.BigEndian.Uint64(v), after, nil
}

// Create freezes the audience of the campaign c (from ParseSpec) now and
// stores it; it fills in c's id, sent time, secret and sizes. An arm
// naming a segment or list the site does not have is an *invalid.Error.
func (s *Store) Create(c *Campaign) error {
	hint, err := s.checkArms(c)
	if err != nil {
		return err
	}
	s.create.Lock()
	defer s.create.Unlock()
	sec, err := s.secret(c.Site, 1, true)
	if err != nil {
		return err
	}
	if c.ID, err = s.nextID(); err != nil {
		return err
	}
	c.Sent, c.SecretGen = s.now().UnixMilli(), 1
	// Keys a crash left under this id before its head was written.
	if err := s.dropKeys(c.ID); err != nil {
		return err
	}
	w, err := s.newRecipientWriter(c.ID)
	if err != nil {
		return err
	}
	f := s.newFreeze(c, sec.key, hint, s.exportMembers, w.put)
	for i := range c.Arms {
		if err = f.arm(i); err != nil {
			break
		}
	}
	return s.commit(c, w, nil, err)
}

// commit ends the writing of campaign c's recipients by w: with err nil
// it flushes them and commits the head (with secret, when not nil: the
// site's secret a campaign of another node brought), else it drops
// them. Callers hold s.create.
func (s *Store) commit(c *Campaign, w *recipientWriter, secret []byte, err error) error {
	if err == nil {
		err = w.w.Flush()
	} else {
		w.w.Cancel()
	}
	if err == nil {
		b := s.db.NewBatch()
		err = errors.Join(b.ExtSet(appendHeadKey(nil, c.ID), appendHead(nil, c)), b.ExtSet(appendSiteKey(nil, c.Site, c.ID), nil))
		if err == nil && secret != nil {
			err = b.ExtSet(appendSecretKey(nil, c.Site, c.SecretGen), appendSecretValue(secret, c.Sent))
		}
		if err == nil {
			err = b.Commit()
		}
	}
	if err != nil {
		return errors.Join(fmt.Errorf("cannot create campaign %q of site %q: %w", c.Name, c.Site, err), s.dropKeys(c.ID))
	}
	// Its purchases convert from now on; if this read fails, from the
	// next Create, Delete or start.
	return s.loadSites()
}

// CheckArms checks that the segments and lists c's arms name exist: an
// *invalid.Error names the first missing one.
func (s *Store) CheckArms(c *Campaign) error {
	_, err := s.checkArms(c)
	return err
}

// checkArms checks that the segments and lists c's arms name exist, and
// returns how many emails its lists hold (the freeze sizes its map of
// emails seen once). A missing one is an *invalid.Error.
func (s *Store) checkArms(c *Campaign) (hint int, err error) {
	for i := range c.Arms {
		a := &c.Arms[i]
		var (
			found bool
			err   error
		)
		if a.Segment != "" {
			_, found, err = s.segs.Definition(c.Site, a.Segment)
		} else {
			var m lists.Meta
			m, found, err = s.segs.Lists().Meta(c.Site, a.List)
			hint += int(m.Emails)
		}
		if err != nil {
			return 0, err
		}
		if !found {
			kind, name := "segment", a.Segment
			if a.List != "" {
				kind, name = "list", a.List
			}
			return 0, invalid.Errorf("invalid arm %q: no %s %s of site %s", a.Name, kind, quote.Value(name), quote.Value(c.Site))
		}
	}
	return hint, nil
}

// exportMembers is the Members of a node holding every partition: the
// segment's Export.
func (s *Store) exportMembers(c *Campaign, segment string, fn func(email []byte) bool) error {
	return s.segs.Export(c.Site, segment, &membership.ExportOptions{}, func(m *membership.MemberView, _ []event.UUID) bool {
		return fn(m.Email)
	})
}

// recipientWriter writes the recipient keys of one campaign.
type recipientWriter struct {
	w      *state.ExtWriter
	id     uint64
	key, v []byte
}

func (s *Store) newRecipientWriter(id uint64) (*recipientWriter, error) {
	w, err := s.db.NewExtWriter()
	if err != nil {
		return nil, err
	}
	return &recipientWriter{w: w, id: id}, nil
}

// put writes recipient r: its key by number and by email.
func (w *recipientWriter) put(r *Recipient) error {
	w.key = appendRecipientKey(w.key[:0], w.id, r.Number)
	w.v = appendRecipient(w.v[:0], r)
	if err := w.w.Set(w.key, w.v); err != nil {
		return err
	}
	w.key = appendEmailKey(w.key[:0], w.id, unsafe.String(unsafe.SliceData(r.Email), len(r.Email)))
	w.v = appendEmailValue(w.v[:0], r.Number, r.Control)
	return w.w.Set(w.key, w.v)
}

// Members calls fn with the email of each member of segment of c's site
// ("" for a member without one), in visitor order, until fn returns
// false: the audience of a segment arm.
type Members func(c *Campaign, segment string, fn func(email []byte) bool) error

// freeze makes the recipients of one campaign and hands each to put.
type freeze struct {
	s       *Store
	c       *Campaign
	members Members
	put     func(r *Recipient) error
	sign    *signer
	salt    string
	seed    maphash.Seed
	seen    map[uint64]uint16 // email hash → arm index + 1
	n       uint32            // recipients so far
	r       Recipient
}

func (s *Store) newFreeze(c *Campaign, secret []byte, sizeHint int, members Members, put func(*Recipient) error) *freeze {
	return &freeze{s: s, c: c, members: members, put: put, sign: newSigner(secret), salt: Salt(c.Site, c.ID), seed: maphash.MakeSeed(), seen: make(map[uint64]uint16, sizeHint)}
}

// Salt is the salt of a campaign's holdout split: a recipient is in the
// control group when membership.InHoldout(Salt(site, id), email, holdout).
func Salt(site string, id uint64) string { return site + "/campaign/" + strconv.FormatUint(id, 10) }

// arm reads arm i's audience and writes its recipients.
func (f *freeze) arm(i int) error {
	a := &f.c.Arms[i]
	if len(a.Variants) > 0 {
		a.VariantTreated = make([]uint64, len(a.Variants))
	}
	var werr error
	add := func(email []byte) bool {
		a.Members++
		if len(email) == 0 {
			a.NoEmail++
			return true
		}
		werr = f.add(i, email)
		return werr == nil
	}
	var err error
	if a.Segment != "" {
		err = f.members(f.c, a.Segment, add)
	} else {
		var found bool
		found, err = f.s.segs.Lists().Scan(f.c.Site, a.List, func(email, _ []byte) bool { return add(email) })
		if err == nil && !found {
			err = invalid.Errorf("invalid arm %q: list %s deleted during the freeze", a.Name, quote.Value(a.List))
		}
	}
	if err == nil {
		err = werr
	}
	return err
}

// add writes a recipient of arm i unless an earlier arm has the email (or
// this arm had it from another visitor of the person).
func (f *freeze) add(i int, email []byte) error {
	a := &f.c.Arms[i]
	h := maphash.Bytes(f.seed, email)
	if prev, ok := f.seen[h]; ok {
		if int(prev) != i+1 {
			a.InEarlierArm++
		}
		return nil
	}
	if f.n == 1<<32-1 {
		return invalid.Errorf("invalid campaign %q: more than %d recipients", f.c.Name, uint32(1<<32-1))
	}
	f.seen[h] = uint16(i + 1)
	r := &f.r
	r.Number, r.Email = f.n, email
	r.Cell = Cell{Arm: uint16(i)}
	r.Control = membership.InHoldout(f.salt, unsafe.String(unsafe.SliceData(email), len(email)), f.c.Holdout)
	switch {
	case r.Control:
		a.Control++
	case len(a.Variants) > 0:
		// Round-robin in freeze order: the variants' sizes differ by at
		// most one, and the audience's order does not depend on who is
		// treated.
		v := a.Treated % uint64(len(a.Variants))
		r.Variant = uint16(v + 1)
		a.VariantTreated[v]++
		a.Treated++
	default:
		a.Treated++
	}
	r.MAC = f.sign.mac(f.c, r.Number)
	if err := f.put(r); err != nil {
		return err
	}
	f.n++
	return nil
}

// ScanRecipients calls fn with the recipients of campaign c, in number
// order, until fn returns false. r and its Email are reused for the next
// recipient.
func (s *Store) ScanRecipients(c *Campaign, fn func(r *Recipient) bool) error {
	var (
		r    Recipient
		derr error
	)
	prefix := prefixOf(prefixRecipient, c.ID)
	// ScanExtFrom, not ScanExt: it does not prefetch, which would start a
	// goroutine and copy the value per recipient (the export's cost).
	err := s.db.ScanExtFrom(prefix, nil, func(k, v []byte) bool {
		if len(k) != len(prefix)+4 {
			derr = fmt.Errorf("BUG: campaign recipient key %x has a bad length", k)
			return false
		}
		r.Number = binary.BigEndian.Uint32(k[len(prefix):])
		if derr = decodeRecipient(&r, v); derr != nil {
			derr = fmt.Errorf("recipient %d of campaign %d: %w", r.Number, c.ID, derr)
			return false
		}
		return fn(&r)
	})
	if err == nil {
		err = derr
	}
	return err
}

// Resolve checks a token and returns its campaign and recipient: one
// point read of the recipient (the campaign's head and the site's secret
// are cached). A malformed, forged or altered token, or one of a deleted
// campaign, is an *invalid.Error: engagement endpoints count nothing for
// it.
func (s *Store) Resolve(tok []byte) (*Campaign, Recipient, error) {
	var r Recipient
	id, n, mac, err := ParseToken(tok)
	if err != nil {
		return nil, r, err
	}
	c, err := s.head(id)
	if errors.Is(err, ErrNotFound) {
		return nil, r, invalid.Errorf("invalid token %s: no campaign %d", quote.Value(tok), id)
	}
	if err != nil {
		return nil, r, err
	}
	sec, err := s.secret(c.Site, c.SecretGen, false)
	if err != nil {
		return nil, r, err
	}
	if !sec.signs(c, n, &mac) {
		return nil, r, invalid.Errorf("invalid token %s: bad signature", quote.Value(tok))
	}
	v, ok, err := s.db.Ext(appendRecipientKey(nil, id, n), nil)
	if err != nil {
		return nil, r, fmt.Errorf("cannot read recipient %d of campaign %d: %w", n, id, err)
	}
	if !ok {
		return nil, r, fmt.Errorf("BUG: token of campaign %d signs recipient %d, which is not stored", id, n)
	}
	if err := decodeRecipient(&r, v); err != nil {
		return nil, r, fmt.Errorf("recipient %d of campaign %d: %w", n, id, err)
	}
	r.Number = n
	return c, r, nil
}

// Recipient returns the recipient of campaign c with email (normalised)
// by one point read; ok is false when the email is none of c's.
func (s *Store) Recipient(c *Campaign, email string) (number uint32, control, ok bool, err error) {
	v, ok, err := s.db.Ext(appendEmailKey(nil, c.ID, email), nil)
	if err != nil || !ok {
		return 0, false, false, err
	}
	number, control, err = decodeEmailValue(v)
	if err != nil {
		return 0, false, false, fmt.Errorf("recipient %s of campaign %d: %w", quote.Value(email), c.ID, err)
	}
	return number, control, true, nil
}

// Counters returns the counters of every cell of campaign c that has
// any, summed over partitions: one prefix scan of O(cells × partitions)
// keys.
func (s *Store) Counters(c *Campaign) (map[Cell]Counters, error) {
	rows, err := s.AppendCounterRows(nil, c, nil)
	if err != nil {
		return nil, err
	}
	return SumCounterRows(c, rows)
}

// InCampaign answers the rules' received("ID") — email is a treated
// recipient of campaign ID of site — and, with converted, converted("ID")
// — email is a recipient (treated or control) whose conversion is
// counted: one or two point reads (membership.Campaigns). An id that
// names no campaign of site answers false.
func (s *Store) InCampaign(site, id, email string, converted bool) (bool, error) {
	n, err := ParseID(id)
	if err != nil {
		return false, nil // the rule parser admits only well-formed ids
	}
	c, err := s.Get(site, n)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	number, control, ok, err := s.Recipient(c, email)
	if err != nil || !ok {
		return false, err
	}
	if !converted {
		return !control, nil
	}
	v, found, err := s.db.Ext(appendEngagementKey(nil, c.ID, number), nil)
	if err != nil || !found {
		return false, err
	}
	var eng engagement
	if err := decodeEngagement(&eng, v); err != nil {
		return false, fmt.Errorf("recipient %d of campaign %d: %w", number, c.ID, err)
	}
	return eng.converted != 0, nil
}

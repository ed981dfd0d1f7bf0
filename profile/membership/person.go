package membership

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/affinityhq/affinity/internal/codec"
	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/profile/people"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// Per says what the members of a segment are.
type Per uint8

const (
	// PerVisitor: each visitor (a browser's cookie) is a member on its
	// own, evaluated in the builder's commit. The default.
	PerVisitor Per = iota
	// PerPerson: each person — the visitors linked by a shared email or
	// customer id (profile/people) — is a member, its rule evaluated on
	// the merge of their profiles by the person evaluator. Anonymous
	// visitors are no one's person and in no per-person segment.
	PerPerson
)

// ParsePer reads the per of a segment as the API takes it: "visitor" (or
// empty) or "person"; anything else is an *invalid.Error.
func ParsePer(s string) (Per, error) {
	switch s {
	case "", "visitor":
		return PerVisitor, nil
	case "person":
		return PerPerson, nil
	}
	return PerVisitor, invalid.Errorf("invalid per %s: want visitor or person", quote.Value(s))
}

func (p Per) String() string {
	if p == PerPerson {
		return "person"
	}
	return "visitor"
}

// A person's key names it in membership: "e:" and its lowest email, or
// "c:" and its lowest customer id when it has no email. It is stable while
// the person's ids are: it moves only when an identify joins two persons
// (the lower key stays) or splits one, and the evaluator then records the
// moved person leaving under the old key and entering under the new.
func personKey(p *people.Person) string {
	if len(p.Emails) > 0 {
		return "e:" + slices.Min(p.Emails)
	}
	if len(p.Customers) > 0 {
		return "c:" + slices.Min(p.Customers)
	}
	return ""
}

// keyID returns the id a person key resolves from.
func keyID(key string) (people.ID, bool) {
	if len(key) < 3 || key[1] != ':' || key[0] != 'e' && key[0] != 'c' {
		return people.ID{}, false
	}
	return people.ID{Email: key[0] == 'e', Value: key[2:], Original: key[2:]}, true
}

// erasedPersonKey is the person key of the record of person id leaving
// because its last visitor was erased: "i:" and the id, which names none
// of its emails or customer ids. A restore reads it as the person's
// leave (readPersonRecords).
func erasedPersonKey(id event.UUID) string { return "i:" + id.String() }

// erasedKeyID returns the id of an erasedPersonKey, false for any other
// key.
func erasedKeyID(key string) (event.UUID, bool) {
	rest, ok := strings.CutPrefix(key, "i:")
	if !ok {
		return event.UUID{}, false
	}
	return event.ParseUUID([]byte(rest))
}

// PersonID returns the id of the person of key on site: a name-based UUID
// that stands in membership, change records and exports where a visitor id
// stands for a per-visitor segment.
func PersonID(site, key string) event.UUID {
	id, _ := event.NameUUID(nil, event.NamePerson, site, key)
	return id
}

// The kinds of person marks ('P' keys).
const (
	markEvent    = 'v' // a commit changed an identified visitor
	markErased   = 'g' // a visitor was erased
	markExpired  = 'x' // a visitor was deleted for the builder's retention
	markBackfill = 'b' // a backfill asks for the visitor's person
	markDue      = 't' // a person's due time (at: the due instant)
	markMember   = 'k' // a backfill asks for a current member person
	markList     = 'l' // a list change asks for the visitor's person
	markHanded   = 'h' // another node hands over a person it evaluates here (Persons)
	markAwaiting = 'w' // a handed mark kept until the next assignment hands it again (person_move.go)
)

// mark key: 'P' | at u64 | id u64 | site str | kind byte | visitor <16b>
// (v, g, x, b) or person key str (t, k, appendPersonMark), or why str |
// gone str | person key str (h, appendHandedMark). Event marks have at 0 and a
// unique id, so a later commit's mark never overwrites one the evaluator
// is handling; due marks have id 0, one per person and due instant.
func appendMarkKey(dst []byte, at int64, id uint64, site string, kind byte) []byte {
	dst = append(dst, prefixMark)
	dst = binary.BigEndian.AppendUint64(dst, uint64(max(at, 0)))
	dst = binary.BigEndian.AppendUint64(dst, id)
	dst = codec.AppendString(dst, site)
	return append(dst, kind)
}

type mark struct {
	key     []byte
	at      int64
	site    string
	kind    byte
	visitor event.UUID
	person  string
	why     string // of a handed mark
	gone    string // of a handed mark
}

func parseMarkKey(m *mark, k []byte) error {
	r := newReader("person mark key", k)
	if r.Byte() != prefixMark {
		return fmt.Errorf("cannot decode person mark key %x", k)
	}
	at := r.Fixed("at", 8)
	r.Fixed("id", 8)
	m.site = str(&r)
	m.kind = r.Byte()
	m.person, m.why, m.gone = "", "", ""
	switch m.kind {
	case markHanded, markAwaiting:
		m.why, m.gone = str(&r), str(&r)
		if m.person = str(&r); r.Err() == nil && !handedWhy(m.why, m.gone) {
			r.Failf("why %q gone %q", m.why, m.gone)
		}
		if _, ok := keyID(m.person); r.Err() == nil && !ok {
			r.Failf("person key %q", m.person)
		}
	case markEvent, markErased, markExpired, markBackfill, markList:
		copy(m.visitor[:], r.Fixed("visitor", 16))
	case markDue, markMember:
		if m.person = str(&r); r.Err() == nil && m.person == "" {
			r.Failf("empty person key")
		}
	default:
		r.Failf("kind %q", m.kind)
	}
	if end(&r) != nil {
		return fmt.Errorf("cannot decode person mark key %x: %w", k, r.Err())
	}
	m.at = int64(binary.BigEndian.Uint64(at))
	m.key = append(m.key[:0], k...)
	return nil
}

// Persons makes the person evaluator one of a build group's (DESIGN.md
// "Per-person segments in a build group"): a person is evaluated only by
// the node serving its evaluating partition (PersonPartition), over the
// group's committed state; the other nodes hand their marks of it there.
type Persons interface {
	// Store reads the group's committed profiles and link indexes, as one
	// DB holding every partition would. One evaluation uses it at a time.
	Store() people.Store
	// Partitions is the number of the events topic's partitions.
	Partitions() int
	// Evaluates reports whether this node serves events partition p now.
	Evaluates(p int) bool
	// HandOff makes the handed marks (AcceptHanded's keys) durable at the
	// node serving partition p; an error leaves the marks they came from
	// in place, to be handed again later.
	HandOff(ctx context.Context, p int, marks [][]byte) error
}

// SetPersons sets Options.Persons: in a build group the query API, which
// makes it, is created after the engine. The evaluator's next round uses
// it; set it before the builder commits, or the marks before it are
// evaluated as one node's.
func (e *Engine) SetPersons(p Persons) { e.persons.Store(&p) }

// PersonPartition returns the evaluating partition of the person of key
// on site among n: the partition of its person id as the collector
// partitions a visitor (site|id), so persons spread like visitors.
func PersonPartition(site, key string, n int) int {
	return storage.PartitionFor(event.AppendLogKey(nil, site, PersonID(site, key)), n)
}

// appendHandedMark appends the key of a handed mark: evaluate the person
// of key (why), or record it leaving (gone) if key names no person now. It
// has id 0, so handing the same mark again overwrites it.
func appendHandedMark(dst []byte, site, why, gone, key string) []byte {
	dst = appendMarkKey(dst, 0, 0, site, markHanded)
	dst = codec.AppendString(dst, why)
	dst = codec.AppendString(dst, gone)
	return codec.AppendString(dst, key)
}

// handedWhy reports whether why and gone are what a handed mark carries.
func handedWhy(why, gone string) bool {
	switch why {
	case "event", "backfill", "list", "time", whyCheck:
	default:
		return false
	}
	switch gone {
	case "linked", whyErased, whyExpired:
		return true
	}
	return false
}

// AcceptHanded stores marks that another node of the build group handed
// to this one (Persons.HandOff), in one write, and wakes the evaluator; a
// key that is not a handed mark is an *invalid.Error naming it and nothing
// is stored.
func (e *Engine) AcceptHanded(marks [][]byte) error {
	var m mark
	for _, k := range marks {
		if err := parseMarkKey(&m, k); err != nil || m.kind != markHanded {
			return invalid.Errorf("invalid handed person mark %x: want 'P' kind h with why, gone and person key", k)
		}
	}
	return e.putMarks(marks)
}

// putVisitorMark adds to b a mark asking the person evaluator to evaluate
// the person of visitor: in the builder's commit, so it is durable exactly
// when the profile is.
func (e *Engine) putVisitorMark(b *state.Batch, site string, visitor event.UUID, kind byte) error {
	// ExtSet copies the key into the batch: a buffer on the stack serves
	// any site up to the length below, so a commit allocates nothing here.
	var buf [96]byte
	key := appendMarkKey(buf[:0], 0, e.markID.Add(1), site, kind)
	if err := b.ExtSet(append(key, visitor[:]...), nil); err != nil {
		return err
	}
	poke(e.personWake)
	return nil
}

// appendPersonMark appends the mark key of the person of key.
func appendPersonMark(dst []byte, at int64, site string, kind byte, key string) []byte {
	return codec.AppendString(appendMarkKey(dst, at, 0, site, kind), key)
}

// visitorMarks appends to dst the mark keys of kind of visitors.
func (e *Engine) visitorMarks(dst [][]byte, site string, visitors []event.UUID, kind byte) [][]byte {
	for _, v := range visitors {
		dst = append(dst, append(appendMarkKey(nil, 0, e.markID.Add(1), site, kind), v[:]...))
	}
	return dst
}

// putMarks writes marks outside the builder's commits (a backfill, a list
// change), in transactions of 1024.
func (e *Engine) putMarks(marks [][]byte) error {
	for chunk := range slices.Chunk(marks, 1024) {
		b := e.db.NewBatch()
		for _, k := range chunk {
			if err := b.ExtSet(k, nil); err != nil {
				return err
			}
		}
		if err := b.Commit(); err != nil {
			return fmt.Errorf("cannot store %d person marks: %w", len(chunk), err)
		}
	}
	if len(marks) > 0 {
		poke(e.personWake)
	}
	return nil
}

func appendPersonOfKey(dst []byte, site string, visitor event.UUID) []byte {
	return append(appendSiteKey(dst, prefixPersonOf, site), visitor[:]...)
}

// personBatch is how many marks the evaluator handles per commit.
const personBatch = 256

// RunPersons is the person evaluator: it handles every person mark due at
// the clock's now, in batches, each in one write with the memberships,
// change records and due times it changes. It returns how many marks it
// handled. One runs at a time (the loop Start runs, a backfill, Scrub).
//
// Why it is exact across partitions: it reads only committed profiles, and
// every commit that changes an identified visitor leaves a mark behind it;
// so whatever another partition commits after a read here has a mark that
// a later round handles, reading that commit.
func (e *Engine) RunPersons(ctx context.Context) (int, error) {
	e.personMu.Lock()
	defer e.personMu.Unlock()
	now := e.now()
	total := 0
	var after []byte
	for {
		var marks []mark
		var perr error
		err := e.db.ScanExtFrom([]byte{prefixMark}, after, func(key, _ []byte) bool {
			var m mark
			if perr = parseMarkKey(&m, key); perr != nil {
				return false
			}
			if m.at > now {
				return false
			}
			marks = append(marks, m)
			after = append(after[:0], key...)
			return len(marks) < personBatch
		})
		if err == nil {
			err = perr
		}
		if err != nil {
			return total, fmt.Errorf("cannot scan the person marks: %w", err)
		}
		// By site, each site's marks in one write.
		slices.SortStableFunc(marks, func(a, b mark) int { return strings.Compare(a.site, b.site) })
		for i := 0; i < len(marks); {
			if ctx.Err() != nil {
				return total, ctx.Err()
			}
			j := i + 1
			for j < len(marks) && marks[j].site == marks[i].site {
				j++
			}
			if err := e.evalPersons(ctx, marks[i].site, marks[i:j], now); err != nil {
				e.handOffFailed.Store(true)
				if !errors.As(err, new(*PersonsPendingError)) {
					e.m.errors.Inc()
					e.logf("membership: persons of site %q: %s", marks[i].site, err)
				}
			} else {
				total += j - i
			}
			i = j
		}
		if len(marks) < personBatch {
			return total, nil
		}
	}
}

// personSeed is an id whose person the evaluator looks at.
type personSeed struct {
	id   people.ID
	key  string // a person key seen before: its person leaves if it no longer is one
	gone string // why a key's person left: "linked", erased, expired
	why  string
	at   int64 // the due instant of a due mark, else 0 (now)
	// check: key may be an old key of a person evaluated elsewhere; it
	// leaves if it has memberships here and names no person now.
	check bool
}

// whyCheck is the why of a handed mark of a candidate old key (a check
// seed): its evaluator looks only if the key has memberships there.
const whyCheck = "check"

// evalPersons handles the marks of one site in one write. In a build
// group (Options.Persons) it evaluates only the persons whose evaluating
// partition this node serves, and hands the others to their evaluators
// before its write deletes the marks they came from.
func (e *Engine) evalPersons(ctx context.Context, site string, marks []mark, now int64) error {
	ss, err := e.siteSegments(site)
	if err != nil {
		return err
	}
	var store people.Store = e.db
	var group Persons
	if p := e.persons.Load(); p != nil {
		group = *p
	}
	if group != nil {
		store = group.Store()
	}
	handed := map[int][][]byte{} // by evaluating partition
	awaitAt := e.awaitAt()       // the generation of this round's hand-offs
	var pending error            // a person here whose partition is being restored
	here := func(key string) bool {
		if group == nil {
			return true
		}
		p := PersonPartition(site, key, group.Partitions())
		if !group.Evaluates(p) {
			return false
		}
		if pending == nil && e.personsBlocked(p) {
			pending = &PersonsPendingError{Partition: p}
		}
		return true
	}
	hand := func(key, why, gone string) {
		p := PersonPartition(site, key, group.Partitions())
		handed[p] = append(handed[p], appendHandedMark(nil, site, why, gone, key))
	}
	b := e.db.NewBatch()
	var (
		seeds []personSeed
		prof  profile.Profile
		buf   []byte
	)
	for i := range marks {
		m := &marks[i]
		if err := b.ExtDelete(m.key); err != nil {
			return err
		}
		switch m.kind {
		case markDue, markMember:
			id, ok := keyID(m.person)
			if !ok {
				continue
			}
			sd := personSeed{id: id, key: m.person, gone: "linked", why: "backfill"}
			if m.kind == markDue {
				st, err := e.personState(site, m.person)
				if err != nil {
					return err
				}
				if st.due != m.at {
					continue // stale: the person was evaluated since
				}
				sd.why, sd.at = "time", m.at
				e.m.dueRuns.Inc()
			}
			seeds = append(seeds, sd)
			continue
		case markHanded:
			if id, ok := keyID(m.person); ok {
				seeds = append(seeds, personSeed{id: id, key: m.person, gone: m.gone, why: m.why, check: m.why == whyCheck})
			}
			continue
		}
		why, gone := "event", "linked"
		switch m.kind {
		case markBackfill:
			why = "backfill"
		case markList:
			why = "list"
		case markErased:
			gone = whyErased
		case markExpired:
			gone = whyExpired
		}
		var ok bool
		if buf, ok, err = e.db.Profile(site, m.visitor, buf); err != nil {
			return fmt.Errorf("cannot read the profile of visitor %s: %w", m.visitor, err)
		}
		if ok {
			if err := profile.DecodeProfile(&prof, buf); err != nil {
				return fmt.Errorf("cannot decode the profile of visitor %s: %w", m.visitor, err)
			}
			if prof.Email != "" {
				seeds = append(seeds, personSeed{id: people.ID{Email: true, Value: prof.Email}, why: why})
			}
			if prof.Customer != "" {
				seeds = append(seeds, personSeed{id: people.ID{Value: prof.Customer}, why: why})
			}
		}
		pk := appendPersonOfKey(nil, site, m.visitor)
		old, found, err := e.db.Ext(pk, nil)
		if err != nil {
			return fmt.Errorf("cannot read the person of visitor %s: %w", m.visitor, err)
		}
		if found {
			if id, idOK := keyID(string(old)); idOK {
				seeds = append(seeds, personSeed{id: id, key: string(old), gone: gone, why: why})
			}
			if !ok {
				if err := b.ExtDelete(pk); err != nil {
					return err
				}
			}
		}
	}
	done := map[string]bool{}      // person keys evaluated
	covered := map[string]string{} // "e:"/"c:" id → the key of the person holding it
	for i := 0; i < len(seeds); i++ {
		sd := seeds[i]
		if sd.check {
			if done[sd.key] {
				continue
			}
			known, err := e.personKnown(site, sd.key)
			if err != nil {
				return err
			}
			if !known {
				continue // never evaluated here: nothing to leave
			}
			sd.why = "event"
		}
		idKey := "c:" + sd.id.Value
		if sd.id.Email {
			idKey = "e:" + sd.id.Value
		}
		key, seen := covered[idKey]
		if !seen {
			p := &e.person
			found, err := people.Find(store, e.cfg, site, sd.id, 0, p)
			if err != nil {
				return err
			}
			if found {
				key = personKey(p)
				for _, em := range p.Emails {
					covered["e:"+em] = key
				}
				for _, c := range p.Customers {
					covered["c:"+c] = key
				}
			}
			covered[idKey] = key
			switch {
			case found && !done[key] && sd.check:
				// key's evaluator asked: it evaluates key itself.
			case found && !done[key] && !here(key):
				done[key] = true
				hand(key, sd.why, "linked")
			case found && !done[key]:
				done[key] = true
				if group != nil {
					// A person a join folded into key had its lowest id,
					// which key still links: each other id is a candidate.
					for _, cand := range candidateKeys(p, key) {
						if done[cand] {
							continue
						}
						if !here(cand) {
							hand(cand, whyCheck, "linked")
						} else if id, ok := keyID(cand); ok {
							seeds = append(seeds, personSeed{id: id, key: cand, gone: "linked", why: sd.why, check: true})
						}
					}
				}
				for _, v := range p.Visitors {
					moved, err := e.movePersonOf(b, site, v, key)
					if err != nil {
						return err
					}
					if moved != "" && !done[moved] {
						if id, ok := keyID(moved); ok {
							seeds = append(seeds, personSeed{id: id, key: moved, gone: "linked", why: sd.why})
						}
					}
				}
				// In visitor order, whichever id the walk started from: a
				// member row lists them so on every node.
				slices.SortFunc(p.Visitors, func(a, b event.UUID) int { return bytes.Compare(a[:], b[:]) })
				pp := &p.Profile
				if pp.Email == "" && len(p.Emails) > 0 {
					pp.Email = slices.Min(p.Emails)
				}
				at := now
				if sd.at > 0 {
					at = sd.at
				}
				if err := e.reevaluatePerson(b, site, key, p.Visitors, pp, ss, at, sd.why, sd.at > 0); err != nil {
					return err
				}
			}
		}
		if sd.key != "" && sd.key != key && !done[sd.key] {
			// No person has this key any more: it leaves its segments.
			done[sd.key] = true
			if !here(sd.key) {
				hand(sd.key, sd.why, sd.gone)
				continue
			}
			if err := e.reevaluatePerson(b, site, sd.key, nil, nil, ss, now, sd.gone, false); err != nil {
				return err
			}
		}
	}
	if pending != nil {
		return pending // the marks wait for the restore (person_move.go)
	}
	if err := e.putPersonPositions(b); err != nil {
		return err
	}
	for p, ks := range handed {
		if err := group.HandOff(ctx, p, ks); err != nil {
			return fmt.Errorf("cannot hand %d person marks to the evaluator of partition %d: %w", len(ks), p, err)
		}
		if err := e.putAwaiting(b, awaitAt, ks); err != nil {
			return err
		}
	}
	if err := b.Commit(); err != nil {
		return fmt.Errorf("cannot commit the evaluation of %d person marks: %w", len(marks), err)
	}
	return nil
}

// movePersonOf records that visitor belongs to the person of key and
// returns the key it belonged to before, if another.
func (e *Engine) movePersonOf(b *state.Batch, site string, visitor event.UUID, key string) (string, error) {
	pk := appendPersonOfKey(nil, site, visitor)
	old, found, err := e.db.Ext(pk, nil)
	if err != nil {
		return "", fmt.Errorf("cannot read the person of visitor %s: %w", visitor, err)
	}
	if found && string(old) == key {
		return "", nil
	}
	if err := b.ExtSet(pk, []byte(key)); err != nil {
		return "", err
	}
	return string(old), nil
}

// candidateKeys returns the keys of p's ids other than key: the keys a
// person folded into p by a join could have had.
func candidateKeys(p *people.Person, key string) []string {
	var keys []string
	for _, em := range p.Emails {
		if k := "e:" + em; k != key {
			keys = append(keys, k)
		}
	}
	for _, c := range p.Customers {
		if k := "c:" + c; k != key {
			keys = append(keys, k)
		}
	}
	return keys
}

// personKnown reports whether the person of key has a 'V' state here.
func (e *Engine) personKnown(site, key string) (bool, error) {
	_, ok, err := e.db.Ext(appendVisitorKey(nil, site, PersonID(site, key)), nil)
	if err != nil {
		return false, fmt.Errorf("cannot read the memberships of person %s of site %q: %w", quote.Value(key), site, err)
	}
	return ok, nil
}

// personState reads the 'V' state of the person of key.
func (e *Engine) personState(site, key string) (vstate, error) {
	var st vstate
	v, ok, err := e.db.Ext(appendVisitorKey(nil, site, PersonID(site, key)), nil)
	if err != nil || !ok {
		return st, err
	}
	return st, decodeVState(&st, v)
}

// reevaluatePerson is reevaluate for the person of key: p is the merge of
// its visitors' profiles, nil when no person has the key any more.
func (e *Engine) reevaluatePerson(b *state.Batch, site, key string, visitors []event.UUID, p *profile.Profile, ss *siteSegs, at int64, why string, catchUp bool) error {
	sc := e.pool.Get().(*scratch)
	defer e.pool.Put(sc)
	sc.person, sc.visitors = key, visitors
	defer func() { sc.person, sc.visitors = "", nil }()
	return e.reevaluateIn(b, sc, site, PersonID(site, key), p, ss, at, why, catchUp)
}

// personLoop runs the person evaluator whenever a commit marks a person,
// and at the earliest person due time.
func (e *Engine) personLoop() {
	defer e.wg.Done()
	for {
		if _, err := e.RunPersons(e.ctx); err != nil && e.ctx.Err() == nil {
			e.logf("membership: %s", err)
		}
		wait := e.opts.MaxDueSleep
		if e.handOffFailed.Swap(false) {
			// A round failed (an evaluator unreachable): its marks wait,
			// and so does the next round, instead of spinning on them.
			if !e.sleep(wait, nil) {
				return
			}
		}
		_ = e.db.ScanExtFrom([]byte{prefixMark}, nil, func(key, _ []byte) bool {
			var m mark
			if parseMarkKey(&m, key) == nil && m.at < awaitBase { // an awaiting mark is never due
				wait = min(wait, time.Duration(m.at-e.now())*time.Millisecond)
			}
			return false
		})
		if !e.sleep(wait, e.personWake) {
			return
		}
	}
}

// loadMarkID reads the highest event mark id, so ids stay unique.
func (e *Engine) loadMarkID() error {
	var maxID, maxGen uint64
	err := e.db.ScanExt([]byte{prefixMark}, func(key, _ []byte) bool {
		if len(key) >= 17 {
			maxID = max(maxID, binary.BigEndian.Uint64(key[9:17]))
			if at := binary.BigEndian.Uint64(key[1:9]); at >= awaitBase {
				maxGen = max(maxGen, at-awaitBase)
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("cannot read the person marks: %w", err)
	}
	e.markID.Store(maxID)
	e.moves.awaitGen = int64(maxGen) + 1
	return nil
}

// validErasedKey reports whether key is the erasedPersonKey of id.
func validErasedKey(key string, id event.UUID) bool {
	got, ok := erasedKeyID(key)
	return ok && got == id
}

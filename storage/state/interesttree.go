package state

import (
	"encoding/binary"
	"slices"
	"sync/atomic"
)

// interestTree is the ordered set of one (site, dimension, value) of the
// interest index: a B+tree of entries (order key, visitor number),
// ascending by order key, then by the visitor's bytes.
//
// It is made for tens of millions of 12-byte entries on the Go heap:
//   - an entry holds the visitor's number in the index's visitorDict, not
//     its 16 bytes: 12 bytes an entry instead of 24;
//   - a leaf's entries are one array allocated once at full capacity
//     (interestLeafCap, 4 KiB: a size class with no slack) and never
//     grown, and arrays of entries hold no pointers, so the GC marks a
//     leaf's 341 entries as one object without scanning them;
//   - leaves stay full: a full leaf first moves entries to a sibling with
//     room, and splits only when its siblings are nearly full too; a leaf
//     fallen to a third merges with or borrows from a sibling; a rebuild
//     (load) fills them to 7/8. ~14 bytes of heap per entry after a
//     rebuild, ~16 after random puts, and the dictionary's ~21 per
//     visitor: 17.3 per entry at 7 entries a visitor after a rebuild
//     (BenchmarkInterestIndexGC), 39.9 at one after random puts
//     (BenchmarkInterestIndex, 1M). Entries holding the visitor's 16
//     bytes took 28.3 and 29.7; the general B-tree before them 51.6 and
//     27.7–42.9;
//   - only the root leaf of a small set is smaller (4, 16, 64 entries),
//     as most values have few visitors.
//
// Entries of one order key are ordered by the visitors' bytes, not their
// numbers, so that the order is the same on every node of a cluster and
// after a restart (the query fan-out merges nodes' pages, and a page's
// cursor is an order key and a visitor): comparing two such entries reads
// the dictionary.
//
// Snapshots are O(1) copy-on-write: every node carries the generation of
// the tree that may write it, Snapshot gives the tree a new generation,
// and a write copies each node of an older generation on its path before
// changing it. A snapshot shares every node with the tree and is never
// written, so it reads without a lock while the tree changes.
//
// Inner nodes hold separators: child i+1 holds the entries ≥ items[i]
// and child i those below. A delete leaves separators as they are (still
// bounds); moves between siblings reset the one between them.
type interestTree struct {
	root *interestNode
	gen  uint64
	len  int
	dict *visitorDict

	// maxLeaf and maxInner are the capacities: entries of a leaf, children
	// of an inner node. Tests make them small to build deep trees.
	maxLeaf, maxInner int
}

type interestNode struct {
	gen   uint64
	items []interestEntry // a leaf's entries, or an inner node's separators (len(kids)-1)
	kids  []*interestNode // nil for a leaf
}

// interestEntry is an entry of an interestTree: the order key in two
// halves (a uint64 would align it to 16 bytes) and the visitor's number
// in the tree's visitorDict.
type interestEntry struct {
	keyHi, keyLo, num uint32
}

func (e interestEntry) key() uint64 { return uint64(e.keyHi)<<32 | uint64(e.keyLo) }

// interestProbe is what a search looks for: an order key and a visitor,
// with the visitor's number, 0 when the dictionary has none (a scan's
// pivot may name a visitor the index never had).
type interestProbe struct {
	key     uint64
	num     uint32
	visitor [16]byte
}

func (p *interestProbe) entry() interestEntry {
	return interestEntry{keyHi: uint32(p.key >> 32), keyLo: uint32(p.key), num: p.num}
}

const (
	// interestLeafCap entries of 12 bytes are 4,092 bytes, in Go's
	// 4,096-byte size class.
	interestLeafCap = 341
	// interestInnerCap children (512 bytes) and 63 separators (756 bytes,
	// of the 768 class): one inner node per ~20,000 entries.
	interestInnerCap = 64
)

// interestGen numbers the generations of every tree: a node is written
// only by the tree of its generation.
var interestGen atomic.Uint64

// newInterestTree returns an empty tree numbering its visitors in dict,
// of leaves of maxLeaf ≥ 2 entries and inner nodes of maxInner children,
// even and ≥ 4 (halves of a split are then at the inner nodes' minimum).
func newInterestTree(dict *visitorDict, maxLeaf, maxInner int) *interestTree {
	return &interestTree{gen: interestGen.Add(1), dict: dict, maxLeaf: maxLeaf, maxInner: maxInner}
}

// cmpVisitors orders visitors as bytes.Compare does, as two big-endian
// words.
func cmpVisitors(a, b *[16]byte) int {
	for i := 0; i < 16; i += 8 {
		x, y := binary.BigEndian.Uint64(a[i:]), binary.BigEndian.Uint64(b[i:])
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

// cmp orders e against p.
func (d *visitorDict) cmp(e interestEntry, p *interestProbe) int {
	if k := e.key(); k != p.key {
		if k < p.key {
			return -1
		}
		return 1
	}
	if e.num == p.num {
		return 0
	}
	return cmpVisitors(d.id(e.num), &p.visitor)
}

// cmpEntries orders two entries of d's visitors.
func (d *visitorDict) cmpEntries(a, b interestEntry) int {
	if a.keyHi != b.keyHi || a.keyLo != b.keyLo {
		if a.key() < b.key() {
			return -1
		}
		return 1
	}
	if a.num == b.num {
		return 0
	}
	return cmpVisitors(d.id(a.num), d.id(b.num))
}

// pos returns e as the InterestPos it stands for.
func (d *visitorDict) pos(e interestEntry) InterestPos {
	return InterestPos{Key: e.key(), Visitor: *d.id(e.num)}
}

// probe returns the probe of pos, numbering its visitor when create is
// set; ok is false when the visitor has no number (and is in no tree).
func (t *interestTree) probe(pos InterestPos, create bool) (p interestProbe, ok bool) {
	p = interestProbe{key: pos.Key, visitor: pos.Visitor}
	p.num = t.dict.number(&p.visitor, create)
	return p, p.num != 0
}

// searchInterest returns the index of the first of items ≥ p, and
// whether it is p.
func (t *interestTree) searchInterest(items []interestEntry, p *interestProbe) (int, bool) {
	lo, hi := 0, len(items)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if t.dict.cmp(items[m], p) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(items) && t.dict.cmp(items[lo], p) == 0
}

// kidIndex returns the child of inner node n whose entries p belongs
// among.
func (t *interestTree) kidIndex(n *interestNode, p *interestProbe) int {
	i, found := t.searchInterest(n.items, p)
	if found {
		i++
	}
	return i
}

func (t *interestTree) has(n *interestNode, p *interestProbe) bool {
	for n.kids != nil {
		n = n.kids[t.kidIndex(n, p)]
	}
	_, found := t.searchInterest(n.items, p)
	return found
}

// ascend calls fn with n's entries ≥ pivot in order until fn returns
// false, and reports whether it did not.
func (t *interestTree) ascend(n *interestNode, pivot *interestProbe, fn func(InterestPos) bool) bool {
	if n.kids == nil {
		j, _ := t.searchInterest(n.items, pivot)
		for _, e := range n.items[j:] {
			if !fn(t.dict.pos(e)) {
				return false
			}
		}
		return true
	}
	for _, c := range n.kids[t.kidIndex(n, pivot):] {
		if !t.ascend(c, pivot, fn) {
			return false
		}
	}
	return true
}

// Len returns the number of entries.
func (t *interestTree) Len() int { return t.len }

// Ascend calls fn with the entries ≥ pivot in order until fn returns
// false.
func (t *interestTree) Ascend(pivot InterestPos, fn func(InterestPos) bool) {
	if t.root != nil {
		p := interestProbe{key: pivot.Key, visitor: pivot.Visitor}
		t.ascend(t.root, &p, fn)
	}
}

// Snapshot returns a tree with t's entries that t's later writes do not
// change, in O(1). The snapshot must not be written.
func (t *interestTree) Snapshot() *interestTree {
	s := *t
	t.gen = interestGen.Add(1)
	return &s
}

func (t *interestTree) clone(n *interestNode) *interestNode {
	c := &interestNode{gen: t.gen, items: make([]interestEntry, len(n.items), cap(n.items))}
	copy(c.items, n.items)
	if n.kids != nil {
		c.kids = make([]*interestNode, len(n.kids), cap(n.kids))
		copy(c.kids, n.kids)
	}
	return c
}

// mutKid returns n's child i, first copied into n when an older
// generation (a snapshot) shares it.
func (t *interestTree) mutKid(n *interestNode, i int) *interestNode {
	c := n.kids[i]
	if c.gen != t.gen {
		c = t.clone(c)
		n.kids[i] = c
	}
	return c
}

func (t *interestTree) full(n *interestNode) bool {
	if n.kids == nil {
		return len(n.items) == cap(n.items)
	}
	return len(n.kids) == t.maxInner
}

// rootLeafCap is the capacity of a root leaf of n entries: 4, 16, 64 or
// maxLeaf, so a set of a few entries does not take a full leaf.
func (t *interestTree) rootLeafCap(n int) int {
	c := 4
	for c < n {
		c *= 4
	}
	return min(c, t.maxLeaf)
}

// Set puts pos and reports whether it was not there yet.
func (t *interestTree) Set(pos InterestPos) bool {
	p, _ := t.probe(pos, true)
	return t.set(&p)
}

// set puts p, of a numbered visitor, and reports whether it was not
// there yet.
func (t *interestTree) set(p *interestProbe) bool {
	if t.root == nil {
		t.root = &interestNode{gen: t.gen, items: make([]interestEntry, 0, t.rootLeafCap(1))}
	} else if t.root.gen != t.gen {
		t.root = t.clone(t.root)
	}
	n := t.root
	if t.full(n) {
		if n.kids == nil && cap(n.items) < t.maxLeaf {
			items := make([]interestEntry, len(n.items), t.rootLeafCap(cap(n.items)+1))
			copy(items, n.items)
			n.items = items
		} else {
			r := &interestNode{gen: t.gen, items: make([]interestEntry, 0, t.maxInner-1), kids: make([]*interestNode, 1, t.maxInner)}
			r.kids[0] = n
			t.splitKid(r, 0)
			t.root, n = r, r
		}
	}
	// Down from a node with room: a full child makes room first, so that
	// the node can take a separator from it.
	for n.kids != nil {
		i := t.kidIndex(n, p)
		c := t.mutKid(n, i)
		if t.full(c) {
			if c.kids != nil || !t.shiftFromLeaf(n, i) {
				t.splitKid(n, i)
			}
			i = t.kidIndex(n, p)
			c = t.mutKid(n, i)
		}
		n = c
	}
	j, found := t.searchInterest(n.items, p)
	if found {
		return false
	}
	n.items = slices.Insert(n.items, j, p.entry()) // within its capacity
	t.len++
	return true
}

// shiftFromLeaf moves entries of n's full leaf child i to a sibling with
// room, halving the difference, and reports whether it did.
func (t *interestTree) shiftFromLeaf(n *interestNode, i int) bool {
	c := n.kids[i]
	room := t.maxLeaf - t.maxLeaf/8 // a sibling takes entries below this
	if i+1 < len(n.kids) {
		if k := (len(c.items) - len(n.kids[i+1].items)) / 2; k > 0 && len(n.kids[i+1].items) < room {
			r := t.mutKid(n, i+1)
			r.items = r.items[:len(r.items)+k]
			copy(r.items[k:], r.items)
			copy(r.items, c.items[len(c.items)-k:])
			c.items = c.items[:len(c.items)-k]
			n.items[i] = r.items[0]
			return true
		}
	}
	if i > 0 {
		if k := (len(c.items) - len(n.kids[i-1].items)) / 2; k > 0 && len(n.kids[i-1].items) < room {
			l := t.mutKid(n, i-1)
			l.items = append(l.items, c.items[:k]...)
			c.items = c.items[:copy(c.items, c.items[k:])]
			n.items[i-1] = c.items[0]
			return true
		}
	}
	return false
}

// splitKid splits n's full child i in two halves; n has room for the
// new child.
func (t *interestTree) splitKid(n *interestNode, i int) {
	c := n.kids[i]
	r := &interestNode{gen: t.gen}
	var sep interestEntry
	if c.kids == nil {
		mid := len(c.items) / 2
		r.items = make([]interestEntry, len(c.items)-mid, t.maxLeaf)
		copy(r.items, c.items[mid:])
		c.items = c.items[:mid]
		sep = r.items[0]
	} else {
		mid := len(c.kids) / 2
		r.kids = make([]*interestNode, len(c.kids)-mid, t.maxInner)
		copy(r.kids, c.kids[mid:])
		clear(c.kids[mid:])
		c.kids = c.kids[:mid]
		sep = c.items[mid-1]
		r.items = make([]interestEntry, len(c.items)-mid, t.maxInner-1)
		copy(r.items, c.items[mid:])
		c.items = c.items[:mid-1]
	}
	n.items = slices.Insert(n.items, i, sep)
	n.kids = slices.Insert(n.kids, i+1, r)
}

// Delete removes pos and reports whether it was there.
func (t *interestTree) Delete(pos InterestPos) bool {
	p, ok := t.probe(pos, false)
	return ok && t.delete(&p)
}

// delete removes p, of a numbered visitor, and reports whether it was
// there.
func (t *interestTree) delete(p *interestProbe) bool {
	if t.root == nil {
		return false
	}
	if t.root.gen != t.gen {
		if !t.has(t.root, p) {
			return false // copies nothing
		}
		t.root = t.clone(t.root)
	}
	if !t.del(t.root, p) {
		return false
	}
	t.len--
	for len(t.root.kids) == 1 {
		t.root = t.root.kids[0]
	}
	if len(t.root.items) == 0 && len(t.root.kids) == 0 {
		t.root = nil
	}
	return true
}

// del removes p from n's subtree, n written by t.
func (t *interestTree) del(n *interestNode, p *interestProbe) bool {
	if n.kids == nil {
		j, found := t.searchInterest(n.items, p)
		if found {
			n.items = slices.Delete(n.items, j, j+1)
		}
		return found
	}
	i := t.kidIndex(n, p)
	if c := n.kids[i]; c.gen != t.gen && !t.has(c, p) {
		return false
	}
	if !t.del(t.mutKid(n, i), p) {
		return false
	}
	t.fixKid(n, i)
	return true
}

// fixKid restores n's child i after a delete: removed when empty. A leaf
// fallen below a third merges with a sibling when they fit in 7/8 of a
// leaf, else takes entries from it until they are level: leaves stay well
// filled. An inner node below half merges with a sibling when they fit
// in one, else is levelled with it: with the halves that splits leave,
// every inner node but the root keeps half its children at least, so the
// height stays logarithmic.
func (t *interestTree) fixKid(n *interestNode, i int) {
	c := n.kids[i]
	size, max := t.size(c)
	if size == 0 {
		t.removeKid(n, i)
		return
	}
	low, fits := max/3, max-max/8
	if c.kids != nil {
		low, fits = max/2, max
	}
	if size >= low || len(n.kids) < 2 {
		return
	}
	l := i // the left of the pair: i and the one after it, or the last two
	if i+1 == len(n.kids) {
		l = i - 1
	}
	ls, _ := t.size(n.kids[l])
	rs, _ := t.size(n.kids[l+1])
	left := t.mutKid(n, l)
	if ls+rs <= fits {
		right := n.kids[l+1] // read only
		if left.kids != nil {
			left.items = append(left.items, n.items[l])
			left.kids = append(left.kids, right.kids...)
		}
		left.items = append(left.items, right.items...)
		t.removeKid(n, l+1)
		return
	}
	right := t.mutKid(n, l+1)
	switch {
	case left.kids == nil && ls < rs:
		k := (rs - ls) / 2
		left.items = append(left.items, right.items[:k]...)
		right.items = right.items[:copy(right.items, right.items[k:])]
		n.items[l] = right.items[0]
	case left.kids == nil:
		k := (ls - rs) / 2
		right.items = slices.Insert(right.items, 0, left.items[ls-k:]...)
		left.items = left.items[:ls-k]
		n.items[l] = right.items[0]
	case ls < rs:
		// right's first k children, the k-1 separators between them and the
		// one before them move to left; the k-th separator goes up.
		k := (rs - ls) / 2
		left.items = append(append(left.items, n.items[l]), right.items[:k-1]...)
		left.kids = append(left.kids, right.kids[:k]...)
		n.items[l] = right.items[k-1]
		right.items = right.items[:copy(right.items, right.items[k:])]
		m := copy(right.kids, right.kids[k:])
		clear(right.kids[m:])
		right.kids = right.kids[:m]
	default:
		k := (ls - rs) / 2
		right.items = slices.Insert(right.items, 0, append(left.items[ls-k:ls-1:ls-1], n.items[l])...)
		right.kids = slices.Insert(right.kids, 0, left.kids[ls-k:]...)
		n.items[l] = left.items[ls-k-1]
		clear(left.kids[ls-k:])
		left.items, left.kids = left.items[:ls-k-1], left.kids[:ls-k]
	}
}

// size returns how many entries (leaf) or children (inner node) n has,
// and how many it can have.
func (t *interestTree) size(n *interestNode) (int, int) {
	if n.kids == nil {
		return len(n.items), t.maxLeaf
	}
	return len(n.kids), t.maxInner
}

// removeKid drops n's child i and the separator that bounds it.
func (t *interestTree) removeKid(n *interestNode, i int) {
	switch {
	case len(n.items) == 0:
	case i == 0:
		n.items = slices.Delete(n.items, 0, 1)
	default:
		n.items = slices.Delete(n.items, i-1, i)
	}
	n.kids = slices.Delete(n.kids, i, i+1)
}

// Load replaces t's entries with es, of t.dict's visitors, sorted
// ascending (cmpEntries) without duplicates, building the tree level by
// level: leaves filled to 7/8, so that the writes after a rebuild find
// room.
func (t *interestTree) Load(es []interestEntry) {
	t.gen = interestGen.Add(1)
	t.len = len(es)
	if len(es) <= t.maxLeaf {
		t.root = nil
		if len(es) > 0 {
			t.root = &interestNode{gen: t.gen, items: make([]interestEntry, len(es), t.rootLeafCap(len(es)))}
			copy(t.root.items, es)
		}
		return
	}
	var nodes []*interestNode
	var lows []interestEntry // each node's first entry
	for _, part := range evenParts(len(es), t.maxLeaf-t.maxLeaf/8) {
		leaf := &interestNode{gen: t.gen, items: make([]interestEntry, part[1]-part[0], t.maxLeaf)}
		copy(leaf.items, es[part[0]:part[1]])
		nodes, lows = append(nodes, leaf), append(lows, leaf.items[0])
	}
	for len(nodes) > 1 {
		var up []*interestNode
		var upLows []interestEntry
		for _, part := range evenParts(len(nodes), t.maxInner-t.maxInner/4) {
			a, b := part[0], part[1]
			n := &interestNode{gen: t.gen, items: make([]interestEntry, b-a-1, t.maxInner-1), kids: make([]*interestNode, b-a, t.maxInner)}
			copy(n.items, lows[a+1:b])
			copy(n.kids, nodes[a:b])
			up, upLows = append(up, n), append(upLows, lows[a])
		}
		nodes, lows = up, upLows
	}
	t.root = nodes[0]
}

// evenParts splits [0, n) into the fewest ranges of at most most
// elements, their sizes differing by one at most.
func evenParts(n, most int) [][2]int {
	k := (n + most - 1) / most
	parts := make([][2]int, 0, k)
	a := 0
	for i := range k {
		size := n / k
		if i < n%k {
			size++
		}
		parts = append(parts, [2]int{a, a + size})
		a += size
	}
	return parts
}

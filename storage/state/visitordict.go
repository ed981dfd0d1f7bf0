package state

import (
	"encoding/binary"
	"math/bits"
	"sync"
	"sync/atomic"
)

// visitorDict numbers the visitors of the interest index, so that an
// entry holds a 4-byte number instead of the 16-byte visitor: at 10M
// visitors of 7 entries each the index is most of the builder's heap, and
// the numbers halve it (12-byte entries instead of 24; the dictionary
// adds ~21 bytes a visitor, 3 an entry).
//
// Numbers start at 1 and are handed out in order; a number is never
// reused while the dictionary lives (a new one is made with each rebuild
// of the index), so a reader of an old snapshot always finds the visitor
// its entry was made for. A visitor whose entries all went (an erasure)
// keeps its number and 16 bytes until the next rebuild, at the builder's
// next start.
//
// Reading a number's visitor (id) takes no lock: the visitors are in
// fixed chunks that never move, and a number reaches a reader only
// through a tree written after the visitor was. Finding a visitor's
// number takes one of 256 shard locks: each shard is an open-addressing
// table of numbers (4 bytes a slot, at most 3/4 full), probed by
// comparing the visitor of each number met, so it stores no visitor
// twice.
type visitorDict struct {
	next   atomic.Uint32 // the last number handed out
	growMu sync.Mutex    // held to allocate a chunk
	chunks [dictChunks]atomic.Pointer[dictChunk]
	shards [dictShards]dictShard
}

const (
	dictChunkBits = 16
	dictChunks    = 1 << (32 - dictChunkBits)
	dictShards    = 256
)

// dictChunk holds the visitors of 65,536 consecutive numbers: 1 MiB
// without pointers, which the GC does not scan.
type dictChunk [1 << dictChunkBits][16]byte

type dictShard struct {
	mu    sync.Mutex
	slots []uint32 // numbers; 0 is an empty slot
	n     int
	_     [32]byte // keeps neighbouring shards' locks off one cache line
}

func newVisitorDict() *visitorDict { return new(visitorDict) }

// Bytes returns the heap the dictionary takes.
func (d *visitorDict) Bytes() int64 {
	var b int64
	if n := int64(d.next.Load()); n > 0 {
		b = (n>>dictChunkBits + 1) << dictChunkBits * 16
	}
	for i := range d.shards {
		s := &d.shards[i]
		s.mu.Lock()
		b += int64(len(s.slots)) * 4
		s.mu.Unlock()
	}
	return b
}

// id returns the visitor of num, a number the dictionary handed out.
func (d *visitorDict) id(num uint32) *[16]byte {
	return &d.chunks[num>>dictChunkBits].Load()[num&(1<<dictChunkBits-1)]
}

func hashVisitor(v *[16]byte) uint64 {
	h := binary.LittleEndian.Uint64(v[:8]) ^ bits.RotateLeft64(binary.LittleEndian.Uint64(v[8:]), 29)
	h *= 0x9e3779b97f4a7c15
	return h ^ h>>29
}

// number returns v's number. When v has none, it returns 0 or, when
// create is set, a new number for it.
func (d *visitorDict) number(v *[16]byte, create bool) uint32 {
	h := hashVisitor(v)
	s := &d.shards[h>>56]
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.slots) == 0 {
		if !create {
			return 0
		}
		s.slots = make([]uint32, 64)
	}
	mask := uint64(len(s.slots) - 1)
	i := h & mask
	for ; s.slots[i] != 0; i = (i + 1) & mask {
		if *d.id(s.slots[i]) == *v {
			return s.slots[i]
		}
	}
	if !create {
		return 0
	}
	num := d.add(v)
	s.slots[i] = num
	if s.n++; s.n*4 > len(s.slots)*3 {
		d.grow(s)
	}
	return num
}

// add stores v under the next number and returns it.
func (d *visitorDict) add(v *[16]byte) uint32 {
	num := d.next.Add(1)
	if num == 0 {
		// 2^32 visitors of 16 bytes are 64 GiB of dictionary alone: the
		// heap limit stops the process long before.
		panic("state: the interest index's visitor dictionary is full (2^32 visitors)")
	}
	c := d.chunks[num>>dictChunkBits].Load()
	if c == nil {
		d.growMu.Lock()
		if c = d.chunks[num>>dictChunkBits].Load(); c == nil {
			c = new(dictChunk)
			d.chunks[num>>dictChunkBits].Store(c)
		}
		d.growMu.Unlock()
	}
	c[num&(1<<dictChunkBits-1)] = *v
	return num
}

// grow doubles s's table.
func (d *visitorDict) grow(s *dictShard) {
	slots := make([]uint32, 2*len(s.slots))
	mask := uint64(len(slots) - 1)
	for _, num := range s.slots {
		if num == 0 {
			continue
		}
		i := hashVisitor(d.id(num)) & mask
		for slots[i] != 0 {
			i = (i + 1) & mask
		}
		slots[i] = num
	}
	s.slots = slots
}

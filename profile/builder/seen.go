package builder

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/affinityhq/affinity/tracker/event"
)

// The first byte of the stored dedup list (FORMAT.md of storage/state,
// "Visitor"): version 1 holds the event ids, version 2 also the order ids.
// A list without order ids is written as version 1.
const (
	seenVersion       = 1
	seenOrdersVersion = 2
)

// seenID is one applied event in a visitor's dedup list.
type seenID struct {
	id   uint64 // the event id folded to 64 bits
	recv int64  // server receive time of its batch, Unix seconds
}

// foldID folds a 16-byte event id to 64 bits. Within one visitor's list of
// at most DedupMax ids a false match has probability ≈ n²/2⁶⁵: none.
func foldID(u event.UUID) uint64 {
	return binary.LittleEndian.Uint64(u[:8]) ^ binary.LittleEndian.Uint64(u[8:])
}

// seenList is a visitor's dedup list: the ids of the events applied to it
// within the dedup window, oldest first, at most max of them.
type seenList []seenID

func (s seenList) has(id uint64) bool {
	for i := len(s) - 1; i >= 0; i-- { // retries resend recent events
		if s[i].id == id {
			return true
		}
	}
	return false
}

// prune drops ids received before newest − window and the oldest past max.
func (s seenList) prune(window int64, max int) seenList {
	if len(s) == 0 {
		return s
	}
	newest := s[len(s)-1].recv
	i := 0
	for i < len(s) && (s[i].recv < newest-window || len(s)-i > max) {
		i++
	}
	if i == 0 {
		return s
	}
	n := copy(s, s[i:])
	return s[:n]
}

// appendSeen encodes s and orders: version | uvarint n | n × (id u64
// big-endian | recv varint seconds, the first absolute, the others as the
// difference from the one before); version 2 then adds uvarint m | m ×
// order id u64 big-endian, ascending.
func appendSeen(dst []byte, s seenList, orders orderSet) []byte {
	if len(s) == 0 && len(orders) == 0 {
		return dst
	}
	if len(orders) == 0 {
		dst = append(dst, seenVersion)
	} else {
		dst = append(dst, seenOrdersVersion)
	}
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	prev := int64(0)
	for _, e := range s {
		dst = binary.BigEndian.AppendUint64(dst, e.id)
		dst = binary.AppendVarint(dst, e.recv-prev)
		prev = e.recv
	}
	if len(orders) == 0 {
		return dst
	}
	dst = binary.AppendUvarint(dst, uint64(len(orders)))
	for _, id := range orders {
		dst = binary.BigEndian.AppendUint64(dst, id)
	}
	return dst
}

var errSeen = errors.New("cannot decode dedup list")

// decodeSeen decodes data made by appendSeen into dst[:0] and orders[:0].
// Empty data is an empty list.
func decodeSeen(dst seenList, orders orderSet, data []byte) (seenList, orderSet, error) {
	dst, orders = dst[:0], orders[:0]
	if len(data) == 0 {
		return dst, orders, nil
	}
	version := data[0]
	if version != seenVersion && version != seenOrdersVersion {
		return dst, orders, fmt.Errorf("%w: version %d, this build reads %d and %d", errSeen, data[0], seenVersion, seenOrdersVersion)
	}
	n, k := binary.Uvarint(data[1:])
	data = data[1+max(k, 0):]
	// Each entry takes at least 9 bytes: refuse counts the data cannot hold
	// before allocating.
	if k <= 0 || n > uint64(len(data)/9) {
		return dst, orders, fmt.Errorf("%w: bad count", errSeen)
	}
	prev := int64(0)
	for range n {
		if len(data) < 9 {
			return dst, orders, fmt.Errorf("%w: truncated", errSeen)
		}
		id := binary.BigEndian.Uint64(data)
		d, k := binary.Varint(data[8:])
		if k <= 0 {
			return dst, orders, fmt.Errorf("%w: bad receive time", errSeen)
		}
		prev += d
		dst = append(dst, seenID{id: id, recv: prev})
		data = data[8+k:]
	}
	if version == seenOrdersVersion {
		m, k := binary.Uvarint(data)
		if k <= 0 || m == 0 || m != uint64(len(data[k:])/8) || len(data[k:])%8 != 0 {
			return dst, orders, fmt.Errorf("%w: bad order id count", errSeen)
		}
		data = data[k:]
		for range m {
			id := binary.BigEndian.Uint64(data)
			if len(orders) > 0 && id <= orders[len(orders)-1] {
				return dst, orders, fmt.Errorf("%w: order ids out of order", errSeen)
			}
			orders = append(orders, id)
			data = data[8:]
		}
	}
	if len(data) != 0 {
		return dst, orders, fmt.Errorf("%w: %d trailing bytes", errSeen, len(data))
	}
	return dst, orders, nil
}

// orderSet is the set of the order keys (event.OrderKey) of the
// purchases applied to a visitor, ascending: kept forever, so that an
// order imported or sent again, however late, counts once.
type orderSet = event.OrderSet

package state

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/affinityhq/affinity/internal/quote"
)

// Key prefixes (first key byte), see FORMAT.md.
const (
	prefixHeader   = 'h'
	prefixVisitor  = 'v'
	prefixOffset   = 'o'
	prefixInterest = 'i'
	prefixEmail    = 'e'
	prefixCustomer = 'u'
	prefixIdle     = 'r'
	prefixIndexSet = 'x'
	prefixCatalog  = 'c'

	// Extension keys (ExtSet and friends) start with a byte in
	// [extFirst, extLast]: uppercase ASCII, owned by packages above state
	// (segments), each documenting its own layout in FORMAT.md.
	extFirst = 'A'
	extLast  = 'Z'
)

const (
	// formatVersion is the version of the key layout, stored in the header.
	// Version 1 also stored the interest index ('i' and 'x' keys), kept in
	// memory since version 2: Open drops those keys.
	formatVersion            = 2
	formatVersionStoredIndex = 1

	// visitorValueVersion is the first byte of a visitor value.
	visitorValueVersion = 1

	// MaxSiteLen bounds a site key, in bytes; MaxStringLen any other string
	// component of a key (dimension, value, email). Longer ones are refused,
	// so that keys stay far below Badger's 64 KB key limit.
	MaxSiteLen   = 255
	MaxStringLen = 4096
)

// appendStr appends s as uvarint length + bytes: an unambiguous prefix
// encoding, so "site a" never prefixes "site ab".
func appendStr(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func checkSite(site string) error {
	if site == "" || len(site) > MaxSiteLen {
		return fmt.Errorf("invalid site %s: want 1..%d bytes", quote.Value(site), MaxSiteLen)
	}
	return nil
}

func checkStr(what, s string) error {
	if len(s) > MaxStringLen {
		return fmt.Errorf("invalid %s %s: longer than %d bytes", what, quote.Value(s), MaxStringLen)
	}
	return nil
}

// visitorKey: 'v' | str site | visitor(16).
func appendVisitorKey(dst []byte, site string, visitor [16]byte) []byte {
	dst = append(dst, prefixVisitor)
	dst = appendStr(dst, site)
	return append(dst, visitor[:]...)
}

// offsetKey: 'o' | partition u32.
func appendOffsetKey(dst []byte, p int) []byte {
	dst = append(dst, prefixOffset)
	return binary.BigEndian.AppendUint32(dst, uint32(p))
}

// interestPrefix: 'i' | str site | str dim | str value: the key of a
// value's set in the in-memory interest index, and the prefix of the
// interest keys format version 1 stored (interestPrefix | orderKey u64 |
// visitor(16)), which Open drops.
func appendInterestPrefix(dst []byte, site, dim, value string) []byte {
	dst = append(dst, prefixInterest)
	dst = appendStr(dst, site)
	dst = appendStr(dst, dim)
	return appendStr(dst, value)
}

// linkPrefix: 'e' | str site | str email, or 'u' | str site | str
// customer id: the identity links, followed by the visitor.
func appendLinkPrefix(dst []byte, prefix byte, site, id string) []byte {
	dst = append(dst, prefix)
	dst = appendStr(dst, site)
	return appendStr(dst, id)
}

// idleKey: 'r' | day u32 | str site | visitor(16): the retention index,
// by the day of the visitor's last event.
func appendIdleKey(dst []byte, day uint32, site string, visitor [16]byte) []byte {
	dst = append(dst, prefixIdle)
	dst = binary.BigEndian.AppendUint32(dst, day)
	dst = appendStr(dst, site)
	return append(dst, visitor[:]...)
}

// parseIdleKey reads an idle key.
func parseIdleKey(k []byte) (day uint32, site string, visitor [16]byte, err error) {
	if len(k) < 1+4+1+16 || k[0] != prefixIdle {
		return 0, "", visitor, fmt.Errorf("BUG: retention index key %x too short", k)
	}
	day = binary.BigEndian.Uint32(k[1:])
	n, w := binary.Uvarint(k[5:])
	if w <= 0 || uint64(len(k)) != 5+uint64(w)+n+16 {
		return 0, "", visitor, fmt.Errorf("BUG: retention index key %x has a bad site", k)
	}
	site = string(k[5+w : 5+w+int(n)])
	copy(visitor[:], k[len(k)-16:])
	return day, site, visitor, nil
}

// catalogKey: 'c' | str site | id (the rest of the key).
func appendCatalogKey(dst []byte, site, id string) []byte {
	dst = append(dst, prefixCatalog)
	dst = appendStr(dst, site)
	return append(dst, id...)
}

// appendVisitorValue encodes a visitor value: version | uvarint len(seen) |
// seen | profile.
func appendVisitorValue(dst, prof, seen []byte) []byte {
	dst = append(dst, visitorValueVersion)
	dst = binary.AppendUvarint(dst, uint64(len(seen)))
	dst = append(dst, seen...)
	return append(dst, prof...)
}

var errVisitorValue = errors.New("cannot decode visitor value")

// splitVisitorValue returns the profile and seen parts of a visitor value;
// both alias v.
func splitVisitorValue(v []byte) (prof, seen []byte, err error) {
	if len(v) < 2 {
		return nil, nil, fmt.Errorf("%w: %d bytes", errVisitorValue, len(v))
	}
	if v[0] != visitorValueVersion {
		return nil, nil, fmt.Errorf("%w: version %d, this build reads %d", errVisitorValue, v[0], visitorValueVersion)
	}
	n, k := binary.Uvarint(v[1:])
	if k <= 0 || n > uint64(len(v)-1-k) {
		return nil, nil, fmt.Errorf("%w: bad seen length", errVisitorValue)
	}
	seen = v[1+k : 1+k+int(n)]
	prof = v[1+k+int(n):]
	return prof, seen, nil
}

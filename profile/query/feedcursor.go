package query

import (
	"encoding/base64"
	"math"
	"slices"

	"github.com/affinityhq/affinity/internal/codec"
	"github.com/affinityhq/affinity/storage/state"
)

// feedCursor is where a page of a segment's changes feed ended on a node
// of a build group: per partition, the source (offset, ordinal) of the
// last record given, ascending by partition. A partition it does not name
// is read from its start. It names no node and no node-local number, so
// any node resumes it, also after a partition moved: the new owner's
// records at or before the position are the ones already given.
//
// Its text is base64url (no padding) of the layout in FORMAT.md:
// version 1 | n uvarint | n × (partition uvarint, offset uvarint,
// ordinal uvarint), partitions strictly ascending.
type feedCursor []state.Source

const feedCursorVersion = 1

// maxFeedCursorText bounds the text decodeFeedCursor reads: about 400
// partitions at the largest offsets.
const maxFeedCursorText = 8 << 10

// cursorError is why decodeFeedCursor refused a cursor.
type cursorError string

func (e cursorError) Error() string { return string(e) }

const (
	errCursorText      cursorError = "not base64url text of a feed cursor"
	errCursorLong      cursorError = "longer than any feed cursor"
	errCursorVersion   cursorError = "unknown feed cursor version"
	errCursorTruncated cursorError = "truncated feed cursor"
	errCursorOrder     cursorError = "partitions of the feed cursor not ascending"
	errCursorRange     cursorError = "a partition, offset or ordinal out of range"
	errCursorSpelling  cursorError = "not the one spelling of its feed cursor"
)

// appendFeedCursor appends c's text to dst.
func appendFeedCursor(dst []byte, c feedCursor) []byte {
	raw := make([]byte, 0, 2+len(c)*16)
	raw = append(raw, feedCursorVersion)
	raw = codec.AppendUvarint(raw, uint64(len(c)))
	for _, s := range c {
		raw = codec.AppendUvarint(raw, uint64(s.Partition))
		raw = codec.AppendUvarint(raw, uint64(s.Offset))
		raw = codec.AppendUvarint(raw, uint64(s.Ord))
	}
	return base64.RawURLEncoding.AppendEncode(dst, raw)
}

// decodeFeedCursor reads a cursor appendFeedCursor wrote; its errors are
// cursorErrors.
func decodeFeedCursor(text []byte) (feedCursor, error) {
	if len(text) > maxFeedCursorText {
		return nil, errCursorLong
	}
	if !codec.IsBase64URL(text) {
		return nil, errCursorText
	}
	raw, err := base64.RawURLEncoding.Strict().AppendDecode(nil, text)
	if err != nil || len(raw) == 0 {
		return nil, errCursorText
	}
	if raw[0] != feedCursorVersion {
		return nil, errCursorVersion
	}
	r := codec.NewReader("feed cursor", raw, 0)
	r.Byte()
	n := r.Count(3)
	c := make(feedCursor, 0, max(n, 0))
	for range n {
		p, off, ord := r.Uvarint(), r.Uvarint(), r.Uvarint()
		if r.Err() != nil {
			break
		}
		if p > maxPartition || off > math.MaxInt64 || ord > math.MaxUint32 {
			return nil, errCursorRange
		}
		if len(c) > 0 && int32(p) <= c[len(c)-1].Partition {
			return nil, errCursorOrder
		}
		c = append(c, state.Source{Partition: int32(p), Offset: int64(off), Ord: uint32(ord)})
	}
	if r.Err() != nil || r.End() != nil {
		return nil, errCursorTruncated
	}
	// Uvarints have longer spellings of the same value: one cursor, one text.
	if string(appendFeedCursor(nil, c)) != string(text) {
		return nil, errCursorSpelling
	}
	return c, nil
}

// from returns the position of partition p: its source, or offset -1 (its
// start) when c does not name it.
func (c feedCursor) from(p int) state.Source {
	if i, ok := slices.BinarySearchFunc(c, int32(p), cmpCursorPartition); ok {
		return c[i]
	}
	return state.Source{Partition: int32(p), Offset: -1}
}

// set returns c with src as its partition's position.
func (c feedCursor) set(src state.Source) feedCursor {
	i, ok := slices.BinarySearchFunc(c, src.Partition, cmpCursorPartition)
	if ok {
		c[i] = src
		return c
	}
	return slices.Insert(c, i, src)
}

func cmpCursorPartition(s state.Source, p int32) int {
	switch {
	case s.Partition < p:
		return -1
	case s.Partition > p:
		return 1
	}
	return 0
}

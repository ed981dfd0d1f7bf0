package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The Badger key layout of the embedded log; FORMAT.md draws it. Keys sort
// bytewise, so the records of a partition are contiguous and in offset order.
const (
	// headerKey holds formatVersion and the partition count.
	headerKey = "h"

	// recordPrefix | partition uint32 BE | offset uint64 BE -> record value.
	recordPrefix = 'l'
	recordKeyLen = 1 + 4 + 8

	// metaPrefix | partition uint32 BE -> first offset uint64 BE (trim point).
	metaPrefix = 'm'
	metaKeyLen = 1 + 4

	formatVersion = 1
	headerLen     = 1 + 4
)

func appendRecordKey(dst []byte, p int, off int64) []byte {
	dst = append(dst, recordPrefix)
	dst = binary.BigEndian.AppendUint32(dst, uint32(p))
	return binary.BigEndian.AppendUint64(dst, uint64(off))
}

func partitionPrefix(p int) []byte {
	return binary.BigEndian.AppendUint32([]byte{recordPrefix}, uint32(p))
}

// parseRecordKey returns the partition and offset of a record key.
func parseRecordKey(k []byte) (p int, off int64, err error) {
	if len(k) != recordKeyLen || k[0] != recordPrefix {
		return 0, 0, fmt.Errorf("cannot parse record key %x: want %d bytes starting with %q", k, recordKeyLen, recordPrefix)
	}
	o := binary.BigEndian.Uint64(k[5:])
	if o > 1<<62 {
		return 0, 0, fmt.Errorf("cannot parse record key %x: offset %d out of range", k, o)
	}
	return int(binary.BigEndian.Uint32(k[1:])), int64(o), nil
}

func metaKey(p int) []byte {
	return binary.BigEndian.AppendUint32([]byte{metaPrefix}, uint32(p))
}

func encodeMeta(first int64) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(first))
}

func decodeMeta(v []byte) (first int64, err error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("cannot decode partition meta %x: want 8 bytes", v)
	}
	f := binary.BigEndian.Uint64(v)
	if f > 1<<62 {
		return 0, fmt.Errorf("cannot decode partition meta %x: first offset %d out of range", v, f)
	}
	return int64(f), nil
}

func encodeHeader(partitions int) []byte {
	return binary.BigEndian.AppendUint32([]byte{formatVersion}, uint32(partitions))
}

func decodeHeader(v []byte) (partitions int, err error) {
	if len(v) != headerLen {
		return 0, fmt.Errorf("cannot decode log header %x: want %d bytes", v, headerLen)
	}
	if v[0] != formatVersion {
		return 0, fmt.Errorf("cannot decode log header %x: format version %d; this build reads version %d", v, v[0], formatVersion)
	}
	n := binary.BigEndian.Uint32(v[1:])
	if n == 0 || n > maxPartitions {
		return 0, fmt.Errorf("cannot decode log header %x: %d partitions out of range [1, %d]", v, n, maxPartitions)
	}
	return int(n), nil
}

// recordValueLen returns the length of a record value holding m.
func recordValueLen(m *Message) int {
	return uvarintLen(uint64(len(m.Key))) + len(m.Key) + len(m.Value)
}

// appendRecordValue appends uvarint(len(key)) | key | value to dst.
func appendRecordValue(dst []byte, m *Message) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(m.Key)))
	dst = append(dst, m.Key...)
	return append(dst, m.Value...)
}

var errBadRecordValue = errors.New("key length runs past the end of the value")

// decodeRecordValue splits a record value into key and value. The results
// alias v.
func decodeRecordValue(v []byte) (key, value []byte, err error) {
	n, w := binary.Uvarint(v)
	if w <= 0 {
		return nil, nil, fmt.Errorf("cannot decode record value of %d bytes: bad key length varint", len(v))
	}
	v = v[w:]
	if n > uint64(len(v)) {
		return nil, nil, fmt.Errorf("cannot decode record value: key of %d bytes, %d bytes left: %w", n, len(v), errBadRecordValue)
	}
	return v[:n:n], v[n:], nil
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

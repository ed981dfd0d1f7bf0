package defs

import (
	"fmt"
	"math"

	"github.com/affinityhq/affinity/internal/codec"
	"github.com/affinityhq/affinity/tracker/event"
)

// Erased is one visitor of an erasure record, with where its partition's
// log was when its owner erased it: records of the visitor below Offset
// are the erased profile's, so a builder that applies the partition again
// skips them (profile/builder erased.go).
type Erased struct {
	Visitor   event.UUID
	Partition int
	// Offset is the partition's next offset at the erasure's commit; 0:
	// not known (a record of version 1, or a visitor another node erased),
	// which skips nothing.
	Offset int64
}

// maxErasedPartition bounds a decoded partition (Kafka's are int32).
const maxErasedPartition = math.MaxInt32

// AppendErasedBody appends the body of an erasure record (version 2):
// per visitor, its 16-byte id | partition uvarint | offset uvarint.
func AppendErasedBody(dst []byte, erased []Erased) []byte {
	for _, e := range erased {
		dst = append(dst, e.Visitor[:]...)
		dst = codec.AppendUvarint(dst, uint64(e.Partition))
		dst = codec.AppendUvarint(dst, uint64(e.Offset))
	}
	return dst
}

// Erasures appends to dst the visitors of erasure record r: of version 2
// with their partitions and offsets, of version 1 (16-byte ids alone)
// with offset 0.
func (r *Record) Erasures(dst []Erased) ([]Erased, error) {
	if r.Kind != KindErasure {
		return dst, fmt.Errorf("cannot read the erased visitors of %s: not an erasure", r.Describe())
	}
	if r.Version == recordVersion {
		if len(r.Body)%16 != 0 {
			return dst, fmt.Errorf("cannot read the erased visitors of %s: a body of %d bytes is not 16-byte visitor ids", r.Describe(), len(r.Body))
		}
		for i := 0; i < len(r.Body); i += 16 {
			dst = append(dst, Erased{Visitor: event.UUID(r.Body[i:])})
		}
		return dst, nil
	}
	return decodeErasedBody(dst, r.Body)
}

// decodeErasedBody appends the visitors of a version 2 erasure body.
func decodeErasedBody(dst []Erased, body []byte) ([]Erased, error) {
	n := len(dst)
	rd := codec.NewReader("erasure record body", body, 0)
	for rd.Left() > 0 && rd.Err() == nil {
		var e Erased
		copy(e.Visitor[:], rd.Fixed("visitor", 16))
		p, off := rd.Uvarint(), rd.Uvarint()
		if rd.Err() == nil && (p > maxErasedPartition || off > math.MaxInt64) {
			rd.Failf("partition %d offset %d of visitor %s: out of range", p, off, e.Visitor)
		}
		e.Partition, e.Offset = int(p), int64(off)
		dst = append(dst, e)
	}
	if err := rd.End(); err != nil {
		return dst[:n], err
	}
	return dst, nil
}

package cluster

import (
	"fmt"

	"github.com/affinityhq/affinity/internal/codec"
)

// metaVersion is the version byte of a member's metadata (FORMAT.md).
const metaVersion = 1

// Meta is what a member tells the group about itself, in the UserData of
// its consumer protocol metadata.
type Meta struct {
	// API is the URL of the member's query API (--advertise-api).
	API string
	// Owned are the partitions the member owned in the last generation
	// (or, at its start, those it has state of): the balancer prefers to
	// give them back.
	Owned []int
}

// AppendMeta appends the encoding of m to dst.
func AppendMeta(dst []byte, m *Meta) []byte {
	dst = append(dst, metaVersion)
	dst = codec.AppendString(dst, m.API)
	dst = codec.AppendUvarint(dst, uint64(len(m.Owned)))
	for _, p := range m.Owned {
		dst = codec.AppendUvarint(dst, uint64(p))
	}
	return dst
}

// maxPartition bounds a partition number in metadata: Kafka's are int32.
const maxPartition = 1<<31 - 1

// DecodeMeta decodes a member's metadata. The result does not alias b.
func DecodeMeta(b []byte) (Meta, error) {
	r := codec.NewReader("cluster member metadata", b, 0)
	r.Version(metaVersion)
	m := Meta{API: string(r.Bytes())}
	r.Item("owned", -1)
	n := r.Count(1)
	for i := range n {
		p := r.Uvarint()
		if r.Err() == nil && p > maxPartition {
			r.Failf("partition %d at index %d out of range", p, i)
		}
		m.Owned = append(m.Owned, int(p))
	}
	if err := r.End(); err != nil {
		return Meta{}, err
	}
	return m, nil
}

// String is for logs.
func (m Meta) String() string { return fmt.Sprintf("api=%s owned=%v", m.API, m.Owned) }

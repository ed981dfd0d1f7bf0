package storage

// PartitionFor returns the partition of n that a message with key goes to. It
// is the default partitioner of Kafka's Java client (and of kafka-go's
// Murmur2Balancer): murmur2 of the key with seed 0x9747b28c, made positive
// with & 0x7fffffff, modulo n. Both Log implementations route keys with it,
// so a key lands on the same partition number in either of them.
//
// A nil key hashes like an empty one (Kafka's clients would pick a random or
// sticky partition for a nil key instead; the log never does). PartitionFor
// returns 0 when n is not positive.
func PartitionFor(key []byte, n int) int {
	if n <= 0 {
		return 0
	}
	return int((murmur2(key) & 0x7fffffff) % uint32(n))
}

// murmur2 is MurmurHash2 (32 bit) as Kafka's Utils.murmur2 computes it: four
// bytes at a time, little-endian, then the tail, then the final mix.
func murmur2(data []byte) uint32 {
	const (
		seed = 0x9747b28c
		m    = 0x5bd1e995
		r    = 24
	)
	h := uint32(seed) ^ uint32(len(data))
	for len(data) >= 4 {
		k := uint32(data[0]) | uint32(data[1])<<8 | uint32(data[2])<<16 | uint32(data[3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
		data = data[4:]
	}
	switch len(data) {
	case 3:
		h ^= uint32(data[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}

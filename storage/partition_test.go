package storage

import (
	"math/rand/v2"
	"testing"

	"github.com/segmentio/kafka-go"
)

func TestPartitionForKnownValues(t *testing.T) {
	// murmur2 values computed by Kafka's Java client (Utils.murmur2), as
	// listed in kafka-go's and librdkafka's partitioner tests.
	f := func(key string, want uint32) {
		t.Helper()
		if got := murmur2([]byte(key)); got != want {
			t.Fatalf("murmur2(%q) = %#x; want %#x", key, got, want)
		}
	}
	f("", 0x106e08d9)
	f("4", 0x5a4b5ca1)
	f("34", 0x873930da)
	f("234", 0xe7c009ca)
	f("1234", 0x9fc97b14)
	f("kafka", 0xd067cf64)
	f("giberish123456789", 0x8f552b0c)
	f("PreAmbleWillBeRemoved,ThePrePartThatIs", 0x78424f1c)

	// Partitions of 17 as librdkafka's murmur2_random partitioner test has them.
	g := func(key string, want int) {
		t.Helper()
		if got := PartitionFor([]byte(key), 17); got != want {
			t.Fatalf("PartitionFor(%q, 17) = %d; want %d", key, got, want)
		}
	}
	g("", 0x106e08d9%17)
	g("23456", 0x058d780f%17)
	g("this is another string with more length to it perhaps", 0x4f7703da%17)
}

func TestPartitionForMatchesKafkaGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	balancer := &kafka.Murmur2Balancer{Consistent: true}
	partitions := make([]int, 0, 1024)
	for i := 0; i < 20000; i++ {
		key := make([]byte, rng.IntN(64))
		for j := range key {
			key[j] = byte(rng.Uint32())
		}
		n := 1 + rng.IntN(1000)
		partitions = partitions[:0]
		for p := 0; p < n; p++ {
			partitions = append(partitions, p)
		}
		want := balancer.Balance(kafka.Message{Key: key}, partitions...)
		if got := PartitionFor(key, n); got != want {
			t.Fatalf("PartitionFor(%x, %d) = %d; kafka-go Murmur2Balancer says %d", key, n, got, want)
		}
	}
}

func TestPartitionForNilKeyAndBadN(t *testing.T) {
	if got, want := PartitionFor(nil, 8), PartitionFor([]byte{}, 8); got != want {
		t.Fatalf("PartitionFor(nil, 8) = %d; want %d (same as an empty key)", got, want)
	}
	for _, n := range []int{0, -1} {
		if got := PartitionFor([]byte("k"), n); got != 0 {
			t.Fatalf("PartitionFor(k, %d) = %d; want 0", n, got)
		}
	}
}

func BenchmarkPartitionFor(b *testing.B) {
	key := []byte("site-1234|0b7f3c2e-8c1d-4f3a-9b1e-2f6a7c9d0e1f")
	b.SetBytes(int64(len(key)))
	b.ReportAllocs()
	for b.Loop() {
		PartitionFor(key, 8)
	}
}

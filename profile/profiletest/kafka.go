package profiletest

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/affinityhq/affinity/storage"
)

// StartKafka starts an in-process three-broker Kafka (kfake) on loopback
// TCP ports, closed when t ends, and returns its addresses.
func StartKafka(t testing.TB, opts ...kfake.Opt) []string {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(3)}, opts...)...)
	if err != nil {
		t.Fatalf("cannot start kfake: %s", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// TopicEnd returns the offset after the last record of partition 0 of
// topic: a test compares it before and after to see that nothing was
// produced.
func TopicEnd(t testing.TB, brokers []string, topic string) int64 {
	t.Helper()
	return TopicEnds(t, brokers, topic)[0]
}

// TopicEnds returns the offset after the last record of each partition of
// topic, read from the brokers: what a consumer that caught up has
// consumed.
func TopicEnds(t testing.TB, brokers []string, topic string) []int64 {
	t.Helper()
	kl := OpenTopic(t, brokers, topic)
	defer kl.Close()
	ends := make([]int64, kl.Partitions())
	for p := range ends {
		var err error
		if _, ends[p], err = kl.Offsets(context.Background(), p); err != nil {
			t.Fatalf("cannot read the end of partition %d of topic %q: %s", p, topic, err)
		}
	}
	return ends
}

// OpenTopic opens topic, which must exist, on brokers as a storage.Log;
// the caller closes it.
func OpenTopic(t testing.TB, brokers []string, topic string) *storage.KafkaLog {
	t.Helper()
	ko := storage.DefaultKafkaOptions(brokers...)
	ko.Topic, ko.CreateTopic = topic, false
	kl, err := storage.OpenKafkaLog(context.Background(), ko)
	if err != nil {
		t.Fatalf("cannot open topic %q: %s", topic, err)
	}
	return kl
}

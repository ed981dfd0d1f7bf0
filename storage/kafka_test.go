package storage_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/logtest"
)

// The Kafka tests run against an in-process kfake cluster, and also against
// a real cluster when AFFINITY_KAFKA names its brokers (host:port,...). Each
// test uses topics of its own.

type kafkaTarget struct {
	name    string
	brokers []string
}

func kafkaTargets(t *testing.T) []kafkaTarget {
	t.Helper()
	targets := []kafkaTarget{{"kfake", startKfake(t)}}
	if env := os.Getenv("AFFINITY_KAFKA"); env != "" {
		targets = append(targets, kafkaTarget{"real", strings.Split(env, ",")})
	}
	return targets
}

// startKfake starts a fake three-broker cluster on loopback ports, closed
// when t ends, and returns its addresses.
func startKfake(t *testing.T) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		t.Fatalf("cannot start kfake: %s", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

var topicSeq atomic.Int64

// uniqueTopic returns a topic name no other test uses.
func uniqueTopic(t *testing.T) string {
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, t.Name())
	return fmt.Sprintf("affinity-test-%s-%d-%d", name, time.Now().UnixNano(), topicSeq.Add(1))
}

func kafkaOptions(t *testing.T, brokers []string) storage.KafkaOptions {
	opts := storage.DefaultKafkaOptions(brokers...)
	opts.Topic = uniqueTopic(t)
	opts.Partitions = 4
	opts.Logger = testLogger(t)
	t.Cleanup(func() { deleteTopic(t, brokers, opts.Topic) })
	return opts
}

// deleteTopic deletes a test's topic so a real cluster does not collect them.
func deleteTopic(t *testing.T, brokers []string, topic string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers...)}
	resp, err := client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	if err == nil {
		err = resp.Errors[topic]
	}
	if err != nil && !errors.Is(err, kafka.UnknownTopicOrPartition) {
		t.Logf("cannot delete test topic %q: %s", topic, err)
	}
}

// testLogger returns a Logger that logs to t until t ends; kafka-go may
// still log from goroutines that outlive a test (batches retried past Close).
func testLogger(t *testing.T) func(string, ...any) {
	var mu sync.Mutex
	done := false
	t.Cleanup(func() {
		mu.Lock()
		done = true
		mu.Unlock()
	})
	return func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			t.Logf(format, args...)
		}
	}
}

func openKafka(t *testing.T, opts storage.KafkaOptions) *storage.KafkaLog {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := storage.OpenKafkaLog(ctx, opts)
	if err != nil {
		t.Fatalf("OpenKafkaLog: %s", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestKafkaLogContract(t *testing.T) {
	for _, target := range kafkaTargets(t) {
		t.Run(target.name, func(t *testing.T) {
			logtest.Run(t, func(t *testing.T) storage.Log {
				return openKafka(t, kafkaOptions(t, target.brokers))
			})
		})
	}
}

func TestKafkaLogCreatesTopic(t *testing.T) {
	for _, target := range kafkaTargets(t) {
		t.Run(target.name, func(t *testing.T) {
			opts := kafkaOptions(t, target.brokers)
			opts.Partitions = 3
			l := openKafka(t, opts)
			if got := l.Partitions(); got != 3 {
				t.Fatalf("Partitions() of a created topic = %d; want 3", got)
			}
			if got := topicPartitions(t, target.brokers, opts.Topic); got != 3 {
				t.Fatalf("the created topic has %d partitions in the cluster's metadata; want 3", got)
			}
		})
	}
}

func TestKafkaLogUsesExistingTopic(t *testing.T) {
	for _, target := range kafkaTargets(t) {
		t.Run(target.name, func(t *testing.T) {
			opts := kafkaOptions(t, target.brokers)
			opts.Partitions = 5
			first := openKafka(t, opts)
			key := []byte("existing")
			if err := first.Append(context.Background(), []storage.Message{{Key: key, Value: []byte("v")}}); err != nil {
				t.Fatalf("Append: %s", err)
			}
			first.Close()

			opts.Partitions = 8
			opts.CreateTopic = false
			l := openKafka(t, opts)
			if got := l.Partitions(); got != 5 {
				t.Fatalf("Partitions() of an existing 5-partition topic opened with Partitions=8 = %d; want 5", got)
			}
			_, next, err := l.Offsets(context.Background(), l.Partition(key))
			if err != nil || next != 1 {
				t.Fatalf("Offsets of the existing topic = next %d, %v; want 1", next, err)
			}
		})
	}
}

func TestKafkaLogMissingTopic(t *testing.T) {
	for _, target := range kafkaTargets(t) {
		t.Run(target.name, func(t *testing.T) {
			opts := kafkaOptions(t, target.brokers)
			opts.CreateTopic = false
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			l, err := storage.OpenKafkaLog(ctx, opts)
			if err == nil {
				l.Close()
				t.Fatalf("OpenKafkaLog of a missing topic with CreateTopic=false = nil error")
			}
			if want := fmt.Sprintf("cannot find topic %q", opts.Topic); !strings.Contains(err.Error(), want) {
				t.Fatalf("OpenKafkaLog of a missing topic = %q; want it to contain %q", err, want)
			}
		})
	}
}

func TestKafkaLogUnreachableBroker(t *testing.T) {
	// A loopback port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %s", err)
	}
	addr := ln.Addr().String()
	ln.Close()

	opts := storage.DefaultKafkaOptions(addr)
	opts.DialTimeout = time.Second
	start := time.Now()
	l, err := storage.OpenKafkaLog(context.Background(), opts)
	if err == nil {
		l.Close()
		t.Fatalf("OpenKafkaLog on %s = nil error; want an error", addr)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("OpenKafkaLog on an unreachable broker took %s; want under 5s", d)
	}
	if !strings.Contains(err.Error(), "cannot find topic") {
		t.Fatalf("OpenKafkaLog on an unreachable broker = %q; want it to say it cannot find the topic", err)
	}
}

func TestKafkaLogBrokerGoesAway(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatalf("cannot start kfake: %s", err)
	}
	defer c.Close()
	opts := kafkaOptions(t, c.ListenAddrs())
	opts.DialTimeout = time.Second
	opts.WriteTimeout = time.Second
	l := openKafka(t, opts)
	ctx := context.Background()
	msgs := []storage.Message{{Key: []byte("k"), Value: []byte("v")}}
	if err := l.Append(ctx, msgs); err != nil {
		t.Fatalf("Append with the broker up: %s", err)
	}
	if err := l.Writable(ctx); err != nil {
		t.Fatalf("Writable with the broker up: %s", err)
	}

	c.Close()
	start := time.Now()
	err = l.Append(ctx, msgs)
	if !errors.Is(err, storage.ErrFull) {
		t.Fatalf("Append with the broker gone = %v; want ErrFull", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("Append with the broker gone took %s; want about WriteTimeout=1s", d)
	}

	// Writable notices within a few metadata refreshes.
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := l.Writable(ctx)
		if errors.Is(err, storage.ErrFull) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Writable with the broker gone = %v 15s later; want ErrFull", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	start = time.Now()
	if err := l.Close(); err != nil {
		t.Logf("Close with the broker gone: %s", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close with the broker gone took %s", d)
	}
}

func TestKafkaLogOptions(t *testing.T) {
	f := func(opts storage.KafkaOptions, want string) {
		t.Helper()
		l, err := storage.OpenKafkaLog(context.Background(), opts)
		if err == nil {
			l.Close()
			t.Fatalf("OpenKafkaLog(%+v) = nil error; want one containing %q", opts, want)
		}
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("OpenKafkaLog(%+v) = %q; want it to contain %q", opts, err, want)
		}
	}
	f(storage.KafkaOptions{}, "Brokers")
	opts := storage.DefaultKafkaOptions("127.0.0.1:1")
	opts.Compression = "brotli"
	f(opts, "Compression")
}

// topicPartitions asks the cluster, not the log, how many partitions topic has.
func topicPartitions(t *testing.T, brokers []string, topic string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers...)}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		t.Fatalf("metadata of %q: %s", topic, err)
	}
	for _, tp := range md.Topics {
		if tp.Name == topic {
			return len(tp.Partitions)
		}
	}
	t.Fatalf("topic %q not in the metadata", topic)
	return 0
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/logtest"
	"github.com/affinityhq/affinity/tracker/event"
)

// affinityBin is the real binary, built once by TestMain.
var affinityBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "affinity-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	affinityBin = filepath.Join(dir, "affinity")
	out, err := exec.Command("go", "build", "-o", affinityBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running affinity binary.
type proc struct {
	cmd       *exec.Cmd
	collector string // http://host:port
	api       string
	done      chan struct{}

	mu     sync.Mutex
	stderr bytes.Buffer
}

var listeningLine = regexp.MustCompile(`listening collector=(\S+) api=(\S+)`)

// startAffinity runs the binary with args on free loopback ports (the
// internal listener on the one args' --api-listen names, if any) and waits
// until it says where it listens. The process is killed when the test ends.
func startAffinity(t testing.TB, args ...string) *proc {
	t.Helper()
	if !slices.Contains(args, "--api-listen") {
		args = append(args, "--api-listen", "127.0.0.1:0")
	}
	if args[0] != "build" { // the roles with a collector
		args = append(args, "--listen", "127.0.0.1:0")
	}
	p := &proc{cmd: exec.Command(affinityBin, args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), "AFFINITY_API_TOKEN=test-token")
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	found := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.stderr.WriteString(line + "\n")
			p.mu.Unlock()
			if m := listeningLine.FindStringSubmatch(line); m != nil {
				found <- m
			}
		}
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("affinity %s output:\n%s", strings.Join(args, " "), p.output())
		}
	})
	select {
	case m := <-found:
		p.collector, p.api = m[1], m[2]
	case <-p.done:
		t.Fatalf("affinity exited before listening:\n%s", p.output())
	case <-time.After(30 * time.Second):
		t.Fatalf("affinity did not listen within 30s:\n%s", p.output())
	}
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// stop sends sig and waits for the process to exit.
func (p *proc) stop(t testing.TB, sig syscall.Signal) {
	t.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("affinity did not exit after %v:\n%s", sig, p.output())
	}
}

// sentBatch is one batch the collector acknowledged.
type sentBatch struct {
	body  []byte
	count int
}

func uuidString() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// randomBatch returns a JSON batch of n events of one visitor.
func randomBatch(site, visitor string, n int) []byte {
	var sb strings.Builder
	fmt.Fprintf(&sb, `{"site":%q,"v":%q,"events":[`, site, visitor)
	now := time.Now().UnixMilli()
	types := []string{"pageview", "view", "cart", "uncart", "purchase", "identify"}
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		t := types[i%len(types)]
		fmt.Fprintf(&sb, `{"id":%q,"t":%q,"ts":%d`, uuidString(), t, now-int64(i)*1000)
		switch t {
		case "view", "cart", "uncart":
			fmt.Fprintf(&sb, `,"product":{"id":"sku-%d","brand":"Nutrilon","category":"baby/food","age":"0-1","price":12.5}`, i)
		case "purchase":
			fmt.Fprintf(&sb, `,"order":{"id":"o-%d","total":25,"items":[{"id":"sku-1","qty":2,"price":12.5}]}`, i)
		case "identify":
			sb.WriteString(`,"email":"Ann@Example.com","traits":{"birthday":"1990-05-12"}`)
		}
		sb.WriteByte('}')
	}
	sb.WriteString(`]}`)
	return []byte(sb.String())
}

// post sends one batch; it returns the status, or 0 when the request failed.
func post(client *http.Client, base string, body []byte) int {
	resp, err := client.Post(base+"/v1/events", "text/plain", bytes.NewReader(body))
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// checkStored asserts that every acknowledged batch is in recs exactly once,
// event for event, and that nothing else is.
func checkStored(t testing.TB, sent []sentBatch, recs []storage.Record) {
	t.Helper()
	dec := event.NewDecoder(event.DefaultOptions())
	want := map[event.UUID]*event.Batch{} // by first event id
	for _, s := range sent {
		var b event.Batch
		if err := dec.DecodeBatch(&b, s.body, time.Now().UnixMilli()); err != nil {
			t.Fatal(err)
		}
		want[b.Events[0].ID] = b.Clone()
	}
	seen := map[event.UUID]bool{}
	for _, r := range recs {
		var b event.Batch
		if err := event.DecodeRecord(&b, r.Value); err != nil {
			t.Fatalf("record %d/%d: %v", r.Partition, r.Offset, err)
		}
		if !bytes.Equal(r.Key, event.AppendLogKey(nil, b.Site, b.Visitor)) {
			t.Errorf("record %d/%d has key %q", r.Partition, r.Offset, r.Key)
		}
		id := b.Events[0].ID
		w := want[id]
		if w == nil {
			// A batch whose answer was lost (killed mid-request) may be
			// stored without a 202: the client retries it and dedup by
			// event id absorbs the copy. It must still be whole.
			continue
		}
		if seen[id] {
			t.Errorf("batch %s stored twice", id)
		}
		seen[id] = true
		w.Recv = b.Recv // the receive time is the server's
		if !w.Equal(&b) {
			t.Errorf("batch %s stored differently from what was sent", id)
		}
	}
	for id := range want {
		if !seen[id] {
			t.Errorf("acknowledged batch %s is not in the log", id)
		}
	}
}

// TestServeStoresEveryAcknowledgedBatch posts batches from concurrent clients
// to `affinity serve`, stops it with SIGTERM, and reads the embedded log
// back: every 202'd batch is there exactly once, event for event.
func TestServeStoresEveryAcknowledgedBatch(t *testing.T) {
	data := t.TempDir()
	p := startAffinity(t, "serve", "--data", data, "--site", "e2e", "--log-keep-consumed")
	sent := postConcurrently(t, p.collector, "e2e", 4, 50, nil)
	p.stop(t, syscall.SIGTERM)
	if !strings.Contains(p.output(), "shutdown: event log flushed and closed") {
		t.Errorf("no orderly shutdown:\n%s", p.output())
	}
	l, err := storage.OpenEmbeddedLog(storage.DefaultEmbeddedOptions(filepath.Join(data, "log")))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	recs := logtest.ReadAll(t, l)
	checkStored(t, sent, recs)
	if len(recs) != len(sent) {
		t.Errorf("log holds %d records, %d batches were posted", len(recs), len(sent))
	}
}

// postConcurrently posts perClient batches from each of clients clients and
// returns the acknowledged ones. stop, when not nil, ends the run early.
func postConcurrently(t testing.TB, base, site string, clients, perClient int, stop <-chan struct{}) []sentBatch {
	var (
		mu   sync.Mutex
		sent []sentBatch
		wg   sync.WaitGroup
	)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 10 * time.Second}
			for i := 0; i < perClient; i++ {
				select {
				case <-stop:
					return
				default:
				}
				n := 1 + i%20
				body := randomBatch(site, uuidString(), n)
				switch st := post(client, base, body); st {
				case http.StatusAccepted:
					mu.Lock()
					sent = append(sent, sentBatch{body, n})
					mu.Unlock()
				case 0, http.StatusServiceUnavailable:
					// the server is going away: not acknowledged
				default:
					t.Errorf("status %d for a valid batch", st)
					return
				}
			}
		}()
	}
	wg.Wait()
	return sent
}

// TestServeSIGKILLLosesNothingAcknowledged kills the binary while clients
// post, restarts it on the same data, and checks that every batch answered
// 202 before the kill is in the log.
func TestServeSIGKILLLosesNothingAcknowledged(t *testing.T) {
	data := t.TempDir()
	p := startAffinity(t, "serve", "--data", data, "--site", "e2e", "--log-keep-consumed")
	stop := make(chan struct{})
	var sent []sentBatch
	done := make(chan struct{})
	go func() {
		sent = postConcurrently(t, p.collector, "e2e", 8, 1<<30, stop)
		close(done)
	}()
	time.Sleep(1500 * time.Millisecond)
	p.stop(t, syscall.SIGKILL)
	close(stop)
	<-done
	if len(sent) == 0 {
		t.Fatal("no batch was acknowledged before the kill")
	}

	// The restarted binary recovers the log and takes new batches on top.
	p2 := startAffinity(t, "serve", "--data", data, "--site", "e2e", "--log-keep-consumed")
	more := postConcurrently(t, p2.collector, "e2e", 2, 10, nil)
	p2.stop(t, syscall.SIGTERM)
	l, err := storage.OpenEmbeddedLog(storage.DefaultEmbeddedOptions(filepath.Join(data, "log")))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	checkStored(t, append(sent, more...), logtest.ReadAll(t, l))
	t.Logf("%d batches acknowledged before SIGKILL, all stored", len(sent))
}

// TestCollectWritesToKafka runs `affinity collect` against an in-process
// Kafka broker (kfake over TCP; also a real cluster when AFFINITY_KAFKA names
// one), posts batches, stops it with SIGTERM and reads the topic back.
func TestCollectWritesToKafka(t *testing.T) {
	brokers := kafkaBrokers(t, 0)
	topic := fmt.Sprintf("e2e-events-%d", time.Now().UnixNano())
	p := startAffinity(t, "collect", "--data", t.TempDir(), "--kafka", strings.Join(brokers, ","),
		"--topic", topic, "--topic-partitions", "3", "--site", "e2e")
	sent := postConcurrently(t, p.collector, "e2e", 4, 25, nil)
	p.stop(t, syscall.SIGTERM)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ko := storage.DefaultKafkaOptions(brokers...)
	ko.Topic = topic
	ko.CreateTopic = false
	l, err := storage.OpenKafkaLog(ctx, ko)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Partitions() != 3 {
		t.Errorf("topic has %d partitions, --topic-partitions 3 was given", l.Partitions())
	}
	recs := logtest.ReadAll(t, l)
	checkStored(t, sent, recs)
	if len(recs) != len(sent) {
		t.Errorf("topic holds %d records, %d batches were posted", len(recs), len(sent))
	}
}

// kafkaBrokers returns AFFINITY_KAFKA's brokers, or those of a kfake cluster
// started for the test with topics created, of partitions partitions each.
func kafkaBrokers(t testing.TB, partitions int, topics ...string) []string {
	if env := os.Getenv("AFFINITY_KAFKA"); env != "" {
		return strings.Split(env, ",")
	}
	opts := []kfake.Opt{kfake.NumBrokers(1)}
	if len(topics) > 0 {
		opts = append(opts, kfake.SeedTopics(int32(partitions), topics...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("cannot start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

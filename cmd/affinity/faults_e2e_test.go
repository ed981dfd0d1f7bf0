package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/state"
)

// The storage fault tests of `affinity serve` (issue #16): the data
// directory removed under a running node, and a full disk, on the real
// binary.

// getBody GETs url and returns the status and body; 0 when it failed.
func getBody(client *http.Client, url string) (int, string) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// postReply posts one batch and returns the status, Retry-After, the
// refusal reason header and the body; status 0 when the request failed.
func postReply(client *http.Client, base string, body []byte) (status int, retryAfter, reason, text string) {
	resp, err := client.Post(base+"/v1/events", "text/plain", strings.NewReader(string(body)))
	if err != nil {
		return 0, "", "", err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("X-Affinity-Reason"), string(b)
}

// TestServeDataDirRemoved removes the data directory under a running
// serve: /healthz (both listeners) and the collector turn 503 within about
// a second — the collector never answers 202 for a batch it can no longer
// make durable — and SIGTERM ends the process within --shutdown-timeout,
// with status 1 and the step that could not finish named in its log.
func TestServeDataDirRemoved(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	const timeout = 3 * time.Second
	p := startAffinity(t, "serve", "--data", data, "--site", "e2e", "--shutdown-timeout", "3s")
	if sent := postConcurrently(t, p.collector, "e2e", 2, 20, nil); len(sent) == 0 {
		t.Fatal("no batch acknowledged before the removal")
	}
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	removed := time.Now()
	client := &http.Client{Timeout: 5 * time.Second}
	var health string
	waitUntil(t, "/healthz 503 saying the data directory is gone", func() bool {
		var code int
		code, health = getBody(client, p.api+"/healthz")
		return code == http.StatusServiceUnavailable && strings.Contains(health, "is gone")
	})
	// The watcher checks every second; a loaded machine may add a little.
	if took := time.Since(removed); took > 3*time.Second {
		t.Errorf("/healthz took %s to turn 503; want about a second", took)
	}
	if code, body := getBody(client, p.collector+"/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("collector /healthz after the removal: %d %q; want 503", code, body)
	}
	for i := range 20 {
		status, retry, reason, text := postReply(client, p.collector, randomBatch("e2e", uuidString(), 5))
		if status != http.StatusServiceUnavailable || retry == "" || reason != "storage_failing" || !strings.Contains(text, "is gone") {
			t.Fatalf("batch %d after the removal: %d, Retry-After %q, reason %q, %q; want 503 storage_failing with Retry-After", i, status, retry, reason, text)
		}
	}
	t.Logf("healthz 503 after the removal: %s", strings.SplitN(health, "\n", 2)[0])

	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout + 10*time.Second):
		t.Fatalf("serve did not exit %s after SIGTERM with --shutdown-timeout %s:\n%s", time.Since(start), timeout, p.output())
	}
	took := time.Since(start)
	if took > timeout+2*time.Second {
		t.Errorf("serve exited %s after SIGTERM; want within --shutdown-timeout %s and a little", took, timeout)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit status %d; want 1", code)
	}
	out := p.output()
	if !strings.Contains(out, "did not finish within --shutdown-timeout 3s") {
		t.Errorf("the log does not name the step that could not finish:\n%s", out)
	}
	// The data directory is gone, so the stacks of the stuck shutdown go to
	// the log itself.
	if !strings.Contains(out, "shutdown: goroutines follow") || !strings.Contains(out, "goroutine 1 [") {
		t.Errorf("the log has no goroutine stacks of the stuck shutdown:\n%s", lastLines(out, 12))
	}
	t.Logf("exited %s after SIGTERM; log:\n%s", took, lastLines(strings.SplitN(out, "shutdown: goroutines follow", 2)[0], 12))
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestServeFullDiskDegrades fills a small real filesystem (a tmpfs the test
// mounts; it needs root, as CI runs) through the collector of a serve on
// the default --min-free-disk, until the collector refuses: the process
// does not crash (the SIGBUS in a Badger flush), the refusals are
// 503 with Retry-After and the reason, /healthz is 503 and the metrics
// show the low disk. Then the test frees the space: ingest resumes by
// itself, and every batch answered 202, before and after, is in the
// profiles exactly once; no refused batch is.
func TestServeFullDiskDegrades(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounts a tmpfs: needs root (CI runs as root)")
	}
	floor := storage.DefaultEmbeddedOptions("").DiskHeadroom() + state.DefaultOptions("").DiskHeadroom()
	mnt := t.TempDir()
	size := floor + 128<<20
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "affinity-full-disk", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	data := filepath.Join(mnt, "data")
	p := startAffinity(t, "serve", "--data", data, "--site", "e2e")
	client := &http.Client{Timeout: 10 * time.Second}

	// Leave the node 24 MiB above its floor.
	filler := filepath.Join(mnt, "filler")
	fillTo(t, mnt, filler, floor+24<<20)

	// Fill the rest through the collector, 50-event batches from 4
	// clients, until every client has been refused.
	var (
		mu       sync.Mutex
		acked    []sentBatch
		refused  []string // visitors of refused batches
		firstLow string
		wg       sync.WaitGroup
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100000; i++ {
				v := uuidString()
				body := randomBatch("e2e", v, 50)
				status, retry, reason, text := postReply(client, p.collector, body)
				mu.Lock()
				switch {
				case status == http.StatusAccepted:
					acked = append(acked, sentBatch{body, 50})
				case status == http.StatusServiceUnavailable && reason == "low_disk" && retry != "" && strings.Contains(text, "--min-free-disk"):
					refused = append(refused, v)
					if firstLow == "" {
						firstLow = text
					}
				default:
					t.Errorf("batch while filling: %d, Retry-After %q, reason %q, %q", status, retry, reason, text)
				}
				mu.Unlock()
				if status != http.StatusAccepted {
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d batches acknowledged, then: %s", len(acked), strings.TrimSpace(firstLow))

	// Hold it low: the builder's trim of the log it applied frees a few
	// MiB, which lifts the node back over its floor (as it should) — not
	// what the checks below are about.
	deeper := filepath.Join(mnt, "filler2")
	fillTo(t, mnt, deeper, floor-64<<20)

	// Low disk is a state: the process lives on, refuses, says why.
	time.Sleep(2 * time.Second) // Badger's flushes and compactions run meanwhile
	select {
	case <-p.done:
		t.Fatalf("serve exited at low disk:\n%s", lastLines(p.output(), 30))
	default:
	}
	for range 10 {
		v := uuidString()
		status, retry, reason, text := postReply(client, p.collector, randomBatch("e2e", v, 50))
		if status != http.StatusServiceUnavailable || retry == "" || reason != "low_disk" {
			t.Fatalf("batch at low disk: %d, Retry-After %q, reason %q, %q; want 503 low_disk with Retry-After", status, retry, reason, text)
		}
		refused = append(refused, v)
	}
	if code, body := getBody(client, p.api+"/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "below the floor") {
		t.Errorf("/healthz at low disk: %d %q; want 503 saying why", code, body)
	}
	if code, body := getBody(client, p.collector+"/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("collector /healthz at low disk: %d %q; want 503", code, body)
	}
	if _, metrics := apiDo(t, http.MethodGet, p.api+"/metrics", "", nil); !strings.Contains(metrics, "\naffinity_data_low_disk 1\n") ||
		!strings.Contains(metrics, "\naffinity_data_free_bytes ") || !strings.Contains(metrics, "\naffinity_builder_paused_partitions ") {
		t.Errorf("/metrics at low disk lack affinity_data_low_disk 1 or affinity_data_free_bytes:\n%s", grepLines(metrics, "affinity_data_"))
	}

	// Space returns: everything resumes by itself.
	if err := errors.Join(os.Remove(filler), os.Remove(deeper)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "/healthz 200 after the space returned", func() bool {
		code, _ := getBody(client, p.api+"/healthz")
		return code == http.StatusOK
	})
	for range 50 {
		body := randomBatch("e2e", uuidString(), 50)
		if status, _, reason, text := postReply(client, p.collector, body); status != http.StatusAccepted {
			t.Fatalf("batch after the space returned: %d %q %q", status, reason, text)
		}
		acked = append(acked, sentBatch{body, 50})
	}

	// Every acknowledged batch is in the profiles once: its visitor's
	// event counts add up to the batch's 50 events. No refused one is.
	var visitors []string
	for _, b := range acked {
		visitors = append(visitors, batchVisitor(t, b.body))
	}
	at := time.Now().UTC().Format(time.RFC3339)
	profiles := profilesWhenIdle(t, p, "e2e", at, visitors)
	for _, v := range visitors {
		if n := eventCount(t, profiles[v]); n != 50 {
			t.Errorf("visitor %s: %d events in the profile; want the batch's 50", v, n)
		}
	}
	for _, v := range refused {
		if code, body := apiDo(t, http.MethodGet, p.api+"/v1/visitors/e2e/"+v, "", nil); code != http.StatusNotFound {
			t.Errorf("visitor %s of a refused batch: %d %q; want 404", v, code, body)
		}
	}
	if out := p.output(); strings.Contains(out, "fatal error") || strings.Contains(out, "SIGBUS") || strings.Contains(out, "panic") {
		t.Errorf("the node crashed or panicked:\n%s", lastLines(out, 30))
	}
}

// fillTo writes file on the filesystem of dir until free bytes are left.
func fillTo(t *testing.T, dir, file string, free int64) {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	n := int64(st.Bavail)*int64(st.Bsize) - free
	if n <= 0 {
		t.Fatalf("the filesystem has only %d bytes free; want more than %d", n+free, free)
	}
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for n > 0 {
		k := min(n, int64(len(chunk)))
		if _, err := f.Write(chunk[:k]); err != nil {
			t.Fatal(err)
		}
		n -= k
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// batchVisitor returns the visitor id of a JSON batch.
func batchVisitor(t *testing.T, body []byte) string {
	t.Helper()
	var b struct {
		V string `json:"v"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatal(err)
	}
	return b.V
}

// eventCount adds up the event counts of a profile's JSON.
func eventCount(t *testing.T, profile string) int {
	t.Helper()
	var p struct {
		Events map[string]struct {
			Count int `json:"count"`
		} `json:"events"`
	}
	if err := json.Unmarshal([]byte(profile), &p); err != nil {
		t.Fatalf("%v in %s", err, profile)
	}
	n := 0
	for _, e := range p.Events {
		n += e.Count
	}
	return n
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

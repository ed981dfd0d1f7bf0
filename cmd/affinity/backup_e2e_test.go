package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestServeBackupRestore backs up a running `affinity serve` mid-ingest,
// restores the file into a new directory, runs serve on it and re-sends
// every batch: event-id dedup drops what the backup had, the rest is
// applied, and every profile equals the one of the node that got each
// batch once — nothing lost, nothing counted twice.
func TestServeBackupRestore(t *testing.T) {
	const (
		visitors  = 48
		perVis    = 8 // batches per visitor, each 1-5 events: far below the 256 ids dedup keeps
		clients   = 8
		site      = "e2e"
		startAtOf = visitors * perVis / 3 // acknowledged batches before the backup starts
	)
	vs := make([]string, visitors)
	batches := make([][][]byte, visitors) // by visitor, in the order sent
	for i := range vs {
		vs[i] = uuidString()
		for j := range perVis {
			batches[i] = append(batches[i], randomBatch(site, vs[i], 1+(i+j)%5))
		}
	}
	// sendAll sends every visitor's batches in order, clients at once; each
	// client owns some visitors, so a visitor's batches are applied in the
	// same order in every run. acked counts the 202s.
	sendAll := func(base string, acked *atomic.Int64) {
		var wg sync.WaitGroup
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				client := &http.Client{Timeout: 30 * time.Second}
				for j := range perVis {
					for i := c; i < visitors; i += clients {
						if st := post(client, base, batches[i][j]); st != http.StatusAccepted {
							t.Errorf("batch %d of visitor %d: status %d", j, i, st)
							return
						}
						acked.Add(1)
						time.Sleep(2 * time.Millisecond) // let the backup land mid-ingest
					}
				}
			}()
		}
		wg.Wait()
	}

	dir := t.TempDir()
	data1, data2, file := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "backup.aff")
	p1 := startAffinity(t, "serve", "--data", data1, "--site", site)
	var acked atomic.Int64
	ingested := make(chan struct{})
	go func() { sendAll(p1.collector, &acked); close(ingested) }()
	for acked.Load() < startAtOf {
		time.Sleep(5 * time.Millisecond)
	}
	before := acked.Load()
	out, err := affinityCmd("backup", "--data", data1, "--to", file).CombinedOutput()
	if err != nil {
		t.Fatalf("affinity backup: %v\n%s", err, out)
	}
	after := acked.Load()
	<-ingested
	if t.Failed() {
		return
	}
	t.Logf("backup taken while %d → %d of %d batches were acknowledged: %s", before, after, visitors*perVis, strings.TrimSpace(string(out)))
	if !strings.Contains(string(out), "through the node at") {
		t.Errorf("backup did not go through the running node:\n%s", out)
	}
	if !strings.Contains(p1.output(), "backup: state ") {
		t.Errorf("the node logged no backup:\n%s", p1.output())
	}
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
	want := profilesWhenIdle(t, p1, site, at, vs)

	// A restore refuses a directory in use and a truncated file.
	if out, err := affinityCmd("restore", "--from", file, "--data", data1).CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "the directory is not empty") {
		t.Errorf("restore into the running node's directory: %v\n%s", err, out)
	}
	whole, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "cut.aff")
	if err := os.WriteFile(cut, whole[:len(whole)*2/3], 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := affinityCmd("restore", "--from", cut, "--data", data2).CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "backup file is truncated or corrupt") {
		t.Errorf("restore of a truncated file: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(data2, "state")); !os.IsNotExist(err) {
		t.Errorf("the refused restore left %s/state behind (%v)", data2, err)
	}

	if out, err := affinityCmd("restore", "--from", file, "--data", data2).CombinedOutput(); err != nil {
		t.Fatalf("affinity restore: %v\n%s", err, out)
	}
	p2 := startAffinity(t, "serve", "--data", data2, "--site", site)
	var again atomic.Int64
	sendAll(p2.collector, &again)
	got := profilesWhenIdle(t, p2, site, at, vs)
	for i, v := range vs {
		if got[v] != want[v] {
			t.Errorf("visitor %d %s after restore and re-send:\n got %s\nwant %s", i, v, got[v], want[v])
		}
	}
	p2.stop(t, syscall.SIGTERM)

	// A stopped node is backed up from its files.
	p1.stop(t, syscall.SIGTERM)
	if _, err := os.Stat(filepath.Join(data1, apiAddrFile)); !os.IsNotExist(err) {
		t.Errorf("%s left after shutdown (%v)", apiAddrFile, err)
	}
	offline := filepath.Join(dir, "offline.aff")
	if out, err := affinityCmd("backup", "--data", data1, "--to", offline).CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "from the stopped node's files") {
		t.Fatalf("affinity backup of a stopped node: %v\n%s", err, out)
	}
	if out, err := affinityCmd("restore", "--from", offline, "--data", filepath.Join(dir, "c")).CombinedOutput(); err != nil {
		t.Fatalf("affinity restore of the offline backup: %v\n%s", err, out)
	}
}

// affinityCmd is the binary run with args, the test's API token set.
func affinityCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(affinityBin, args...)
	cmd.Env = append(os.Environ(), "AFFINITY_API_TOKEN=test-token")
	return cmd
}

var statusLine = regexp.MustCompile(`events_applied=(\d+) dedup_hits=(\d+)`)
var lagLine = regexp.MustCompile(`lag=(\d+)`)

// profilesWhenIdle waits until p's builder has applied everything (no lag,
// no event applied or dropped for 1.5 s), then reads every visitor's
// profile, decayed to at (RFC 3339).
func profilesWhenIdle(t *testing.T, p *proc, site, at string, visitors []string) map[string]string {
	t.Helper()
	last, still := "", 0
	deadline := time.Now().Add(90 * time.Second)
	for still < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the builder did not settle: %s", last)
		}
		time.Sleep(500 * time.Millisecond)
		resp, err := http.Get(p.api + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		body := string(b)
		m := statusLine.FindString(body)
		idle := m != ""
		for _, l := range lagLine.FindAllStringSubmatch(body, -1) {
			if n, _ := strconv.Atoi(l[1]); n != 0 {
				idle = false
			}
		}
		if idle && m == last {
			still++
		} else {
			still = 0
		}
		last = m
	}
	got := map[string]string{}
	for _, v := range visitors {
		code, body := apiDo(t, http.MethodGet, p.api+"/v1/visitors/"+site+"/"+v+"?at="+at, "", nil)
		if code != http.StatusOK {
			t.Fatalf("visitor %s: %d %s", v, code, body)
		}
		got[v] = body
	}
	return got
}

// TestBuildBackupRestore backs up a running `affinity build` on Kafka
// while it applies, restores the file into a new directory and starts a
// second build there on the same topic: it resumes from the offsets the
// snapshot holds, so re-reading the topic's rest gives every profile of
// the node that ran on — nothing lost, nothing counted twice, with no
// batch sent again.
func TestBuildBackupRestore(t *testing.T) {
	const (
		visitors = 40
		perVis   = 6
		site     = "e2e"
	)
	topic := fmt.Sprintf("e2e-backup-%d", time.Now().UnixNano())
	kafka := strings.Join(kafkaBrokers(t, 3, topic), ",")
	col := startAffinity(t, "collect", "--data", t.TempDir(), "--kafka", kafka, "--topic", topic, "--topic-partitions", "3", "--site", site)
	dir := t.TempDir()
	data1, data2, file := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "backup.aff")
	b1 := startAffinity(t, "build", "--data", data1, "--kafka", kafka, "--topic", topic)

	vs := make([]string, visitors)
	for i := range vs {
		vs[i] = uuidString()
	}
	client := &http.Client{Timeout: 30 * time.Second}
	var sent atomic.Int64
	ingested := make(chan struct{})
	go func() {
		defer close(ingested)
		for j := range perVis {
			for i, v := range vs {
				if st := post(client, col.collector, randomBatch(site, v, 1+(i+j)%5)); st != http.StatusAccepted {
					t.Errorf("batch %d of visitor %d: status %d", j, i, st)
					return
				}
				sent.Add(1)
				time.Sleep(2 * time.Millisecond)
			}
		}
	}()
	for sent.Load() < visitors*perVis/3 {
		time.Sleep(5 * time.Millisecond)
	}
	out, err := affinityCmd("backup", "--data", data1, "--to", file).CombinedOutput()
	if err != nil {
		t.Fatalf("affinity backup of the running build: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "through the node at") {
		t.Errorf("backup did not go through the running build:\n%s", out)
	}
	<-ingested
	if t.Failed() {
		return
	}
	t.Logf("backup taken after %d of %d batches were acknowledged: %s", visitors*perVis/3, visitors*perVis, strings.TrimSpace(string(out)))
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
	want := profilesWhenIdle(t, b1, site, at, vs)

	if out, err := affinityCmd("restore", "--from", file, "--data", data2).CombinedOutput(); err != nil {
		t.Fatalf("affinity restore: %v\n%s", err, out)
	}
	// Pinned: b1 still runs, and a second member of its group would take
	// a share of the partitions instead of reading them all.
	b2 := startAffinity(t, "build", "--data", data2, "--kafka", kafka, "--topic", topic, "--own", "0-2")
	got := profilesWhenIdle(t, b2, site, at, vs)
	for i, v := range vs {
		if got[v] != want[v] {
			t.Errorf("visitor %d %s after restore:\n got %s\nwant %s", i, v, got[v], want[v])
		}
	}
	if m := statusLine.FindStringSubmatch(healthz(t, b2)); m == nil || m[2] != "0" {
		t.Errorf("the restored build dropped events as seen (%v): it should resume past what the backup held, not re-read it", m)
	}
}

// healthz is the body of p's /healthz.
func healthz(t *testing.T, p *proc) string {
	t.Helper()
	resp, err := http.Get(p.api + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

package profiletest

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// ChildReady is the line a crash test's child prints when it starts its
// work: KillChild's clock starts there.
const ChildReady = "child: ready"

// KillChild starts cmd — the test binary re-executed to run a crash
// test's child — waits until it prints ChildReady (at most 30 s), lets it
// work for run and SIGKILLs it. It fails t when the child exited by
// itself before the kill.
func KillChild(t testing.TB, cmd *exec.Cmd, run time.Duration) {
	t.Helper()
	ready := make(chan struct{}) // out.ready is Write's, under its lock
	out := &readyBuffer{max: 1 << 16, ready: ready}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
	}
	time.Sleep(run)
	_ = cmd.Process.Kill() // SIGKILL
	err := cmd.Wait()
	if cmd.ProcessState.Exited() {
		out.mu.Lock()
		defer out.mu.Unlock()
		t.Fatalf("child exited by itself (%v) before the kill:\n%s", err, out.b)
	}
}

// readyBuffer keeps the first max bytes of a child's output and closes
// ready when the child prints ChildReady.
type readyBuffer struct {
	mu    sync.Mutex
	b     []byte
	max   int
	ready chan struct{}
}

func (w *readyBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if room := w.max - len(w.b); room > 0 {
		w.b = append(w.b, p[:min(len(p), room)]...)
	}
	if w.ready != nil && bytes.Contains(w.b, []byte(ChildReady)) {
		close(w.ready)
		w.ready = nil
	}
	return len(p), nil
}

// CrashRun runs a crash test's children: the test binary re-executed to
// run the test named run with env, kills times SIGKILLed after 0.1 s to
// maxRun of work (KillChild; progress is logged after each kill), then
// once more with finishEnv=1 added, which must finish its work and pass.
func CrashRun(t testing.TB, run string, env []string, finishEnv string, kills int, maxRun time.Duration, progress func() string) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	child := func(finish bool) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^"+run+"$", "-test.count=1")
		cmd.Env = append(os.Environ(), env...)
		if finish {
			cmd.Env = append(cmd.Env, finishEnv+"=1")
		}
		return cmd
	}
	for k := range kills {
		KillChild(t, child(false), 100*time.Millisecond+time.Duration(rng.Int64N(int64(maxRun-100*time.Millisecond))))
		t.Logf("kill %d: %s", k, progress())
	}
	if out, err := child(true).CombinedOutput(); err != nil {
		t.Fatalf("finishing child: %v\n%s", err, out)
	}
}

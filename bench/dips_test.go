package bench

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestDipTracer: a build role's progress at a steady rate writes no trace;
// a second below 0.3 of the median writes one a second later, a real Go
// execution trace; a dip within 5 s of the last is not traced again.
func TestDipTracer(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvTraceDips, dir)
	t.Setenv(envRole, "build-test")
	d := newDipTracer()
	if d == nil {
		t.Fatal("no dip tracer with EnvTraceDips set")
	}
	defer d.stop()
	now := time.Unix(1000, 0)
	var count int64
	step := func(perHalfSecond int64) {
		now = now.Add(500 * time.Millisecond)
		count += perHalfSecond
		d.observe(now, count)
	}
	traces := func() []string {
		m, _ := filepath.Glob(filepath.Join(dir, "build-test-dip-*.trace"))
		return m
	}
	for range 20 { // 10 s at 1000/s, give or take
		step(500 + count%7)
	}
	if got := traces(); len(got) != 0 {
		t.Fatalf("traces at a steady rate: %v", got)
	}
	step(50)
	step(50) // the last second: 100/s
	if d.dumpAt.IsZero() {
		t.Fatal("a second at 0.1 of the median is not seen as a dip")
	}
	step(50)
	step(50) // a second later: the trace is written
	got := traces()
	if len(got) != 1 {
		t.Fatalf("traces after one dip: %v; want 1", got)
	}
	if fi, err := os.Stat(got[0]); err != nil || fi.Size() == 0 {
		t.Fatalf("trace %s: %v, %d bytes", got[0], err, fi.Size())
	}
	step(50)
	step(50)
	if !d.dumpAt.IsZero() || len(traces()) != 1 {
		t.Fatal("a dip within 5 s of the last is traced again")
	}
}

// TestDipTracerOff: without EnvTraceDips there is no tracer, and a nil
// one ignores what it is given.
func TestDipTracerOff(t *testing.T) {
	t.Setenv(EnvTraceDips, "")
	d := newDipTracer()
	if d != nil {
		t.Fatal("a dip tracer without EnvTraceDips")
	}
	d.observe(time.Now(), 1)
	d.stop()
}

package storage

import (
	"runtime"
	"testing"
)

func TestSpareProcs(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })
	for _, tc := range []struct {
		env  string // GOMAXPROCS; "" is unset
		want int
	}{
		{"", 2 * before},
		{"3", before}, // the variable is read at start-up; the call leaves the P count alone
	} {
		runtime.GOMAXPROCS(before)
		t.Setenv("GOMAXPROCS", tc.env)
		if got := SpareProcs(); got != tc.want {
			t.Errorf("GOMAXPROCS=%q: SpareProcs() = %d; want %d", tc.env, got, tc.want)
		}
		if got := runtime.GOMAXPROCS(0); got != tc.want {
			t.Errorf("GOMAXPROCS=%q: runtime.GOMAXPROCS(0) = %d after SpareProcs; want %d", tc.env, got, tc.want)
		}
	}
}

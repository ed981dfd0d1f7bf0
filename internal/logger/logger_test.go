package logger

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestNilDiscards(t *testing.T) {
	var l Logger
	l.Printf("nothing %d", 1) // must not panic
	l.Badger("x: ").Errorf("nothing")
	if Throttled(nil, time.Second) != nil {
		t.Fatal("Throttled(nil) is not nil")
	}
}

func TestThrottled(t *testing.T) {
	var lines []string
	l := Throttled(func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }, 50*time.Millisecond)
	for i := 0; i < 5; i++ {
		l.Printf("error %d", i)
	}
	if len(lines) != 1 || lines[0] != "error 0" {
		t.Fatalf("got %q; want one line \"error 0\"", lines)
	}
	time.Sleep(60 * time.Millisecond)
	l.Printf("error %d", 5)
	if want := "error 5 (4 similar lines dropped in the last 50ms)"; len(lines) != 2 || lines[1] != want {
		t.Fatalf("got %q; want second line %q", lines, want)
	}
}

func TestBadger(t *testing.T) {
	var sb strings.Builder
	b := Logger(func(format string, args ...any) { fmt.Fprintf(&sb, format+"\n", args...) }).Badger("state: ")
	b.Errorf("disk %s", "full")
	b.Warningf("slow")
	b.Infof("chatter")
	b.Debugf("chatter")
	if got, want := sb.String(), "state: badger: ERROR: disk full\nstate: badger: WARNING: slow\n"; got != want {
		t.Fatalf("got %q; want %q", got, want)
	}

	var errs []string
	b = Logger(nil).Badger("log: ").OnError(func(msg string) { errs = append(errs, msg) })
	b.Errorf("flush %s", "failed")
	b.Warningf("slow")
	if want := []string{"log: badger: flush failed"}; fmt.Sprint(errs) != fmt.Sprint(want) {
		t.Fatalf("OnError got %q; want %q", errs, want)
	}
}

package logger

import (
	"fmt"
	"sync"
	"time"
)

// Logger receives errors and warnings, one printf-style line per call.
// log.Printf and testing.T.Logf are Loggers. The nil Logger discards.
type Logger func(format string, args ...any)

// Printf logs format and args unless l is nil. A Logger is thereby a
// fasthttp.Logger and a kafka-go Logger.
func (l Logger) Printf(format string, args ...any) {
	if l != nil {
		l(format, args...)
	}
}

// Throttled returns a Logger that passes at most one line per interval to
// l; the lines in between are dropped and counted, and the next line passed
// says how many. Use it for errors whose rate strangers control. A nil l
// gives nil.
func Throttled(l Logger, interval time.Duration) Logger {
	if l == nil {
		return nil
	}
	t := &throttler{l: l, interval: interval}
	return t.printf
}

type throttler struct {
	l        Logger
	interval time.Duration

	mu      sync.Mutex
	next    time.Time // the first instant the next line may pass
	dropped int
}

func (t *throttler) printf(format string, args ...any) {
	now := time.Now()
	t.mu.Lock()
	if now.Before(t.next) {
		t.dropped++
		t.mu.Unlock()
		return
	}
	t.next = now.Add(t.interval)
	dropped := t.dropped
	t.dropped = 0
	t.mu.Unlock()
	if dropped > 0 {
		format, args = "%s (%d similar lines dropped in the last %s)", []any{fmt.Sprintf(format, args...), dropped, t.interval}
	}
	t.l(format, args...)
}

// Badger returns l as Badger's logger (badger.Options.WithLogger): warnings
// and errors are logged with prefix ("state: " or the log's), info and
// debug are dropped.
func (l Logger) Badger(prefix string) BadgerLogger { return BadgerLogger{l: l, prefix: prefix} }

// BadgerLogger is a Logger in the shape of badger.Logger; see [Logger.Badger].
type BadgerLogger struct {
	l       Logger
	prefix  string
	onError func(msg string)
}

// OnError returns b that also calls fn (when not nil) with every error
// Badger logs, prefix included. Badger reports the failures of its
// background work only there: a memtable flush that fails is retried every
// second, forever, with one error line each time.
func (b BadgerLogger) OnError(fn func(msg string)) BadgerLogger {
	b.onError = fn
	return b
}

// Errorf logs a Badger error.
func (b BadgerLogger) Errorf(format string, args ...any) {
	if b.onError != nil {
		b.onError(b.prefix + "badger: " + fmt.Sprintf(format, args...))
	}
	b.l.Printf(b.prefix+"badger: ERROR: "+format, args...)
}

// Warningf logs a Badger warning.
func (b BadgerLogger) Warningf(format string, args ...any) {
	b.l.Printf(b.prefix+"badger: WARNING: "+format, args...)
}

// Infof drops Badger's info chatter.
func (BadgerLogger) Infof(string, ...any) {}

// Debugf drops Badger's debug chatter.
func (BadgerLogger) Debugf(string, ...any) {}

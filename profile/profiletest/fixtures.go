package profiletest

import (
	"encoding/binary"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/tracker/event"
)

// Times in Unix ms.
const (
	Hour = int64(time.Hour / time.Millisecond)
	Day  = 24 * Hour
	// T0 is 30 days past the landmark: where the tests' event times start.
	T0 = profile.Landmark + 30*Day
)

// Clock is a settable clock in Unix ms; until Set it reads real time.
type Clock struct{ ms atomic.Int64 }

// Now returns the time Set last stored, or time.Now if none.
func (c *Clock) Now() time.Time {
	if ms := c.ms.Load(); ms != 0 {
		return time.UnixMilli(ms)
	}
	return time.Now()
}

// Set stops the clock at ms (Unix ms); 0 lets it read real time again.
func (c *Clock) Set(ms int64) { c.ms.Store(ms) }

// Visitor returns the id of visitor n. Ids sort as their n.
func Visitor(n int) event.UUID {
	var u event.UUID
	binary.BigEndian.PutUint64(u[:], 0x5eed<<32|uint64(n))
	binary.BigEndian.PutUint64(u[8:], uint64(n)*0x9e3779b97f4a7c15)
	return u
}

// EventID returns event id n: tests that resend an event give it the same n.
func EventID(n int) event.UUID {
	var u event.UUID
	binary.BigEndian.PutUint64(u[:], uint64(n)*0xbf58476d1ce4e5b9+1)
	binary.BigEndian.PutUint64(u[8:], uint64(n))
	return u
}

// lastID numbers the events of NewEventID, above the ids tests pick for
// EventID.
var lastID atomic.Int64

func init() { lastID.Store(1 << 40) }

// NewEventID returns an event id no other call returns.
func NewEventID() event.UUID { return EventID(int(lastID.Add(1))) }

// Event returns an event of type typ at ts (Unix ms), on product p if not
// nil, with a new id.
func Event(typ event.Type, ts int64, p *event.Product) event.Event {
	e := event.Event{ID: NewEventID(), Type: typ, TS: ts}
	if p != nil {
		e.Product, e.HasProduct = *p, true
	}
	return e
}

// View returns a view of p at ts with a new id.
func View(ts int64, p event.Product) event.Event { return Event(event.TypeView, ts, &p) }

// Identify returns an identify event at ts giving email, with a new id.
func Identify(ts int64, email string) event.Event {
	e := Event(event.TypeIdentify, ts, nil)
	e.Email = email
	return e
}

// IdentifyCustomer returns an identify event at ts giving the shop's
// customer id, and email unless it is "", with a new id.
func IdentifyCustomer(ts int64, customer, email string) event.Event {
	e := Identify(ts, email)
	e.Customer = customer
	return e
}

// Batch returns the batch of evs by visitor v on site, received a second
// after its latest event.
func Batch(site string, v event.UUID, evs ...event.Event) *event.Batch {
	recv := int64(0)
	for _, e := range evs {
		recv = max(recv, e.TS)
	}
	return &event.Batch{Site: site, Visitor: v, Recv: recv + 1000, Events: evs}
}

// WaitUntil polls cond every 10 ms until it holds, failing t after 20 s:
// for what other goroutines do (webhook deliveries, background loops).
func WaitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 20 s waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// CPUTime returns the user + system CPU time of the process: what a
// benchmark reports beside its wall time, since CPU per unit of work does
// not depend on what else the machine runs.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

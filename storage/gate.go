package storage

import "sync"

// gate lets calls into a component run until Close, and lets Close wait for
// the ones already inside: enter before touching shared resources, leave when
// done, shut once to refuse new entries and wait for the rest.
type gate struct {
	mu      sync.Mutex
	closed  bool
	inside  sync.WaitGroup
	closing chan struct{} // closed by shut; wakes waiters that are not inside
}

func newGate() gate {
	return gate{closing: make(chan struct{})}
}

// enter reports whether the caller may proceed; if so it must call leave.
func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.inside.Add(1)
	return true
}

func (g *gate) leave() { g.inside.Done() }

// isClosed reports whether shut was called.
func (g *gate) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// shut refuses new entries, closes g.closing and waits until every caller
// inside has left. It reports false if the gate was already shut.
func (g *gate) shut() bool {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return false
	}
	g.closed = true
	close(g.closing)
	g.mu.Unlock()
	g.inside.Wait()
	return true
}

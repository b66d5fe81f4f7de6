package batch

import "sync"

// Pending holds what a source's Read returned and the topic has not yet acknowledged, so that
// when the flow's actor restarts (Close, then Open of the same Source) that batch is read again
// instead of lost. Its methods may be called from any goroutine.
type Pending[T any] struct {
	mu       sync.Mutex
	inflight []T // returned by Read, not yet acknowledged
	replay   []T // in flight when the source closed: to be read again
}

// Replay returns the items to read again, if any, and holds them as in flight.
func (p *Pending[T]) Replay() []T {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.replay
	p.replay = nil
	p.inflight = append(p.inflight, r...)
	return r
}

// Add holds it as in flight.
func (p *Pending[T]) Add(it T) {
	p.mu.Lock()
	p.inflight = append(p.inflight, it)
	p.mu.Unlock()
}

// Acked returns the items in flight and forgets them: the topic acknowledged them.
func (p *Pending[T]) Acked() []T {
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.inflight
	p.inflight = nil
	return a
}

// Closed keeps the items in flight to be read again after the next Open.
func (p *Pending[T]) Closed() {
	p.mu.Lock()
	p.replay = append(p.inflight, p.replay...)
	p.inflight = nil
	p.mu.Unlock()
}

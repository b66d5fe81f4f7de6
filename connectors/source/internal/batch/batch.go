// Package batch holds what the network sources share: taking a batch of items from the
// channel their listeners fill.
package batch

import (
	"context"
	"time"
)

// Take calls take with items from ch, up to max of them: it waits for the first until ctx is
// done, then for more within linger. It reports how many it took.
func Take[T any](ctx context.Context, ch <-chan T, max int, linger time.Duration, take func(T)) int {
	select {
	case it := <-ch:
		take(it)
	case <-ctx.Done():
		return 0
	}
	n := 1
	t := time.NewTimer(linger)
	defer t.Stop()
	for n < max {
		select {
		case it := <-ch:
			take(it)
			n++
		case <-t.C:
			return n
		}
	}
	return n
}

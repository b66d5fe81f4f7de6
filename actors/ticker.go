package actors

import (
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// ticker sends a message to an actor at a fixed interval until stopped. It replaces
// protoactor's scheduler.TimerScheduler, whose repeating timer reads its state without
// synchronisation (a data race under -race). It runs no goroutine of its own between ticks:
// each tick is a runtime timer callback.
type ticker struct {
	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

func startTicker(system *actor.ActorSystem, pid *actor.PID, every time.Duration, msg any) *ticker {
	tk := &ticker{}
	tk.mu.Lock()
	defer tk.mu.Unlock()
	tk.t = time.AfterFunc(every, func() {
		tk.mu.Lock()
		defer tk.mu.Unlock()
		if tk.stopped {
			return
		}
		system.Root.Send(pid, msg)
		tk.t.Reset(every)
	})
	return tk
}

// stop stops the ticks; none is sent after it returns.
func (tk *ticker) stop() {
	if tk == nil {
		return
	}
	tk.mu.Lock()
	tk.stopped = true
	tk.t.Stop()
	tk.mu.Unlock()
}

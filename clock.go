package main

import (
	"container/heap"
	"math/rand/v2"
	"time"
)

// timebase tells the simulation time: the time since t0 in real time. In
// lockstep time is the tick, and the only moments outside ticks are the
// announcements at start-up, at 0.
type timebase struct {
	t0      time.Time
	virtual bool
}

func (c timebase) now() time.Duration {
	if c.virtual {
		return 0
	}
	return time.Since(c.t0)
}

// Markers are deliveries without a room event that the simulator sends a
// user down its own EventChannel, so that a user waits on one channel only.
// A channel that every user selected on would have one lock that all of
// them contend for on every wake.
var (
	tickMark = &Event{} // real time: roll for an action
	stopMark = &Event{} // real time: stop acting, drain and settle
)

// In fast mode the coordinator's start marker is a Delivery with a nil
// Event.

// runClock is the real-time clock: one goroutine that ticks every user
// once a tick, each at its own random phase, by sending a tick marker down
// the user's EventChannel, and that advances the network's epoch once a
// tick. The marker queues behind what the user has already received, so a
// user applies what it was sent before it acts: the backpressure. A user
// whose channel is full is behind, and its tick is dropped and counted,
// never queued; so are ticks the clock itself was too late for. Incoming
// traffic never moves a user's tick.
//
// The clock stops at stopping, unless faults are injected: then it ends
// them, and goes on through the drain, advancing the epoch, ticking users
// (no tick is counted as skipped any more) and watching for the network
// to fall silent, until done.
func (s *Sim) runClock(stopping, done <-chan struct{}) {
	tick := s.cfg.Tick
	rng := rand.New(rand.NewPCG(s.cfg.Seed, 0xc10c))
	start := s.clock.now()
	h := minHeap[nextTick]{
		items:  make([]nextTick, len(s.users), len(s.users)+1),
		before: func(a, b nextTick) bool { return a.at < b.at },
	}
	for i := range h.items {
		h.items[i] = nextTick{at: start + time.Duration(rng.Int64N(int64(tick))), user: i}
	}
	h.items = append(h.items, nextTick{at: start + tick, user: epochTick})
	heap.Init(&h)
	timer := time.NewTimer(h.min().at - start)
	defer timer.Stop()
	var epochs int64 // clock ticks so far
	stopped, silent := false, false
	for {
		select {
		case <-stopping:
			if s.nemesis == nil {
				return
			}
			stopping, stopped = nil, true
			s.applyFaults(epochs+1, s.clock.now(), true)
			continue
		case <-done:
			return
		case <-timer.C:
		}
		now := s.clock.now()
		for h.min().at <= now {
			next := h.min()
			if next.user == epochTick {
				epochs++
				if s.nemesis != nil && !stopped {
					s.applyFaults(epochs, now, false)
				}
				s.net.advanceEpoch()
				if stopped && !silent {
					silent = s.net.silentNow()
				}
				next.at += tick
				heap.Fix(&h, 0)
				continue
			}
			if late := int64((now - next.at) / tick); late > 0 {
				if !stopped {
					s.dropped[next.user] += late
				}
				next.at += time.Duration(late) * tick
			}
			select {
			case s.users[next.user].EventChannel <- Delivery{Event: tickMark, Due: next.at}:
			default:
				if !stopped {
					s.dropped[next.user]++
				}
			}
			next.at += tick
			heap.Fix(&h, 0)
		}
		timer.Reset(h.min().at - now)
	}
}

// nextTick is when a user's next tick is due, or the next epoch's.
type nextTick struct {
	at   time.Duration
	user int // index in Sim.users, or epochTick
}

// epochTick marks the clock's own tick, which advances the epoch.
const epochTick = -1

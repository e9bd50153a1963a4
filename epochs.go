package main

import (
	"math"
	"sync"
	"sync/atomic"
)

// epochs counts what the network carries, by the epoch it was sent in, and
// knows from that which epochs are stable.
//
// # Stability
//
// Every event is sent in an epoch (Event.Epoch). Epoch W is stable when
// every delivery sent in an epoch below W has been applied by its
// recipient. Views reclaim closed rooms by it (see View), so it must never
// be called stable too early; it may be called late, which costs only
// memory. The horizon that goes with it is an epoch H such that no user
// sent anything in an epoch later than H before it had applied every
// delivery below W.
//
// In real time deliveries in flight are counted by epoch, and the clock
// advances the epoch once a tick (advance): nothing about time is assumed,
// so no stall, pause or slow reader can fool it. The current epoch is
// always a horizon. In lockstep without faults both are exact from the
// tick and the delay (lockstepStability), and nothing is counted; with
// faults a delivery can be on its way for any number of ticks, and
// lockstep counts too.
//
// # Admission
//
// In real time the network carries at most capacity deliveries at once.
// Before a user acts it reserves room for its widest possible fan-out
// (admit); if the network is full the tick is skipped, like a busy signal.
// Recipients give the room back as they apply (retire). Admission never
// waits, so it cannot deadlock: a refused user goes on receiving, and
// giving room back needs no admission. The events in flight, the memory
// they hold and the time they wait stay bounded however much load is asked
// for; the capacity is wide enough that light runs never meet it.
type epochs struct {
	inflight atomic.Int64 // deliveries admitted or counted and not yet retired
	capacity int64

	epoch, stable atomic.Uint64
	horizon       atomic.Uint64 // when exact (lockstep without faults); otherwise the epoch is the horizon
	exact         bool          // stable and horizon are set from the tick, not counted
	byEpoch       [epochRing]atomic.Int64

	// While a late joiner waits for its state, no view may reclaim a
	// tombstone that the joiner could still need: see reclaimStability.
	joinMu     sync.Mutex
	latecomers atomic.Int64     // late joiners online and still without their state
	lateNews   map[int32]uint64 // pending late joiners, by uid: the epoch of their news
	lateFloor  atomic.Uint64    // the least of those, or MaxUint64
	heldFloor  atomic.Uint64    // lockstep: lateFloor as the tick began, so that no user sees it move within one
	hold       bool             // reclaimStability reads heldFloor
}

// networkCapacity is how many deliveries per user the network carries at
// once in real time: enough to keep every user busy, few enough that a
// delivery waits milliseconds, not seconds, when more is asked than the
// machine can do.
const networkCapacity = 64

// epochRing is how many epochs the network can count at once. The clock
// stops advancing the epoch rather than reuse the slot of an epoch not yet
// stable.
const epochRing = 1024

// newEpochs returns the counts of a network: epochs from 1, counted,
// admitting up to capacity deliveries at once.
func newEpochs(capacity int64) *epochs {
	ep := &epochs{capacity: capacity, lateNews: make(map[int32]uint64)}
	ep.epoch.Store(1)
	ep.stable.Store(1)
	ep.lateFloor.Store(math.MaxUint64)
	ep.heldFloor.Store(math.MaxUint64)
	return ep
}

// admit reserves room for k deliveries a user is about to send, counting
// them under the current epoch, which it returns; or refuses them, if the
// network is full. See count for how the epoch is read.
func (ep *epochs) admit(k int64) (epoch uint64, ok bool) {
	if ep.inflight.Add(k) > ep.capacity {
		ep.inflight.Add(-k)
		return 0, false
	}
	return ep.countUnder(k), true
}

// count counts k deliveries in flight under the current epoch, which it
// returns, whatever the capacity: a state transfer, or the news of a late
// joiner, which no one may refuse.
func (ep *epochs) count(k int64) uint64 {
	ep.inflight.Add(k)
	return ep.countUnder(k)
}

// countUnder counts k under the current epoch. The epoch is read, counted
// under, then read again: if the clock has moved two epochs on meanwhile,
// it may already have judged this one stable, so the count is taken back
// and tried under the new epoch. A clock that sees the count can never
// judge the epoch stable while it stands.
func (ep *epochs) countUnder(k int64) uint64 {
	for {
		e := ep.epoch.Load()
		ep.byEpoch[e%epochRing].Add(k)
		if ep.epoch.Load() <= e+1 {
			return e
		}
		ep.byEpoch[e%epochRing].Add(-k)
	}
}

// sent counts one delivery sent in epoch e in flight, whatever the
// capacity: lockstep with faults counts every room event it carries.
func (ep *epochs) sent(e uint64) {
	ep.byEpoch[e%epochRing].Add(1)
	ep.inflight.Add(1)
}

// retire counts k deliveries of epoch e as out of flight: applied, or
// reserved and never sent.
func (ep *epochs) retire(e uint64, k int64) {
	ep.byEpoch[e%epochRing].Add(-k)
	ep.inflight.Add(-k)
}

// advance moves stable past every epoch with nothing in flight, then
// starts a new epoch if the ring has room. An epoch is judged only once the
// current one is two past it: a user that counted under it after reading
// it either sees the clock moved on and takes its count back, or is seen.
func (ep *epochs) advance() {
	e, w := ep.epoch.Load(), ep.stable.Load()
	for w+2 <= e && ep.byEpoch[w%epochRing].Load() == 0 {
		w++
	}
	ep.stable.Store(w)
	if e+1-w < epochRing-1 {
		ep.epoch.Store(e + 1)
	}
}

// setExact sets the epoch, the stable epoch and the horizon outright:
// lockstep without faults knows them from the tick.
func (ep *epochs) setExact(epoch, stable, horizon uint64) {
	ep.exact = true
	ep.epoch.Store(epoch)
	ep.stable.Store(stable)
	ep.horizon.Store(horizon)
}

// holdFloor fixes the reclaim floor that users read until the next call:
// lockstep calls it between ticks, so that no user of a tick sees it move.
func (ep *epochs) holdFloor() {
	ep.hold = true
	ep.heldFloor.Store(ep.lateFloor.Load())
}

// stability is the stable epoch and a horizon that goes with it, read in
// that order: an epoch read after stable is a horizon for it.
func (ep *epochs) stability() (stable, horizon uint64) {
	stable = ep.stable.Load()
	if ep.exact {
		return stable, ep.horizon.Load()
	}
	return stable, ep.epoch.Load()
}

// reclaimStability is stability for reclaiming: the stable epoch held at
// the news of the oldest late joiner still waiting for its state. A
// joiner missed the events sent before the others knew of it, so it may
// take an outdated event sent to it for news (a create whose group has a
// newer incarnation it has not heard of) until its state comes. The
// tombstone that shows it outdated must still be in the state: a view may
// reclaim it only once everything sent before the tombstone's horizon has
// been applied, and while that horizon is below the joiner's news nothing
// of it was sent to the joiner.
func (ep *epochs) reclaimStability() (stable, horizon uint64) {
	stable, horizon = ep.stability()
	floor := ep.lateFloor.Load()
	if ep.hold {
		floor = ep.heldFloor.Load()
	}
	return min(stable, floor), horizon
}

// says is what the network tells a user at a tick.
func (ep *epochs) says() netSays {
	s := netSays{Epoch: ep.epoch.Load()}
	s.Stable, s.Horizon = ep.stability()
	s.ReclaimStable, s.ReclaimHorizon = ep.reclaimStability()
	return s
}

// latePending notes that late joiner j, whose news was counted under
// epoch e, waits for its state; lateDone that it has it.
func (ep *epochs) latePending(j int32, e uint64) {
	ep.joinMu.Lock()
	defer ep.joinMu.Unlock()
	ep.latecomers.Add(1)
	ep.lateNews[j] = e
	ep.lateFloor.Store(min(ep.lateFloor.Load(), e))
}

func (ep *epochs) lateDone(j int32) {
	ep.joinMu.Lock()
	defer ep.joinMu.Unlock()
	ep.latecomers.Add(-1)
	delete(ep.lateNews, j)
	floor := uint64(math.MaxUint64)
	for _, e := range ep.lateNews {
		floor = min(floor, e)
	}
	ep.lateFloor.Store(floor)
}

// quiescent reports whether nothing is in flight: every delivery applied,
// every late joiner with its state.
func (ep *epochs) quiescent() bool { return ep.inflight.Load() == 0 && ep.latecomers.Load() == 0 }

// lockstepStability is the stable epoch and the horizon at the start of
// lockstep tick t, before its deliveries are applied, when every delivery
// is due one tick after it was sent plus up to delayTicks more. Epochs are
// ticks. Every delivery sent on tick s is applied on tick s+Δ at the
// latest, Δ = delayTicks+1: everything sent before t-Δ has been applied,
// the last of it on tick t-1, before anyone acted on tick t-1. So no one
// sent after tick t-2 without having applied it. Both are exact: one
// epoch later, and a delivery may still be on its way.
func lockstepStability(t, delayTicks int64) (stable, horizon uint64) {
	return uint64(max(0, t-delayTicks-1)), uint64(max(0, t-2))
}

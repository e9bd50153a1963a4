package main

import "sync/atomic"

// flight is what the run counts in flight across the network, for itself
// alone: no user reads it. In real time it is the network's admission:
// the network carries at most capacity deliveries at once, and before a
// user acts it reserves room for its widest possible fan-out (admit); if
// the network is full the tick is skipped, like a busy signal, which is
// all a user learns of it. Recipients give the room back as they apply.
// Admission never waits, so it cannot deadlock: a refused user goes on
// receiving, and giving room back needs no admission. The events in
// flight, the memory they hold and the time they wait stay bounded however
// much load is asked for; the capacity is wide enough that light runs
// never meet it.
//
// The drain reads it too: a run with faults is over once nothing is in
// flight and every late joiner's view is complete (quiescent), and with
// crashes once no message is held back (drain.quietNow).
type flight struct {
	inflight atomic.Int64 // deliveries admitted or counted and not yet applied
	capacity int64
	arriving atomic.Int64 // late joiners online, and users crashed or restarted, whose view is not yet complete
	again    atomic.Int64 // with crashes: applies still to come beyond what was sent, less those that never will (see crashLedger)
}

// networkCapacity is how many deliveries per user the network carries at
// once in real time: enough to keep every user busy, few enough that a
// delivery waits milliseconds, not seconds, when more is asked than the
// machine can do.
const networkCapacity = 64

// admit reserves room for k deliveries a user is about to send, or refuses
// them if the network is full.
func (f *flight) admit(k int64) bool {
	if f.inflight.Add(k)+f.again.Load() > f.capacity { // again changes only while every user is paused
		f.inflight.Add(-k)
		return false
	}
	return true
}

// count counts k deliveries in flight whatever the capacity: what no one
// may refuse, such as a late joiner's hello or a state transfer.
func (f *flight) count(k int64) { f.inflight.Add(k) }

// retire counts k deliveries as out of flight: applied, or reserved and
// never sent.
func (f *flight) retire(k int64) { f.inflight.Add(-k) }

// quiescent reports whether nothing is in flight and every late joiner's
// and restarted user's view is complete. The counts it sums are read
// while users run: what is owed before what is in flight, since a user
// sends before it counts a view complete, and each is read once.
func (f *flight) quiescent() bool {
	owed := f.arriving.Load() + f.again.Load()
	return owed+f.inflight.Load() == 0
}

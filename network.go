package main

import (
	"cmp"
	"container/heap"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Network is everything that travels between users, and everything known
// about it: every user's EventChannel (its inbox), when each delivery is
// due, what is in flight, and which epochs are stable. A user reaches it
// only through its own Port; the run reads its counts between phases or
// through atomics.
//
// # Stability
//
// Every event is sent in an epoch (Event.Epoch). Epoch W is stable when
// every delivery sent in an epoch below W has been applied by its
// recipient. Views reclaim closed rooms by it (see View), so the network
// must never call an epoch stable too early; it may call it late, which
// costs only memory. The horizon that goes with it is an epoch H such that
// no user sent anything in an epoch later than H before it had applied
// every delivery below W.
//
// In real time the network counts deliveries in flight by epoch, and the
// clock advances the epoch once a tick (advanceEpoch): nothing about time
// is assumed, so no stall, pause or slow reader can fool it. The current
// epoch is always a horizon. In lockstep both are exact from the tick and
// the delay (lockstepStability).
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
type Network struct {
	inboxes    []chan Delivery // inboxes[u] is user_u's EventChannel; fixed before any user starts
	ports      []*Port         // in the order users connected
	fast       bool
	tick       time.Duration
	delay      time.Duration // real time: each delivery is held back up to this long
	delayTicks int64         // lockstep: the injected delay, in whole ticks

	inflight atomic.Int64 // real time: deliveries admitted and not yet retired
	capacity int64

	epoch, stable atomic.Uint64
	horizon       atomic.Uint64 // lockstep only; in real time the epoch is the horizon
	byEpoch       [epochRing]atomic.Int64

	// Real time: the drain waits until every user has stopped sending.
	sending sync.WaitGroup
	silent  chan struct{}
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

// newNetwork returns the network of a run of users users, each with an
// inbox of the given capacity.
func newNetwork(users, inbox int, fast bool, tick, delay time.Duration) *Network {
	n := &Network{
		inboxes: make([]chan Delivery, users+1),
		fast:    fast,
		tick:    tick,
		silent:  make(chan struct{}),
	}
	for u := 1; u <= users; u++ {
		n.inboxes[u] = make(chan Delivery, inbox)
	}
	if fast {
		n.delayTicks = wholeTicks(delay, tick)
	} else {
		n.delay = delay
		n.capacity = networkCapacity * int64(users)
		n.epoch.Store(1)
		n.stable.Store(1)
	}
	return n
}

// inboxCapacity sizes an EventChannel: room for a tick's worth of events
// from a few hundred senders, up to 1024, and for 256 MiB of inboxes in all
// (16 bytes a delivery), but never fewer than 64.
func inboxCapacity(users int) int {
	return max(min(users/4, 1024, inboxBudget/(16*users)), 64)
}

// inboxBudget is the memory all EventChannels may take together.
const inboxBudget = 256 << 20

// wholeTicks is d in ticks, rounded up.
func wholeTicks(d, tick time.Duration) int64 { return int64((d + tick - 1) / tick) }

// connect gives user uid its port. rng is the user's own source: delays are
// drawn from it in the order the user sends, so a lockstep run replays.
func (n *Network) connect(uid int32, rng *rand.Rand) *Port {
	p := &Port{net: n, uid: uid, inbox: n.inboxes[uid], rng: rng}
	if n.fast {
		p.buckets = make([][]pending, n.delayTicks+2)
	} else {
		p.delayed.before = func(a, b Delivery) bool { return a.Due < b.Due }
		n.sending.Add(1)
	}
	n.ports = append(n.ports, p)
	return p
}

// admit reserves room for n deliveries a user is about to send, counting
// them under the current epoch, which it returns; or refuses them, if the
// network is full. The epoch is read, counted under, then read again: if
// the clock has moved two epochs on meanwhile, it may already have judged
// this one stable, so the count is taken back and tried under the new
// epoch. A clock that sees the count can never judge the epoch stable while
// it stands.
func (n *Network) admit(k int64) (epoch uint64, ok bool) {
	if n.inflight.Add(k) > n.capacity {
		n.inflight.Add(-k)
		return 0, false
	}
	for {
		e := n.epoch.Load()
		n.byEpoch[e%epochRing].Add(k)
		if n.epoch.Load() <= e+1 {
			return e, true
		}
		n.byEpoch[e%epochRing].Add(-k)
	}
}

// retire counts k deliveries of epoch e as out of flight: applied, or
// reserved and never sent.
func (n *Network) retire(e uint64, k int64) {
	n.byEpoch[e%epochRing].Add(-k)
	n.inflight.Add(-k)
}

// advanceEpoch moves stable past every epoch with nothing in flight, then
// starts a new epoch if the ring has room. An epoch is judged only once the
// current one is two past it: a user that counted under it after reading
// it either sees the clock moved on and takes its count back, or is seen.
// Only the real-time clock calls it.
func (n *Network) advanceEpoch() {
	e, w := n.epoch.Load(), n.stable.Load()
	for w+2 <= e && n.byEpoch[w%epochRing].Load() == 0 {
		w++
	}
	n.stable.Store(w)
	if e+1-w < epochRing-1 {
		n.epoch.Store(e + 1)
	}
}

// beginTick starts lockstep tick t: its epoch, and the stability that holds
// before its deliveries are applied. The coordinator calls it between
// phases, when no user is working.
func (n *Network) beginTick(t int64) {
	w, h := lockstepStability(t, n.delayTicks)
	n.epoch.Store(uint64(t))
	n.stable.Store(w)
	n.horizon.Store(h)
}

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

// stability is the stable epoch and a horizon that goes with it, read in
// that order: an epoch read after stable is a horizon for it.
func (n *Network) stability() (stable, horizon uint64) {
	stable = n.stable.Load()
	if n.fast {
		return stable, n.horizon.Load()
	}
	return stable, n.epoch.Load()
}

// outstanding counts deliveries sent but not yet applied. Lockstep reads it
// between phases, when no user is working.
func (n *Network) outstanding() int64 {
	var k int64
	for _, p := range n.ports {
		k += p.sent - p.applied
	}
	return k
}

// closeWhenSilent closes silent once every connected user has hung up:
// from then on nothing more is sent, and what is in the inboxes is all
// there is.
func (n *Network) closeWhenSilent() {
	go func() {
		n.sending.Wait()
		close(n.silent)
	}()
}

// Port is one user's end of the network: its inbox, the deliveries that
// have come in but are not due yet, and its counts. Only its owner's
// goroutine uses it, but for the counts the coordinator reads between
// phases.
type Port struct {
	net   *Network
	uid   int32
	inbox chan Delivery
	rng   *rand.Rand

	backlog  queue[Delivery]   // real time: received while blocked in a send; applied next, in order
	delayed  minHeap[Delivery] // real time: deliveries whose injected delay has not passed, by due time
	reserved reservation       // real time: room reserved for the action under way
	owed     []owing           // real time: applied deliveries not yet retired, by epoch
	buckets  [][]pending       // lockstep: by due tick, modulo len(buckets)

	// Deliveries sent and applied. Both change only while the owner works
	// on a phase, so the coordinator can read them between phases: their
	// sums differ by what is still on its way.
	sent, applied int64
}

// send puts one delivery of ev on user r's inbox. If the inbox is full it
// keeps receiving its own inbox while it waits: two users sending to each
// other with full inboxes both make room for each other, so sends never
// deadlock, and no goroutine is spawned per send. What it receives
// meanwhile is kept, in order, for its owner.
func (p *Port) send(r int32, ev *Event) {
	d := Delivery{ev, p.due(ev)}
	p.sent++
	ch := p.net.inboxes[r]
	select {
	case ch <- d:
		return
	default:
	}
	for {
		select {
		case ch <- d:
			return
		case in := <-p.inbox:
			p.accept(in)
		}
	}
}

// due is when a delivery of ev may be applied: at once in real time, on the
// next tick in lockstep, plus a random injected delay for each recipient.
func (p *Port) due(ev *Event) time.Duration {
	n := p.net
	if n.fast {
		d := ev.Sent + n.tick
		if n.delayTicks > 0 {
			d += time.Duration(p.rng.Int64N(n.delayTicks+1)) * n.tick
		}
		return d
	}
	if n.delay > 0 {
		return ev.Sent + time.Duration(p.rng.Int64N(int64(n.delay)+1))
	}
	return ev.Sent
}

// accept keeps a delivery received while sending: filed by its due tick in
// lockstep, in the backlog in real time.
func (p *Port) accept(d Delivery) {
	if p.net.fast {
		p.file(d)
		return
	}
	p.backlog.push(d)
}

// nextBacklog takes the oldest delivery received while sending.
func (p *Port) nextBacklog() (Delivery, bool) {
	if p.backlog.len() == 0 {
		return Delivery{}, false
	}
	return p.backlog.pop(), true
}

// wait keeps a delivery until its injected delay has passed.
func (p *Port) wait(d Delivery) { p.delayed.push(d) }

// nextDue is when the earliest delivery kept by wait is due.
func (p *Port) nextDue() (time.Duration, bool) {
	if p.delayed.Len() == 0 {
		return 0, false
	}
	return p.delayed.min().Due, true
}

// popDue takes the earliest delivery kept by wait if it is due by now.
func (p *Port) popDue(now time.Duration) (Delivery, bool) {
	if p.delayed.Len() == 0 || p.delayed.min().Due > now {
		return Delivery{}, false
	}
	return p.delayed.pop(), true
}

// delivered notes that the owner has applied a delivery of ev. In real
// time its room in flight goes back to the network at the next retire.
func (p *Port) delivered(ev *Event) {
	p.applied++
	if p.net.fast {
		return
	}
	if k := len(p.owed); k > 0 && p.owed[k-1].epoch == ev.Epoch {
		p.owed[k-1].n++
		return
	}
	p.owed = append(p.owed, owing{ev.Epoch, 1})
}

// owing counts applied deliveries of one epoch not yet retired.
type owing struct {
	epoch uint64
	n     int64
}

// retireApplied gives the room of applied deliveries back to the network,
// once per batch rather than once per delivery.
func (p *Port) retireApplied() {
	for _, o := range p.owed {
		p.net.retire(o.epoch, o.n)
	}
	p.owed = p.owed[:0]
}

// reserve asks the network for room for k deliveries, before an action
// whose fan-out is at most k (see Network.admit). It returns the epoch to
// send them in.
func (p *Port) reserve(k int64) (uint64, bool) {
	e, ok := p.net.admit(k)
	if ok {
		p.reserved = reservation{e, k, p.sent}
	}
	return e, ok
}

// unreserve gives back the room reserved and not used.
func (p *Port) unreserve() {
	r := p.reserved
	p.net.retire(r.epoch, r.k-(p.sent-r.sentBefore))
	p.reserved = reservation{}
}

// reservation is room reserved in flight for one action.
type reservation struct {
	epoch      uint64
	k          int64 // deliveries reserved
	sentBefore int64 // Port.sent when reserved
}

// channel is the port's inbox: its owner's EventChannel.
func (p *Port) channel() chan Delivery { return p.inbox }

// sentCount is how many deliveries the port has sent.
func (p *Port) sentCount() int64 { return p.sent }

// stability is the network's stable epoch and horizon.
func (p *Port) stability() (stable, horizon uint64) { return p.net.stability() }

// epoch is the current epoch.
func (p *Port) epoch() uint64 { return p.net.epoch.Load() }

// hangUp tells the network that the owner will send nothing more.
func (p *Port) hangUp() { p.net.sending.Done() }

// silent is closed once every user has hung up.
func (p *Port) silent() <-chan struct{} { return p.net.silent }

// file files a delivery under its due tick, with its place in the
// canonical order.
func (p *Port) file(d Delivery) {
	tick := p.net.tick
	due, sent := int64(d.Due/tick), int64(d.Event.Sent/tick)
	earlier := uint64(p.net.delayTicks + 1 - (due - sent)) // 0 for the earliest sent
	b := &p.buckets[due%int64(len(p.buckets))]
	*b = append(*b, pending{earlier<<uidBits | uint64(d.Event.From), d.Event})
}

// eachDue calls apply for every event due on lockstep tick t, in canonical
// order: send tick, then sender (a sender acts at most once a tick). Then
// it empties their bucket.
func (p *Port) eachDue(t int64, apply func(*Event)) {
	b := &p.buckets[t%int64(len(p.buckets))]
	sc := scratchPool.Get().(*scratch)
	for _, ev := range sc.sort(*b) {
		apply(ev)
	}
	clear(sc.order) // hold no events while pooled
	scratchPool.Put(sc)
	clear(*b)
	*b = (*b)[:0]
}

// pending is a delivery waiting for its tick in lockstep, with its place in
// the canonical order packed into key: the send tick, then the sender. A
// user acts at most once a tick, so no two deliveries share a key, and
// sorting by key alone never dereferences an event. Every delivery in a
// bucket is due on the same tick, so the send tick is kept as how long
// before that it was sent, counted down from the longest lag: at most 1001
// values, which fit beside the sender's 17 bits and scratch.sort's 24-bit
// index however long the run.
type pending struct {
	key uint64
	ev  *Event
}

// scratch is working memory for sorting a bucket. Only a user that is
// sorting needs one, so users share a pool of them instead of each keeping
// its own: at 10,000 users that is half a gigabyte saved.
type scratch struct {
	keys  []uint64
	order []*Event
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// sort returns the events of b in canonical order. Keys and indexes are
// packed into one word and sorted as plain integers: several times faster
// than sorting structs through a comparison function.
func (sc *scratch) sort(b []pending) []*Event {
	sc.keys, sc.order = sc.keys[:0], sc.order[:0]
	if len(b) >= 1<<24 {
		slices.SortFunc(b, func(x, y pending) int { return cmp.Compare(x.key, y.key) })
		for _, d := range b {
			sc.order = append(sc.order, d.ev)
		}
		return sc.order
	}
	for i, d := range b {
		sc.keys = append(sc.keys, d.key<<24|uint64(i))
	}
	slices.Sort(sc.keys)
	for _, k := range sc.keys {
		sc.order = append(sc.order, b[k&(1<<24-1)].ev)
	}
	return sc.order
}

// minHeap is a min-heap of T by before, on container/heap. push and pop
// take and return T itself: heap.Push and heap.Pop pass it as an interface
// value, which would allocate for every delivery held back.
type minHeap[T any] struct {
	items  []T
	before func(a, b T) bool
}

func (h *minHeap[T]) Len() int           { return len(h.items) }
func (h *minHeap[T]) Less(i, j int) bool { return h.before(h.items[i], h.items[j]) }
func (h *minHeap[T]) Swap(i, j int)      { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *minHeap[T]) Push(x any)         { h.items = append(h.items, x.(T)) }
func (h *minHeap[T]) Pop() any           { return h.pop() }

// min is the least item; the heap must not be empty.
func (h *minHeap[T]) min() *T { return &h.items[0] }

func (h *minHeap[T]) push(x T) {
	h.items = append(h.items, x)
	heap.Fix(h, len(h.items)-1)
}

func (h *minHeap[T]) pop() T {
	var zero T
	x, n := h.items[0], len(h.items)-1
	h.items[0], h.items[n] = h.items[n], zero
	h.items = h.items[:n]
	if n > 0 {
		heap.Fix(h, 0)
	}
	return x
}

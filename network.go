package main

import (
	"cmp"
	"container/heap"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"
	"unsafe"
)

// Network is everything that travels between users: every user's
// EventChannel (its inbox), when each transmission is due, what the faults
// do to it, and what is counted in flight. A user reaches it only through
// its own port; the run reads its counts between rounds or through
// atomics.
//
// It has two modes, behind the interface a peer sees (port): real time
// (realtime.go: transmissions applied as they arrive, delays held in a
// heap, admission when the network is full) and lockstep (lockstep.go:
// transmissions filed by the tick they are due and applied in a canonical
// order). The two differ in when a transmission is due (schedule) and in
// what a user does with what reaches it while it is blocked sending; the
// faults are a layer over either.
type Network struct {
	inboxes []chan Delivery // inboxes[u] is user_u's EventChannel; fixed before any user starts
	filers  []filer         // lockstep: where deliveries to user_u go, by uid; nil in real time
	casts   *castLog        // lockstep without faults or delay: payloads filed once for all recipients
	chunks  outChunks       // lockstep with faults: the outboxes' memory
	ports   []*Port         // in the order users connected
	sched   schedule
	faults  *faults // nil without faults
	fl      *flight
	timing  linkTiming   // how long a peer's links wait for things
	wires   wireObserver // where lost and resent transmissions are told; nil when no one asks
}

// schedule is when a mode makes a transmission due.
type schedule interface {
	// due is when a transmission sent at sent may be applied, drawing any
	// injected delay from rng.
	due(sent time.Duration, rng *rand.Rand) time.Duration
	// later is when the network's second copy of a transmission sent at
	// sent and due at due arrives.
	later(sent, due time.Duration, rng *rand.Rand) time.Duration
}

// filer is where lockstep files what reaches a user, into the buckets of
// the tick it is due: without faults straight from its senders, many at
// once (fileShared); with faults from their outboxes between rounds, one
// worker for each user (file). None files into the bucket its owner is
// reading. A user's EventChannel then carries only the start of each
// round, which hands it the round's bucket.
type filer interface {
	fileShared(d Delivery)
	file(d Delivery) // with no other filer at work on the same user
}

// wireObserver is told of each payload transmission that was lost or
// resent, by the port that made it: the page draws a few of them.
type wireObserver interface {
	wire(uid int32, t transmission)
}

// netConfig is what a network is made from.
type netConfig struct {
	users, inbox int // users, and the capacity of each one's inbox
	sched        schedule
	transit      time.Duration // the longest a transmission is on its way
	tick         time.Duration
	faults       *faults // nil without faults
	capacity     int64   // deliveries in flight at once before admission refuses
}

// newNetwork returns the network of a run.
func newNetwork(c netConfig) *Network {
	n := &Network{
		inboxes: make([]chan Delivery, c.users+1),
		sched:   c.sched,
		faults:  c.faults,
		fl:      &flight{capacity: c.capacity},
		timing:  newLinkTiming(c.tick, c.transit),
	}
	for u := 1; u <= c.users; u++ {
		n.inboxes[u] = make(chan Delivery, c.inbox)
	}
	return n
}

// inboxCapacity sizes an EventChannel: room for a tick's worth of events
// from a few hundred senders, up to 1024, and for 256 MiB of inboxes in all
// (32 bytes a delivery), but never fewer than 64.
func inboxCapacity(users int) int {
	return max(min(users/4, 1024, inboxBudget/(int(unsafe.Sizeof(Delivery{}))*users)), 64)
}

// inboxBudget is the memory all EventChannels may take together.
const inboxBudget = 256 << 20

// wholeTicks is d in ticks, rounded up.
func wholeTicks(d, tick time.Duration) int64 { return int64((d + tick - 1) / tick) }

// Port is one user's end of the network, the part both modes share: its
// inbox, its sources of randomness, and its counts. Only its owner's
// goroutine uses it, but for the counts the run reads, what a crash
// purges from waiting, and in lockstep the outbox the coordinator files
// and empties, between rounds or in a pause of every user.
type Port struct {
	net   *Network
	uid   int32
	inbox chan Delivery
	delay *rand.Rand // the delays this port's transmissions meet, in the order sent
	frng  *rand.Rand // the faults they meet
	stash func(Delivery)

	// Deliveries sent and applied. Both change only while the owner works
	// on a round, so the run can read them between rounds or in a pause:
	// their sums differ by what is still on its way.
	sent, applied int64

	tx      transportCounts
	waiting []waitingTransmission // sent over a clogged path, in the order sent
	hushed  bool                  // the drain is over: nothing more is sent
	outbox  [][]outgoing          // lockstep with faults: put since the last flush, in chunks (see flushOutboxes)
}

// waitingTransmission is a transmission a clog holds: whether the network
// will deliver it twice, and whether it is a resend (for the page).
type waitingTransmission struct {
	to          int32
	d           Delivery
	dup, resent bool
}

// transportCounts are a port's tallies of transmissions.
type transportCounts struct {
	Transmissions int64 // every transmission sent, payload or acknowledgement, lost or not
	Lost          int64 // lost on the way, or on arrival at a user cut off or offline
	Duplicated    int64 // transmissions the network delivered twice
	Retransmitted int64 // payloads sent again
	Clogged       int64 // held by a clog until it cleared
}

func (c *transportCounts) add(o transportCounts) {
	c.Transmissions += o.Transmissions
	c.Lost += o.Lost
	c.Duplicated += o.Duplicated
	c.Retransmitted += o.Retransmitted
	c.Clogged += o.Clogged
}

// connect gives user uid its port. The delays and the faults its
// transmissions meet are drawn from sources of the port's own, derived
// from seed, in the order it sends: the network's chance is not the
// user's, so it never moves the user's choices, and a lockstep run
// replays. stash keeps what reaches the port's inbox while its owner is
// blocked sending.
func (n *Network) connect(uid int32, seed uint64, stash func(Delivery)) *Port {
	p := &Port{net: n, uid: uid, inbox: n.inboxes[uid], stash: stash,
		delay: rand.New(rand.NewPCG(seed, uint64(uid)<<32|0xde1a))}
	if n.faults != nil {
		p.frng = rand.New(rand.NewPCG(seed, uint64(uid)<<32|0xfa17))
	}
	n.ports = append(n.ports, p)
	return p
}

// transmit puts one transmission on its way to user to, due after a delay
// drawn from the port's source. With faults, the network may lose it or
// deliver it twice.
func (p *Port) transmit(to int32, d Delivery, k txKind, now time.Duration) {
	n := p.net
	if k == txFirst && runCounts(d.Event) {
		p.sent++
	}
	d.Due = n.sched.due(now, p.delay)
	f := n.faults
	if f == nil {
		p.tx.Transmissions++
		p.put(to, d)
		return
	}
	if p.hushed {
		return
	}
	clogged := f.clogged(p.uid, to)
	if len(p.waiting) > 0 && !clogged {
		// Nothing overtakes what a clog held. Behind a clog of its own,
		// the new one waits too: no pass over what waits for each send.
		p.sendWaiting(now)
	}
	p.tx.Transmissions++
	if k == txResend {
		p.tx.Retransmitted++
	}
	lost := f.loss > 0 && p.frng.Float64() < f.loss || f.blocked(p.uid, to)
	if lost {
		p.tx.Lost++
	} else {
		dup := f.dup > 0 && p.frng.Float64() < f.dup
		if dup {
			p.tx.Duplicated++
		}
		if clogged {
			p.tx.Clogged++
			p.waiting = append(p.waiting, waitingTransmission{to, d, dup, k == txResend})
			return // the page draws a resend when it goes on
		}
		p.deliver(to, d, dup, now)
	}
	if n.wires != nil && (k == txResend || k == txFirst && lost) {
		n.wires.wire(p.uid, transmission{Sent: now, Due: d.Due, From: p.uid, To: to, Event: d.Event, Resent: k == txResend, Lost: lost})
	}
}

// deliver puts a transmission that got through on user to's inbox, and
// its copy if the network duplicates it.
func (p *Port) deliver(to int32, d Delivery, dup bool, now time.Duration) {
	p.put(to, d)
	if dup {
		d.Due = p.net.sched.later(now, d.Due, p.frng)
		p.put(to, d)
	}
}

// sendWaiting sends on what clogs held whose paths are clear now: as if
// sent now, in the order it was sent. The owner's driver calls it at each
// of its ticks, and transmit before anything new, so that nothing
// overtakes what waited: in lockstep the clogs change only between ticks,
// in real time at any moment.
func (p *Port) sendWaiting(now time.Duration) {
	f := p.net.faults
	if len(p.waiting) == 0 || p.hushed {
		return
	}
	kept := p.waiting[:0]
	for _, w := range p.waiting {
		if f.clogged(p.uid, w.to) {
			kept = append(kept, w)
			continue
		}
		w.d.Due = p.net.sched.due(now, p.delay)
		p.deliver(w.to, w.d, w.dup, now)
		if p.net.wires != nil && w.resent {
			p.net.wires.wire(p.uid, transmission{Sent: now, Due: w.d.Due, From: p.uid, To: w.to, Event: w.d.Event, Resent: true})
		}
	}
	clear(p.waiting[len(kept):])
	p.waiting = kept
}

// put puts one transmission on user r's inbox: in lockstep, straight into
// its buckets, or with faults into the sender's outbox for them. In real
// time, if the inbox is full it keeps receiving its own inbox while it
// waits: two users sending to each other with full inboxes both make room
// for each other, so sends never deadlock, and no goroutine is spawned per
// send. What it receives meanwhile it keeps, in order, for its owner
// (stash).
func (p *Port) put(r int32, d Delivery) {
	if f := p.net.filers; f != nil {
		if p.net.faults != nil {
			p.putOut(r, d)
			return
		}
		f[r].fileShared(d)
		return
	}
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
			p.stash(in)
		}
	}
}

// arrives reports whether a transmission that has reached its due time
// gets through to the owner: with faults, one from a user it is cut off
// from or from a crashed incarnation, or to an owner the network has
// offline, is lost on arrival.
func (p *Port) arrives(d Delivery) bool {
	if f := p.net.faults; f != nil && (f.blocked(d.Event.From, p.uid) || d.Event.Inc < f.gone[d.Event.From].Load()) {
		p.tx.Lost++
		return false
	}
	return true
}

// away reports whether the network has the owner offline, or not yet
// online.
func (p *Port) away() bool { return p.net.faults != nil && p.net.faults.away[p.uid].Load() }

// down reports whether the owner has crashed and not yet restarted.
func (p *Port) down() bool { return p.net.faults != nil && p.net.faults.down[p.uid].Load() }

// restarted tells the network that the owner, crashed, has restarted: from
// now on it may crash again or go offline. Until then it is rebooting: the
// nemesis has let it up, and its driver restarts it at its next tick.
func (p *Port) restarted() { p.net.faults.rebooting[p.uid].Store(false) }

// lose counts a transmission lost on arrival: the owner was away or down,
// or its sender's crash took it.
func (p *Port) lose() { p.tx.Lost++ }

// faults is what a faulty network does to what it carries: it loses each
// transmission with chance loss and delivers it twice with chance dup,
// loses what crosses a split or reaches a user offline, and holds what is
// sent over a clogged path until the clog clears. The fault schedule
// (nemesis) sets the split, who is away and the clogs; the ports read
// them.
type faults struct {
	loss, dup float64
	split     atomic.Pointer[split]  // nil while the network is whole
	away      []atomic.Bool          // by uid: offline, or not yet online, or down
	down      []atomic.Bool          // by uid: crashed, and not yet restarted
	gone      []atomic.Uint32        // by uid: the incarnations below it crashed, and what they sent dies on the way
	rebooting []atomic.Bool          // by uid: down no more, and not yet restarted by its driver
	clogs     []atomic.Pointer[clog] // by uid: the clog on the user's traffic, or nil
}

func newFaults(users int, loss, dup float64) *faults {
	return &faults{loss: loss, dup: dup, away: make([]atomic.Bool, users+1), down: make([]atomic.Bool, users+1), gone: make([]atomic.Uint32, users+1), rebooting: make([]atomic.Bool, users+1), clogs: make([]atomic.Pointer[clog], users+1)}
}

// split is a partition of the network: the side or sides of each user, by
// uid, as bits (1 the first side, 2 the second). A bridge user is on both
// sides. A one-way split cuts one direction only: the first side reaches
// the second, and nothing of the second's reaches the first.
type split struct {
	sides  []uint8
	oneWay bool
}

// blocked reports whether a transmission from a to b is lost: the network
// is split between them in that direction, or either is offline or not yet
// online (a user that has just gone offline may not have noticed yet).
func (f *faults) blocked(a, b int32) bool {
	if f.away[a].Load() || f.away[b].Load() {
		return true
	}
	s := f.split.Load()
	return s != nil && s.sides[a]&s.sides[b] == 0 && !(s.oneWay && s.sides[a] == 1)
}

// clog is a slow path that loses nothing: what is sent over it waits, at
// the sender, until it clears (Port.unclog). It is the user's outgoing
// traffic, its incoming traffic, or what it sends to one other user
// (peer).
type clog struct {
	dir  clogDir
	peer int32
}

// clogged reports whether a clog holds what a sends to b now.
func (f *faults) clogged(a, b int32) bool {
	if c := f.clogs[a].Load(); c != nil && (c.dir == clogOut || c.dir == clogPair && c.peer == b) {
		return true
	}
	c := f.clogs[b].Load()
	return c != nil && c.dir == clogIn
}

// runCounts reports whether the run counts ev in flight, sent and applied,
// for its drain: everything but the report tree's reports and news, which
// come as long as anything is unstable, and a restarted user's word,
// which it repeats until it is welcomed.
func runCounts(ev *Event) bool {
	return ev.Kind != ReportEvent && ev.Kind != NewsEvent && ev.Kind != RestartEvent
}

// outstanding counts deliveries sent but not yet applied or owed again
// after crashes, and late joiners and restarted users whose view is not
// yet complete. Lockstep reads it between rounds, when no user is working.
func (n *Network) outstanding() int64 {
	k := n.fl.arriving.Load() + n.fl.again.Load()
	for _, p := range n.ports {
		k += p.sent - p.applied
	}
	return k
}

// transmission is a payload's trip over a link that went wrong or was
// made again: lost on the way, or resent. The page draws the first few of
// each user's beside the deliveries they delayed.
type transmission struct {
	Sent, Due time.Duration // Due: when it arrives, if it is not lost
	From, To  int32
	Event     *Event
	Resent    bool
	Lost      bool
}

// sortTransmissions orders transmissions by time of sending, then sender,
// then recipient: the same for the same run.
func sortTransmissions(all []transmission) {
	slices.SortStableFunc(all, func(a, b transmission) int {
		return cmp.Or(cmp.Compare(a.Sent, b.Sent), cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To))
	})
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

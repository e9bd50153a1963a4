package main

import (
	"cmp"
	"container/heap"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
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
// epoch is always a horizon. In lockstep without faults both are exact
// from the tick and the delay (lockstepStability); with faults a delivery
// can be on its way for any number of ticks, and lockstep counts too.
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

	// Faults. With any of them on, the links number and acknowledge what
	// they carry (see link), and stability is counted in lockstep too.
	faulty    bool
	loss, dup float64
	keepLost  int // see Port.wire
	keepFrom  time.Duration
	split     atomic.Pointer[split] // nil while the network is whole
	away      []atomic.Bool         // by uid: offline, or not yet online
	joining   atomic.Int64          // late joiners online and still without their state
	timing    linkTiming

	// While a late joiner waits for its state, no view may reclaim a
	// tombstone that the joiner could still need: see reclaimStability.
	joinMu    sync.Mutex
	joinNews  map[int32]uint64 // pending late joiners, by uid: the epoch of their news
	joinFloor atomic.Uint64    // the least of those, or MaxUint64
	tickFloor atomic.Uint64    // lockstep: joinFloor as the tick began, so that no phase sees it move

	inflight atomic.Int64 // deliveries admitted or counted and not yet retired (real time, and lockstep with faults)
	capacity int64

	epoch, stable atomic.Uint64
	horizon       atomic.Uint64 // lockstep without faults; otherwise the epoch is the horizon
	byEpoch       [epochRing]atomic.Int64

	// Real time: the drain waits until every user has stopped sending;
	// with faults, until every user has stopped acting and nothing is in
	// flight (silent), then until every user has stopped tending its links
	// (hushed).
	sending sync.WaitGroup
	hungUp  atomic.Int64
	silent  chan struct{}
	hushing sync.WaitGroup
	hushed  chan struct{}
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

// netConfig is what a network is made from.
type netConfig struct {
	users, inbox int // users, and the capacity of each one's inbox
	fast         bool
	tick, delay  time.Duration
	faulty       bool // faults are injected: number and acknowledge
	loss, dup    float64
	keepLost     int           // how many lost or resent transmissions each port keeps for the page
	keepFrom     time.Duration // from when: the start of the page's window
}

// newNetwork returns the network of a run.
func newNetwork(c netConfig) *Network {
	n := &Network{
		inboxes:  make([]chan Delivery, c.users+1),
		fast:     c.fast,
		tick:     c.tick,
		faulty:   c.faulty,
		keepLost: c.keepLost,
		keepFrom: c.keepFrom,
		loss:     c.loss,
		dup:      c.dup,
		away:     make([]atomic.Bool, c.users+1),
		silent:   make(chan struct{}),
		hushed:   make(chan struct{}),
		joinNews: make(map[int32]uint64),
	}
	n.joinFloor.Store(math.MaxUint64)
	n.tickFloor.Store(math.MaxUint64)
	for u := 1; u <= c.users; u++ {
		n.inboxes[u] = make(chan Delivery, c.inbox)
	}
	transit := c.tick + c.delay
	if c.fast {
		n.delayTicks = wholeTicks(c.delay, c.tick)
		transit = time.Duration(n.delayTicks+1) * c.tick
	} else {
		n.delay = c.delay
	}
	n.timing = newLinkTiming(c.tick, transit)
	switch {
	case !c.fast:
		n.capacity = networkCapacity * int64(c.users)
	case c.faulty:
		n.capacity = math.MaxInt64 // lockstep counts what is in flight, but admits all
	}
	if !c.fast || c.faulty {
		n.epoch.Store(1)
		n.stable.Store(1)
	}
	return n
}

// inboxCapacity sizes an EventChannel: room for a tick's worth of events
// from a few hundred senders, up to 1024, and for 256 MiB of inboxes in all
// (24 bytes a delivery), but never fewer than 64.
func inboxCapacity(users int) int {
	return max(min(users/4, 1024, inboxBudget/(int(unsafe.Sizeof(Delivery{}))*users)), 64)
}

// inboxBudget is the memory all EventChannels may take together.
const inboxBudget = 256 << 20

// wholeTicks is d in ticks, rounded up.
func wholeTicks(d, tick time.Duration) int64 { return int64((d + tick - 1) / tick) }

// connect gives user uid its port. rng is the user's own source: delays are
// drawn from it in the order the user sends, so a lockstep run replays.
// The faults a port's transmissions meet are drawn from a source of its
// own, derived from seed, so that they do not move the user's choices.
func (n *Network) connect(uid int32, rng *rand.Rand, seed uint64) *Port {
	p := &Port{net: n, uid: uid, inbox: n.inboxes[uid], rng: rng}
	if n.faulty && n.keepLost > 0 {
		p.wire = make([]transmission, 0, n.keepLost)
	}
	if n.faulty {
		p.frng = rand.New(rand.NewPCG(seed, uint64(uid)<<32|0xfa17))
		p.links = make([]link, len(n.inboxes))
		p.ackEv = &Event{Kind: AckEvent, From: uid}
		p.gapEv = &Event{Kind: GapEvent, From: uid}
	}
	if n.fast {
		p.buckets = make([][]*Event, n.delayTicks+2)
		if n.faulty {
			p.numbers = make([][]uint64, n.delayTicks+2)
		}
	} else {
		p.delayed.before = func(a, b Delivery) bool { return a.Due < b.Due }
		n.sending.Add(1)
		n.hushing.Add(1)
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

// count counts k deliveries in flight under the current epoch, which it
// returns, whatever the capacity: a state transfer, or the news of a late
// joiner, which no one may refuse. See admit for the protocol.
func (n *Network) count(k int64) uint64 {
	n.inflight.Add(k)
	for {
		e := n.epoch.Load()
		n.byEpoch[e%epochRing].Add(k)
		if n.epoch.Load() <= e+1 {
			return e
		}
		n.byEpoch[e%epochRing].Add(-k)
	}
}

// beginTick starts lockstep tick t: its epoch, and the stability that holds
// before its deliveries are applied. The coordinator calls it between
// phases, when no user is working. With faults a delivery can be on its
// way for any number of ticks, so stability is counted as in real time.
func (n *Network) beginTick(t int64) {
	if n.faulty {
		n.advanceEpoch()
		n.tickFloor.Store(n.joinFloor.Load())
		return
	}
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
	if n.fast && !n.faulty {
		return stable, n.horizon.Load()
	}
	return stable, n.epoch.Load()
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
func (n *Network) reclaimStability() (stable, horizon uint64) {
	stable, horizon = n.stability()
	floor := n.joinFloor.Load()
	if n.fast {
		floor = n.tickFloor.Load()
	}
	return min(stable, floor), horizon
}

// joinPending notes that late joiner j, whose news was counted under
// epoch e, waits for its state; joinDone that it has it.
func (n *Network) joinPending(j int32, e uint64) {
	n.joinMu.Lock()
	defer n.joinMu.Unlock()
	n.joining.Add(1)
	n.joinNews[j] = e
	n.joinFloor.Store(min(n.joinFloor.Load(), e))
}

func (n *Network) joinDone(j int32) {
	n.joinMu.Lock()
	defer n.joinMu.Unlock()
	n.joining.Add(-1)
	delete(n.joinNews, j)
	floor := uint64(math.MaxUint64)
	for _, e := range n.joinNews {
		floor = min(floor, e)
	}
	n.joinFloor.Store(floor)
}

// outstanding counts deliveries sent but not yet applied, and late joiners
// still waiting for their state. Lockstep reads it between phases, when no
// user is working.
func (n *Network) outstanding() int64 {
	k := n.joining.Load()
	for _, p := range n.ports {
		k += p.sent - p.applied
	}
	return k
}

// quiescent reports whether nothing is in flight: every delivery applied,
// every late joiner with its state. In real time it is read once every
// user has stopped acting.
func (n *Network) quiescent() bool { return n.inflight.Load() == 0 && n.joining.Load() == 0 }

// split is a partition of the network: the side or sides of each user, by
// uid, as bits. A bridge user is on both sides.
type split struct {
	sides []uint8
}

// blocked reports whether a transmission from a to b is lost: the network
// is split between them, or either is offline or not yet online (a user
// that has just gone offline may not have noticed yet).
func (n *Network) blocked(a, b int32) bool {
	if n.away[a].Load() || n.away[b].Load() {
		return true
	}
	s := n.split.Load()
	return s != nil && s.sides[a]&s.sides[b] == 0
}

// closeWhenSilent closes silent once every connected user has hung up:
// from then on nothing more is sent, and what is in the inboxes is all
// there is. With faults users go on tending their links after they hang
// up, and the clock closes silent instead (silentNow); then hushed closes
// once every user has stopped tending.
func (n *Network) closeWhenSilent() {
	go func() {
		if n.faulty {
			n.hushing.Wait()
			close(n.hushed)
			return
		}
		n.sending.Wait()
		close(n.silent)
	}()
}

// silentNow closes silent, with faults, once every user has hung up and
// nothing is in flight, and reports whether it has. Only the clock calls
// it, once a tick in the drain.
func (n *Network) silentNow() bool {
	if n.hungUp.Load() < int64(len(n.ports)) || !n.quiescent() {
		return false
	}
	close(n.silent)
	return true
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
	owed     []owing           // applied deliveries not yet retired, by epoch (real time, and lockstep with faults)
	buckets  [][]*Event        // lockstep: by due tick, modulo len(buckets)

	// Deliveries sent and applied. Both change only while the owner works
	// on a phase, so the coordinator can read them between phases: their
	// sums differ by what is still on its way.
	sent, applied int64

	// With faults.
	numbers      [][]uint64   // lockstep: Seq<<32|Ack of each pending delivery, beside buckets
	links        []link       // by peer uid
	active       []activeLink // links with something to do
	frng         *rand.Rand   // the faults this port's transmissions meet
	ackEv, gapEv *Event       // what acknowledgements and gap reports carry
	tx           transportCounts
	hushed       bool           // real time: the drain is over, nothing more is sent
	wire         []transmission // the first lost or resent payloads, for the page; nil when not kept
}

// send puts one delivery of ev on user r's inbox. If the inbox is full it
// keeps receiving its own inbox while it waits: two users sending to each
// other with full inboxes both make room for each other, so sends never
// deadlock, and no goroutine is spawned per send. What it receives
// meanwhile is kept, in order, for its owner.
func (p *Port) send(r int32, ev *Event) {
	p.sent++
	if p.net.faulty {
		if p.net.fast && ev.Kind <= CloseEvent {
			p.net.byEpoch[ev.Epoch%epochRing].Add(1) // see User.runFast
			p.net.inflight.Add(1)
		}
		p.sendReliably(r, ev, ev.Sent)
		return
	}
	p.put(r, Delivery{Event: ev, Due: p.due(ev.Sent)})
}

// put puts one transmission on user r's inbox. If the inbox is full it
// keeps receiving its own inbox while it waits: see send.
func (p *Port) put(r int32, d Delivery) {
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

// due is when a transmission sent at sent may be applied: at once in real
// time, on the next tick in lockstep, plus a random injected delay for each
// recipient, drawn from the owner's source in the order it sends.
func (p *Port) due(sent time.Duration) time.Duration { return p.dueFrom(sent, p.rng) }

// resendDue is due for what the links send of their own accord
// (retransmissions, acknowledgements, gap reports): its delay is drawn
// from the faults' source, so that faults do not move the owner's choices.
func (p *Port) resendDue(sent time.Duration) time.Duration { return p.dueFrom(sent, p.frng) }

func (p *Port) dueFrom(sent time.Duration, rng *rand.Rand) time.Duration {
	n := p.net
	if n.fast {
		d := sent + n.tick
		if n.delayTicks > 0 {
			d += time.Duration(rng.Int64N(n.delayTicks+1)) * n.tick
		}
		return d
	}
	if n.delay > 0 {
		return sent + time.Duration(rng.Int64N(int64(n.delay)+1))
	}
	return sent
}

// later is when the network's copy of a transmission sent at sent and due
// at due arrives: a random time from due to the latest the delay allows
// after sent. (In lockstep a later copy would not fit the ring of buckets.)
func (p *Port) later(sent, due time.Duration) time.Duration {
	n := p.net
	last := sent + n.delay
	if n.fast {
		last = sent + time.Duration(n.delayTicks+1)*n.tick
		return due + time.Duration(p.frng.Int64N(int64((last-due)/n.tick)+1))*n.tick
	}
	return due + time.Duration(p.frng.Int64N(int64(last-due)+1))
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

// lose counts a transmission lost on arrival: the owner is away.
func (p *Port) lose() { p.tx.Lost++ }

// delivered notes that the owner has applied a delivery of ev. In real
// time its room in flight goes back to the network at the next retire.
func (p *Port) delivered(ev *Event) {
	p.applied++
	if p.net.fast && !p.net.faulty {
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

// stability is the network's stable epoch and horizon; reclaimStability
// the same, for reclaiming.
func (p *Port) stability() (stable, horizon uint64)        { return p.net.stability() }
func (p *Port) reclaimStability() (stable, horizon uint64) { return p.net.reclaimStability() }

// epoch is the current epoch.
func (p *Port) epoch() uint64 { return p.net.epoch.Load() }

// hangUp tells the network that the owner will act no more: without
// faults, that it will send nothing more.
func (p *Port) hangUp() {
	p.net.sending.Done()
	p.net.hungUp.Add(1)
}

// silent is closed once every user has hung up and, with faults, nothing
// is in flight.
func (p *Port) silent() <-chan struct{} { return p.net.silent }

// hush tells the network, with faults, that the owner will send nothing
// more; hushed is closed once every user has.
func (p *Port) hush() {
	p.hushed = true
	p.net.hushing.Done()
}
func (p *Port) allHushed() <-chan struct{} { return p.net.hushed }

// away reports whether the network has the owner offline, or not yet
// online.
func (p *Port) away() bool { return p.net.away[p.uid].Load() }

// countOne counts one delivery in flight that no one may refuse, a state
// transfer or a request for one, and returns its epoch.
func (p *Port) countOne() uint64 { return p.net.count(1) }

// retireNews counts the news of a late joiner, counted under epoch e, as
// learned.
func (p *Port) retireNews(e uint64) { p.net.retire(e, 1) }

// hasState tells the network that the owner, a late joiner, has its state.
func (p *Port) hasState() { p.net.joinDone(p.uid) }

// file files a delivery under its due tick. A bucket holds only events:
// their place in the canonical order follows from the event and the tick
// they are due (see canonical), so a delivery waiting in lockstep costs 8
// bytes, and at 10,000 users a tick's deliveries are tens of millions.
func (p *Port) file(d Delivery) {
	k := int64(d.Due/p.net.tick) % int64(len(p.buckets))
	p.buckets[k] = append(p.buckets[k], d.Event)
	if p.numbers != nil {
		p.numbers[k] = append(p.numbers[k], uint64(d.Seq)<<32|uint64(d.Ack))
	}
}

// eachDue calls apply for every delivery due on lockstep tick t, in
// canonical order: send tick, then sender, then the order the sender sent
// them in (its transmissions reach the inbox in that order). Then it
// empties their bucket.
func (p *Port) eachDue(t int64, apply func(Delivery)) {
	k := t % int64(len(p.buckets))
	b := p.buckets[k]
	due := time.Duration(t) * p.net.tick
	sc := scratchPool.Get().(*scratch)
	for _, i := range sc.sort(b, canonical{t, p.net.delayTicks + 1, p.net.tick}) {
		d := Delivery{Event: b[i], Due: due}
		if p.numbers != nil {
			n := p.numbers[k][i]
			d.Seq, d.Ack = uint32(n>>32), uint32(n)
		}
		apply(d)
	}
	scratchPool.Put(sc)
	clear(b)
	p.buckets[k] = b[:0]
	if p.numbers != nil {
		p.numbers[k] = p.numbers[k][:0]
	}
}

// canonical is the canonical order of the events due on one tick: the place
// of each, packed into a word by key, is its send tick, then its sender.
// Events that share a place come from one sender, in the order it sent
// them, and the sort keeps that order. Every event in a bucket is due on
// the same tick, so the send tick is kept as how long before that it was
// sent, counted down from the longest lag (at most 1001 values, above the
// sender's 17 bits). A retransmission, whose event was sent long before,
// and an acknowledgement, which is no event, count as the earliest sent.
type canonical struct {
	due  int64 // the tick
	lag  int64 // the longest lag a delivery can have, in ticks, plus one
	tick time.Duration
}

func (o canonical) key(ev *Event) uint64 {
	earlier := uint64(max(0, o.lag-(o.due-int64(ev.Sent/o.tick)))) // 0 for the earliest sent
	return earlier<<uidBits | uint64(ev.From)
}

// scratch is working memory for sorting a bucket. Only a user that is
// sorting needs one, so users share a pool of them instead of each keeping
// its own: at 10,000 users that is half a gigabyte saved.
type scratch struct {
	keys       []uint64
	order, tmp []int32
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// sort returns the indexes of b in order o, ties in the order of b: a
// least-significant-digit radix sort, a byte of the key a pass, with as
// many passes as the greatest key has bytes. Without -delay every key is
// a sender's uid, so a tick's bucket at 10,000 users takes two passes
// over it, about four times faster than a comparison sort. Indexes are
// int32: a bucket holds one tick's deliveries to one user, far fewer than
// 2^31.
func (sc *scratch) sort(b []*Event, o canonical) []int32 {
	sc.keys = slices.Grow(sc.keys[:0], len(b))
	sc.order = slices.Grow(sc.order[:0], len(b))
	sc.tmp = slices.Grow(sc.tmp[:0], len(b))[:len(b)]
	var all uint64
	for i, ev := range b {
		k := o.key(ev)
		all |= k
		sc.keys = append(sc.keys, k)
		sc.order = append(sc.order, int32(i))
	}
	for shift := 0; all>>shift != 0; shift += 8 {
		var at [257]int
		for _, k := range sc.keys {
			at[k>>shift&0xff+1]++
		}
		for d := 1; d < len(at); d++ {
			at[d] += at[d-1]
		}
		for _, i := range sc.order {
			d := sc.keys[i] >> shift & 0xff
			sc.tmp[at[d]] = i
			at[d]++
		}
		sc.order, sc.tmp = sc.tmp, sc.order
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

// transmission is a payload's trip over a link that went wrong or was
// made again: lost on the way, or resent. A port keeps its first few for
// the page, which draws them beside the deliveries they delayed.
type transmission struct {
	Sent, Due time.Duration // Due: when it arrives, if it is not lost
	From, To  int32
	Event     *Event
	Resent    bool
	Lost      bool
}

// noteWire keeps a transmission of d for the page, while there is room.
func (p *Port) noteWire(r int32, d Delivery, sent time.Duration, resent, lost bool) {
	if len(p.wire) == cap(p.wire) || d.Event.Kind == AckEvent || d.Event.Kind == GapEvent || sent < p.net.keepFrom || p.hushed {
		return
	}
	p.wire = append(p.wire, transmission{Sent: sent, Due: d.Due, From: p.uid, To: r, Event: d.Event, Resent: resent, Lost: lost})
}

// transmissions are the transmissions every port kept, by time of
// sending, then sender, then recipient: the same for the same run. Call it
// once the users have exited.
func (n *Network) transmissions() []transmission {
	var all []transmission
	for _, p := range n.ports {
		all = append(all, p.wire...)
	}
	slices.SortStableFunc(all, func(a, b transmission) int {
		return cmp.Or(cmp.Compare(a.Sent, b.Sent), cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To))
	})
	return all
}

package main

import (
	"container/heap"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Real time: each user applies what reaches it as it arrives, and rolls
// for an action when the ticker ticks it. This file has the mode's part
// of the network (realPort, realSchedule), the user's loop around its
// peer (realUser), the drain after the stop, and the ticker.

// realSchedule makes a transmission due at once, or after a random delay
// of up to delay.
type realSchedule struct{ delay time.Duration }

func (s realSchedule) due(sent time.Duration, rng *rand.Rand) time.Duration {
	if s.delay > 0 {
		return sent + time.Duration(rng.Int64N(int64(s.delay)+1))
	}
	return sent
}

func (s realSchedule) later(sent, due time.Duration, rng *rand.Rand) time.Duration {
	return due + time.Duration(rng.Int64N(int64(sent+s.delay-due)+1))
}

// realPort is a user's end of the network in real time: what came in
// while it was blocked sending or paused, what has come in but is not due yet, the
// room reserved for the action under way, and the applied deliveries not
// yet given back.
type realPort struct {
	*Port
	backlog   queue[Delivery]   // received while blocked in a send or paused; applied next, in order
	delayed   minHeap[Delivery] // deliveries whose injected delay has not passed, by due time
	reserved  reservation       // room reserved for the action under way
	unretired int64             // applied deliveries not yet given back
}

// reservation is room reserved in flight for one broadcast or action.
type reservation struct {
	k, used int64 // deliveries reserved, and sent
}

func newRealPort(n *Network, uid int32, seed uint64) *realPort {
	rp := &realPort{}
	rp.Port = n.connect(uid, seed, func(d Delivery) { rp.backlog.push(d) })
	rp.delayed.before = func(a, b Delivery) bool { return a.Due < b.Due }
	return rp
}

// nextDue is when the earliest delivery held back by its delay is due.
func (p *realPort) nextDue() (time.Duration, bool) {
	if p.delayed.Len() == 0 {
		return 0, false
	}
	return p.delayed.min().Due, true
}

// due yields the deliveries held back by their delay that are due by now,
// earliest first.
func (p *realPort) due(now time.Duration) func(func(Delivery)) {
	return func(apply func(Delivery)) {
		for p.delayed.Len() > 0 && p.delayed.min().Due <= now {
			if d := p.delayed.pop(); p.arrives(d) {
				apply(d)
			}
		}
	}
}

// retire gives the room of applied deliveries back to the network, once
// per batch rather than once per delivery.
func (p *realPort) retire() {
	p.net.fl.retire(p.unretired)
	p.unretired = 0
}

// realUser is a user's loop in real time, around its peer. Events are
// applied as they arrive. Everything else comes down the same channel too:
// the ticker's tick markers, the run's pause markers and the stop marker. So an idle user waits on
// a plain receive, or on a select of its own channel and its delay timer
// while deliveries are held back by -delay.
type realUser struct {
	*User
	port     *realPort
	elapsed  simTime
	period   time.Duration
	drain    *drain
	lat      *hist         // send-to-apply latency
	stopping bool          // the stop marker has come
	tickAt   time.Duration // due time of a tick marker not yet run, or -1
	tickNum  uint64        // the user's own count of that tick
	pauses   *pauses       // the run's pauses
	pausing  *pause        // a pause asked for and not yet begun
}

// Markers are deliveries without a room event that the run sends a user
// down its own EventChannel, so that a user waits on one channel only. A
// channel that every user selected on would have one lock that all of
// them contend for on every wake.
var (
	tickMark  = &Event{} // roll for an action
	stopMark  = &Event{} // stop acting, drain and settle
	pauseMark = &Event{} // pause at the end of the batch (see Sim.stopTheWorld)
)

// run is the user's loop, until the drain is over.
func (u *realUser) run() {
	news := u.UserChannel // news comes only before the first tick
	wake := time.NewTimer(time.Hour)
	wake.Stop()
	defer wake.Stop()
	wakeAt := time.Duration(-1)
	for !u.stopping {
		// Wait on the user's own channel; on announcements only before
		// the first tick, and on the delay timer only while deliveries
		// are held back. What came during a pause is taken first.
		var wakeC <-chan time.Time
		if at, ok := u.port.nextDue(); ok {
			if at != wakeAt {
				wakeAt = at
				wake.Reset(at - u.elapsed.now())
			}
			wakeC = wake.C
		}
		var d Delivery
		paused := u.port.backlog.len() > 0
		switch {
		case paused:
		case news == nil && wakeC == nil:
			d = <-u.EventChannel
		default:
			select {
			case d = <-u.EventChannel:
			case o := <-news:
				u.learn(o, u.elapsed.now())
				continue
			case <-wakeC:
				wakeAt = -1
				now := u.elapsed.now()
				u.port.due(now)(func(d Delivery) { u.deliver(d, now) })
				u.takeBacklog(now)
				u.endBatch()
				continue
			}
		}
		now := u.elapsed.now()
		if !paused {
			u.handle(d, now)
			u.handleQueued(now)
		}
		if u.tickAt >= 0 && news != nil {
			// The ticker starts once every user is online: whatever news
			// is queued is learned before the user acts.
			for len(news) > 0 {
				u.learn(<-news, now)
			}
			news = nil
		}
		u.takeBacklog(now)
		// A marker taken while blocked in a send lands in the backlog and
		// sets tickAt again: run it now, not at the next arrival.
		for u.tickAt >= 0 {
			u.runTick(now)
		}
		u.endBatch()
	}
	u.drainOut()
}

// handleQueued handles what is queued on the user's channel now, and no
// more, in one batch. It never waits: a send blocked on a full inbox takes
// from the channel too (see Port.put), so what was queued may be gone.
func (u *realUser) handleQueued(now time.Duration) {
	for n := len(u.EventChannel); n > 0 && !u.stopping; n-- {
		select {
		case d := <-u.EventChannel:
			u.handle(d, now)
		default:
			return
		}
	}
}

// learn takes news of users online at the start.
func (u *realUser) learn(o Online, now time.Duration) {
	u.peer.Step(Input{Kind: newsInput, Now: now, Last: o.Last}, u)
}

// endBatch ends a batch of work: the log lines go out, the gauges are
// brought up to date and the room of applied deliveries goes back to the
// network, in that order: the drain reads the room first and the gauges
// after (drain.quietNow). Then the user pauses if the run asked it to.
func (u *realUser) endBatch() {
	u.flushLog()
	u.publish()
	u.port.retire()
	if u.pausing != nil {
		u.pause()
	}
}

// pause holds the user still at the end of a batch, when its peer is
// between steps, until the run has done what it paused for (see
// Sim.stopTheWorld). What reaches the user meanwhile it takes, so that no
// sender blocks on it, and applies once the pause is over.
func (u *realUser) pause() {
	p := u.pausing
	u.pausing = nil
	p.still.Done()
	for {
		select {
		case d := <-u.EventChannel:
			u.port.backlog.push(d)
		case <-p.over:
			return
		}
	}
}

// runTick runs the tick marker taken: the peer's tick, with what is due
// by now. A user that is behind by more than a tick skips the roll rather
// than add to the load; in the drain a tick only tends links, with faults.
// Everything sent to the user before the tick marker has been applied by
// now.
func (u *realUser) runTick(now time.Duration) {
	at := u.tickAt
	u.tickAt = -1
	if u.dead {
		if u.port.down() {
			return
		}
		u.restart(u.tickNum, now, u)
		u.port.restarted()
	}
	act := actRoll
	switch {
	case u.stopping && u.faulty:
		act = actNone
	case u.stopping || now-at >= u.period:
		act = actSkip
	}
	u.port.sendWaiting(now)
	u.peer.Step(Input{Kind: tickInput, Now: now, Tick: u.tickNum, Due: u.port.due(now), Act: act, Away: u.port.away()}, u)
	u.trace.end()
	u.publish()
	u.port.retire()
	u.takeBacklog(u.elapsed.now())
}

// takeBacklog handles what the user received while blocked in a send
// (with faults a send can happen outside a tick too, when a link resends on
// what arrives) or while paused.
func (u *realUser) takeBacklog(now time.Duration) {
	for u.port.backlog.len() > 0 {
		u.handle(u.port.backlog.pop(), now)
	}
}

// handle applies a delivery now, or holds it until its injected delay has
// passed. A marker is noted for the loop: a tick to run after the batch
// (a second tick before the first ran is skipped), a pause, or the stop.
func (u *realUser) handle(d Delivery, now time.Duration) {
	switch d.Event {
	case tickMark:
		if u.tickAt >= 0 {
			u.missed++
		}
		u.tickAt, u.tickNum = d.Due, uint64(d.Seq)
		return
	case stopMark:
		u.stopping = true
		return
	case pauseMark:
		u.pausing = u.pauses.pausing
		return
	}
	if d.Due > now {
		u.port.delayed.push(d)
		return
	}
	if u.port.arrives(d) {
		u.deliver(d, now)
	}
}

// deliver hands a transmission that is due and got through to the peer,
// unless the peer crashed: then it is lost.
func (u *realUser) deliver(d Delivery, now time.Duration) {
	if u.dead {
		u.dropped()
		return
	}
	u.peer.Step(Input{Kind: deliverInput, Now: now, D: d}, u)
	u.trace.end()
}

// drainOut runs after the stop: the user no longer acts, but keeps
// applying what others send, and with faults keeps tending its links on
// the ticker's ticks, until the drain says the network is quiet; then it
// sends nothing more, takes what still comes until every user has stopped
// sending, applies everything still on its way, delays or not, and settles
// its view.
func (u *realUser) drainOut() {
	u.drain.stopActing()
	for waiting := true; waiting; u.endBatch() {
		if u.port.backlog.len() > 0 { // what came during a pause
			now := u.elapsed.now()
			u.takeBacklog(now)
			for u.tickAt >= 0 {
				u.runTick(now)
			}
			continue
		}
		select {
		case d := <-u.EventChannel:
			now := u.elapsed.now()
			u.handle(d, now)
			u.takeBacklog(now)
			for u.tickAt >= 0 {
				u.runTick(now)
			}
		case <-u.drain.quiet:
			waiting = false
		}
	}
	now := u.elapsed.now()
	u.port.hushed = true
	u.drain.stopSending()
	for sending := true; sending; {
		select {
		case d := <-u.EventChannel:
			u.handle(d, now)
		case <-u.drain.over:
			sending = false
		}
	}
	// Every send has completed: what is on the channel is all there is.
	u.takeBacklog(now)
	for len(u.EventChannel) > 0 {
		u.handle(<-u.EventChannel, now)
	}
	u.port.due(forever)(func(d Delivery) { u.deliver(d, now) })
	u.peer.view.Finish()
	u.endBatch()
}

// The peer's port, as the real-time network: see port. What the peer
// sends is counted in flight until applied: within the room admit
// reserved, or on its own, for what no one may refuse (a hello, a state
// transfer). A report or news of stability waits for room like an
// action, but is not counted: the drain does not wait for them, which
// come as long as anything is unstable.

func (u *realUser) transmit(to int32, d Delivery, k txKind, now time.Duration) {
	if k == txFirst && runCounts(d.Event) {
		u.trace.sending(u.UID, d.Event)
		if r := &u.port.reserved; r.used < r.k {
			r.used++
		} else {
			u.port.net.fl.count(1)
		}
	}
	u.port.transmit(to, d, k, now)
}

func (u *realUser) transmitAll(ev *Event, known int32) { transmitEach(u, ev, known) }

func (u *realUser) admit(k int64) bool {
	p := u.port
	if !p.net.fl.admit(k) {
		return false
	}
	p.reserved = reservation{k: k}
	return true
}

func (u *realUser) release() {
	p := u.port
	p.net.fl.retire(p.reserved.k - p.reserved.used)
	p.reserved = reservation{}
}

func (u *realUser) applied(ev *Event, now time.Duration) {
	if !runCounts(ev) {
		return
	}
	p := u.port
	p.unretired++
	p.applied++
	if ev.Kind <= CloseEvent {
		u.lat.add(now - ev.Sent)
	}
	tracedDelivery(u.UID, ev)
}

func (u *realUser) dropped()  { u.port.lose() }
func (u *realUser) caughtUp() { u.port.net.fl.arriving.Add(-1) }

// drain is the end of a real-time run, in two steps. First every user
// stops acting; the network carries on (with faults, retransmissions win
// against the loss that goes on, and late joiners get their state) until
// it is quiet: every user has stopped acting and, with faults, nothing is
// in flight or owed again, every late joiner and restarted user has the
// rooms, and no user holds a message back (drain.quietNow). Then every user stops sending; once all have, the drain is
// over, and what is on each inbox is all there is.
type drain struct {
	faulty  bool
	acting  atomic.Int64 // users that have not stopped acting
	sending atomic.Int64 // users that have not stopped sending
	quiet   chan struct{}
	over    chan struct{}
}

// expect sets how many users the drain waits for: those that started.
// The run calls it before it tells any user to stop.
func (d *drain) expect(users int) {
	d.acting.Store(int64(users))
	d.sending.Store(int64(users))
	if users == 0 {
		close(d.quiet)
		close(d.over)
	}
}

// stopActing says a user will act no more. Without faults nothing else is
// sent, so the last to stop makes the network quiet.
func (d *drain) stopActing() {
	if d.acting.Add(-1) == 0 && !d.faulty {
		close(d.quiet)
	}
}

// stopSending says a user will send nothing more; the last ends the drain.
func (d *drain) stopSending() {
	if d.sending.Add(-1) == 0 {
		close(d.over)
	}
}

// quietNow makes the network quiet, with faults, once every user has
// stopped acting, nothing is in flight and nothing is held back, and
// reports whether it has. Only the ticker calls it, once a tick in the
// drain.
func (d *drain) quietNow(fl *flight, held func() int64) bool {
	if d.acting.Load() > 0 || !fl.quiescent() || held() > 0 {
		return false
	}
	close(d.quiet)
	return true
}

// pauses is how the run pauses every user in real time: to crash users,
// which lockstep does between rounds (see crash.go). The ticker sets
// pausing before it sends the pause markers, and a user reads it when it
// takes its marker.
type pauses struct {
	pausing *pause
}

// pause is one pause of every user.
type pause struct {
	still sync.WaitGroup // done once every user is still
	over  chan struct{}  // closed when the users may go on
}

// stopTheWorld pauses every user at the end of its batch and returns once
// all are still: between steps of their peers, with their log lines
// written and the room of what they applied given back. The caller reads
// and changes the peers as lockstep does between rounds, then closes the
// pause's over. Users learn nothing from a pause: it is the run's way to
// see every user at one moment, the moment a crash takes one.
func (s *Sim) stopTheWorld() *pause {
	p := &pause{over: make(chan struct{})}
	p.still.Add(len(s.users))
	s.pauses.pausing = p
	for _, u := range s.users {
		u.EventChannel <- Delivery{Event: pauseMark}
	}
	p.still.Wait()
	return p
}

// simTime tells the simulation time: the time since t0 in real time. In
// lockstep time is the tick, and the only moments outside ticks are the
// announcements at start-up, at 0.
type simTime struct {
	t0      time.Time
	virtual bool
}

func (c simTime) now() time.Duration {
	if c.virtual {
		return 0
	}
	return time.Since(c.t0)
}

// runTicker is the real-time ticker: one goroutine that ticks every user
// once a tick, each at its own random phase, by sending a tick marker down
// the user's EventChannel, with the tick's number: the user's own count of
// its ticks, by its own clock. The marker queues behind what the user has
// already received, so a user applies what it was sent before it acts: the
// backpressure. A user whose channel is full is behind, and its tick is
// dropped and counted, never queued; so are ticks the ticker itself was
// too late for. Incoming traffic never moves a user's tick.
//
// The ticker also carries out the fault schedule once a tick. It stops at
// stopping, unless faults are injected: then it ends them, and goes on
// through the drain, ticking users (no tick is counted as skipped any
// more) and watching for the network to fall quiet, until done.
func (s *Sim) runTicker(stopping, done <-chan struct{}) {
	tick := s.cfg.Tick
	rng := rand.New(rand.NewPCG(s.cfg.Seed, 0xc10c))
	start := s.elapsed.now()
	h := minHeap[nextTick]{
		items:  make([]nextTick, len(s.users), len(s.users)+1),
		before: func(a, b nextTick) bool { return a.at < b.at },
	}
	for i := range h.items {
		h.items[i] = nextTick{at: start + time.Duration(rng.Int64N(int64(tick))), user: i, num: 1}
	}
	h.items = append(h.items, nextTick{at: start + tick, user: scheduleTick})
	heap.Init(&h)
	timer := time.NewTimer(h.min().at - start)
	defer timer.Stop()
	var ticks int64 // the schedule's ticks so far
	stopped, quiet := false, false
	for {
		fired := false
		select {
		case <-stopping:
		case <-done:
			return
		case <-timer.C:
			fired = true
		}
		// A stop outranks a tick due at the same moment: once the run has
		// stopped, the schedule runs no more faults, only their end.
		if isClosed(stopping) {
			if s.nemesis == nil {
				return
			}
			stopping, stopped = nil, true
			s.applyFaults(ticks+1, s.elapsed.now(), true)
		}
		if !fired {
			continue
		}
		now := s.elapsed.now()
		for h.min().at <= now {
			next := h.min()
			if next.user == scheduleTick {
				ticks++
				if s.nemesis != nil && !stopped {
					s.applyFaults(ticks, now, false)
				}
				if stopped && !quiet {
					quiet = s.drain.quietNow(s.net.fl, s.heldNow)
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
				next.num += uint64(late)
			}
			select {
			case s.users[next.user].EventChannel <- Delivery{Event: tickMark, Due: next.at, Seq: uint32(next.num)}:
			default:
				if !stopped {
					s.dropped[next.user]++
				}
			}
			next.at += tick
			next.num++
			heap.Fix(&h, 0)
		}
		timer.Reset(h.min().at - now)
	}
}

// nextTick is when a user's next tick is due, and its number, or the
// fault schedule's next tick.
type nextTick struct {
	at   time.Duration
	user int // index in Sim.users, or scheduleTick
	num  uint64
}

// scheduleTick marks the ticker's own tick, which carries out the fault
// schedule.
const scheduleTick = -1

package main

import (
	"context"
	"math/rand/v2"
	"runtime/trace"
	"sync"
	"sync/atomic"
	"time"
)

// User is one simulated person: a goroutine that owns a View and changes
// the world only by sending events through its Port. It never reads
// another user's state, and it knows of the run only the few settings it
// acts by.
//
// UserChannel brings news of users coming online; EventChannel brings room
// events from peers, and the run's markers (a tick, the stop, the start of
// a lockstep phase) behind them. Each user sends from its own loop, never
// from a goroutine per send, so the events of one sender reach each
// recipient in the order they were sent (unless a delay is injected on
// purpose).
type User struct {
	UID          int32
	UserChannel  chan Online
	EventChannel chan Delivery

	view *View
	rng  *rand.Rand
	port *Port
	opts userOptions
	out  lineWriter
	keep recordKeeper // the records for a page, or nil
	buf  []byte       // rendering scratch

	lat      *hist         // real time: send-to-apply latency
	stopping bool          // real time: the stop marker has come
	tickAt   time.Duration // real time: due time of a tick marker not yet run, or -1

	ticks, skipped, acted int64 // rolls, ticks not served, rolls that acted

	// With faults: whether the user is online as it last noticed, its
	// last outage, and a late joiner's way in (see join).
	online    bool
	awaySince time.Duration
	joinPhase joinPhase
	joinEpoch uint64
	replyTo   []int32 // late joiners that asked for this user's rooms

	news []Online // lockstep: news taken while waiting, learned when the phase starts

	// What the sampler reads while the user runs; the owner stores, others
	// load.
	liveGauge, deliveriesGauge atomic.Int64
}

// userOptions are the settings a user acts by.
type userOptions struct {
	users  int     // in the run: the width of a member set
	chance float64 // of acting on a tick
	tick   time.Duration
	seed   uint64
	clock  timebase
	log    bool // keep log records
	quiet  bool // render none: they are kept for a page, not printed
	hidden bool // -follow leaves this user's lines out
	rend   renderer
	faulty bool // faults are injected: watch for outages, tend links
	late   bool // comes online late, and learns the rooms by a state transfer
	listen bool // news of late joiners may come at any time
}

// lineWriter takes a user's rendered log lines: the run's sink in real
// time, a buffer of the user's own in lockstep, which the coordinator
// writes out in uid order.
type lineWriter interface{ Write(p []byte) }

// newUser returns user uid, connected to net; its lines go to out, and its
// records to keep unless that is nil.
func newUser(net *Network, uid int32, o userOptions, out lineWriter, keep recordKeeper) *User {
	rng := rand.New(rand.NewPCG(o.seed, uint64(uid)))
	port := net.connect(uid, rng, o.seed)
	u := &User{
		UID:          uid,
		UserChannel:  make(chan Online, 16),
		EventChannel: port.channel(),
		view:         NewView(uid, o.log),
		rng:          rng,
		port:         port,
		opts:         o,
		out:          out,
		keep:         keep,
		tickAt:       -1,
		online:       !o.late,
	}
	if !o.clock.virtual {
		u.lat = new(hist)
	}
	return u
}

// roll is one tick of the user's own will: with probability chance it picks
// one of three actions with equal odds. It returns the event to send, if any.
func (u *User) roll(now time.Duration) *Event {
	u.ticks++
	if u.rng.Float64() >= u.opts.chance {
		return nil
	}
	u.acted++
	v := u.view
	switch u.rng.IntN(3) {
	case 0:
		return v.Create(pickGroup(u.rng, u.opts.users, u.UID, v.Known()), now)
	case 1:
		return v.Send(u.pick(v.RoomCount()), now)
	default:
		return v.Close(u.pick(v.RoomCount()), now)
	}
}

func (u *User) pick(n int) int {
	if n == 0 {
		return 0
	}
	return u.rng.IntN(n)
}

// fanOut sends ev to its recipients: every other member for a message,
// every other known user for a create or a close.
func (u *User) fanOut(ev *Event) {
	if ev == nil {
		return
	}
	if trace.IsEnabled() {
		ctx, task := trace.NewTask(context.Background(), "chatsim "+ev.Kind.String())
		defer task.End()
		trace.Logf(ctx, "send", "%s %s chat %s", uidName(u.UID), ev.Kind, ev.Room)
		ev.task = ctx
		defer trace.StartRegion(ctx, "fan-out").End()
	}
	if ev.Kind == MessageEvent {
		for r := range ev.Group.All() {
			if r != u.UID {
				u.port.send(r, ev)
			}
		}
		return
	}
	for r := int32(1); r <= u.view.Known(); r++ {
		if r != u.UID {
			u.port.send(r, ev)
		}
	}
}

// learn takes news of users online. The news of a late joiner is counted
// in flight until every user has it: see join.
func (u *User) learn(o Online, now time.Duration) {
	u.view.Learn(o.First, o.Last, now)
	if o.Epoch != 0 {
		u.port.retireNews(o.Epoch)
	}
}

// canAct reports whether the user may act: it is online and, if it came
// late, has the rooms.
func (u *User) canAct() bool { return u.online && u.joinPhase == notJoining }

// presence notices, at a tick, whether the user has gone offline or come
// online, and logs it. A user back from an outage kept its memory; it
// catches up as its peers, hearing from it again, resend what it missed
// (see link).
func (u *User) presence(now time.Duration) {
	away := u.port.away()
	switch {
	case away && u.online:
		u.online, u.awaySince = false, now
		u.view.record(Record{T: now, Kind: KindOffline})
	case !away && !u.online:
		u.online = true
		if u.opts.late && u.joinPhase == notJoining && u.joinEpoch == 0 {
			u.joinPhase, u.joinEpoch = awaitNews, u.port.epoch()
			break
		}
		u.view.record(Record{T: now, Kind: KindBack, Away: now - u.awaySince})
	}
}

// joinPhase is where a late joiner is on its way in.
type joinPhase uint8

// A late joiner's way in. The others learn of it at about the same time,
// but each sends without it in mind until it has the news: those events
// never reach it, and a state transfer from a peer must carry their
// effect. So the joiner waits, by the two phases of View's argument, until
// the stable epoch has passed its news (every user has it) and then the
// horizon noted then (everything sent by a user without the news has been
// applied everywhere, the peer included). Then it asks a random peer for
// its rooms; the answer, merged with whatever events have reached it
// meanwhile, is the state everyone converges to. It acts only once it has
// it.
const (
	notJoining   joinPhase = iota
	awaitNews              // until stable passes joinEpoch, the news's epoch or later
	awaitHorizon           // until stable passes joinEpoch, the horizon then
	awaitState             // asked; until the state arrives
)

// join moves a late joiner on its way in.
func (u *User) join(now time.Duration) {
	if u.joinPhase != awaitNews && u.joinPhase != awaitHorizon {
		return
	}
	w, h := u.port.stability()
	if w <= u.joinEpoch {
		return
	}
	if u.joinPhase == awaitNews {
		u.joinPhase, u.joinEpoch = awaitHorizon, h
		return
	}
	peer := 1 + int32(u.rng.IntN(int(u.UID)-1)) // user_1 to user_{self-1}, all online before it
	u.port.send(peer, &Event{Kind: StateRequestEvent, From: u.UID, Sent: now, Epoch: u.port.countOne()})
	u.joinPhase = awaitState
}

// tendLinks sends what the user owes beyond its actions: its rooms to late
// joiners that asked, a late joiner's own request, and what the links owe.
func (u *User) tendLinks(now time.Duration) {
	// A late joiner asked may be one itself: it answers once it has the
	// rooms.
	if u.joinPhase == notJoining {
		for _, r := range u.replyTo {
			e := u.port.countOne()
			u.view.SetEpoch(e)
			u.port.send(r, &Event{Kind: StateEvent, From: u.UID, Sent: now, Epoch: e, State: u.view.Snapshot()})
		}
		u.replyTo = u.replyTo[:0]
	}
	u.join(now)
	u.port.tend(now)
}

// flushLog renders the view's new records and hands them to out, and to
// keep when the run keeps them.
func (u *User) flushLog() {
	recs := u.view.Records()
	if len(recs) == 0 {
		return
	}
	if u.keep != nil {
		u.keep.keep(recs)
		u.keepOrStop()
	}
	if !u.opts.quiet && !u.opts.hidden {
		for i := range recs {
			u.buf = u.opts.rend.append(u.buf, &recs[i])
		}
		u.out.Write(u.buf)
		u.buf = u.buf[:0]
	}
	u.view.ResetRecords()
}

// keepOrStop stops the view making records once nothing more of them is
// printed or kept.
func (u *User) keepOrStop() {
	if u.keep != nil && (u.opts.quiet || u.opts.hidden) && u.keep.full() {
		u.view.KeepRecords(false)
		u.keep = nil
	}
}

// publish brings the gauges the sampler reads up to date.
func (u *User) publish() {
	u.deliveriesGauge.Store(u.view.Deliveries)
	u.liveGauge.Store(int64(u.view.LiveCount()))
}

// gauge is the user's live rooms and deliveries as last published.
func (u *User) gauge() (live, deliveries int64) {
	return u.liveGauge.Load(), u.deliveriesGauge.Load()
}

// figures reports the user's figures. Call it once the user has exited.
func (u *User) figures() userFigures {
	return userFigures{
		Ticks: u.ticks, Skipped: u.skipped, Acted: u.acted,
		Sent:      u.port.sentCount(),
		Held:      int64(u.view.HeldCount()),
		Counts:    u.view.Counts,
		Latency:   u.lat,
		Transport: u.port.tx,
	}
}

// finalView is the user's view once it has exited.
func (u *User) finalView() *View { return u.view }

// runReal is the user's loop in real time. Events are applied as they
// arrive. Everything else comes down the same channel too: the clock's tick
// markers and the stop marker. So an idle user waits on a plain receive,
// or on a select of its own channel and its delay timer while deliveries
// are held back by -delay.
func (u *User) runReal() {
	news := u.UserChannel // news comes only before the first tick
	wake := time.NewTimer(time.Hour)
	wake.Stop()
	defer wake.Stop()
	wakeAt := time.Duration(-1)
	for !u.stopping {
		// Wait on the user's own channel; on announcements only before
		// the first tick, and on the delay timer only while deliveries
		// are held back.
		var wakeC <-chan time.Time
		if at, ok := u.port.nextDue(); ok {
			if at != wakeAt {
				wakeAt = at
				wake.Reset(at - u.opts.clock.now())
			}
			wakeC = wake.C
		}
		var d Delivery
		if news == nil && wakeC == nil {
			d = <-u.EventChannel
		} else {
			select {
			case d = <-u.EventChannel:
			case o := <-news:
				u.learn(o, u.opts.clock.now())
				continue
			case <-wakeC:
				wakeAt = -1
				now := u.opts.clock.now()
				u.applyDue(now)
				u.takeBacklog(now)
				u.endBatch()
				continue
			}
		}
		now := u.opts.clock.now()
		u.handle(d, now)
		for n := len(u.EventChannel); n > 0 && !u.stopping; n-- {
			u.handle(<-u.EventChannel, now)
		}
		if u.tickAt >= 0 && news != nil {
			// The clock starts once every user is online: whatever news
			// is queued is learned before the user acts.
			for len(news) > 0 {
				u.learn(<-news, now)
			}
			if !u.opts.listen {
				news = nil
			}
		}
		u.takeBacklog(now)
		// A marker taken while blocked in a send lands in the backlog and
		// sets tickAt again: run it now, not at the next arrival.
		for u.tickAt >= 0 {
			u.tick(now)
		}
		u.endBatch()
	}
	u.drain()
}

// endBatch ends a batch of work in real time: the log lines go out, the
// room of applied deliveries goes back to the network, and the gauges
// are brought up to date.
func (u *User) endBatch() {
	u.flushLog()
	u.port.retireApplied()
	u.publish()
}

// tick rolls for an action, unless the tick is stale: a user that is behind
// by more than a tick skips it rather than add to the load. Everything sent
// to the user before the tick marker has been applied by now.
func (u *User) tick(now time.Duration) {
	at := u.tickAt
	u.tickAt = -1
	u.applyDue(now)
	u.port.retireApplied()
	if u.opts.faulty {
		u.presence(now)
	}
	switch {
	case !u.canAct(), u.stopping && u.opts.faulty: // in the drain, a tick only tends links
	case u.stopping || now-at >= u.opts.tick:
		u.skipped++
	default:
		u.act(now)
	}
	if u.opts.faulty && u.online {
		u.tendLinks(now)
	}
	u.takeBacklog(u.opts.clock.now())
}

// takeBacklog handles what the user received while blocked in a send:
// with faults a send can happen outside a tick too, when a link resends on
// what arrives.
func (u *User) takeBacklog(now time.Duration) {
	for d, ok := u.port.nextBacklog(); ok; d, ok = u.port.nextBacklog() {
		u.handle(d, now)
	}
}

// act reserves room for the widest fan-out, rolls, and sends what the
// view made: an action the view has made must be sent. If the network is
// full, the tick is skipped.
func (u *User) act(now time.Duration) {
	widest := int64(u.view.Known() - 1)
	e, ok := u.port.reserve(widest)
	if !ok {
		u.skipped++
		return
	}
	u.view.SetEpoch(e)
	u.fanOut(u.roll(now))
	u.port.unreserve()
}

// handle applies a delivery now, or holds it until its injected delay has
// passed. A marker is noted for the loop: a tick to run after the batch
// (a second tick before the first ran is skipped), or the stop.
func (u *User) handle(d Delivery, now time.Duration) {
	switch d.Event {
	case tickMark:
		if u.tickAt >= 0 {
			u.skipped++
		}
		u.tickAt = d.Due
		return
	case stopMark:
		u.stopping = true
		return
	}
	if d.Due > now {
		u.port.wait(d)
		return
	}
	u.receive(d, now)
}

// receive takes a transmission that is due: its payload, if the network
// let it through and it is not a duplicate, is applied. A user that has
// not yet noticed, at its tick, that it is back online takes nothing in:
// its own log says when it is away, and nothing is applied while the log
// says so.
func (u *User) receive(d Delivery, now time.Duration) {
	if !u.online {
		u.port.lose()
		return
	}
	if ev := u.port.arrive(d, now); ev != nil {
		u.apply(ev, now)
	}
}

// apply applies one event from a peer: a room event to the view; a late
// joiner's request is answered at the next tick; a state transfer is
// merged.
func (u *User) apply(ev *Event, now time.Duration) {
	switch ev.Kind {
	case StateRequestEvent:
		u.view.SetEpoch(ev.Epoch)
		u.replyTo = append(u.replyTo, ev.From)
	case StateEvent:
		u.view.ApplyState(ev, now)
		u.joinPhase = notJoining
		u.port.hasState()
	default:
		u.view.Apply(ev, now)
		if u.lat != nil {
			u.lat.add(now - ev.Sent)
		}
	}
	if ev.task != nil {
		// Log the delivery to the task of the action that sent it.
		trace.Log(ev.task, "deliver", uidName(u.UID))
	}
	u.port.delivered(ev)
}

// applyDue applies the held deliveries that are due, then reclaims what
// the network's stability allows.
func (u *User) applyDue(now time.Duration) {
	for d, ok := u.port.popDue(now); ok; d, ok = u.port.popDue(now) {
		u.receive(d, now)
	}
	u.view.Expire(u.port.reclaimStability())
}

// drain runs after the stop: the user no longer acts, but keeps applying
// what others send until every user has stopped sending; then it applies
// everything still on its way, delays or not, and settles its view.
//
// With faults, the clock goes on ticking in the drain: on each tick the
// user tends its links, so that retransmission wins against the loss that
// goes on, and late joiners get their state. The network is silent once
// every user has stopped acting and nothing is in flight; then each user
// stops sending too, and takes what still comes until all have stopped.
func (u *User) drain() {
	u.port.hangUp()
	for waiting := true; waiting; u.endBatch() {
		select {
		case d := <-u.EventChannel:
			now := u.opts.clock.now()
			u.handle(d, now)
			u.takeBacklog(now)
			for u.tickAt >= 0 {
				u.tick(now)
			}
		case o := <-u.UserChannel:
			u.learn(o, u.opts.clock.now())
		case <-u.port.silent():
			waiting = false
		}
	}
	now := u.opts.clock.now()
	if u.opts.faulty {
		u.port.hush()
		for hushing := true; hushing; {
			select {
			case d := <-u.EventChannel:
				u.handle(d, now)
			case <-u.port.allHushed():
				hushing = false
			}
		}
	}
	// Every send has completed: what is on the channel is all there is.
	u.takeBacklog(now)
	for len(u.EventChannel) > 0 {
		u.handle(<-u.EventChannel, now)
	}
	for d, ok := u.port.popDue(forever); ok; d, ok = u.port.popDue(forever) {
		u.receive(d, now)
	}
	u.view.Finish()
	u.endBatch()
}

// forever is a time later than any delivery is due.
const forever = time.Duration(1<<63 - 1)

// phase is one step of the lockstep coordinator. A user starts a phase
// when a start marker (a Delivery without an event) reaches it on its
// EventChannel; the coordinator fills in the phase and its next before it
// sends the markers, so a user that has the marker may read them without a
// lock. A user that has finished the phase says so on done.
type phase struct {
	tick  int64
	act   bool // roll for actions; off while draining
	final bool // settle and exit
	done  *sync.WaitGroup
	next  *phase
}

// runFast is the user's loop in lockstep: the coordinator releases one
// phase at a time and waits until every user has finished it. On tick t a
// user applies every delivery due by t in canonical order (send time, then
// sender, then the sender's clock), then rolls its action. Nothing in a tick
// depends on the scheduler, so a run is a function of its flags and seed.
func (u *User) runFast(first *phase) {
	news := u.UserChannel // news comes only before the first tick, unless late joiners may come
	for p := first; ; p = p.next {
		u.await(news)
		if !u.opts.listen {
			news = nil
		}
		// Every announcement was sent before the phase started: at the
		// start, or for a late joiner at the end of the last tick.
		now := time.Duration(p.tick) * u.opts.tick
		for len(u.UserChannel) > 0 {
			u.news = append(u.news, <-u.UserChannel)
		}
		for _, o := range u.news {
			u.learn(o, max(0, now-u.opts.tick))
		}
		u.news = u.news[:0]
		u.keepOrStop() // the recording filled up in the last phase
		if p.final {
			u.view.Finish()
			u.flushLog()
			u.publish()
			p.done.Done()
			return
		}
		u.view.SetEpoch(u.port.epoch())
		u.view.Expire(u.port.reclaimStability())
		if u.opts.faulty {
			u.presence(now)
		}
		u.port.eachDue(p.tick, func(d Delivery) { u.receive(d, now) })
		if p.act && u.canAct() {
			u.fanOut(u.roll(now))
		}
		if u.opts.faulty && u.online {
			u.tendLinks(now)
		}
		u.port.retireApplied()
		u.flushLog()
		u.publish()
		p.done.Done()
	}
}

// await takes deliveries until the coordinator's start marker, which it
// sends down the channel behind every delivery of the last phase, and
// announcements while news is not nil, which the phase learns at its start:
// however they interleave with deliveries, a phase learns the same news at
// the same time. Waiting on the user's own channel, not on one that every
// user shares, keeps the users from contending for one lock.
func (u *User) await(news <-chan Online) {
	for {
		var d Delivery
		if news == nil {
			d = <-u.EventChannel
		} else {
			select {
			case d = <-u.EventChannel:
			case o := <-news:
				u.news = append(u.news, o)
				continue
			}
		}
		if d.Event == nil {
			return
		}
		u.port.file(d)
	}
}

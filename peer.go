package main

import (
	"iter"
	"math/rand/v2"
	"time"
)

// Peer is one user's whole protocol as a pure step machine: its view of the
// rooms (View), its will (a roll of its own random source each tick), the
// fan-out of what it does, its links to the others (with faults), what it
// learns of stability from the others' reports (stability), noticing that
// it is offline or back, and a late joiner's way in. Step takes one input
// (a delivery, a tick, news of users online at the start, an action asked
// for) and does what it means; what the peer sends goes out through its
// port as it is made, in order, and what it logs waits in Records. There
// are no goroutines, channels or clocks inside: the time and the tick come
// with each input, so a test can drive a peer step by step, and a run
// replays. A thin driver in each mode (see realtime.go and lockstep.go)
// moves inputs in and transmissions out.
//
// A peer knows only what it was sent, its own tick and its own random
// source. What the network could count across users (what is in flight,
// who is online) never reaches it; its port tells it only whether the
// network takes an action's sends now, as a socket tells a program that
// its buffer is full.
type Peer struct {
	uid   int32
	cfg   peerConfig
	view  *View
	rng   *rand.Rand // the user's own source: its rolls, its groups, whom a late joiner asks
	links *links     // nil unless the network may lose or repeat what is sent
	stab  *stability

	tick       uint64        // the user's own tick, as of its last tick input
	online     bool          // as it last noticed, at a tick
	awaySince  time.Duration // the start of its last outage
	lastReport uint64        // the tick of its last report
	lastNews   uint64        // the tick it last told its children of stability
	fromParent bool          // its parent's news came since it last told its own
	replyTo    []int32       // users that asked for this user's rooms
	recent     []*Event      // with crashes: creates and closes it applied, not known stable (see welcome)

	// A late joiner's way in, and a restarted user's: see arrival and
	// restart.
	stage     arrival
	helloAt   uint64     // the epoch of its hello, or of its restart
	welcomed  []bool     // after a restart, by uid: the peer has fenced its earlier selves
	waiting   int        // peers that have not yet welcomed it
	relays    []*Event   // what welcomes relayed of its earlier selves, to send again
	greetedAt uint64     // the tick it last told the others it restarted
	coverTo   uint64     // once its hello is stable, the horizon then: a state complete past it covers everything it missed
	doneAt    uint64     // the epoch its view became complete
	askedAt   uint64     // the tick it last asked a peer for its rooms
	onlineAt  uint64     // the tick it came online
	roomsAt   uint64     // the tick it first had the rooms
	doneTick  uint64     // the tick its view became complete
	awayTicks uint64     // ticks it was offline before it had the rooms
	early     []Delivery // without links: what reached it online before it noticed it was (see deliver)

	taken, takenNow       int64 // counted events it applied: 8 times the recent average a tick, and since its last tick
	ticks, skipped, acted int64 // rolls, ticks not served, rolls that acted
	reports, news         int64 // transmissions of a report alone, and of news to children
	tombsPeak             int   // the most tombstones its view kept at once
}

// peerConfig is what a peer acts by.
type peerConfig struct {
	users     int     // in the run: every user, the width of a member set
	chance    float64 // of acting on a tick
	faulty    bool    // faults are injected: notice outages and coming online
	links     bool    // the network may lose or repeat what is sent: keep links
	latecomer bool    // comes online late, and learns the rooms by a state transfer
	crash     bool    // users crash: a send is settled when acknowledged, and restarted users are welcomed
	inc       uint32  // this incarnation: 0 at the start, the restart tick after a restart
	timing    linkTiming
	log       bool  // keep log records
	names     namer // the run's, shared by every user
}

// port is a peer's end of the network as the peer sees it. The peer hands
// it each transmission as it makes it; the network decides when it is due
// and what becomes of it. The peer learns from it only whether an action's
// sends fit now (admit): the backpressure of a full network, an
// observation of its own send. The rest tells the run what the peer did,
// for its counts; nothing comes back from them.
type port interface {
	transmit(to int32, d Delivery, k txKind, now time.Duration)
	// transmitAll is the first transmission of payload ev to every user
	// recipients(ev, ev.From, known) yields, at ev.Sent, as transmit to
	// each in that order would be; a network may carry it as one.
	transmitAll(ev *Event, known int32)
	admit(k int64) bool                   // room for a broadcast's or an action's at most k sends
	release()                             // what admit reserved and was left unsent
	applied(ev *Event, now time.Duration) // a payload was applied
	dropped()                             // a transmission reached the peer while it was away
	caughtUp()                            // a late joiner's view is complete
}

// txKind is what a transmission is, for the network's counts and draws.
type txKind uint8

const (
	txFirst   txKind = iota + 1 // a payload's first transmission
	txResend                    // a payload again, by the links
	txControl                   // an acknowledgement, a gap report, or the report tree's, sent once
)

// arrival is where a late joiner is on its way in.
//
// A late joiner is a member of the run from the start, offline until it
// comes online. Then it says hello to every user before it (a counted
// broadcast, which tells them it is online) and asks two of them for their
// rooms at once, and two others every askTicks until an answer comes: with
// the rooms it acts. But the answer may miss what was sent
// before the others knew of the joiner and had not yet reached the peer
// that answered. Those sends all precede the hello's stability: once W
// passes the hello, everyone has applied it, and everything sent without
// the joiner in mind was sent in an epoch no later than the horizon then
// (coverTo). So the joiner goes on asking, every pullTicks, until an
// answer comes from a peer whose view is complete past coverTo; a room's
// state is a max-register per group, so each answer merged with whatever
// reached the joiner converges. Until its view is complete the joiner may
// act on a room that is closed elsewhere: see latecomerGuard.
type arrival uint8

const (
	settled    arrival = iota // online from the start, or its view is complete
	awaitRooms                // asked; until the rooms come
	catchingUp                // has rooms; until its view is complete
	notYetOnline
)

// restarted reports whether this peer is a user's later incarnation.
func (p *Peer) restarted() bool { return p.cfg.inc > 0 }

// How often a late joiner asks: askTicks until it has the rooms, then
// pullTicks until its view is complete; and how many peers at a time.
const (
	askTicks  = 3
	pullTicks = 5
	askAtOnce = 2
)

// newPeer returns user uid's peer, rolling with rng.
func newPeer(uid int32, cfg peerConfig, rng *rand.Rand) *Peer {
	p := &Peer{uid: uid, cfg: cfg, rng: rng, online: !cfg.latecomer, stab: newStability(uid, cfg.users)}
	p.stab.inc = cfg.inc
	p.view = NewView(uid, cfg.log)
	if cfg.names != nil {
		p.view.book = cfg.names
	}
	if !cfg.crash {
		p.view.stab = p.stab // else a send is settled by its acknowledgement: see links
	}
	if cfg.links {
		p.links = newLinks(uid, cfg.timing, cfg.inc)
		if cfg.crash {
			p.links.settled = p.stab
		}
	}
	if cfg.latecomer {
		p.stage = notYetOnline
	}
	if p.restarted() {
		p.view.inc = cfg.inc
		p.online, p.stage, p.stab.hold = true, awaitRooms, true
		p.welcomed, p.waiting = make([]bool, cfg.users+1), cfg.users-1
	}
	return p
}

// Input is one thing that happens to a peer. Each field is what the user
// itself sees: a transmission addressed to it, its own tick, whether it
// has a connection, what the run lets it do, who was there when it
// started. None is a count the network keeps across users.
type Input struct {
	Kind inputKind
	Now  time.Duration

	D Delivery // deliverInput: a transmission that is due

	// tickInput (and restartInput, which starts a user's new
	// incarnation): the user's own tick; the deliveries due now, in order;
	// whether the run lets it act; whether it is offline.
	Tick uint64
	Due  func(apply func(Delivery))
	Act  actChoice
	Away bool

	Last int32 // newsInput: users up to Last were online at the start

	Proposal Proposal // proposeInput
}

// Proposal is an action a user is asked to take, as etcd raft's
// application proposes: the tick's roll makes the same three at random.
type Proposal struct {
	Kind  EventKind // CreateEvent, MessageEvent or CloseEvent
	Group *Group    // create: the members
	Room  Stamp     // message, close: the room, one the user is in
}

// inputKind says what an Input is.
type inputKind uint8

const (
	deliverInput inputKind = iota + 1
	tickInput
	newsInput
	proposeInput
	restartInput
)

// actChoice is what the run lets a user do on a tick.
type actChoice uint8

const (
	actNone actChoice = iota // tend only: a tick in the drain
	actSkip                  // a tick not served: late, or stopping
	actRoll                  // roll for an action
)

// Step takes one input. What the peer sends goes out through out as it is
// made; what it logs is in Records.
func (p *Peer) Step(in Input, out port) {
	switch in.Kind {
	case deliverInput:
		p.deliver(in.D, in.Now, out)
	case tickInput:
		p.onTick(&in, out)
	case newsInput:
		p.view.Learn(in.Last, in.Now)
	case proposeInput:
		p.propose(in.Proposal, in.Now, out)
	case restartInput:
		p.tick = max(p.tick, in.Tick)
		p.view.SetEpoch(p.tick)
		p.restart(in.Now, out)
	}
}

// propose takes the action asked for, as a roll would, and sends what the
// view made. A message or a close needs a room the user is in: without
// one, nothing happens.
func (p *Peer) propose(a Proposal, now time.Duration, out port) {
	v := p.view
	var ev *Event
	switch i := v.RoomIndex(a.Room); {
	case a.Kind == CreateEvent:
		ev = v.Create(a.Group, now)
	case i < 0:
	case a.Kind == MessageEvent:
		ev = v.Send(i, now)
	case a.Kind == CloseEvent:
		ev = v.Close(i, now)
	}
	p.fanOut(ev, now, out)
}

// onTick is one tick of the user: it learns what stability the reports
// allow (at the root) and reclaims by what it knows, notices whether it
// is offline or back, applies what is due, rolls for an action, and
// tends what it owes beyond its actions.
func (p *Peer) onTick(in *Input, out port) {
	now := in.Now
	p.tick = max(p.tick, in.Tick)
	p.taken += p.takenNow - p.taken/8
	p.takenNow = 0
	v := p.view
	v.SetEpoch(p.tick)
	p.stab.settle(v.epoch, p.tick)
	v.Expire(p.stab.reclaim())
	if p.cfg.crash {
		p.forgetStable()
		if p.stage == settled {
			v.ReleaseBelow(p.stab.stable, now)
		}
	}
	p.tombsPeak = max(p.tombsPeak, v.tombs.len())
	if p.cfg.faulty {
		p.presence(in.Away, now, out)
	}
	if !p.online && p.stage == awaitRooms {
		p.awayTicks++
	}
	if in.Due != nil {
		in.Due(func(d Delivery) { p.deliver(d, now, out) })
	}
	if p.canAct() {
		switch in.Act {
		case actSkip:
			p.skipped++
		case actRoll:
			p.act(now, out)
		}
	}
	if p.online {
		p.tend(now, out)
	}
}

// canAct reports whether the user may act: it is online and, if it came
// late, has the rooms.
func (p *Peer) canAct() bool { return p.online && (p.stage == settled || p.stage == catchingUp) }

// presence notices, at a tick, whether the user has gone offline or come
// online, and logs it. A user back from an outage kept its memory; it
// catches up as its peers, hearing from it again, resend what it missed
// (see links). A late joiner coming online starts on its way in.
func (p *Peer) presence(away bool, now time.Duration, out port) {
	switch {
	case away && p.online:
		p.online, p.awaySince = false, now
		p.view.record(Record{T: now, Kind: KindOffline})
	case !away && !p.online:
		p.online = true
		if p.stage == notYetOnline {
			p.comeOnline(now, out)
			break
		}
		p.view.record(Record{T: now, Kind: KindBack, Away: now - p.awaySince})
	}
}

// comeOnline starts a late joiner on its way in: every user before it came
// online before it, it says hello to them, and asks two for their rooms.
func (p *Peer) comeOnline(now time.Duration, out port) {
	v := p.view
	v.Learn(p.uid-1, now)
	p.stage, p.helloAt, p.onlineAt = awaitRooms, v.epoch, p.tick
	p.broadcast(&Event{Kind: HelloEvent, From: p.uid, Sent: now, Epoch: v.epoch}, now, out)
	p.ask(now, out)
	for _, d := range p.early {
		p.deliver(d, now, out)
	}
	p.early = nil
}

// ask asks users before it for their rooms: two at random, different
// when there are two, so that one offline or cut off delays nothing.
func (p *Peer) ask(now time.Duration, out port) {
	first := int32(0)
	for range min(askAtOnce, int(p.uid)-1) {
		peer := 1 + int32(p.rng.IntN(int(p.uid)-1))
		if peer == first {
			peer = peer%(p.uid-1) + 1
		}
		first = peer
		p.send(peer, p.stamp(&Event{Kind: StateRequestEvent, From: p.uid, Sent: now, Epoch: p.view.epoch}), out)
	}
	p.askedAt = p.tick
}

// act asks the network for room for the widest fan-out, rolls, and sends
// what the view made: an action the view has made must be sent. If the
// network is full, the tick is skipped.
func (p *Peer) act(now time.Duration, out port) {
	if !out.admit(int64(p.view.Known() - 1)) {
		p.skipped++
		return
	}
	p.fanOut(p.roll(now), now, out)
	out.release()
}

// roll is one tick of the user's own will: with probability chance it picks
// one of three actions with equal odds. It returns the event to send, if any.
func (p *Peer) roll(now time.Duration) *Event {
	p.ticks++
	if p.rng.Float64() >= p.cfg.chance {
		return nil
	}
	p.acted++
	v := p.view
	switch p.rng.IntN(3) {
	case 0:
		return v.Create(p.cfg.names.name(pickGroup(p.rng, p.cfg.users, p.uid, v.Known()), v.NextStamp().pack()), now)
	case 1:
		return v.Send(p.pick(v.RoomCount()), now)
	default:
		return v.Close(p.pick(v.RoomCount()), now)
	}
}

func (p *Peer) pick(n int) int {
	if n == 0 {
		return 0
	}
	return p.rng.IntN(n)
}

// fanOut sends ev, an action's event, to its recipients: a message to the
// other members, counted; a create or a close to everyone.
func (p *Peer) fanOut(ev *Event, now time.Duration, out port) {
	if ev == nil {
		return
	}
	if ev.Kind != MessageEvent {
		p.broadcast(ev, now, out)
		return
	}
	p.stab.count(ev.Epoch, int64(ev.Group.Size()-1), true)
	p.stamp(ev)
	p.sendAll(ev, out)
}

// sendAll sends payload ev to its recipients: over their links with
// faults, or as one to all.
func (p *Peer) sendAll(ev *Event, out port) {
	if p.links == nil {
		out.transmitAll(ev, p.view.Known())
		return
	}
	for r := range recipients(ev, p.uid, p.view.Known()) {
		p.send(r, ev, out)
	}
}

// broadcast sends ev to every other user it knows. Its parent in the
// report tree is one of them, so the report it owes, if any, rides on it
// (this broadcast counted in it, if ev is counted); and its children
// learn what it knows of stability.
func (p *Peer) broadcast(ev *Event, now time.Duration, out port) {
	s := p.stab
	if counted(ev.Kind) {
		s.count(ev.Epoch, int64(p.view.Known()-1), true)
	}
	if !s.root() && p.tick > p.lastReport && s.owes(p.arrivalNote()) {
		ev.Report, p.lastReport = s.report(p.view.epoch, p.arrivalNote()), p.tick
	}
	p.stamp(ev)
	s.told, s.kidsSaid, p.lastNews = ev.Word, false, p.tick
	p.sendAll(ev, out)
}

// stamp sets what every transmission of ev tells its recipients of
// stability, what its sender knows, and whose it is.
func (p *Peer) stamp(ev *Event) *Event {
	ev.Word, ev.Inc = p.stab.word(), p.cfg.inc
	return ev
}

// arrivalNote is this user's word on its own way in, for its reports.
func (p *Peer) arrivalNote() arrivalNote {
	if !p.cfg.latecomer && !p.restarted() {
		return arrivalNote{}
	}
	return arrivalNote{Hello: p.helloAt, Done: p.doneAt}
}

// counted reports whether events of kind k are counted for stability:
// what changes rooms, what is owed to members, a late joiner's hello,
// whose stability tells it that everyone knows it, and a restarted user's
// rooms, which W must not pass until everyone has them.
func counted(k EventKind) bool { return k <= CloseEvent || k == HelloEvent || k == RoomsEvent }

// recipients are the users an event from self goes to, when self knows
// user_1..user_known: every other member for a message, every other known
// user for anything else.
func recipients(ev *Event, self, known int32) iter.Seq[int32] {
	return func(yield func(int32) bool) {
		if ev.Kind == MessageEvent {
			for r := range ev.Group.All() {
				if r != self && !yield(r) {
					return
				}
			}
			return
		}
		for r := int32(1); r <= known; r++ {
			if r != self && !yield(r) {
				return
			}
		}
	}
}

// fanOutSize is how many users recipients(ev, ev.From, known) yields.
func fanOutSize(ev *Event, known int32) int32 {
	if ev.Kind == MessageEvent {
		n := int32(ev.Group.Size())
		if ev.Group.Has(ev.From) {
			n--
		}
		return n
	}
	if ev.From <= known {
		return known - 1
	}
	return known
}

// reaches reports whether recipients(ev, ev.From, known) yields r.
func reaches(ev *Event, known, r int32) bool {
	if r == ev.From {
		return false
	}
	if ev.Kind == MessageEvent {
		return ev.Group.Has(r)
	}
	return r <= known
}

// transmitEach transmits payload ev to each of its recipients in turn: a
// port's transmitAll where the network carries each on its own.
func transmitEach(out interface {
	transmit(int32, Delivery, txKind, time.Duration)
}, ev *Event, known int32) {
	for r := range recipients(ev, ev.From, known) {
		out.transmit(r, Delivery{Event: ev}, txFirst, ev.Sent)
	}
}

// send sends one payload to r: over its link with faults, or as it is.
func (p *Peer) send(r int32, ev *Event, out port) {
	if p.links != nil {
		p.links.send(out, r, ev, ev.Sent)
		return
	}
	out.transmit(r, Delivery{Event: ev}, txFirst, ev.Sent)
}

// deliver takes a transmission that is due: its payload, if the links let
// it through and it is not a duplicate, is applied. A user that has not
// yet noticed, at its tick, that it is back online takes nothing in: its
// own log says when it is away, and nothing is applied while the log says
// so. A late joiner without links keeps it instead, and applies it once
// it has come online: in real time what a later joiner sends (its hello
// first), or a user that heard it, can reach it before its own tick does,
// and without links nothing would send it again.
func (p *Peer) deliver(d Delivery, now time.Duration, out port) {
	if !p.online {
		if p.stage == notYetOnline && p.links == nil {
			p.early = append(p.early, d)
			return
		}
		out.dropped()
		return
	}
	ev := d.Event
	if p.links != nil {
		var renewed bool
		if ev, renewed = p.links.arrive(out, d, now); renewed {
			p.renewed(d.Event.From, d.Event.Inc, now, out)
		}
		if ev == nil {
			return
		}
	}
	p.stab.heard(ev.Word, p.tick)
	if r := ev.Report; r != nil && treeParent(ev.From) == p.uid {
		p.stab.take(ev.From, r)
	}
	switch ev.Kind {
	case HelloEvent:
		p.view.SetEpoch(ev.Epoch)
		p.view.Learn(ev.From, now)
		if !p.cfg.crash {
			p.stab.count(ev.Epoch, 1, false)
		}
	case RestartEvent: // the links have renewed, and welcomed it
	case WelcomeEvent:
		p.welcome(ev, now)
	case RoomsEvent:
		p.view.ApplyState(ev, now, false)
		for _, r := range ev.Relay {
			p.view.TakeRelayed(r, ev.From, now)
		}
		p.recent = append(p.recent, ev.Relay...) // should its sender crash again
	case ReportEvent:
	case NewsEvent:
		p.fromParent = p.fromParent || ev.From == p.stab.parent
	case StateRequestEvent:
		p.view.SetEpoch(ev.Epoch)
		p.replyTo = append(p.replyTo, ev.From)
	case StateEvent:
		p.takeState(ev, now, out)
	default:
		p.view.Apply(ev, now)
		if p.cfg.crash && ev.Kind != MessageEvent {
			p.recent = append(p.recent, ev)
		}
	}
	if counted(ev.Kind) {
		p.takenNow++
	}
	out.applied(ev, now)
}

// takeState merges a peer's rooms, on a late joiner's way in.
func (p *Peer) takeState(ev *Event, now time.Duration, out port) {
	if p.stage == settled {
		return // an answer to a question asked before the view was complete
	}
	first := p.stage == awaitRooms
	p.view.Learn(ev.Known, now)
	p.view.ApplyState(ev, now, first)
	if first {
		p.stage, p.roomsAt = catchingUp, p.tick
	}
	if p.coverTo != 0 && ev.Covers > p.coverTo {
		p.stage, p.doneAt, p.doneTick = settled, p.view.epoch, p.tick
		out.caughtUp()
	}
}

// tend sends what the user owes beyond its actions: its rooms to users
// that asked, a late joiner's questions, its report and news in the
// report tree, and what the links owe.
func (p *Peer) tend(now time.Duration, out port) {
	// A late joiner asked may be one itself: it answers once it has rooms,
	// and says whether its view is complete.
	if p.stage == settled || p.stage == catchingUp {
		for _, r := range p.replyTo {
			st := &Event{Kind: StateEvent, From: p.uid, Clock: p.view.clock, Sent: now, Epoch: p.view.epoch, State: p.view.Snapshot(), Known: p.view.Known()}
			if p.stage == settled {
				st.Covers = p.stab.stable
			}
			p.send(r, p.stamp(st), out)
		}
		p.replyTo = p.replyTo[:0]
	}
	switch {
	case p.restarted(): // its welcomes bring the rooms: see restart.go
	case p.stage == awaitRooms:
		if p.tick >= p.askedAt+askTicks {
			p.ask(now, out)
		}
	case p.stage == catchingUp:
		if p.coverTo == 0 && p.stab.stable > p.helloAt {
			p.coverTo = max(p.stab.horizon, p.helloAt+1)
		}
		if p.tick >= p.askedAt+pullTicks {
			p.ask(now, out)
		}
	}
	if p.stab.hold {
		p.greet(now, out)
	}
	p.tellStability(now, out)
	if p.links != nil {
		p.links.tend(out, now)
	}
}

// tellStability sends this user's part of the report tree (see
// stability): its report to its parent, while it owes one, when
// reportEvery ticks have passed since its last (alone or on a broadcast)
// or as soon as a child's report came; and the news its children have not
// heard. Both go outside the links, since the next round repeats them,
// and wait like an action for a network with room for them. A user too
// late to serve its tick still reports: one transmission a round is
// little load, and a late joiner's way in may wait for it.
func (p *Peer) tellStability(now time.Duration, out port) {
	s := p.stab
	every := reportEvery(p.taken)
	if !s.root() && p.tick > p.lastReport && (s.fresh || p.tick >= p.lastReport+every) &&
		s.owes(p.arrivalNote()) && out.admit(1) {
		p.reports++
		p.lastReport = p.tick
		r := s.report(p.view.epoch, p.arrivalNote())
		p.control(s.parent, p.stamp(&Event{Kind: ReportEvent, From: p.uid, Sent: now, Epoch: p.view.epoch, Report: r}), now, out)
		out.release()
	}
	s.settle(p.view.epoch, p.tick) // at the root, with the reports that came this tick
	lo, hi := treeChildren(p.uid, p.cfg.users)
	hi = min(hi, p.view.Known()) // the rest are not online yet: they hear it from anyone
	if lo > hi || !s.newsOwed(p.fromParent, p.tick, p.lastNews, every) {
		p.fromParent = false
		return
	}
	if !out.admit(int64(hi - lo + 1)) {
		return // the word waits for room, as its parent told it
	}
	ev := p.stamp(&Event{Kind: NewsEvent, From: p.uid, Sent: now, Epoch: p.view.epoch})
	for c := lo; c <= hi; c++ {
		p.control(c, ev, now, out)
	}
	out.release()
	p.news += int64(hi - lo + 1)
	s.told, s.kidsSaid, p.lastNews, p.fromParent = ev.Word, false, p.tick, false
}

// control sends ev to r once, outside the links: the report tree's
// transmissions, which the next round repeats.
func (p *Peer) control(r int32, ev *Event, now time.Duration, out port) {
	if p.links != nil {
		p.links.control(out, r, ev, now)
		return
	}
	out.transmit(r, Delivery{Event: ev}, txControl, now)
}

// Records are the log records made since the last ResetRecords.
func (p *Peer) Records() []Record { return p.view.Records() }

// ResetRecords empties the record buffer.
func (p *Peer) ResetRecords() { p.view.ResetRecords() }

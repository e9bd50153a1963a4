package main

import (
	"iter"
	"math/rand/v2"
	"time"
)

// Peer is one user's whole protocol as a pure step machine: its view of the
// rooms (View), its will (a roll of its own random source each tick), the
// fan-out of what it does, its links to the others (with faults), noticing
// that it is offline or back, and a late joiner's way in. Step takes one
// input (a delivery, a tick, news of users online) and does what it means;
// what the peer sends goes out through its port as it is made, in order,
// and what it logs waits in Records. There are no goroutines, channels or
// clocks inside: the time comes with each input, so a test can drive a
// peer step by step, and a run replays. A thin driver in each mode (see
// realtime.go and lockstep.go) moves inputs in and transmissions out.
type Peer struct {
	uid   int32
	cfg   peerConfig
	view  *View
	rng   *rand.Rand // the user's own source: its rolls, its groups, whom a late joiner asks
	links *links     // nil without faults

	online    bool          // as it last noticed, at a tick
	awaySince time.Duration // the start of its last outage
	stage     arrival       // a late joiner's way in
	stageAt   uint64        // the epoch the stage waits for stability to pass
	replyTo   []int32       // late joiners that asked for this user's rooms

	ticks, skipped, acted int64 // rolls, ticks not served, rolls that acted
}

// peerConfig is what a peer acts by.
type peerConfig struct {
	users     int     // in the run: the width of a member set
	chance    float64 // of acting on a tick
	faulty    bool    // faults are injected: keep links, notice outages
	latecomer bool    // comes online late and learns the rooms by a state transfer
	timing    linkTiming
	log       bool // keep log records
}

// port is a peer's end of the network as the peer sees it. The peer hands
// it each transmission as it makes it; the network decides when it is due
// and what becomes of it. The peer also learns from it, as a program from
// its socket, whether an action's sends fit now (admit): the backpressure
// of a full network. The rest tells the network what the peer did with
// what it was given, for the network's counts.
type port interface {
	transmit(to int32, d Delivery, k txKind, now time.Duration)
	admit(k int64) (epoch uint64, ok bool) // room for an action's at most k sends
	release()                              // what admit reserved and the action left unsent
	countOne() uint64                      // a state transfer or request, counted in flight: its epoch
	applied(ev *Event, now time.Duration)  // a payload was applied
	dropped()                              // a transmission reached the peer while it was away
	hasState()                             // a late joiner has the rooms
}

// txKind is what a transmission is, for the network's counts and draws.
type txKind uint8

const (
	txFirst   txKind = iota + 1 // a payload's first transmission
	txResend                    // a payload again, by the links
	txControl                   // an acknowledgement or a gap report
)

// arrival is where a late joiner is on its way in.
type arrival uint8

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
	arrived      arrival = iota
	awaitNews            // until stable passes stageAt, the news's epoch or later
	awaitHorizon         // until stable passes stageAt, the horizon then
	awaitState           // asked; until the state arrives
)

// newPeer returns user uid's peer, rolling with rng.
func newPeer(uid int32, cfg peerConfig, rng *rand.Rand) *Peer {
	p := &Peer{uid: uid, cfg: cfg, view: NewView(uid, cfg.log), rng: rng, online: !cfg.latecomer}
	if cfg.faulty {
		p.links = newLinks(uid, cfg.users, cfg.timing)
	}
	return p
}

// Input is one thing that happens to a peer.
type Input struct {
	Kind inputKind
	Now  time.Duration

	D Delivery // deliverInput: a transmission that is due

	// tickInput: the deliveries due now, in order; whether the run lets
	// the user act; and what the network says: whether it has the user
	// offline, the epoch and how far it is stable.
	Due  func(apply func(Delivery))
	Act  actChoice
	Away bool
	Net  netSays

	First, Last int32 // newsInput: users First..Last are online

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
)

// actChoice is what the run lets a user do on a tick.
type actChoice uint8

const (
	actNone actChoice = iota // tend links only: the drain with faults
	actSkip                  // a tick not served: late, or stopping
	actRoll                  // roll for an action
)

// netSays is what the network counts and tells a user at a tick: the
// epoch to send in (lockstep), and the stable epoch and horizon, for a
// late joiner's way in and, at most the reclaim floor, for reclaiming.
type netSays struct {
	Epoch                         uint64
	Stable, Horizon               uint64
	ReclaimStable, ReclaimHorizon uint64
}

// Step takes one input. What the peer sends goes out through out as it is
// made; what it logs is in Records.
func (p *Peer) Step(in Input, out port) {
	switch in.Kind {
	case deliverInput:
		p.deliver(in.D, in.Now, out)
	case tickInput:
		p.tick(in, out)
	case newsInput:
		p.view.Learn(in.First, in.Last, in.Now)
	case proposeInput:
		p.propose(in.Proposal, in.Now, out)
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
	p.fanOut(ev, out)
}

// tick is one tick of the user: it reclaims what stability allows,
// notices whether it is offline or back, applies what is due, rolls for an
// action, and tends what it owes beyond its actions.
func (p *Peer) tick(in Input, out port) {
	now := in.Now
	v := p.view
	v.SetEpoch(in.Net.Epoch)
	v.Expire(in.Net.ReclaimStable, in.Net.ReclaimHorizon)
	if p.cfg.faulty {
		p.presence(in.Away, in.Net.Epoch, now)
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
	if p.cfg.faulty && p.online {
		p.tend(in.Net, now, out)
	}
}

// canAct reports whether the user may act: it is online and, if it came
// late, has the rooms.
func (p *Peer) canAct() bool { return p.online && p.stage == arrived }

// presence notices, at a tick, whether the user has gone offline or come
// online, and logs it. A user back from an outage kept its memory; it
// catches up as its peers, hearing from it again, resend what it missed
// (see links).
func (p *Peer) presence(away bool, epoch uint64, now time.Duration) {
	switch {
	case away && p.online:
		p.online, p.awaySince = false, now
		p.view.record(Record{T: now, Kind: KindOffline})
	case !away && !p.online:
		p.online = true
		if p.cfg.latecomer && p.stage == arrived && p.stageAt == 0 {
			p.stage, p.stageAt = awaitNews, epoch
			break
		}
		p.view.record(Record{T: now, Kind: KindBack, Away: now - p.awaySince})
	}
}

// act asks the network for room for the widest fan-out, rolls, and sends
// what the view made: an action the view has made must be sent. If the
// network is full, the tick is skipped.
func (p *Peer) act(now time.Duration, out port) {
	e, ok := out.admit(int64(p.view.Known() - 1))
	if !ok {
		p.skipped++
		return
	}
	p.view.SetEpoch(e)
	p.fanOut(p.roll(now), out)
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
		return v.Create(pickGroup(p.rng, p.cfg.users, p.uid, v.Known()), now)
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

// fanOut sends ev to its recipients.
func (p *Peer) fanOut(ev *Event, out port) {
	if ev == nil {
		return
	}
	for r := range recipients(ev, p.uid, p.view.Known()) {
		p.send(r, ev, out)
	}
}

// recipients are the users an event from self goes to, when self knows
// user_1..user_known: every other member for a message, every other known
// user for a create or a close.
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
// so.
func (p *Peer) deliver(d Delivery, now time.Duration, out port) {
	if !p.online {
		out.dropped()
		return
	}
	ev := d.Event
	if p.links != nil {
		if ev = p.links.arrive(out, d, now); ev == nil {
			return
		}
	}
	switch ev.Kind {
	case StateRequestEvent:
		p.view.SetEpoch(ev.Epoch)
		p.replyTo = append(p.replyTo, ev.From)
	case StateEvent:
		p.view.ApplyState(ev, now)
		p.stage = arrived
		out.hasState()
	default:
		p.view.Apply(ev, now)
	}
	out.applied(ev, now)
}

// tend sends what the user owes beyond its actions: its rooms to late
// joiners that asked, a late joiner's own request, and what the links owe.
func (p *Peer) tend(net netSays, now time.Duration, out port) {
	// A late joiner asked may be one itself: it answers once it has the
	// rooms.
	if p.stage == arrived {
		for _, r := range p.replyTo {
			e := out.countOne()
			p.view.SetEpoch(e)
			p.send(r, &Event{Kind: StateEvent, From: p.uid, Sent: now, Epoch: e, State: p.view.Snapshot()}, out)
		}
		p.replyTo = p.replyTo[:0]
	}
	p.arrive(net, now, out)
	p.links.tend(out, now)
}

// arrive moves a late joiner on its way in.
func (p *Peer) arrive(net netSays, now time.Duration, out port) {
	if p.stage != awaitNews && p.stage != awaitHorizon {
		return
	}
	if net.Stable <= p.stageAt {
		return
	}
	if p.stage == awaitNews {
		p.stage, p.stageAt = awaitHorizon, net.Horizon
		return
	}
	peer := 1 + int32(p.rng.IntN(int(p.uid)-1)) // user_1 to user_{self-1}, all online before it
	p.send(peer, &Event{Kind: StateRequestEvent, From: p.uid, Sent: now, Epoch: out.countOne()}, out)
	p.stage = awaitState
}

// Records are the log records made since the last ResetRecords.
func (p *Peer) Records() []Record { return p.view.Records() }

// ResetRecords empties the record buffer.
func (p *Peer) ResetRecords() { p.view.ResetRecords() }

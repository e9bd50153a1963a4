package main

import (
	"slices"
	"time"
)

// A user's restart after a crash: part of a peer's step machine.
//
// A crash takes everything a user has in memory: its rooms, its clocks,
// its links, what it held back, what it knew of stability. It keeps its
// uid, the membership of the run and its own tick (a clock survives a
// reboot). It restarts as a new incarnation, numbered from its restart
// tick, so that nothing of its earlier self is taken for it (see links),
// and comes back by what the others tell it:
//
//   - It knows no peer's incarnation, so it tells every other user it
//     restarted outside the links (RestartEvent), again every pullTicks
//     until the user answers. A peer that hears a later incarnation of a
//     user fences the earlier one (links.renew), and welcomes the new one
//     over the renewed link with its rooms, as a late joiner's answer
//     would, naming the members of those it is in (Peer.renewed).
//   - The first welcome gives it rooms to act in, and it takes back the
//     rooms it was in. Once every other user has welcomed it, its view is
//     complete: a create or close any user had applied when it welcomed
//     is in that user's rooms, and anything sent after it fenced the
//     earlier self comes to the new one, or is owed to it, over the
//     renewed link.
//   - Sends are settled by acknowledgement, not by apply (see
//     stability): a crash can lose a user's counts, but what it sent and
//     no one acknowledged is either owed to the others still or died with
//     it, and its parent in the report tree takes its new reports in place
//     of the old. Until every other user has welcomed it, its reports hold
//     W where it was (stability.hold): its earlier self may have sent a
//     create or close that reached some users and not others, and W must
//     not pass it while some user lacks it.
//   - So each welcome also relays the creates and closes of the
//     restarted user's earlier selves that the welcoming user applied and
//     does not know stable (Peer.recent). The restarted user takes them,
//     and once every user has welcomed it, sends everyone its rooms as
//     the welcomes have them together (sendRelays), counted in its own
//     epoch, before its reports let W go: every user ends with what any
//     user had of its earlier self. Meanwhile its parent keeps the last
//     report of its earlier self (stability.take).
//
// Messages are not sent again: one that reached some members and died
// with its sender's crash before the others had it is lost to them. A
// message is owed to a restarted user if no incarnation of it
// acknowledged it; one that an earlier self applied and crashed before
// acknowledging comes again (docs/faults.md states the rule).

// restart starts a restarted peer on its way back: it tells every other
// user. Its Lamport clock starts past any stamp its earlier selves made:
// a stamp counts actions, and each user acts at most once a tick, so no
// clock can be past the tick times the number of users (a tick more, for
// users whose ticks run a little ahead in real time).
func (p *Peer) restart(now time.Duration, out port) {
	p.view.clock = max(p.view.clock, (p.tick+1)*uint64(p.cfg.users))
	p.onlineAt, p.helloAt = p.tick, p.view.epoch
	p.view.record(Record{T: now, Kind: KindRestart, Inc: p.cfg.inc})
	p.greetAll(now, out)
}

// greetAll tells every user that has not yet welcomed this incarnation
// that it restarted.
func (p *Peer) greetAll(now time.Duration, out port) {
	ev := p.stamp(&Event{Kind: RestartEvent, From: p.uid, Sent: now, Epoch: p.view.epoch})
	for r := int32(1); int(r) <= p.cfg.users; r++ {
		if r != p.uid && !p.welcomed[r] {
			p.control(r, ev, now, out)
		}
	}
	p.greetedAt = p.tick
}

// greet is a restarted peer's tick while W waits for it: once every
// other user has welcomed it, it sends again what the welcomes relayed of
// its earlier selves, its view is complete, and it lets W go; until then
// it tells the others again, once a round.
func (p *Peer) greet(now time.Duration, out port) {
	if p.waiting > 0 {
		if p.tick >= p.greetedAt+pullTicks {
			p.greetAll(now, out)
		}
		return
	}
	p.sendRelays(now, out)
	p.stab.hold = false
	p.stage, p.doneAt, p.doneTick = settled, p.view.epoch, p.tick
	out.caughtUp()
}

// renewed takes the first word of a peer's incarnation inc, later than
// any this user heard (links.renew has fenced the earlier ones): it is
// online, even if its hello died with an earlier self. A
// restarted parent has none of this user's reports, so it reports at
// once. A restarted peer is welcomed, with this user's rooms and what it
// needs of its earlier selves.
func (p *Peer) renewed(from int32, inc uint32, now time.Duration, out port) {
	if !p.restarted() {
		p.view.Learn(from, now) // it is online, and so is every user before it (a restarted user learns them all from its first welcome)
	}
	if from == p.stab.parent {
		p.stab.fresh = true
	}
	if !p.cfg.crash || inc == 0 {
		return
	}
	var relay []*Event
	for _, ev := range p.recent {
		if ev.From == from && ev.Inc < inc {
			relay = append(relay, ev)
		}
	}
	v := p.view
	p.send(from, p.stamp(&Event{Kind: WelcomeEvent, From: p.uid, Clock: v.clock, Sent: now, Epoch: v.epoch,
		State: v.Snapshot(), Known: v.Known(), Relay: relay, Whom: inc}), out)
}

// welcome takes a peer's welcome: it has fenced this user's earlier
// selves. Its rooms and what it relays of the earlier selves the view
// takes at once; this user sends the relayed events to everyone once all
// have welcomed it (greet).
func (p *Peer) welcome(ev *Event, now time.Duration) {
	if !p.stab.hold || p.welcomed[ev.From] || ev.Whom != p.cfg.inc {
		return
	}
	p.welcomed[ev.From] = true
	p.waiting--
	v := p.view
	v.Learn(ev.Known, now)
	first := p.stage == awaitRooms
	v.ApplyState(ev, now, first)
	if first {
		p.stage, p.roomsAt = catchingUp, p.tick
	}
	for _, r := range ev.Relay {
		if r.Inc >= p.cfg.inc {
			continue
		}
		v.TakeRelayed(r, ev.From, now)
		i := slices.IndexFunc(p.relays, func(x *Event) bool { return x.Group.key == r.Group.key })
		switch {
		case i < 0:
			p.relays = append(p.relays, r)
		case r.Room.pack() > p.relays[i].Room.pack():
			p.relays[i] = r
		}
	}
}

// sendRelays sends everyone, once every user has welcomed this one, its
// rooms as the welcomes have them together, with the creates of its
// earlier selves' rooms that are still live, whose members a snapshot
// does not carry: whatever any user had of the earlier selves reaches
// every user, and a max-register merged twice changes nothing. Not the
// events relayed: one user may have relayed a create whose close another
// had. It is counted in this user's epoch, and its reports let W go only
// after it (greet), so W passes it only once everyone has applied it.
func (p *Peer) sendRelays(now time.Duration, out port) {
	v := p.view
	var live []*Event
	for _, r := range p.relays {
		if packed, closed := v.StateOf(r.Group); r.Kind == CreateEvent && packed == r.Room.pack() && !closed {
			live = append(live, r)
		}
	}
	p.relays = nil
	p.broadcast(&Event{Kind: RoomsEvent, From: p.uid, Clock: v.clock, Sent: now, Epoch: v.epoch, State: v.Snapshot(), Relay: live}, now, out)
}

// forgetStable lets go of the creates and closes a welcome could need
// that are known stable: everyone has applied them.
func (p *Peer) forgetStable() {
	w := p.stab.stable
	p.recent = slices.DeleteFunc(p.recent, func(ev *Event) bool { return ev.Epoch < w })
}

package main

import (
	"cmp"
	"iter"
	"slices"
	"time"
)

// The run's side of crashes (-crash): taking a crashed
// user's memory, and counting what the crash costs by the rule of
// restart.go, so that the verdict can hold the run to it. The users learn
// nothing from this: a restarted user comes back by what its peers tell
// it (see restart.go).
//
// The rule, per delivery of a message to a member:
//   - a message the member held back (its room not yet known) when it
//     crashed is lost, unless a sender still owes it to the member (it had
//     no acknowledgement of it), who sends it to the next incarnation;
//   - one the member had applied, and whose sender still owes it, comes
//     again to the next incarnation: it is redelivered, once;
//   - one the sender's crash took before the member's present incarnation
//     had it is lost, whatever an earlier incarnation of the member had.
//
// Whatever a crashed user had sent and was still on its way dies with it.
// The ledger is exact because the run crashes users while every user is
// idle, between steps of its peer, when each peer's links say what it has
// taken: lockstep between rounds, real time in a pause of every user
// (Sim.stopTheWorld). From then on nothing the crashed incarnation sent
// gets through (purge), so what a peer had taken of it is final.
type crashLedger struct {
	lost, again       int64   // message deliveries lost, and owed again, by the rule
	losses            []msgTo // the last crash's lost deliveries, for its log line
	lostSum, againSum uint64  // their deliveryHash sums
	heldLost          int64   // of lost: held back when their member crashed
	roomsForgotten    int64   // live rooms in the views of crashed users
}

// crash takes user uid's memory at time now, while every user is idle:
// it counts what the crash costs, drops what the user had on its way,
// logs the crash and leaves the user down until the nemesis lets it up
// and its driver restarts it.
func (s *Sim) crash(uid int32, now time.Duration) {
	u := s.users[uid-1]
	old := u.peer
	l := &s.crashes
	held := map[*Event]bool{}
	for _, ms := range old.view.held {
		for _, m := range ms {
			held[m] = true
		}
	}
	again := int64(0)
	for m := range held {
		if !s.owes(m.From, old, m) {
			l.lose(m, uid)
			l.heldLost++
		}
	}
	for _, sender := range s.users {
		if sender.dead || sender.UID == uid {
			continue
		}
		for seq, ev := range unacked(sender.peer, uid, old.cfg.inc) {
			if settledAt(old, sender.peer, seq) {
				again++ // applied, or held, and it will come again
				if ev.Kind == MessageEvent && !held[ev] {
					l.owedAgain(ev, uid)
				}
			}
		}
	}
	for r, present := range s.users {
		to := int32(r + 1)
		lk := old.links.get(to)
		if to == uid || lk == nil {
			continue
		}
		// Numbers mean something to the present incarnation only if the
		// link was with it.
		same := lk.peerKnown && lk.peerInc == present.peer.cfg.inc
		for seq, ev := range lk.kept() {
			if !same || !s.settled(to, old, seq) {
				if lk.peerKnown {
					again-- // sent, and never to be applied (what waited for the peer's word was never sent)
				}
				if ev.Kind == MessageEvent {
					l.lose(ev, to)
				}
			}
		}
	}
	if old.stage == settled {
		s.net.fl.arriving.Add(1) // its restart, until its view is complete
	}
	s.net.fl.again.Add(again)
	s.net.purge(uid, old.cfg.inc)
	l.roomsForgotten += int64(old.view.LiveCount())
	slices.SortFunc(l.losses, func(a, b msgTo) int { return cmp.Or(cmp.Compare(a.Msg.pack(), b.Msg.pack()), cmp.Compare(a.To, b.To)) })
	old.view.record(Record{T: now, Kind: KindCrash, Rooms: old.view.Rooms(), Lost: int32(len(held)), Losses: l.losses})
	l.losses = nil
	s.writeRecords(u, old.Records())
	old.ResetRecords()
	u.bury()
}

func (l *crashLedger) lose(m *Event, to int32) {
	l.losses = append(l.losses, msgTo{m.ID(), to})
	l.lost++
	l.lostSum += deliveryHash(m.ID(), to)
}

func (l *crashLedger) owedAgain(m *Event, to int32) {
	l.again++
	l.againSum += deliveryHash(m.ID(), to)
}

// unacked is what peer p's link to user to still keeps for to's
// incarnation inc: nothing if the link is with another.
func unacked(p *Peer, to int32, inc uint32) iter.Seq2[uint32, *Event] {
	l := p.links.get(to)
	if l == nil || l.peerKnown && l.peerInc != inc {
		return func(func(uint32, *Event) bool) {}
	}
	return l.kept()
}

// keeps reports whether peer p keeps m unacknowledged for incarnation inc
// of user to.
func keeps(p *Peer, to int32, inc uint32, m *Event) bool {
	for _, ev := range unacked(p, to, inc) {
		if ev == m {
			return true
		}
	}
	return false
}

// settledAt reports whether peer p has taken number seq of what from sent
// it, on their link.
func settledAt(p *Peer, from *Peer, seq uint32) bool {
	l := p.links.get(from.uid)
	return l != nil && l.peerKnown && l.peerInc == from.cfg.inc && l.settled(seq)
}

// settled reports whether user to, as it is now, has taken number seq of
// what from sent it: a user down has taken nothing.
func (s *Sim) settled(to int32, from *Peer, seq uint32) bool {
	r := s.users[to-1]
	return !r.dead && settledAt(r.peer, from, seq)
}

// owes reports whether user sender, up, still keeps m unacknowledged for
// the incarnation of to: it will send it to the next one.
func (s *Sim) owes(sender int32, to *Peer, m *Event) bool {
	su := s.users[sender-1]
	if su.dead {
		return false
	}
	return keeps(su.peer, to.uid, to.cfg.inc, m)
}

// heldNow counts, with crashes, the messages users hold back as their
// gauges last said, for the drain in real time (see heldForGood). A user
// publishes its gauges before it gives back the room of what it applied,
// and the drain reads them after that room.
func (s *Sim) heldNow() int64 {
	if s.cfg.Crash == 0 {
		return 0
	}
	var n int64
	for _, u := range s.users {
		n += u.heldGauge.Load()
	}
	return n
}

// heldForGood counts, with crashes, the messages users hold back: one
// held for a room whose create no one will ever send again is delivered
// once W passes it (View.ReleaseBelow), which the drain waits for. Read
// between rounds.
func (s *Sim) heldForGood() int {
	if s.cfg.Crash == 0 {
		return 0
	}
	n := 0
	for _, u := range s.users {
		n += u.peer.view.HeldCount()
	}
	return n
}

// purge drops what user uid's incarnation inc has on its way: held at its
// own port by a clog, and in lockstep in the buckets of every user. In
// real time what is in inboxes is lost on arrival (Port.arrives). The run
// calls it while every user is idle.
func (n *Network) purge(uid int32, inc uint32) {
	n.faults.gone[uid].Store(inc + 1)
	n.flushOutboxes()
	gone := func(ev *Event) bool { return ev.From == uid && ev.Inc == inc }
	for _, f := range n.filers {
		sp, ok := f.(*stepPort)
		if !ok {
			continue
		}
		for k, b := range sp.buckets {
			kept := 0
			for i, ev := range b {
				if gone(ev) {
					continue
				}
				b[kept] = ev
				if sp.numbers != nil {
					sp.numbers[k][kept] = sp.numbers[k][i]
				}
				kept++
			}
			clear(b[kept:])
			sp.buckets[k] = b[:kept]
			if sp.numbers != nil {
				sp.numbers[k] = sp.numbers[k][:kept]
			}
		}
	}
	p := n.ports[uid-1]
	p.waiting = slices.DeleteFunc(p.waiting, func(w waitingTransmission) bool { return gone(w.d.Event) })
}

package main

import (
	"iter"
	"slices"
	"time"
)

// Reliable links over a network that loses, duplicates and cuts what it
// carries: part of a peer's step machine, with no goroutines, channels or
// clocks inside. Only a run with faults uses them; without faults a
// transmission is sent once and arrives once.
//
// A peer keeps a link to every other user, and each end numbers what it
// sends on it from 1 (Delivery.Seq). Every transmission also carries the
// cumulative acknowledgement of the other direction (Delivery.Ack: every
// number below it has settled), so acknowledgements ride on the traffic
// that flows anyway: every create and close reaches every user. Then:
//   - duplicates are recognised by number and dropped, so a payload is
//     applied once however often it arrives;
//   - a receiver that has seen a gap for longer than anything could be
//     delayed reports it (a gap report: GapEvent, up to the first number
//     that settled past it), and the sender resends what is missing: one
//     round trip repairs a loss;
//   - a receiver that owes an acknowledgement and has sent nothing back for
//     ackDelay sends one on its own, so that the sender can forget; one
//     that receives a duplicate acknowledges at the next tick, since its
//     acknowledgement was lost;
//   - a sender whose oldest unacknowledged transmission has waited longer
//     than the retransmission timeout resends that one alone, a probe,
//     once a timeout while the peer stays silent (a lost tail, a
//     partition, a peer offline). When anything comes from the peer after
//     probing, it is reachable again and everything still unacknowledged
//     is resent at once: a user back from an outage, or across a healed
//     partition, is caught up in one round trip after its first word.
//
// So loss costs about 1/(1-p) transmissions per delivery plus the gap
// reports, an outage or a partition costs a probe per timeout, and what a
// sender keeps is what it has sent and not yet seen acknowledged: bounded by
// how long a fault lasts.
//
// A user that crashes forgets its links, and restarts as a new
// incarnation (Event.Inc: 0 for every user at the start, the restart tick
// after a restart, so a later self has the greater number). A
// link is between two incarnations: each transmission says whose it is
// (Event.Inc) and which incarnation of the receiver it was numbered for
// (Delivery.To). So:
//   - what an earlier self of the peer sent, or what was numbered for an
//     earlier self of this user, is dropped: numbers, acknowledgements and
//     payloads alike;
//   - hearing a later incarnation of a peer starts the link afresh in both
//     directions, and what the peer's earlier self had not acknowledged is
//     numbered again from 1 and sent to the new one: it is owed to it,
//     applied by the earlier self or not (renew);
//   - a restarted user knows no peer's incarnation: what it sends a peer
//     waits, numbered, until the peer's first word tells it, and until
//     then only words outside the links reach the peer.
type links struct {
	timing       linkTiming
	inc          uint32       // this user's incarnation: after a restart (not 0) it knows no peer's until it hears from it
	table        []link       // by peer uid
	active       []activeLink // links with something to do
	ackEv, gapEv *Event       // what acknowledgements and gap reports carry
	settled      *stability   // with crashes: where an acknowledged send is counted settled (see stability)
}

// link is one peer's end of the link to another.
type link struct {
	// The words and flags first, together: a peer keeps a link to every
	// other user, so at 1000 users with faults the links are a million,
	// and padding between fields would cost 16 bytes each.
	peerInc   uint32 // the peer's incarnation the link is with
	nextSeq   uint32 // sending: the number of the next transmission, from 1
	acked     uint32 // sending: the peer has everything below it
	recvNext  uint32 // receiving: everything below it has settled, from 1
	activeAt  int32  // its index in links.active, when active
	peerKnown bool   // false after this user's restart, until the peer's first word
	probing   bool   // sending: probed since the last progress
	ackDue    bool   // receiving: an acknowledgement is owed to the peer
	isActive  bool

	// Sending.
	unacked queue[*Event] // numbers acked to nextSeq-1, in order: see kept
	timerAt time.Duration // when to probe, while unacked is not empty

	// Receiving.
	above    []uint32      // numbers above recvNext that have settled, in order
	ackSince time.Duration // since an acknowledgement is owed
	gapSince time.Duration // when the gap below above[0] was first seen
}

// activeLink is a link with something to do, and the earliest time it may
// need its owner: tend passes over the others without touching them.
type activeLink struct {
	peer int32
	due  time.Duration // no later than the link next needs tending
}

// kept yields what the link keeps until it is acknowledged, with the
// numbers it was sent with. Acknowledgements are cumulative, so what is
// kept is every number from acked up to nextSeq, exclusive: a kept
// transmission's number is acked plus its place, and the queue need not
// store it (at 1000 users with faults, links keep millions).
func (l *link) kept() iter.Seq2[uint32, *Event] {
	return func(yield func(uint32, *Event) bool) {
		for i, ev := range l.unacked.items[l.unacked.head:] {
			if !yield(l.acked+uint32(i), ev) {
				return
			}
		}
	}
}

// linkTiming is how long a link waits for things, from the tick and the
// delay: transit is the longest a transmission can be on its way, and
// users tend their links once a tick.
type linkTiming struct {
	gapWait  time.Duration // a gap older than this is a loss
	ackDelay time.Duration // an acknowledgement waits this long for traffic to ride on
	rto      time.Duration // the retransmission timeout: an acknowledgement should have come
}

// ackTicks is how many ticks an acknowledgement waits for traffic to ride
// on. Longer saves transmissions and costs sender memory.
const ackTicks = 6

func newLinkTiming(tick, transit time.Duration) linkTiming {
	lt := linkTiming{gapWait: transit + tick, ackDelay: ackTicks * tick}
	lt.rto = lt.ackDelay + 2*transit + 2*tick
	return lt
}

// newLinks returns the links of incarnation inc of user self among users
// users: 0 at the start, knowing every peer's first incarnation; a later
// one after a restart, knowing none.
func newLinks(self int32, users int, timing linkTiming, inc uint32) *links {
	return &links{
		timing: timing,
		inc:    inc,
		table:  make([]link, users+1),
		ackEv:  &Event{Kind: AckEvent, From: self, Inc: inc},
		gapEv:  &Event{Kind: GapEvent, From: self, Inc: inc},
	}
}

// send numbers ev on the link to r, keeps it until acknowledged, and
// transmits it.
func (ls *links) send(out port, r int32, ev *Event, now time.Duration) {
	l := ls.link(r)
	seq := l.nextSeq
	l.nextSeq++
	if l.unacked.len() == 0 {
		l.timerAt = now + ls.timing.rto
		ls.wake(l, l.timerAt)
	}
	l.unacked.push(ev)
	if !l.peerKnown {
		return // until the peer's incarnation is known: see renew
	}
	ls.transmit(out, r, l, Delivery{Event: ev, Seq: seq}, txFirst, now)
}

// control sends ev to r once, unnumbered, with the link's
// acknowledgement riding on it: what the sender will repeat if it must,
// as the report tree does, needs no keeping.
func (ls *links) control(out port, r int32, ev *Event, now time.Duration) {
	ls.transmit(out, r, ls.link(r), Delivery{Event: ev}, txControl, now)
}

// link returns the link to peer r, starting it on first use and marking it
// active.
func (ls *links) link(r int32) *link {
	l := &ls.table[r]
	if l.nextSeq == 0 {
		l.nextSeq, l.acked, l.recvNext, l.peerKnown = 1, 1, 1, ls.inc == 0
	}
	if !l.isActive {
		l.isActive, l.activeAt = true, int32(len(ls.active))
		ls.active = append(ls.active, activeLink{r, forever})
	}
	return l
}

// wake notes that link l, which is active, needs tending at at.
func (ls *links) wake(l *link, at time.Duration) {
	a := &ls.active[l.activeAt]
	a.due = min(a.due, at)
}

// transmit hands one transmission on the link to r to the network, with
// the link's acknowledgement riding on it.
func (ls *links) transmit(out port, r int32, l *link, d Delivery, k txKind, now time.Duration) {
	d.Ack, d.To, l.ackDue = l.recvNext, l.peerInc, false
	out.transmit(r, d, k, now)
}

// arrive takes a transmission from a peer and returns the payload to
// apply, or nil: a duplicate, only an acknowledgement or a gap report, or
// what belongs to an earlier incarnation of either end. renewed says the
// transmission was the first this user heard from the peer's incarnation
// after another (or, after a restart, at all): see renew.
func (ls *links) arrive(out port, d Delivery, now time.Duration) (ev *Event, renewed bool) {
	from, inc := d.Event.From, d.Event.Inc
	l := ls.link(from)
	switch {
	case l.peerKnown && inc < l.peerInc:
		return nil, false // from an earlier self of the peer
	case !l.peerKnown || inc > l.peerInc:
		ls.renew(out, from, l, inc, now)
		renewed = true
	}
	if d.To != ls.inc {
		// Numbered for an earlier self of this user, or sent before the
		// peer knew this one: only a word outside the links is of use.
		if !l.ackDue {
			// It takes this user for an earlier self: an acknowledgement
			// at the next tick tells it who this is.
			l.ackDue, l.ackSince = true, now-ls.timing.ackDelay
			ls.wake(l, now)
		}
		if d.Seq == 0 && d.Event.Kind != AckEvent && d.Event.Kind != GapEvent {
			return d.Event, renewed
		}
		return nil, renewed
	}
	return ls.take(out, l, d, now), renewed
}

// take takes a transmission between the two incarnations of link l.
func (ls *links) take(out port, l *link, d Delivery, now time.Duration) *Event {
	from := d.Event.From
	ls.acknowledged(l, d.Ack, now)
	if l.probing {
		// The peer was silent and is heard again: it is back, or the
		// partition has healed. Resend what it has not acknowledged.
		l.probing = false
		ls.resend(out, from, l, l.acked, l.nextSeq, now)
	}
	switch d.Event.Kind {
	case AckEvent:
		return nil
	case GapEvent:
		ls.resend(out, from, l, d.Ack, d.Seq, now)
		return nil
	}
	if d.Seq == 0 {
		return d.Event // sent outside the links: see control
	}
	return ls.receive(l, d, now)
}

// renew starts the link to r with r's incarnation inc, later than the one
// it was with. If that one was known, r crashed and restarted: nothing
// numbered for its earlier self means anything to it, so both directions
// start afresh, and what the earlier self had not acknowledged is numbered
// again from 1: the new self is owed it, since it remembers nothing (the
// earlier self may have applied some of it, and crashed before its
// acknowledgement came: see docs/faults.md). If none was known, this user
// restarted: what waited for the peer's incarnation goes now.
func (ls *links) renew(out port, r int32, l *link, inc uint32, now time.Duration) {
	known := l.peerKnown
	l.peerInc, l.peerKnown = inc, true
	k := txFirst
	if known {
		l.recvNext, l.above, l.ackDue = 1, l.above[:0], false
		l.acked, l.nextSeq, l.probing = 1, 1+uint32(l.unacked.len()), false
		k = txResend
	}
	for seq, ev := range l.kept() {
		ls.transmit(out, r, l, Delivery{Event: ev, Seq: seq}, k, now)
	}
	if l.unacked.len() > 0 {
		l.timerAt = now + ls.timing.rto
		ls.wake(l, l.timerAt)
	}
}

// receive records a numbered transmission; it returns its payload the
// first time, nil for a duplicate. Either way an acknowledgement is owed.
func (ls *links) receive(l *link, d Delivery, now time.Duration) *Event {
	t := ls.timing
	if !l.ackDue {
		l.ackDue, l.ackSince = true, now
		ls.wake(l, now+t.ackDelay)
	}
	seq := d.Seq
	i, found := slices.BinarySearch(l.above, seq)
	if seq < l.recvNext || found {
		l.ackSince = now - t.ackDelay // acknowledge at once
		ls.wake(l, now)
		return nil
	}
	if seq == l.recvNext {
		l.recvNext++
		for len(l.above) > 0 && l.above[0] == l.recvNext {
			l.recvNext++
			l.above = l.above[1:]
		}
		if len(l.above) > 0 {
			l.gapSince = now // a new gap below above[0]
			ls.wake(l, now+t.gapWait)
		}
		return d.Event
	}
	if len(l.above) == 0 {
		l.gapSince = now
		ls.wake(l, now+t.gapWait)
	}
	l.above = slices.Insert(l.above, i, seq)
	return d.Event
}

// acknowledged takes the peer's acknowledgement: every number below ack
// has settled. What it covers is forgotten.
func (ls *links) acknowledged(l *link, ack uint32, now time.Duration) {
	if ack <= l.acked {
		return
	}
	for range min(ack-l.acked, uint32(l.unacked.len())) {
		if ev := l.unacked.pop(); ls.settled != nil && counted(ev.Kind) {
			ls.settled.count(ev.Epoch, 1, false)
		}
	}
	l.acked = ack
	l.timerAt = now + ls.timing.rto
	if l.unacked.len() > 0 {
		ls.wake(l, l.timerAt)
	}
}

// resend transmits again what is unacknowledged with numbers from lo up to
// hi, exclusive.
func (ls *links) resend(out port, r int32, l *link, lo, hi uint32, now time.Duration) {
	for seq, ev := range l.kept() {
		if seq >= hi {
			break
		}
		if seq >= lo {
			ls.transmit(out, r, l, Delivery{Event: ev, Seq: seq}, txResend, now)
		}
	}
	if l.unacked.len() > 0 {
		l.timerAt = now + ls.timing.rto
		ls.wake(l, l.timerAt)
	}
}

// tend does what the links owe once a tick: gap reports, acknowledgements
// that found no traffic to ride on, probes. A link with nothing left to do
// leaves the active list.
func (ls *links) tend(out port, now time.Duration) {
	t := ls.timing
	for i := 0; i < len(ls.active); {
		if ls.active[i].due > now {
			i++
			continue
		}
		r := ls.active[i].peer
		l := &ls.table[r]
		switch {
		case len(l.above) > 0 && now-l.gapSince >= t.gapWait:
			// What is below the first number that settled past the gap is
			// lost: report the gap, up to that number.
			l.gapSince = now
			ls.transmit(out, r, l, Delivery{Event: ls.gapEv, Seq: l.above[0]}, txControl, now)
		case l.ackDue && now-l.ackSince >= t.ackDelay:
			ls.transmit(out, r, l, Delivery{Event: ls.ackEv}, txControl, now)
		}
		if l.unacked.len() > 0 && now >= l.timerAt {
			if l.peerKnown { // else it waits for the peer's first word
				ls.transmit(out, r, l, Delivery{Event: *l.unacked.front(), Seq: l.acked}, txResend, now)
				l.probing = true
			}
			l.timerAt = now + t.rto
		}
		due := forever
		if len(l.above) > 0 {
			due = l.gapSince + t.gapWait
		}
		if l.ackDue {
			due = min(due, l.ackSince+t.ackDelay)
		}
		if l.unacked.len() > 0 {
			due = min(due, l.timerAt)
		}
		if due == forever {
			l.isActive = false
			last := len(ls.active) - 1
			ls.active[i] = ls.active[last]
			ls.table[ls.active[i].peer].activeAt = int32(i)
			ls.active = ls.active[:last]
			continue
		}
		ls.active[i].due = due
		i++
	}
}

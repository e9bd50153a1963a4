package main

import (
	"slices"
	"time"
)

// Reliable links over a network that loses, duplicates and cuts what it
// carries. Only a run with faults uses them; without faults a delivery is
// sent once and arrives once.
//
// Every pair of users has a link, and each end numbers what it sends on it
// from 1 (Delivery.Seq). Every transmission also carries the cumulative
// acknowledgement of the other direction (Delivery.Ack: every number below
// it has arrived), so acknowledgements ride on the traffic that flows
// anyway: every create and close reaches every user. Then:
//   - duplicates are recognised by number and dropped, so a payload is
//     applied once however often it arrives;
//   - a receiver that has seen a gap for longer than anything could be
//     delayed reports it (a gap report: GapEvent, up to the first number
//     that arrived past it), and the sender resends what is missing: one
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
type link struct {
	// Sending.
	nextSeq uint32          // the number of the next transmission, from 1
	acked   uint32          // the peer has everything below it
	unacked queue[sentItem] // in number order
	timerAt time.Duration   // when to probe, while unacked is not empty
	probing bool            // probed since the last progress

	// Receiving.
	recvNext  uint32        // everything below it has arrived, from 1
	above     []uint32      // numbers above recvNext that have arrived, in order
	owed      bool          // an acknowledgement is owed
	owedSince time.Duration // since when
	gapSince  time.Duration // when the gap below above[0] was first seen

	active   bool  // in Port.active
	activeAt int32 // its index there
}

// activeLink is a link with something to do, and the earliest time it may
// need its owner: tend passes over the others without touching them.
type activeLink struct {
	peer int32
	due  time.Duration // no later than the link next needs tending
}

// sentItem is a transmission kept until it is acknowledged.
type sentItem struct {
	seq uint32
	ev  *Event
}

// linkTiming is how long a link waits for things, from the tick and the
// delay: transit is the longest a transmission can be on its way, and
// users handle their links once a tick.
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

// transportCounts are a port's tallies of transmissions.
type transportCounts struct {
	Transmissions int64 // every transmission sent, payload or acknowledgement, lost or not
	Lost          int64 // lost on the way, or on arrival at a user cut off or offline
	Duplicated    int64 // transmissions the network delivered twice
	Retransmitted int64 // payloads sent again
}

func (c *transportCounts) add(o transportCounts) {
	c.Transmissions += o.Transmissions
	c.Lost += o.Lost
	c.Duplicated += o.Duplicated
	c.Retransmitted += o.Retransmitted
}

// sendReliably numbers ev on the link to r, keeps it until acknowledged,
// and transmits it.
func (p *Port) sendReliably(r int32, ev *Event, now time.Duration) {
	l := p.link(r)
	seq := l.nextSeq
	l.nextSeq++
	if l.unacked.len() == 0 {
		l.timerAt = now + p.net.timing.rto
		p.wake(l, l.timerAt)
	}
	l.unacked.push(sentItem{seq, ev})
	d := Delivery{Event: ev, Due: p.due(now), Seq: seq}
	if p.transmit(r, l, d, now) && p.wire != nil {
		p.noteWire(r, d, now, false, true)
	}
}

// link returns the link to peer r, starting it on first use and marking it
// active.
func (p *Port) link(r int32) *link {
	l := &p.links[r]
	if l.nextSeq == 0 {
		l.nextSeq, l.acked, l.recvNext = 1, 1, 1
	}
	if !l.active {
		l.active, l.activeAt = true, int32(len(p.active))
		p.active = append(p.active, activeLink{r, forever})
	}
	return l
}

// wake notes that link l, which is active, needs tending at at.
func (p *Port) wake(l *link, at time.Duration) {
	a := &p.active[l.activeAt]
	a.due = min(a.due, at)
}

// transmit sends one transmission on the link to r, with the link's
// acknowledgement riding on it: lost, delivered, or delivered twice, as
// the network decides. It reports whether it was lost.
func (p *Port) transmit(r int32, l *link, d Delivery, sent time.Duration) (lost bool) {
	n := p.net
	if p.hushed {
		return false
	}
	d.Ack, l.owed = l.recvNext, false
	p.tx.Transmissions++
	if n.loss > 0 && p.frng.Float64() < n.loss || n.blocked(p.uid, r) {
		p.tx.Lost++
		return true
	}
	p.put(r, d)
	if n.dup > 0 && p.frng.Float64() < n.dup {
		p.tx.Duplicated++
		d.Due = p.later(sent, d.Due)
		p.put(r, d)
	}
	return false
}

// arrive takes a transmission that has reached its due time and returns
// the payload to apply, or nil: lost on arrival (the recipient is cut off
// from the sender, or offline), a duplicate, or only an acknowledgement.
func (p *Port) arrive(d Delivery, now time.Duration) *Event {
	n := p.net
	if !n.faulty {
		return d.Event
	}
	from := d.Event.From
	if n.blocked(from, p.uid) {
		p.tx.Lost++
		return nil
	}
	l := p.link(from)
	p.acknowledged(from, l, d.Ack, now)
	if l.probing {
		// The peer was silent and is heard again: it is back, or the
		// partition has healed. Resend what it has not acknowledged.
		l.probing = false
		p.resend(from, l, l.acked, l.nextSeq, now)
	}
	switch d.Event.Kind {
	case AckEvent:
		return nil
	case GapEvent:
		p.resend(from, l, d.Ack, d.Seq, now)
		return nil
	}
	return p.receive(l, d, now)
}

// receive records a numbered transmission; it returns its payload the
// first time, nil for a duplicate. Either way an acknowledgement is owed.
func (p *Port) receive(l *link, d Delivery, now time.Duration) *Event {
	t := p.net.timing
	if !l.owed {
		l.owed, l.owedSince = true, now
		p.wake(l, now+t.ackDelay)
	}
	seq := d.Seq
	i, found := slices.BinarySearch(l.above, seq)
	if seq < l.recvNext || found {
		l.owedSince = now - t.ackDelay // acknowledge at once
		p.wake(l, now)
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
			p.wake(l, now+t.gapWait)
		}
		return d.Event
	}
	if len(l.above) == 0 {
		l.gapSince = now
		p.wake(l, now+t.gapWait)
	}
	l.above = slices.Insert(l.above, i, seq)
	return d.Event
}

// acknowledged takes the peer's acknowledgement: every number below ack
// has arrived. What it covers is forgotten.
func (p *Port) acknowledged(r int32, l *link, ack uint32, now time.Duration) {
	if ack <= l.acked {
		return
	}
	l.acked = ack
	for l.unacked.len() > 0 && l.unacked.front().seq < ack {
		l.unacked.pop()
	}
	l.timerAt = now + p.net.timing.rto
	if l.unacked.len() > 0 {
		p.wake(l, l.timerAt)
	}
}

// resend transmits again what is unacknowledged with numbers from lo up to
// hi, exclusive.
func (p *Port) resend(r int32, l *link, lo, hi uint32, now time.Duration) {
	for i := l.unacked.head; i < len(l.unacked.items); i++ {
		it := l.unacked.items[i]
		if it.seq >= hi {
			break
		}
		if it.seq >= lo {
			p.retransmit(r, l, it, now)
		}
	}
	if l.unacked.len() > 0 {
		l.timerAt = now + p.net.timing.rto
		p.wake(l, l.timerAt)
	}
}

// retransmit sends a kept transmission again.
func (p *Port) retransmit(r int32, l *link, it sentItem, now time.Duration) {
	p.tx.Retransmitted++
	d := Delivery{Event: it.ev, Due: p.resendDue(now), Seq: it.seq}
	lost := p.transmit(r, l, d, now)
	if p.wire != nil {
		p.noteWire(r, d, now, true, lost)
	}
}

// tend does what the links owe once a tick: gap reports, acknowledgements
// that found no traffic to ride on, probes. A link with nothing left to do
// leaves the active list.
func (p *Port) tend(now time.Duration) {
	t := p.net.timing
	for i := 0; i < len(p.active); {
		if p.active[i].due > now {
			i++
			continue
		}
		r := p.active[i].peer
		l := &p.links[r]
		switch {
		case len(l.above) > 0 && now-l.gapSince >= t.gapWait:
			// What is below the first number that arrived past the gap is
			// lost: report the gap, up to that number.
			l.gapSince = now
			p.transmit(r, l, Delivery{Event: p.gapEv, Due: p.resendDue(now), Seq: l.above[0]}, now)
		case l.owed && now-l.owedSince >= t.ackDelay:
			p.transmit(r, l, Delivery{Event: p.ackEv, Due: p.resendDue(now)}, now)
		}
		if l.unacked.len() > 0 && now >= l.timerAt {
			it := *l.unacked.front()
			p.retransmit(r, l, it, now)
			l.probing = true
			l.timerAt = now + t.rto
		}
		due := forever
		if len(l.above) > 0 {
			due = l.gapSince + t.gapWait
		}
		if l.owed {
			due = min(due, l.owedSince+t.ackDelay)
		}
		if l.unacked.len() > 0 {
			due = min(due, l.timerAt)
		}
		if due == forever {
			l.active = false
			last := len(p.active) - 1
			p.active[i] = p.active[last]
			p.links[p.active[i].peer].activeAt = int32(i)
			p.active = p.active[:last]
			continue
		}
		p.active[i].due = due
		i++
	}
}

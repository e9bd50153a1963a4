package main

import (
	"iter"
	"slices"
	"time"
)

// Reliable links over a network that loses, duplicates and cuts what it
// carries: part of a peer's step machine, with no goroutines, channels or
// clocks inside. Only a run with a fault that can lose or repeat a
// transmission uses them (Config.lossy: not late joiners alone); without
// one a transmission is sent once and arrives once.
//
// A peer keeps a link to another user only while something is owed on it,
// in either direction: what it sent and has not seen acknowledged, an
// acknowledgement, a gap, the end of a session. What each direction
// carries is a session: numbered (Delivery.Seq) from the session's first
// number (Delivery.Base) up, and each transmission also carries the
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
// Sessions are how a link is let go. The receiver of a session that has
// everything of it sends the acknowledgement it owes, once the session
// has been quiet for ackDelay, as an offer to end the session (EndEvent);
// one whose acknowledgements all rode on traffic offers once the session
// has been quiet for a few timeouts (quiet). A sender with nothing unacknowledged takes
// the offer and keeps nothing more of the session; its answer
// (EndAckEvent) waits ackDelay for a payload to that peer, whose new
// session answers it, since a receiver lets a session go on seeing a
// later one. A sender that has sent more since lets the offer pass, and
// the receiver offers again once it has that too; a receiver with no
// answer offers again, at timeouts that double. Once answered, the
// receiver keeps its end for as long as anything sent before the answer
// could still be on its way (gapWait), and then nothing: the sender
// resends only what is unacknowledged, and it had nothing, so no number
// of the session can arrive after that wait and be taken for a new one. A
// sender answers an offer for a session it no longer has as well (its
// first answer was lost): it never uses a session's numbers again. Each
// session starts above every number its sender's incarnation has used on
// any link (links.high), so an acknowledgement or a gap report of an
// ended session, arriving late, covers nothing the sender keeps, and a
// transmission of a session older than the receiver's is a duplicate. A
// receiver that knows nothing of a session takes its base from the
// transmission, and a gap below the first number it sees is repaired like
// any other.
//
// So what faults keep per pair of users is bounded by what is in flight
// between them, plus a few ticks: users that exchange nothing keep
// nothing for each other. The price is in transmissions: a session that
// carries one payload costs three (the payload, the offer, the answer),
// where a link kept for good costs two, and every pair that talked pays
// for its session's end once it falls quiet.
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
//     numbered again, in a new session, and sent to the new one: it is
//     owed to it, applied by the earlier self or not (renew);
//   - a restarted user knows no peer's incarnation: what it sends a peer
//     waits, numbered, until the peer's first word tells it, and until
//     then only words outside the links reach the peer.
//
// What a user learns of its peers' incarnations outlives the links it
// learned it on (links.incs, links.heard): it is a fact about the peer,
// not about what is owed, and forgetting it would take a peer's later
// word for a restart.
type links struct {
	timing linkTiming
	inc    uint32                  // this user's incarnation: after a restart (not 0) it knows no peer's until it hears from it
	table  hashTable[int32, *link] // the links that exist, by peer uid
	all    []tended                // the same links, for tend; link.at indexes it
	high   uint32                  // above every number this incarnation has given a transmission
	incs   map[int32]uint32        // the peers heard at an incarnation after their first
	heard  []uint64                // after a restart: a bitset of the peers whose incarnation is known

	ackEv, gapEv, endEv, endAckEv *Event     // what acknowledgements, gap reports and the ends of sessions carry
	settled                       *stability // with crashes: where an acknowledged send is counted settled (see stability)
}

// link is one peer's end of the link to another, while something is owed
// on it.
type link struct {
	peer      int32
	at        int32  // its index in links.all
	peerInc   uint32 // the peer's incarnation the link is with
	base      uint32 // sending: the first number of the session, 0 when there is none
	answer    uint32 // sending: the base of an ended session whose offer is still to be answered, or 0
	nextSeq   uint32 // sending: the number of the next transmission
	acked     uint32 // sending: the peer has everything below it
	rbase     uint32 // receiving: the first number of the peer's session, 0 when there is none
	recvNext  uint32 // receiving: everything below it has settled
	peerKnown bool   // false after this user's restart, until the peer's first word
	probing   bool   // sending: probed since the last progress
	ackDue    bool   // receiving: an acknowledgement is owed to the peer
	ended     bool   // receiving: the peer took the offer to end the session; kept until offerAt
	offers    uint8  // receiving: offers made since the session last brought a new number

	// Sending.
	unacked queue[*Event] // numbers acked to nextSeq-1, in order: see kept
	timerAt time.Duration // when to probe, while unacked is not empty; when to answer, while answer is not 0

	// Receiving.
	above    []uint32      // numbers above recvNext that have settled, in order
	ackSince time.Duration // since an acknowledgement is owed
	gapSince time.Duration // when the gap below above[0] was first seen
	heardAt  time.Duration // when the session last brought a new number
	offerAt  time.Duration // the session may be offered to end from then; once ended, when nothing of it can still arrive
}

// tended is a link and the earliest time it may need tending: tend passes
// over the others without touching them.
type tended struct {
	l   *link
	due time.Duration
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

// settled reports whether the link has taken number seq of what its peer
// sent on it.
func (l *link) settled(seq uint32) bool {
	_, above := slices.BinarySearch(l.above, seq)
	return l.rbase != 0 && (seq < l.recvNext || above)
}

// linkTiming is how long a link waits for things, from the tick and the
// delay: transit is the longest a transmission can be on its way, and
// users tend their links once a tick.
type linkTiming struct {
	gapWait  time.Duration // a gap older than this is a loss
	ackDelay time.Duration // an acknowledgement waits this long for traffic to ride on; a quiet session, this long before it is offered to end
	rto      time.Duration // the retransmission timeout: an acknowledgement should have come
	quiet    time.Duration // a session that owes no acknowledgement is offered to end once quiet this long
}

// quietTimeouts is how many timeouts a session whose acknowledgements all
// rode on traffic waits before it is offered to end. Its offer is a
// transmission of its own, so it waits for a quiet that traffic seldom
// leaves: at 100 users a wait of one timeout ended sessions between
// payloads a few ticks apart, and cost 0.1 transmissions per delivery.
const quietTimeouts = 4

// maxOfferShift caps the doubling of the wait between offers to end a
// session: at most 4 timeouts apart.
const maxOfferShift = 2

// ackTicks is how many ticks an acknowledgement waits for traffic to ride
// on. Longer saves transmissions and costs sender memory.
const ackTicks = 6

func newLinkTiming(tick, transit time.Duration) linkTiming {
	lt := linkTiming{gapWait: transit + tick, ackDelay: ackTicks * tick}
	lt.rto = lt.ackDelay + 2*transit + 2*tick
	lt.quiet = quietTimeouts * lt.rto
	return lt
}

// newLinks returns the links of incarnation inc of user self: 0 at the
// start, knowing every peer's first incarnation; a later one after a
// restart, knowing none.
func newLinks(self int32, timing linkTiming, inc uint32) *links {
	return &links{
		timing:   timing,
		inc:      inc,
		high:     1,
		ackEv:    &Event{Kind: AckEvent, From: self, Inc: inc},
		gapEv:    &Event{Kind: GapEvent, From: self, Inc: inc},
		endEv:    &Event{Kind: EndEvent, From: self, Inc: inc},
		endAckEv: &Event{Kind: EndAckEvent, From: self, Inc: inc},
	}
}

// get returns the link to peer r, or nil if there is none.
func (ls *links) get(r int32) *link { return ls.table.get(r) }

// link returns the link to peer r, making it if there is none, with what
// this user knows of r's incarnation.
func (ls *links) link(r int32) *link {
	if l := ls.table.get(r); l != nil {
		return l
	}
	l := &link{peer: r, at: int32(len(ls.all)), peerInc: ls.incs[r], peerKnown: ls.knows(r)}
	ls.table.put(r, l)
	ls.all = append(ls.all, tended{l, 0}) // due at once: tend lets it go if it owes nothing
	return l
}

// knows reports whether this user knows peer r's incarnation: always
// before a restart, after one only if it heard r.
func (ls *links) knows(r int32) bool {
	return ls.inc == 0 || int(r/64) < len(ls.heard) && ls.heard[r/64]&(1<<(r%64)) != 0
}

// know records that peer r is at incarnation inc.
func (ls *links) know(l *link, inc uint32) {
	l.peerInc, l.peerKnown = inc, true
	if inc != 0 {
		if ls.incs == nil {
			ls.incs = make(map[int32]uint32)
		}
		ls.incs[l.peer] = inc
	}
	if ls.inc != 0 {
		if w := int(l.peer / 64); w >= len(ls.heard) {
			ls.heard = append(ls.heard, make([]uint64, w+1-len(ls.heard))...)
		}
		ls.heard[l.peer/64] |= 1 << (l.peer % 64)
	}
}

// drop lets go of link l, which owes nothing.
func (ls *links) drop(l *link) {
	last := ls.all[len(ls.all)-1]
	last.l.at = l.at
	ls.all[l.at] = last
	ls.all[len(ls.all)-1] = tended{}
	ls.all = ls.all[:len(ls.all)-1]
	ls.table.delete(l.peer)
}

// open starts a sending session on l, above every number used before.
func (ls *links) open(l *link) {
	l.base, l.acked, l.nextSeq, l.probing = ls.high, ls.high, ls.high, false
}

// number gives the next transmission on l its number.
func (ls *links) number(l *link) uint32 {
	seq := l.nextSeq
	l.nextSeq++
	ls.high = max(ls.high, l.nextSeq)
	return seq
}

// send numbers ev on the link to r, keeps it until acknowledged, and
// transmits it.
func (ls *links) send(out port, r int32, ev *Event, now time.Duration) {
	l := ls.link(r)
	if l.base == 0 {
		ls.open(l)
		l.answer = 0 // the new session answers the offer
	}
	seq := ls.number(l)
	if l.unacked.len() == 0 {
		l.timerAt = now + ls.timing.rto
		ls.wake(l, l.timerAt)
	}
	l.unacked.push(ev)
	if !l.peerKnown {
		return // until the peer's incarnation is known: see renew
	}
	ls.transmit(out, l, Delivery{Event: ev, Seq: seq}, txFirst, now)
}

// control sends ev to r once, unnumbered, with the link's
// acknowledgement riding on it: what the sender will repeat if it must,
// as the report tree does, needs no keeping.
func (ls *links) control(out port, r int32, ev *Event, now time.Duration) {
	if l := ls.table.get(r); l != nil {
		ls.transmit(out, l, Delivery{Event: ev}, txControl, now)
		return
	}
	out.transmit(r, Delivery{Event: ev, To: ls.incs[r]}, txControl, now) // no link: nothing to acknowledge
}

// wake notes that link l needs tending at at.
func (ls *links) wake(l *link, at time.Duration) {
	a := &ls.all[l.at]
	a.due = min(a.due, at)
}

// transmit hands one transmission on link l to the network, with the
// link's session and acknowledgement riding on it.
//
// Base is the sender's own session on a numbered transmission. On an
// unnumbered one other than a gap report or an answer, it is an offer to
// end the peer's session, which rides there at no cost whenever the
// session may be offered (see offerable); EndEvent is the offer alone.
func (ls *links) transmit(out port, l *link, d Delivery, k txKind, now time.Duration) {
	switch {
	case d.Seq != 0:
		d.Base = l.base
	case d.Event.Kind != GapEvent && d.Event.Kind != EndAckEvent && ls.offerable(l, now):
		d.Base = l.rbase
		l.offerAt = now + ls.timing.rto<<min(l.offers, maxOfferShift)
		l.offers++
	}
	d.Ack, d.To, l.ackDue = l.recvNext, l.peerInc, false
	out.transmit(l.peer, d, k, now)
}

// offerable reports whether the peer's session on l may be offered to
// end: this end has all of it, it has brought nothing new for ackDelay,
// and no offer is waiting for its timeout. An offer unanswered is made
// again at timeouts that double: the sender may be away for long, and
// the offer is only for memory.
func (ls *links) offerable(l *link, now time.Duration) bool {
	return l.rbase != 0 && !l.ended && len(l.above) == 0 && now-l.heardAt >= ls.timing.ackDelay && now >= l.offerAt
}

// arrive takes a transmission from a peer and returns the payload to
// apply, or nil: a duplicate, only an acknowledgement or a gap report, or
// what belongs to an earlier incarnation of either end. renewed says the
// transmission was the first this user heard from the peer's incarnation
// after another (or, after a restart, at all): see renew.
func (ls *links) arrive(out port, d Delivery, now time.Duration) (ev *Event, renewed bool) {
	from, inc := d.Event.From, d.Event.Inc
	l := ls.table.get(from)
	if l == nil && d.Seq == 0 && d.Base == 0 && d.To == ls.inc && inc == ls.incs[from] && ls.knows(from) {
		// Between two incarnations that know each other, with nothing
		// owed either way: a word outside the links needs no link, and
		// an acknowledgement or a gap report of one no longer kept
		// covers nothing.
		if linkWord(d.Event.Kind) {
			return nil, false
		}
		return d.Event, false
	}
	if l == nil {
		l = ls.link(from)
	}
	switch {
	case l.peerKnown && inc < l.peerInc:
		return nil, false // from an earlier self of the peer
	case !l.peerKnown || inc > l.peerInc:
		ls.renew(out, l, inc, now)
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
		if d.Seq == 0 && !linkWord(d.Event.Kind) {
			return d.Event, renewed
		}
		return nil, renewed
	}
	return ls.take(out, l, d, now), renewed
}

// linkWord reports whether events of kind k are the links' own words,
// which carry nothing to apply.
func linkWord(k EventKind) bool {
	return k == AckEvent || k == GapEvent || k == EndEvent || k == EndAckEvent
}

// take takes a transmission between the two incarnations of link l.
func (ls *links) take(out port, l *link, d Delivery, now time.Duration) *Event {
	ls.acknowledged(l, d.Ack, now)
	if l.probing {
		// The peer was silent and is heard again: it is back, or the
		// partition has healed. Resend what it has not acknowledged.
		l.probing = false
		ls.resend(out, l, l.acked, l.nextSeq, now)
	}
	if d.Seq == 0 && d.Base != 0 && d.Event.Kind != GapEvent && d.Event.Kind != EndAckEvent {
		ls.offered(out, l, d.Base, now)
	}
	switch d.Event.Kind {
	case AckEvent, EndEvent:
		return nil
	case GapEvent:
		ls.resend(out, l, d.Ack, d.Seq, now)
		return nil
	case EndAckEvent:
		if d.Base == l.rbase && !l.ended {
			l.ended, l.offerAt, l.ackDue = true, now+ls.timing.gapWait, false
			ls.wake(l, l.offerAt)
		}
		return nil
	}
	if d.Seq == 0 {
		return d.Event // sent outside the links: see control
	}
	switch {
	case l.rbase == 0 || d.Base > l.rbase:
		// A session this end has not seen: it starts at its base, and
		// what is missing below d.Seq is a gap.
		l.rbase, l.recvNext, l.above, l.ended = d.Base, d.Base, l.above[:0], false
	case d.Base < l.rbase:
		return nil // of a session that ended before this one began: a duplicate
	}
	return ls.receive(l, d, now)
}

// offered takes the peer's offer to end this user's session from base,
// whose every number below its acknowledgement the peer has (the
// acknowledgement, which came with it, is taken already). The sender takes
// it if nothing is unacknowledged, and answers it then, or if the session
// is no longer its own: it ended, and the answer was lost.
func (ls *links) offered(out port, l *link, base uint32, now time.Duration) {
	switch {
	case l.base == base && l.unacked.len() > 0:
		return // sent since: the peer will offer again once it has that too
	case l.base == base:
		// The answer waits up to ackDelay for a payload to this peer,
		// whose new session answers it: the peer lets the old one go on
		// seeing it.
		l.base, l.acked, l.nextSeq, l.probing = 0, 0, 0, false
		l.answer, l.timerAt = base, now+ls.timing.ackDelay
		ls.wake(l, l.timerAt)
		return
	}
	if l.answer == base {
		l.answer = 0
	}
	ls.transmit(out, l, Delivery{Event: ls.endAckEv, Base: base}, txControl, now)
	ls.wake(l, now)
}

// renew starts the link l with the peer's incarnation inc, later than the
// one it was with. If that one was known, the peer crashed and restarted:
// nothing numbered for its earlier self means anything to it, so both
// directions start afresh, and what the earlier self had not acknowledged
// is numbered again in a new session: the new self is owed it, since it
// remembers nothing (the earlier self may have applied some of it, and
// crashed before its acknowledgement came: see docs/faults.md). If none
// was known, this user restarted: what waited for the peer's incarnation
// goes now.
func (ls *links) renew(out port, l *link, inc uint32, now time.Duration) {
	known := l.peerKnown
	ls.know(l, inc)
	k := txFirst
	if known {
		l.rbase, l.recvNext, l.above, l.ackDue, l.ended = 0, 0, l.above[:0], false, false
		l.base, l.acked, l.nextSeq, l.probing = 0, 0, 0, false
		if n := l.unacked.len(); n > 0 {
			ls.open(l)
			l.nextSeq += uint32(n)
			ls.high = max(ls.high, l.nextSeq)
		}
		k = txResend
	}
	for seq, ev := range l.kept() {
		ls.transmit(out, l, Delivery{Event: ev, Seq: seq}, k, now)
	}
	if l.unacked.len() > 0 {
		l.timerAt = now + ls.timing.rto
		ls.wake(l, l.timerAt)
	}
}

// receive records a numbered transmission of the session this end has;
// it returns its payload the first time, nil for a duplicate. Either way
// an acknowledgement is owed.
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
	l.heardAt, l.offerAt, l.offers = now, 0, 0 // an offer made before is void
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
	if l.base == 0 || ack <= l.acked {
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
func (ls *links) resend(out port, l *link, lo, hi uint32, now time.Duration) {
	for seq, ev := range l.kept() {
		if seq >= hi {
			break
		}
		if seq >= lo {
			ls.transmit(out, l, Delivery{Event: ev, Seq: seq}, txResend, now)
		}
	}
	if l.unacked.len() > 0 {
		l.timerAt = now + ls.timing.rto
		ls.wake(l, l.timerAt)
	}
}

// tend does what the links owe once a tick: gap reports, acknowledgements
// that found no traffic to ride on (offering to end a quiet session),
// probes. A link that owes nothing more, in either direction, is let go.
func (ls *links) tend(out port, now time.Duration) {
	t := ls.timing
	for i := 0; i < len(ls.all); {
		if ls.all[i].due > now {
			i++
			continue
		}
		l := ls.all[i].l
		switch {
		case len(l.above) > 0 && now-l.gapSince >= t.gapWait:
			// What is below the first number that settled past the gap is
			// lost: report the gap, up to that number.
			l.gapSince = now
			ls.transmit(out, l, Delivery{Event: ls.gapEv, Seq: l.above[0]}, txControl, now)
		case ls.offerable(l, now) && (l.offers > 0 || l.ackDue || now-l.heardAt >= t.quiet):
			// Quiet, and complete, with nothing to ride on: an
			// acknowledgement owed anyway carries the offer at no cost;
			// a session whose acknowledgements rode on traffic is
			// offered on its own once it has been quiet for a while.
			ls.transmit(out, l, Delivery{Event: ls.endEv}, txControl, now)
		case l.ackDue && now-l.ackSince >= t.ackDelay && l.answer != 0:
			// The answer to the peer's offer carries the acknowledgement.
			ls.transmit(out, l, Delivery{Event: ls.endAckEv, Base: l.answer}, txControl, now)
			l.answer = 0
		case l.ackDue && now-l.ackSince >= t.ackDelay:
			ls.transmit(out, l, Delivery{Event: ls.ackEv}, txControl, now)
		}
		if l.unacked.len() > 0 && now >= l.timerAt {
			if l.peerKnown { // else it waits for the peer's first word
				ls.transmit(out, l, Delivery{Event: *l.unacked.front(), Seq: l.acked}, txResend, now)
				l.probing = true
			}
			l.timerAt = now + t.rto
		}
		if l.answer != 0 && now >= l.timerAt {
			ls.transmit(out, l, Delivery{Event: ls.endAckEv, Base: l.answer}, txControl, now)
			l.answer = 0
		}
		if l.ended && now >= l.offerAt {
			l.rbase, l.recvNext, l.above, l.ended = 0, 0, nil, false
		}
		due := forever
		if len(l.above) > 0 {
			due = l.gapSince + t.gapWait
		}
		if l.ackDue {
			due = min(due, l.ackSince+t.ackDelay)
		}
		if l.unacked.len() > 0 || l.answer != 0 {
			due = min(due, l.timerAt)
		}
		switch {
		case l.ended || l.rbase != 0 && l.offers > 0:
			due = min(due, l.offerAt)
		case l.rbase != 0 && l.ackDue:
			due = min(due, l.heardAt+t.ackDelay)
		case l.rbase != 0:
			due = min(due, l.heardAt+t.quiet)
		}
		if l.base == 0 && l.rbase == 0 && !l.ackDue && l.answer == 0 {
			ls.drop(l) // the last link moves to i
			continue
		}
		ls.all[i].due = due
		i++
	}
}

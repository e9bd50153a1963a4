package main

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// roomEvent is a create of a room of users 1 and 2 by user 1's view, to
// carry over the links.
func roomEvent(tn *testNet) *Event {
	ev := tn.p(1).view.Create(newGroup(len(tn.peers)-1, 1, 2), tn.now)
	tn.p(1).ResetRecords()
	return ev
}

// closeOf is user 1's close of an incarnation i of a room of users 1 and
// 2, as a payload to carry over the links.
func closeOf(i uint64) *Event {
	return &Event{Kind: CloseEvent, From: 1, Clock: i, Room: Stamp{i, 1}, Group: newGroup(2, 1, 2)}
}

// A payload that arrives twice is applied once; the duplicate makes the
// receiver acknowledge at its next tick.
func TestLinkDropsDuplicates(t *testing.T) {
	tn := newTestNet(t, 2, 0, true, 1)
	tn.p(1).links.send(tn.ports[1], 2, roomEvent(tn), 0)
	d := tn.take(1, 2)
	joins := 0
	for _, tr := range append(d, d...) {
		joins += len(tn.arrive(tr))
	}
	if joins != 1 {
		t.Fatalf("applied %d times, want once", joins)
	}
	tn.now = time.Second
	tn.tickOne(2, actNone)
	acks := tn.take(2, 1)
	if len(acks) != 1 || acks[0].d.Event.Kind != AckEvent || acks[0].d.Ack != 2 {
		t.Fatalf("after a duplicate: %+v, want one acknowledgement of everything below 2", acks)
	}
	tn.arrive(acks[0])
	if l := tn.p(1).links.get(2); l != nil && l.unacked.len() != 0 {
		t.Errorf("the sender still keeps %d transmissions", l.unacked.len())
	}
}

// A lost transmission is found by the gap it leaves, once nothing could
// still be on its way, and resent on the receiver's report: one round
// trip.
func TestLinkRepairsAGap(t *testing.T) {
	tn := newTestNet(t, 2, 0, true, 1)
	var evs []*Event
	for i := range uint64(3) {
		evs = append(evs, closeOf(i+1))
		tn.p(1).links.send(tn.ports[1], 2, evs[i], 0)
	}
	d := tn.take(1, 2)
	for _, tr := range d[1:] { // the first is lost
		tn.arrive(tr)
	}
	tn.now = time.Second
	tn.tickOne(2, actNone) // not yet: it could still be on its way
	if len(tn.take(2, 1)) != 0 {
		t.Fatal("a gap reported before it could be a loss")
	}
	gapWait := tn.p(2).links.timing.gapWait
	tn.now = gapWait
	tn.tickOne(2, actNone)
	report := tn.take(2, 1)
	if len(report) != 1 || report[0].d.Event.Kind != GapEvent || report[0].d.Ack != 1 || report[0].d.Seq != 2 {
		t.Fatalf("gap report %+v, want one for numbers 1 up to 2", report)
	}
	tn.arrive(report[0])
	resent := tn.take(1, 2)
	if len(resent) != 1 || resent[0].d.Event != evs[0] || resent[0].k != txResend {
		t.Fatalf("resent %+v, want the lost one once", resent)
	}
	tn.arrive(resent[0])
	if l := tn.p(2).links.get(1); l.recvNext != 4 || len(l.above) != 0 {
		t.Errorf("receiver has everything below %d, and %v above", l.recvNext, l.above)
	}
}

// A peer that stays silent (offline, cut off) is probed once a timeout
// with the oldest transmission alone; the first word from it brings
// everything else unacknowledged.
func TestLinkProbesThenResends(t *testing.T) {
	tn := newTestNet(t, 2, 0, true, 1)
	tn.away[2] = true
	for i := range uint64(3) {
		tn.p(1).links.send(tn.ports[1], 2, closeOf(i+1), 0)
	}
	for _, tr := range tn.take(1, 2) {
		tn.arrive(tr) // lost: user_2 is offline
	}
	rto := tn.p(1).links.timing.rto
	for k := 1; k <= 3; k++ {
		tn.now = time.Duration(k) * rto
		tn.tickOne(1, actNone)
	}
	probes := tn.take(1, 2)
	if len(probes) != 3 || tn.ports[1].tx.Retransmitted != 3 {
		t.Fatalf("%d probes, %d retransmitted; want one probe a timeout", len(probes), tn.ports[1].tx.Retransmitted)
	}
	tn.away[2] = false
	tn.p(2).links.send(tn.ports[2], 1, &Event{Kind: CloseEvent, From: 2, Clock: 1, Room: Stamp{9, 9}, Group: newGroup(2, 1, 2)}, tn.now) // back, and says something
	for _, tr := range tn.take(2, 1) {
		tn.arrive(tr)
	}
	got := 0
	for _, tr := range tn.take(1, 2) {
		if tr.k == txResend {
			got++
		}
	}
	if got != 3 {
		t.Errorf("after the peer's first word, %d of 3 were resent", got)
	}
}

// The network loses what crosses a split, at sending and on arrival, and
// what is addressed to a user offline; it delivers some transmissions
// twice.
func TestNetworkFaults(t *testing.T) {
	pair := func(loss, dup float64, delay time.Duration) (*Network, *realPort, *realPort) {
		n := newNetwork(netConfig{users: 2, inbox: 64, tick: time.Second, sched: realSchedule{delay}, faults: newFaults(2, loss, dup)})
		return n, newRealPort(n, 1, 1), newRealPort(n, 2, 1)
	}
	take := func(p *realPort) []Delivery {
		var out []Delivery
		for len(p.inbox) > 0 {
			out = append(out, <-p.inbox)
		}
		return out
	}
	send := func(p *realPort) { p.transmit(2, Delivery{Event: &Event{From: 1}}, txFirst, 0) }
	t.Run("split", func(t *testing.T) {
		n, a, b := pair(0, 0, 0)
		n.faults.split.Store(&split{sides: []uint8{0, 1, 2}})
		send(a)
		if len(b.inbox) != 0 || a.tx.Lost != 1 {
			t.Fatal("a transmission crossed the split")
		}
		n.faults.split.Store(nil)
		send(a)
		d := take(b)
		n.faults.split.Store(&split{sides: []uint8{0, 1, 2}})
		if b.arrives(d[0]) || b.tx.Lost != 1 {
			t.Error("a transmission in flight when the network split settled")
		}
		n.faults.split.Store(&split{sides: []uint8{0, 3, 2}}) // user_1 is a bridge
		send(a)
		if len(b.inbox) == 0 {
			t.Error("a bridge could not reach the other side")
		}
	})
	t.Run("offline", func(t *testing.T) {
		n, a, b := pair(0, 0, 0)
		send(a)
		d := take(b)
		n.faults.away[2].Store(true)
		if b.arrives(d[0]) {
			t.Error("a user offline received")
		}
	})
	t.Run("loss and duplication", func(t *testing.T) {
		_, a, b := pair(0.3, 0.5, time.Second)
		for range 2000 {
			send(a)
			take(b)
		}
		lost, dup := float64(a.tx.Lost)/2000, float64(a.tx.Duplicated)/float64(2000-a.tx.Lost)
		if lost < 0.25 || lost > 0.35 || dup < 0.45 || dup > 0.55 {
			t.Errorf("lost %.2f of transmissions (want 0.3), duplicated %.2f of the rest (want 0.5)", lost, dup)
		}
	})
}

// A peer that restarts is a new incarnation: what was numbered for its
// earlier self is dropped on arrival; hearing the new one, the sender
// numbers what the earlier self had not acknowledged again, in a new
// session, and sends it, and the new one takes each once.
func TestLinkRenewsForARestartedPeer(t *testing.T) {
	tn := newTestNetOf(t, 2, 0, 1, peerConfig{faulty: true, links: true, crash: true})
	for i := range uint64(3) {
		tn.p(1).links.send(tn.ports[1], 2, closeOf(i+1), 0)
	}
	first := tn.take(1, 2)
	tn.arrive(first[0]) // the earlier self takes one, and crashes before acknowledging
	cfg := tn.cfg[2]
	cfg.inc = 5
	tn.peers[2] = newPeer(2, cfg, nil)
	tn.p(2).Step(Input{Kind: restartInput, Tick: 4}, tn.ports[2])
	for _, r := range tn.arrive(first[1]) {
		if r.Kind != KindOnline { // it learns that user_1 is online, and takes nothing
			t.Fatalf("a transmission numbered for the earlier self was taken: %v", r.Kind)
		}
	}
	if l := tn.p(2).links.get(1); l != nil && l.rbase != 0 {
		t.Fatal("a transmission numbered for the earlier self was numbered in")
	}
	hello := tn.take(2, 1)
	if len(hello) != 1 || hello[0].d.Event.Kind != RestartEvent || hello[0].d.Event.Inc != 5 {
		t.Fatalf("the restarted user told its peer %+v, want one restart word", hello)
	}
	tn.arrive(hello[0])
	again := tn.take(1, 2)
	var seqs []uint32
	for _, tr := range again {
		if tr.d.To != 5 {
			t.Errorf("%s sent for incarnation %d, want 5", tr.d.Event.Kind, tr.d.To)
		}
		seqs = append(seqs, tr.d.Seq)
	}
	// The three closes, numbered again in a new session above the
	// earlier one's numbers, and the welcome.
	if len(again) != 4 || again[3].d.Event.Kind != WelcomeEvent || !slices.Equal(seqs, []uint32{4, 5, 6, 7}) || again[0].d.Base != 4 {
		t.Fatalf("after the restart word the peer sent %d transmissions numbered %v from %d, want 4 to 7 from 4 ending with a welcome", len(again), seqs, again[0].d.Base)
	}
	for _, tr := range append(again, again...) {
		tn.arrive(tr)
	}
	if l := tn.p(2).links.get(1); l.recvNext != 8 || !l.peerKnown || l.peerInc != 0 {
		t.Errorf("the new incarnation has everything below %d from incarnation %d (known %v), want 8 from 0", l.recvNext, l.peerInc, l.peerKnown)
	}
	if tn.p(2).waiting != 0 {
		t.Errorf("the restarted user still waits for %d welcomes", tn.p(2).waiting)
	}
}

// A link lives while something is owed on it. A payload taken costs the
// receiver's acknowledgement, which a quiet session sends as an offer to
// end it, and the sender's answer, which waits ackDelay for a payload to
// ride on: three transmissions, and then neither end keeps anything. A
// duplicate that arrives while anything sent before the answer could
// still be on its way is still recognised; the next payload starts a new
// session above the old numbers, and a late word of the old one covers
// nothing of it.
func TestLinkIsLetGoOnceNothingIsOwed(t *testing.T) {
	tn := newTestNet(t, 2, 0, true, 1)
	t1 := tn.p(1).links.timing
	tn.p(1).links.send(tn.ports[1], 2, closeOf(1), 0)
	d := tn.take(1, 2)
	tn.arrive(d[0])
	tn.now = t1.ackDelay - time.Second
	tn.tickOne(2, actNone)
	if len(tn.take(2, 1)) != 0 {
		t.Fatal("an acknowledgement before ackDelay, with no traffic to ride on")
	}
	tn.now = t1.ackDelay
	tn.tickOne(2, actNone)
	offer := tn.take(2, 1)
	if len(offer) != 1 || offer[0].d.Event.Kind != EndEvent || offer[0].d.Base != d[0].d.Base || offer[0].d.Ack != d[0].d.Seq+1 {
		t.Fatalf("after a quiet ackDelay the receiver sent %+v, want one offer to end the session, acknowledging it all", offer)
	}
	tn.arrive(offer[0])
	if l := tn.p(1).links.get(2); l == nil || l.base != 0 || l.unacked.len() != 0 {
		t.Fatal("the sender did not take the offer")
	}
	tn.now += t1.ackDelay - time.Second
	tn.tickOne(1, actNone)
	if got := tn.take(1, 2); len(got) != 0 {
		t.Fatalf("the sender answered %+v before ackDelay, with no payload to ride on", got)
	}
	tn.now += time.Second
	tn.tickOne(1, actNone)
	answer := tn.take(1, 2)
	if len(answer) != 1 || answer[0].d.Event.Kind != EndAckEvent || answer[0].d.Base != d[0].d.Base {
		t.Fatalf("the sender answered %+v, want the offer taken", answer)
	}
	if tn.p(1).links.get(2) != nil {
		t.Error("the sender keeps a link with nothing owed on it")
	}
	tn.arrive(answer[0])
	if got := tn.arrive(d[0]); len(got) != 0 {
		t.Fatalf("a duplicate after the session ended was taken: %v", got)
	}
	tn.tickOne(2, actNone) // acknowledges the duplicate
	tn.take(2, 1)
	if tn.p(2).links.get(1) == nil {
		t.Fatal("the receiver let its end go while a duplicate could still come")
	}
	tn.now += t1.gapWait
	tn.tickOne(2, actNone)
	if tn.p(2).links.get(1) != nil {
		t.Error("the receiver keeps its end once nothing of the session can come")
	}
	if tx := tn.ports[1].tx.Transmissions + tn.ports[2].tx.Transmissions; tx != 4 {
		t.Errorf("%d transmissions, want 4: the payload, the offer, the answer, the duplicate's acknowledgement", tx)
	}

	tn.p(1).links.send(tn.ports[1], 2, closeOf(2), tn.now)
	d2 := tn.take(1, 2)
	if d2[0].d.Base <= d[0].d.Seq || d2[0].d.Seq != d2[0].d.Base {
		t.Fatalf("the next session starts at %d with number %d, want above %d", d2[0].d.Base, d2[0].d.Seq, d[0].d.Seq)
	}
	tn.arrive(offer[0]) // late: the old session's offer and acknowledgement
	if l := tn.p(1).links.get(2); l.unacked.len() != 1 {
		t.Fatal("an acknowledgement of the ended session covered the new one")
	}
	if answer := tn.take(1, 2); len(answer) != 1 || answer[0].d.Event.Kind != EndAckEvent || answer[0].d.Base != d[0].d.Base {
		t.Errorf("the sender answered a late offer of an ended session with %+v, want it taken again", answer)
	}
	if got := tn.arrive(d2[0]); len(got) == 0 {
		t.Error("the new session's first payload was not taken")
	}
}

// A payload sent while an offer waits for its answer answers it: the
// receiver lets the ended session go on seeing the new one, and no answer
// of its own is sent.
func TestLinkAnswersWithANewSession(t *testing.T) {
	tn := newTestNet(t, 2, 0, true, 1)
	t1 := tn.p(1).links.timing
	tn.p(1).links.send(tn.ports[1], 2, closeOf(1), 0)
	first := tn.take(1, 2)
	tn.arrive(first[0])
	tn.now = t1.ackDelay
	tn.tickOne(2, actNone)
	tn.arrive(tn.take(2, 1)[0]) // the offer
	tn.now += time.Second
	tn.p(1).links.send(tn.ports[1], 2, closeOf(2), tn.now)
	tn.now += t1.ackDelay
	tn.tickOne(1, actNone)
	next := tn.take(1, 2)
	if len(next) != 1 || next[0].d.Event.Kind != CloseEvent || next[0].d.Base <= first[0].d.Base {
		t.Fatalf("the sender sent %+v, want the new session's payload alone", next)
	}
	tn.arrive(next[0])
	if l := tn.p(2).links.get(1); l == nil || l.rbase != next[0].d.Base || l.recvNext != next[0].d.Seq+1 {
		t.Fatal("the receiver did not move to the new session")
	}
	if got := tn.arrive(first[0]); len(got) != 0 {
		t.Error("a duplicate of the ended session was taken")
	}
}

// An offer to end a session that the sender has sent more in since is
// let pass; the receiver offers again once it has that too. An answer
// that is lost leaves the receiver offering once a timeout.
func TestLinkEndsOnlyWhatIsAcknowledged(t *testing.T) {
	tn := newTestNet(t, 2, 0, true, 1)
	t1 := tn.p(1).links.timing
	tn.p(1).links.send(tn.ports[1], 2, closeOf(1), 0)
	tn.arrive(tn.take(1, 2)[0])
	tn.now = t1.ackDelay
	tn.tickOne(2, actNone)
	offer := tn.take(2, 1)
	tn.p(1).links.send(tn.ports[1], 2, closeOf(2), tn.now)
	second := tn.take(1, 2)
	tn.arrive(offer[0])
	if got := tn.take(1, 2); len(got) != 0 {
		t.Fatalf("the sender answered %+v with a payload unacknowledged", got)
	}
	if l := tn.p(1).links.get(2); l == nil || l.base == 0 || l.unacked.len() != 1 {
		t.Fatal("the sender ended a session with a payload unacknowledged")
	}
	tn.arrive(second[0])
	tn.now += t1.ackDelay
	tn.tickOne(2, actNone)
	offer = tn.take(2, 1)
	if len(offer) != 1 || offer[0].d.Event.Kind != EndEvent || offer[0].d.Ack != second[0].d.Seq+1 {
		t.Fatalf("the receiver sent %+v, want a new offer acknowledging both", offer)
	}
	tn.arrive(offer[0])
	tn.now += t1.ackDelay
	tn.tickOne(1, actNone)
	if lost := tn.take(1, 2); len(lost) != 1 || lost[0].d.Event.Kind != EndAckEvent {
		t.Fatalf("the sender answered %+v, want the offer taken", lost) // and lost
	}
	if tn.p(1).links.get(2) != nil {
		t.Fatal("the sender keeps the ended session")
	}
	tn.now += t1.rto
	tn.tickOne(2, actNone)
	again := tn.take(2, 1)
	if len(again) != 1 || again[0].d.Event.Kind != EndEvent {
		t.Fatalf("with the answer lost the receiver sent %+v, want its offer again", again)
	}
	tn.arrive(again[0])
	if answer := tn.take(1, 2); len(answer) != 1 || answer[0].d.Event.Kind != EndAckEvent {
		t.Fatalf("the sender answered %+v to an offer of a session it no longer has, want it taken", answer)
	} else {
		tn.arrive(answer[0])
	}
	tn.now += t1.gapWait
	tn.tickOne(2, actNone)
	tn.tickOne(1, actNone)
	if tn.p(1).links.get(2) != nil || tn.p(2).links.get(1) != nil {
		t.Error("a link is kept with nothing owed")
	}
}

// What a user learns of a peer's incarnation outlives the link it learned
// it on, so a later word of the same incarnation is no restart; a user
// that restarted knows only the incarnations it heard.
func TestLinksRememberIncarnations(t *testing.T) {
	timing := newLinkTiming(time.Second, time.Second)
	ls := newLinks(1, timing, 0)
	l := ls.link(2)
	ls.know(l, 5)
	ls.drop(l)
	if l := ls.link(2); !l.peerKnown || l.peerInc != 5 {
		t.Errorf("a new link to a peer heard at incarnation 5 is with %d (known %v)", l.peerInc, l.peerKnown)
	}
	if l := ls.link(3); !l.peerKnown || l.peerInc != 0 {
		t.Errorf("a new link to a peer never heard of is with %d (known %v), want its first incarnation", l.peerInc, l.peerKnown)
	}
	restarted := newLinks(1, timing, 7)
	l = restarted.link(70)
	if l.peerKnown {
		t.Fatal("a restarted user knows a peer's incarnation unheard")
	}
	restarted.know(l, 0)
	restarted.drop(l)
	if l := restarted.link(70); !l.peerKnown || l.peerInc != 0 {
		t.Errorf("a restarted user forgot the incarnation it heard: %d (known %v)", l.peerInc, l.peerKnown)
	}
	for _, r := range []int32{71, 200} {
		if restarted.link(r).peerKnown {
			t.Errorf("a restarted user knows %s's incarnation unheard", uidName(r))
		}
	}
	for i, a := range restarted.all {
		l := a.l
		if restarted.table.get(l.peer) != l || int(l.at) != i {
			t.Errorf("link to %s is at %d of the list, and the table has %p for %p", uidName(l.peer), l.at, restarted.table.get(l.peer), l)
		}
	}
}

// Links follow traffic. Among 100 users, one create makes links between
// its creator and every other user, and none between two others; once it
// has been acknowledged and the sessions have ended, no user keeps any
// link: without loss, within a timeout, an ackDelay and a gapWait of the
// create (an offer riding on a report, the answer, the wait for
// stragglers), and under loss, where an offer or an answer lost costs a
// timeout or more, soon after.
func TestLinksFollowTraffic(t *testing.T) {
	const n = 100
	for _, loss := range []int{0, 10} {
		tn := newTestNet(t, n, 0, true, 1)
		rng := rand.New(rand.NewPCG(3, 2))
		lossy := func(inTransit) bool { return loss > 0 && rng.IntN(100) < loss }
		g := newGroup(n, 1, 2, 3)
		tn.p(1).Step(Input{Kind: proposeInput, Proposal: Proposal{Kind: CreateEvent, Group: g}}, tn.ports[1])
		timing := tn.p(1).links.timing
		most, within := 0, int(timing.rto+timing.ackDelay+timing.gapWait)/int(tn.period)+2
		if loss > 0 {
			within = 200
		}
		for k := 0; ; k++ {
			tn.route(lossy, nil)
			links := 0
			for u := int32(1); u <= n; u++ {
				ls := tn.p(u).links
				links += len(ls.all)
				for _, a := range ls.all {
					l := a.l
					if u != 1 && l.peer != 1 && l.base|l.rbase != 0 {
						t.Fatalf("loss %d%%, tick %d: %s and %s have a session, and exchanged nothing", loss, k, uidName(u), uidName(l.peer))
					}
				}
			}
			most = max(most, links)
			if links == 0 {
				t.Logf("loss %d%%: links gone after %d ticks", loss, k)
				break
			}
			if k > within {
				t.Fatalf("loss %d%%: %d links remain after %d ticks", loss, links, k)
			}
			tn.tickAll(actNone)
		}
		if most < n-1 {
			t.Errorf("loss %d%%: at most %d links at once: the create did not make them", loss, most)
		}
	}
}

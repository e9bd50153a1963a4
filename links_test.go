package main

import (
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
	if l := &tn.p(1).links.table[2]; l.unacked.len() != 0 {
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
	if l := &tn.p(2).links.table[1]; l.recvNext != 4 || len(l.above) != 0 {
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
// numbers what the earlier self had not acknowledged from 1 again and
// sends it, and the new one takes each once.
func TestLinkRenewsForARestartedPeer(t *testing.T) {
	tn := newTestNetOf(t, 2, 0, 1, peerConfig{faulty: true, crash: true})
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
	if tn.p(2).links.table[1].recvNext != 1 {
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
	// The three closes, numbered from 1 again, and the welcome.
	if len(again) != 4 || again[3].d.Event.Kind != WelcomeEvent || !slices.Equal(seqs, []uint32{1, 2, 3, 4}) {
		t.Fatalf("after the restart word the peer sent %d transmissions numbered %v, want 1 to 4 ending with a welcome", len(again), seqs)
	}
	for _, tr := range append(again, again...) {
		tn.arrive(tr)
	}
	if l := &tn.p(2).links.table[1]; l.recvNext != 5 || !l.peerKnown || l.peerInc != 0 {
		t.Errorf("the new incarnation has everything below %d from incarnation %d (known %v), want 5 from 0", l.recvNext, l.peerInc, l.peerKnown)
	}
	if tn.p(2).waiting != 0 {
		t.Errorf("the restarted user still waits for %d welcomes", tn.p(2).waiting)
	}
}

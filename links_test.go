package main

import (
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

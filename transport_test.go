package main

import (
	"math/rand/v2"
	"testing"
	"time"
)

// pair is two ports on a real-time network with faults on but none
// injected, so that a test decides what is lost.
func pair(t *testing.T, c netConfig) (n *Network, a, b *Port) {
	t.Helper()
	c.users, c.inbox, c.tick, c.faulty = 2, 64, time.Second, true
	n = newNetwork(c)
	return n, n.connect(1, rand.New(rand.NewPCG(1, 1)), 1), n.connect(2, rand.New(rand.NewPCG(1, 2)), 1)
}

// take receives everything in p's inbox, in order.
func take(p *Port) []Delivery {
	var out []Delivery
	for len(p.inbox) > 0 {
		out = append(out, <-p.inbox)
	}
	return out
}

// arriveAll has p take ds, and returns the payloads applied.
func arriveAll(p *Port, ds []Delivery, now time.Duration) []*Event {
	var got []*Event
	for _, d := range ds {
		if ev := p.arrive(d, now); ev != nil {
			got = append(got, ev)
		}
	}
	return got
}

// A payload that arrives twice is applied once; the duplicate makes the
// receiver acknowledge at its next tick.
func TestLinkDropsDuplicates(t *testing.T) {
	_, a, b := pair(t, netConfig{})
	ev := &Event{Kind: CreateEvent, From: 1}
	a.sendReliably(2, ev, 0)
	d := take(b)
	if got := arriveAll(b, append(d, d...), 0); len(got) != 1 {
		t.Fatalf("applied %d times, want once", len(got))
	}
	b.tend(time.Second)
	acks := take(a)
	if len(acks) != 1 || acks[0].Event.Kind != AckEvent || acks[0].Ack != 2 {
		t.Fatalf("after a duplicate: %+v, want one acknowledgement of everything below 2", acks)
	}
	arriveAll(a, acks, time.Second)
	if l := &a.links[2]; l.unacked.len() != 0 {
		t.Errorf("the sender still keeps %d transmissions", l.unacked.len())
	}
}

// A lost transmission is found by the gap it leaves, once nothing could
// still be on its way, and resent on the receiver's report: one round
// trip.
func TestLinkRepairsAGap(t *testing.T) {
	_, a, b := pair(t, netConfig{})
	evs := []*Event{{From: 1, Clock: 1}, {From: 1, Clock: 2}, {From: 1, Clock: 3}}
	for _, ev := range evs {
		a.sendReliably(2, ev, 0)
	}
	d := take(b)
	if got := arriveAll(b, d[1:], 0); len(got) != 2 { // the first is lost
		t.Fatalf("applied %d, want the two that came", len(got))
	}
	b.tend(time.Second) // not yet: it could still be on its way
	if len(a.inbox) != 0 {
		t.Fatal("a gap reported before it could be a loss")
	}
	b.tend(a.net.timing.gapWait)
	report := take(a)
	if len(report) != 1 || report[0].Event.Kind != GapEvent || report[0].Ack != 1 || report[0].Seq != 2 {
		t.Fatalf("gap report %+v, want one for numbers 1 up to 2", report)
	}
	arriveAll(a, report, a.net.timing.gapWait)
	resent := take(b)
	if got := arriveAll(b, resent, a.net.timing.gapWait); len(got) != 1 || got[0] != evs[0] || a.tx.Retransmitted != 1 {
		t.Errorf("resent %d, applied %v, want the lost one once", a.tx.Retransmitted, got)
	}
	if l := &b.links[1]; l.recvNext != 4 || len(l.above) != 0 {
		t.Errorf("receiver has everything below %d, and %v above", l.recvNext, l.above)
	}
}

// A peer that stays silent (offline, cut off) is probed once a timeout
// with the oldest transmission alone; the first word from it brings
// everything else unacknowledged.
func TestLinkProbesThenResends(t *testing.T) {
	n, a, b := pair(t, netConfig{})
	n.away[2].Store(true)
	for i := range 3 {
		a.sendReliably(2, &Event{From: 1, Clock: uint64(i + 1)}, 0)
	}
	if len(b.inbox) != 0 || a.tx.Lost != 3 {
		t.Fatalf("%d reached a user offline, %d lost", len(b.inbox), a.tx.Lost)
	}
	rto := n.timing.rto
	for k := 1; k <= 3; k++ {
		a.tend(time.Duration(k) * rto)
	}
	if a.tx.Retransmitted != 3 || a.tx.Lost != 6 {
		t.Fatalf("%d probes, %d lost; want one probe a timeout", a.tx.Retransmitted, a.tx.Lost)
	}
	n.away[2].Store(false)
	b.sendReliably(1, &Event{From: 2, Clock: 1}, 3*rto) // back, and says something
	arriveAll(a, take(a), 3*rto)
	if got := arriveAll(b, take(b), 3*rto); len(got) != 3 {
		t.Errorf("after the peer's first word, %d of 3 arrived", len(got))
	}
}

// The network loses what crosses a split, at sending and on arrival, and
// what is addressed to a user offline; it delivers some transmissions
// twice.
func TestNetworkFaults(t *testing.T) {
	t.Run("split", func(t *testing.T) {
		n, a, b := pair(t, netConfig{})
		n.split.Store(&split{sides: []uint8{0, 1, 2}})
		a.sendReliably(2, &Event{From: 1}, 0)
		if len(b.inbox) != 0 || a.tx.Lost != 1 {
			t.Fatal("a transmission crossed the split")
		}
		n.split.Store(nil)
		a.sendReliably(2, &Event{From: 1}, 0)
		d := take(b)
		n.split.Store(&split{sides: []uint8{0, 1, 2}})
		if got := arriveAll(b, d, 0); len(got) != 0 || b.tx.Lost != 1 {
			t.Error("a transmission in flight when the network split arrived")
		}
		n.split.Store(&split{sides: []uint8{0, 3, 2}}) // user_1 is a bridge
		a.sendReliably(2, &Event{From: 1}, 0)
		if len(b.inbox) == 0 {
			t.Error("a bridge could not reach the other side")
		}
	})
	t.Run("offline", func(t *testing.T) {
		n, a, b := pair(t, netConfig{})
		a.sendReliably(2, &Event{From: 1}, 0)
		d := take(b)
		n.away[2].Store(true)
		if got := arriveAll(b, d, 0); len(got) != 0 {
			t.Error("a user offline received")
		}
	})
	t.Run("loss and duplication", func(t *testing.T) {
		_, a, b := pair(t, netConfig{loss: 0.3, dup: 0.5, delay: time.Second})
		for i := range 2000 {
			a.sendReliably(2, &Event{From: 1, Clock: uint64(i)}, 0)
			take(b)
		}
		lost, dup := float64(a.tx.Lost)/2000, float64(a.tx.Duplicated)/float64(2000-a.tx.Lost)
		if lost < 0.25 || lost > 0.35 || dup < 0.45 || dup > 0.55 {
			t.Errorf("lost %.2f of transmissions (want 0.3), duplicated %.2f of the rest (want 0.5)", lost, dup)
		}
	})
}

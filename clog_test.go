package main

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// A one-way split cuts one direction only: the first side reaches the
// second, the second never the first; a bridge reaches both ways.
func TestOneWaySplit(t *testing.T) {
	f := newFaults(4, 0, 0)
	f.split.Store(&split{sides: []uint8{0, 1, 1, 2, 3}, oneWay: true})
	for _, c := range []struct {
		a, b    int32
		blocked bool
	}{
		{1, 2, false}, {1, 3, false}, {3, 1, true}, {3, 2, true},
		{4, 1, false}, {4, 3, false}, {1, 4, false}, {3, 4, false},
	} {
		if got := f.blocked(c.a, c.b); got != c.blocked {
			t.Errorf("user_%d to user_%d: blocked %v, want %v", c.a, c.b, got, c.blocked)
		}
	}
	f.split.Store(&split{sides: []uint8{0, 1, 1, 2, 3}})
	if !f.blocked(1, 3) || !f.blocked(3, 1) {
		t.Error("a two-way split lets a side through")
	}
}

// A clog holds what crosses it, in the order sent, and loses nothing: its
// user's sends, what is sent to its user, or its user's sends to one peer.
// When it clears, what it held goes on at the sender's next tick.
func TestClogHoldsAndReleases(t *testing.T) {
	for _, c := range []struct {
		name    string
		owner   int32 // whose traffic is clogged
		clog    clog
		clogged []int32 // of user_1's sends to user_2 and user_3, those held
		fromTwo bool    // user_2's send to user_1 is held
	}{
		{"out", 1, clog{dir: clogOut}, []int32{2, 3}, false},
		{"in", 2, clog{dir: clogIn}, []int32{2}, false},
		{"pair", 1, clog{dir: clogPair, peer: 3}, []int32{3}, false},
		{"into user_1", 1, clog{dir: clogIn}, nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := newNetwork(netConfig{users: 3, inbox: 16, tick: time.Second, sched: realSchedule{}, capacity: 1 << 20, faults: newFaults(3, 0, 0)})
			p1 := n.connect(1, 1, func(Delivery) {})
			p2 := n.connect(2, 1, func(Delivery) {})
			n.faults.clogs[c.owner].Store(&c.clog)
			for i, to := range []int32{2, 3, 2, 3} {
				p1.transmit(to, Delivery{Event: &Event{Kind: MessageEvent, From: 1, Clock: uint64(i + 1)}}, txFirst, 0)
			}
			p2.transmit(1, Delivery{Event: &Event{Kind: MessageEvent, From: 2}}, txFirst, 0)
			want := map[int32]int{1: 1, 2: 2, 3: 2}
			for _, to := range c.clogged {
				want[to] = 0
			}
			if c.fromTwo {
				want[1] = 0
			}
			for u := int32(1); u <= 3; u++ {
				if got := len(n.inboxes[u]); got != want[u] {
					t.Errorf("user_%d has %d in its inbox during the clog, want %d", u, got, want[u])
				}
			}
			if int(p1.tx.Clogged+p2.tx.Clogged) != 4-want[2]-want[3]+1-want[1] {
				t.Errorf("%d held, by the counts", p1.tx.Clogged+p2.tx.Clogged)
			}
			p1.sendWaiting(time.Second) // still clogged: nothing moves
			if got := len(n.inboxes[2]) + len(n.inboxes[3]); got != want[2]+want[3] {
				t.Errorf("%d went on before the clog cleared", got-want[2]-want[3])
			}
			n.faults.clogs[c.owner].Store(nil)
			p1.sendWaiting(2 * time.Second)
			p2.sendWaiting(2 * time.Second)
			for u := int32(2); u <= 3; u++ {
				var got []string
				for len(n.inboxes[u]) > 0 {
					d := <-n.inboxes[u]
					got = append(got, d.Event.ID().String())
				}
				if want := fmt.Sprint([]string{fmt.Sprintf("%d.1", u-1), fmt.Sprintf("%d.1", u+1)}); fmt.Sprint(got) != want {
					t.Errorf("user_%d got %v after the clog, want %s", u, got, want)
				}
			}
			if len(n.inboxes[1]) != 1 || len(p1.waiting)+len(p2.waiting) != 0 {
				t.Errorf("user_1's inbox %d, still held %d", len(n.inboxes[1]), len(p1.waiting)+len(p2.waiting))
			}
		})
	}
}

// About one user in twenty has a clog at any moment, each lasting up to
// the most asked for, on what it sends, what it receives or what it
// sends to one other, with about equal odds; the end clears them all.
func TestClogSchedule(t *testing.T) {
	const users, ticks, most = 200, 2000, 10
	f := newFaults(users, 0, 0)
	m := newNemesis(f, 1, users, time.Second, faultPlan{clogMax: most})
	clogged, dirs := 0, map[clogDir]int{}
	for tick := int64(1); tick <= ticks; tick++ {
		recs, _ := m.apply(tick)
		for _, r := range recs {
			switch r.Kind {
			case KindClog:
				dirs[r.ClogDir]++
				if r.Lasts < time.Second || r.Lasts > most*time.Second {
					t.Errorf("a clog of %v", r.Lasts)
				}
				if r.ClogDir == clogPair && (r.Peer == r.By || r.Peer < 1 || r.Peer > users) {
					t.Errorf("user_%d clogged to user_%d", r.By, r.Peer)
				}
			case KindUnclog:
			default:
				t.Errorf("a %v record", r.Kind)
			}
		}
		for u := 1; u <= users; u++ {
			if f.clogs[u].Load() != nil {
				clogged++
			}
		}
	}
	if share := float64(clogged) / (users * ticks); share < 0.04 || share > 0.06 {
		t.Errorf("%.3f of users clogged at a time, want about 1/20", share)
	}
	for d := clogOut; d <= clogPair; d++ {
		if n := dirs[d]; n < int(m.tally.Clogs)/4 {
			t.Errorf("%d of %d clogs are %v", n, m.tally.Clogs, d)
		}
	}
	m.end(ticks + 1)
	for u := 1; u <= users; u++ {
		if f.clogs[u].Load() != nil {
			t.Fatalf("user_%d still clogged after the end", u)
		}
	}
	if m.tally.ClogTicks == 0 {
		t.Error("no clog time counted")
	}
}

// Half the splits are one-way, of every shape: halves, a bridge, and one
// user cut off, which then only sends or only hears.
func TestSplitSchedule(t *testing.T) {
	const users = 9
	f := newFaults(users, 0, 0)
	m := newNemesis(f, 1, users, time.Second, faultPlan{splitMax: 3})
	shapes := map[string]int{}
	for tick := int64(1); tick <= 4000; tick++ {
		recs, _ := m.apply(tick)
		for _, r := range recs {
			if r.Kind != KindSplit {
				continue
			}
			shape := "halves"
			switch {
			case len(r.Sides[0])+len(r.Sides[1]) > users:
				shape = "bridge"
			case len(r.Sides[0]) == 1:
				shape = "lone sender"
			case len(r.Sides[1]) == 1:
				shape = "lone hearer"
			}
			if r.OneWay {
				shapes["one-way "+shape]++
			} else {
				shapes[shape]++
			}
		}
	}
	for _, s := range []string{"halves", "bridge", "lone sender", "one-way halves", "one-way bridge", "one-way lone sender", "one-way lone hearer"} {
		if shapes[s] < 20 {
			t.Errorf("%d %s splits of %d: %v", shapes[s], s, m.tally.Splits, shapes)
		}
	}
	if ow := float64(m.tally.OneWay) / float64(m.tally.Splits); ow < 0.4 || ow > 0.6 {
		t.Errorf("%.2f of splits one-way", ow)
	}
}

// Over 50 seeds, fast runs with clogs, one-way and two-way splits and
// loss converge, every message to every other member exactly once; and
// so do real-time runs with a short tick, under a fake clock. (The full
// size, 100 users for 600 s, is measured in docs/faults.md.)
func TestClogSweep(t *testing.T) {
	for seed := uint64(1); seed <= 50; seed++ {
		t.Run(fmt.Sprintf("fast,seed=%d", seed), func(t *testing.T) {
			cfg := Config{Users: 30, Seed: seed, Tick: time.Second, Chance: 0.3, Quiet: true, Fast: true, Duration: 300 * time.Second,
				Loss: 0.1, Partition: 20 * time.Second, Clog: 10 * time.Second}
			rep, _ := simulate(t, context.Background(), cfg)
			requireConverged(t, rep)
			if rep.Faults.Clogs == 0 || rep.Network.Clogged == 0 {
				t.Errorf("no clogs: %+v %+v", rep.Faults, rep.Network)
			}
		})
	}
	for seed := uint64(1); seed <= 5; seed++ {
		t.Run(fmt.Sprintf("real time,seed=%d", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := Config{Users: 30, Seed: seed, Tick: 20 * time.Millisecond, Chance: 0.3, Quiet: true, Duration: 6 * time.Second,
					Loss: 0.1, Partition: 400 * time.Millisecond, Clog: 200 * time.Millisecond}
				rep, _ := simulate(t, context.Background(), cfg)
				requireConverged(t, rep)
				if rep.Faults.Clogs == 0 {
					t.Errorf("no clogs: %+v", rep.Faults)
				}
			})
		})
	}
}

// A send after a clog clears, before the sender's next tick, goes behind
// what the clog held: nothing overtakes what waited.
func TestClogKeepsOrder(t *testing.T) {
	n := newNetwork(netConfig{users: 2, inbox: 16, tick: time.Second, sched: realSchedule{}, capacity: 1 << 20, faults: newFaults(2, 0, 0)})
	p := n.connect(1, 1, func(Delivery) {})
	n.faults.clogs[1].Store(&clog{dir: clogOut})
	for i := range 3 {
		p.transmit(2, Delivery{Event: &Event{Kind: MessageEvent, From: 1, Clock: uint64(i + 1)}}, txFirst, 0)
	}
	n.faults.clogs[1].Store(nil)
	p.transmit(2, Delivery{Event: &Event{Kind: MessageEvent, From: 1, Clock: 4}}, txFirst, time.Millisecond)
	var got []uint64
	for len(n.inboxes[2]) > 0 {
		got = append(got, (<-n.inboxes[2]).Event.Clock)
	}
	if fmt.Sprint(got) != "[1 2 3 4]" {
		t.Errorf("arrived %v, want [1 2 3 4]", got)
	}
}

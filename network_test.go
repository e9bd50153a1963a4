package main

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// realNetwork is a real-time network of users users with inboxes of the
// given capacity.
func realNetwork(users, inbox int) *Network {
	return newNetwork(netConfig{users: users, inbox: inbox, tick: time.Second, sched: realSchedule{},
		capacity: networkCapacity * int64(users)})
}

// Admission never waits: past the capacity it refuses, and room given
// back can be taken again. A refusal leaves nothing counted.
func TestAdmissionRefusesWhenFull(t *testing.T) {
	f := &flight{capacity: 128}
	if !f.admit(100) {
		t.Fatal("refused 100 deliveries into a capacity of 128")
	}
	if f.admit(29) {
		t.Fatal("admitted 129 deliveries into a capacity of 128")
	}
	if got := f.inflight.Load(); got != 100 {
		t.Fatalf("a refusal left %d in flight, want 100", got)
	}
	if !f.admit(28) {
		t.Fatal("refused 128 deliveries into a capacity of 128")
	}
	f.retire(100)
	if !f.admit(100) {
		t.Fatal("room given back cannot be taken again")
	}
	f.count(5) // what no one may refuse
	if got := f.inflight.Load(); got != 133 || f.quiescent() {
		t.Errorf("%d in flight, want 133", got)
	}
	f.retire(133)
	if !f.quiescent() {
		t.Error("not quiescent with nothing in flight")
	}
	f.arriving.Add(1)
	if f.quiescent() {
		t.Error("quiescent while a late joiner's view is not complete")
	}
}

// Two users whose inboxes are both full send to each other at once. A
// plain blocking send would deadlock here; each keeps taking its own
// deliveries while it waits, and both sends complete in order.
func TestSendWhileBothInboxesFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := realNetwork(2, 1)
		a := newRealPort(n, 1, 1)
		b := newRealPort(n, 2, 1)
		old := &Event{Kind: CloseEvent, From: 9, Clock: 1}
		a.inbox <- Delivery{Event: old}
		b.inbox <- Delivery{Event: old}
		evA := &Event{Kind: CreateEvent, From: 1, Clock: 1}
		evB := &Event{Kind: CreateEvent, From: 2, Clock: 1}
		// Each sends, then goes on receiving, as its owner's loop would,
		// until both sends are done.
		sent, stop := make(chan struct{}), make(chan struct{})
		var wg sync.WaitGroup
		for _, c := range []struct {
			p  *realPort
			to int32
			ev *Event
		}{{a, 2, evA}, {b, 1, evB}} {
			wg.Go(func() {
				c.p.transmit(c.to, Delivery{Event: c.ev}, txFirst, 0)
				sent <- struct{}{}
				for {
					select {
					case d := <-c.p.inbox:
						c.p.stash(d)
					case <-stop:
						return
					}
				}
			})
		}
		<-sent
		<-sent
		close(stop)
		wg.Wait()
		// Nothing is lost and each sender's order holds: every port has the
		// delivery that was in its way, then the other's create.
		for _, c := range []struct {
			p     *realPort
			other *Event
		}{{a, evB}, {b, evA}} {
			for len(c.p.inbox) > 0 {
				c.p.stash(<-c.p.inbox)
			}
			var got []*Event
			for c.p.backlog.len() > 0 {
				got = append(got, c.p.backlog.pop().Event)
			}
			if !slices.Equal(got, []*Event{old, c.other}) {
				t.Errorf("%s received %v, want the old delivery, then the other's create", uidName(c.p.uid), got)
			}
		}
	})
}

// Applied deliveries go back to the network once per batch.
func TestRetireAppliedGivesBack(t *testing.T) {
	n := realNetwork(2, 64)
	u := &realUser{User: &User{UID: 1}, lat: new(hist), port: newRealPort(n, 1, 1)}
	n.fl.admit(3)
	for range 3 {
		u.applied(&Event{Kind: MessageEvent}, 0)
	}
	u.applied(&Event{Kind: ReportEvent}, 0) // never counted in flight
	if n.fl.inflight.Load() != 3 {
		t.Fatal("room went back before the batch ended")
	}
	u.port.retire()
	if got := n.fl.inflight.Load(); got != 0 {
		t.Errorf("after retiring: %d in flight", got)
	}
	if u.port.applied != 3 {
		t.Errorf("applied %d, want 3", u.port.applied)
	}
}

// A bucket's order is the canonical one however long the run: deliveries
// sent on ticks 2^23-1 and 2^23, due on one tick, come out in send order,
// then by sender.
func TestBucketOrderOnLongRuns(t *testing.T) {
	const tick = time.Second
	sched := tickSchedule{tick, 3}
	n := newNetwork(netConfig{users: 2, inbox: 64, tick: tick, sched: sched})
	p := newStepPort(n, 1, 1, sched)
	due := time.Duration(1<<23+2) * tick
	late := &Event{From: 1, Sent: time.Duration(1<<23) * tick}
	early := &Event{From: 2, Sent: time.Duration(1<<23-1) * tick}
	sameTick := &Event{From: 1, Sent: early.Sent}
	for _, ev := range []*Event{late, early, sameTick} {
		p.file(Delivery{Event: ev, Due: due})
	}
	var got []*Event
	p.due(1<<23 + 2)(func(d Delivery) { got = append(got, d.Event) })
	if want := []*Event{sameTick, early, late}; !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
	var again int
	p.due(1<<23 + 2)(func(Delivery) { again++ })
	if again != 0 {
		t.Errorf("a bucket gave %d events twice", again)
	}
}

// Lockstep's due times: one tick after sending, plus whole ticks of delay
// drawn from the port's own source; real time: at once, plus up to the
// delay.
func TestDueTimes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sched    schedule
		fast     bool
		delay    time.Duration
		min, max time.Duration
	}{
		{"lockstep", tickSchedule{time.Second, 0}, true, 0, time.Second, time.Second},
		{"lockstep delay", tickSchedule{time.Second, 3}, true, 2500 * time.Millisecond, time.Second, 4 * time.Second},
		{"real time", realSchedule{0}, false, 0, 0, 0},
		{"real time delay", realSchedule{300 * time.Millisecond}, false, 300 * time.Millisecond, 0, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 1))
			seen := map[time.Duration]bool{}
			for range 1000 {
				d := tc.sched.due(0, rng)
				if d < tc.min || d > tc.max || tc.fast && d%time.Second != 0 {
					t.Fatalf("due %v, want whole ticks from %v to %v", d, tc.min, tc.max)
				}
				seen[d] = true
			}
			if tc.fast && tc.delay > 0 && len(seen) != 4 {
				t.Errorf("%d distinct due ticks, want 4", len(seen))
			}
		})
	}
}

// A bucket's sort is stable by key, for buckets with and without lags
// (keys past the sender's 20 bits), and leaves nothing behind that would
// change the next sort.
func TestBucketSortIsStableByKey(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var sc scratch
	for _, lagTicks := range []int64{1, 2, 1001} {
		o := canonical{due: 5000, lag: lagTicks, tick: time.Second}
		for _, n := range []int{0, 1, 7, 300, 5000} {
			b := make([]*Event, n)
			for i := range b {
				sent := o.due - 1 - rng.Int64N(lagTicks)
				b[i] = &Event{From: 1 + rng.Int32N(maxUsers), Sent: time.Duration(sent) * time.Second}
			}
			want := make([]int32, n)
			for i := range want {
				want[i] = int32(i)
			}
			slices.SortStableFunc(want, func(x, y int32) int { return cmp.Compare(o.key(b[x]), o.key(b[y])) })
			if got := sc.sort(b, o); !slices.Equal(got, want) {
				t.Fatalf("lag %d, %d events: sorted %v, want %v", lagTicks, n, got[:min(n, 10)], want[:min(n, 10)])
			}
		}
	}
}

// The tick's casts, put in order once for every user, merge with what a
// user's own bucket holds in the canonical order: by sender, a sender's
// casts first, in the order it filed them, then what it sent this user
// alone, in that order; however the senders' filings interleaved.
func TestCastsMergeInCanonicalOrder(t *testing.T) {
	const tick = time.Second
	sched := tickSchedule{tick, 0}
	n := newNetwork(netConfig{users: 9, inbox: 64, tick: tick, sched: sched})
	p := newStepPort(n, 1, 1, sched)
	c := n.casts
	if c == nil {
		t.Fatal("lockstep without faults or delay has no cast log")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var filed []*Event
	for range 300 {
		ev := &Event{Kind: CreateEvent, From: 2 + rng.Int32N(8), Sent: 4 * tick}
		if rng.IntN(3) == 0 {
			ev.Kind = ReportEvent
			p.file(Delivery{Event: ev, Due: 5 * tick})
		} else {
			c.file(cast{ev, 9}, 5)
		}
		filed = append(filed, ev)
	}
	c.sorted(5, canonical{5, 1, tick})
	var got []*Event
	p.due(5)(func(d Delivery) { got = append(got, d.Event) })
	alone := func(ev *Event) int { // 1 for what was filed in the bucket
		if ev.Kind == ReportEvent {
			return 1
		}
		return 0
	}
	want := slices.Clone(filed)
	slices.SortStableFunc(want, func(x, y *Event) int {
		return cmp.Or(cmp.Compare(x.From, y.From), cmp.Compare(alone(x), alone(y)))
	})
	if !slices.Equal(got, want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("%d delivered, %d filed; first difference at %d: %+v, want %+v", len(got), len(want), i, *got[i], *want[i])
			}
		}
		t.Fatalf("%d delivered, want %d", len(got), len(want))
	}
}

// TestOutboxesFileInCanonicalOrder checks that with faults, where senders
// put transmissions in their own outboxes and the coordinator files them
// between rounds, each recipient applies what reached it in canonical
// order (by sender, and a sender's in the order it sent), each with its
// link numbers, and that the outboxes are empty after each flush. Enough
// is sent for the flush to take more than one worker where there is more
// than one processor, and the second round reuses the first's chunks.
func TestOutboxesFileInCanonicalOrder(t *testing.T) {
	const tick, users = time.Second, 40
	sched := tickSchedule{tick, 0}
	n := newNetwork(netConfig{users: users, inbox: 64, tick: tick, sched: sched, faults: newFaults(users, 0, 0)})
	ports := make([]*stepPort, users+1)
	for u := int32(1); u <= users; u++ {
		ports[u] = newStepPort(n, u, uint64(u), sched)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	spare := 0
	for round := range int64(2) {
		sentAt, dueAt := 4+round, 5+round
		want := make([][]*Event, users+1)
		const sent = 3 * minFlushShare
		for i := range sent {
			from, to := 1+rng.Int32N(users), 1+rng.Int32N(users)
			ev := &Event{Kind: MessageEvent, From: from, Sent: time.Duration(sentAt) * tick, Clock: uint64(i)}
			ports[from].put(to, Delivery{Event: ev, Due: time.Duration(dueAt) * tick, Seq: uint32(i)})
			want[to] = append(want[to], ev)
		}
		if round == 1 && len(n.chunks.spare) >= spare {
			t.Fatalf("round 1 took no chunk back from the %d spare", spare)
		}
		n.flushOutboxes()
		spare = len(n.chunks.spare)
		for u := int32(1); u <= users; u++ {
			if len(ports[u].outbox) != 0 {
				t.Fatalf("round %d: user_%d's outbox holds %d chunks after the flush", round, u, len(ports[u].outbox))
			}
			var got []*Event
			ports[u].due(dueAt)(func(d Delivery) {
				if d.Seq != uint32(d.Event.Clock) {
					t.Fatalf("round %d: user_%d: event %d arrived with the numbers of %d", round, u, d.Event.Clock, d.Seq)
				}
				got = append(got, d.Event)
			})
			slices.SortStableFunc(want[u], func(x, y *Event) int { return cmp.Compare(x.From, y.From) })
			if !slices.Equal(got, want[u]) {
				t.Fatalf("round %d: user_%d applied %d transmissions, want %d, or in another order", round, u, len(got), len(want[u]))
			}
		}
		if spare == 0 {
			t.Fatalf("round %d: the flush gave no chunk back", round)
		}
	}
}

package main

import (
	"cmp"
	"fmt"
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
	ep := newEpochs(128)
	e, ok := ep.admit(100)
	if !ok || e != 1 {
		t.Fatalf("admit(100) = %d, %v; want epoch 1, admitted", e, ok)
	}
	if _, ok := ep.admit(29); ok {
		t.Fatal("admitted 129 deliveries into a capacity of 128")
	}
	if got := ep.inflight.Load(); got != 100 {
		t.Fatalf("a refusal left %d in flight, want 100", got)
	}
	if _, ok := ep.admit(28); !ok {
		t.Fatal("refused 128 deliveries into a capacity of 128")
	}
	ep.retire(e, 100)
	if _, ok := ep.admit(100); !ok {
		t.Fatal("room given back cannot be taken again")
	}
	if got := ep.byEpoch[1].Load(); got != 128 {
		t.Errorf("epoch 1 counts %d, want 128", got)
	}
}

// An epoch is stable only once every delivery counted under it has been
// retired, and never before the current epoch is two past it.
func TestStableWaitsForEveryDelivery(t *testing.T) {
	ep := newEpochs(256)
	e, _ := ep.admit(3)
	for range 5 {
		ep.advance()
	}
	if w, _ := ep.stability(); w != e {
		t.Fatalf("stable %d with 3 deliveries of epoch %d in flight, want %d", w, e, e)
	}
	ep.retire(e, 2)
	ep.advance()
	if w, _ := ep.stability(); w != e {
		t.Fatalf("stable %d with 1 delivery of epoch %d in flight, want %d", w, e, e)
	}
	ep.retire(e, 1)
	ep.advance()
	w, h := ep.stability()
	// The epoch the ticker judged last is two before the one it started.
	if epoch := ep.epoch.Load(); w != epoch-2 || h != epoch {
		t.Errorf("stable %d, horizon %d at epoch %d; want %d and %d", w, h, epoch, epoch-2, epoch)
	}
}

// Users admitting, sending and retiring while the ticker advances epochs:
// while a user holds a count under epoch e, the stable epoch never passes
// e, however the goroutines interleave.
func TestStableNeverPassesACountedEpoch(t *testing.T) {
	ep := newEpochs(512)
	stop := make(chan struct{})
	var ticker, users sync.WaitGroup
	ticker.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				ep.advance()
			}
		}
	})
	for range 4 {
		users.Go(func() {
			for range 20000 {
				e, ok := ep.admit(1)
				if !ok {
					continue
				}
				if w, _ := ep.stability(); w > e {
					t.Errorf("stable %d passed epoch %d, which still counts a delivery", w, e)
				}
				ep.retire(e, 1)
			}
		})
	}
	users.Wait()
	close(stop)
	ticker.Wait()
}

// The ticker stops advancing the epoch rather than reuse the slot of one
// that is not stable: a delivery that never arrives holds every epoch.
func TestEpochRingStopsAdvancing(t *testing.T) {
	ep := newEpochs(128)
	e, _ := ep.admit(1)
	for range 3 * epochRing {
		ep.advance()
	}
	w, _ := ep.stability()
	if epoch := ep.epoch.Load(); w != e || epoch-w >= epochRing {
		t.Fatalf("stable %d, epoch %d: the ring of %d was overrun", w, epoch, epochRing)
	}
	ep.retire(e, 1)
	ep.advance()
	if w, _ := ep.stability(); w == e {
		t.Error("stable did not move once the delivery was retired")
	}
}

// In lockstep the stable epoch and the horizon are exact: neither could be
// one epoch later (stable) or earlier (horizon) without being wrong. Epochs
// are ticks; users send from tick 1; on tick t a user reclaims, then
// applies the deliveries due on t, then acts; a delivery sent on tick s is
// due on s+1 to s+1+delay.
func TestLockstepStabilityIsExact(t *testing.T) {
	for delay := int64(0); delay <= 5; delay++ {
		t.Run(fmt.Sprintf("delay=%d", delay), func(t *testing.T) {
			// appliedBy reports whether a user that has applied what is
			// due by tick a has applied everything sent below epoch w.
			appliedBy := func(a, w int64) bool { return w <= 1 || (w-1)+1+delay <= a }
			for tick := int64(1); tick <= 30; tick++ {
				w, h := lockstepStability(tick, delay)
				stable, horizon := int64(w), int64(h)
				// Reclaiming on tick t comes before its deliveries.
				if !appliedBy(tick-1, stable) {
					t.Errorf("tick %d: stable %d is too late", tick, stable)
				}
				if stable >= 1 && appliedBy(tick-1, stable+1) {
					t.Errorf("tick %d: stable %d could be %d", tick, stable, stable+1)
				}
				// Whoever sends after the horizon has applied everything
				// below stable.
				for a := horizon + 1; a <= tick; a++ {
					if !appliedBy(a, stable) {
						t.Errorf("tick %d: horizon %d is too early: a user acting on %d has not applied all below %d", tick, horizon, a, stable)
					}
				}
				if stable >= 2 && horizon >= 1 && appliedBy(horizon, stable) {
					t.Errorf("tick %d: horizon %d could be %d", tick, horizon, horizon-1)
				}
			}
		})
	}
}

// The rule holds against real ports: deliveries whose delays a port draws
// itself, filed and applied tick by tick, are all applied below the stable
// epoch the rule gives, and it is the greatest such epoch: some tick meets
// a delivery of that very epoch still on its way.
func TestLockstepStabilityWithPorts(t *testing.T) {
	for delay := int64(0); delay <= 4; delay++ {
		t.Run(fmt.Sprintf("delay=%d", delay), func(t *testing.T) {
			const tick = time.Second
			sched := tickSchedule{tick, delay}
			n := newNetwork(netConfig{users: 2, inbox: 1 << 12, tick: tick, sched: sched})
			a := newStepPort(n, 1, rand.New(rand.NewPCG(uint64(delay), 1)), 1, sched)
			b := newStepPort(n, 2, rand.New(rand.NewPCG(uint64(delay), 2)), 1, sched)
			pending := map[*Event]bool{} // sent to b, not yet applied
			met := false
			for now := int64(1); now <= 300; now++ {
				// Before tick now's deliveries: the least epoch with a
				// delivery on its way is the true stable epoch.
				truth := uint64(now)
				for ev := range pending {
					truth = min(truth, ev.Epoch)
				}
				w, _ := lockstepStability(now, delay)
				if w > truth {
					t.Fatalf("tick %d: stable %d, but a delivery of epoch %d is on its way", now, w, truth)
				}
				met = met || w == truth && len(pending) > 0
				for len(b.inbox) > 0 {
					b.file(<-b.inbox)
				}
				b.due(now)(func(d Delivery) { delete(pending, d.Event) })
				for range 3 {
					ev := &Event{From: 1, Sent: time.Duration(now) * tick, Epoch: uint64(now)}
					pending[ev] = true
					a.transmit(2, Delivery{Event: ev}, txFirst, ev.Sent)
				}
			}
			if !met {
				t.Error("the stable epoch never met the truth: the rule is not exact")
			}
		})
	}
}

// Two users whose inboxes are both full send to each other at once. A
// plain blocking send would deadlock here; each keeps taking its own
// deliveries while it waits, and both sends complete in order.
func TestSendWhileBothInboxesFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := realNetwork(2, 1)
		a := newRealPort(n, 1, rand.New(rand.NewPCG(1, 1)), 1)
		b := newRealPort(n, 2, rand.New(rand.NewPCG(1, 2)), 1)
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
						c.p.hold(d)
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
				c.p.hold(<-c.p.inbox)
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

// Applied deliveries go back to the network by the epoch they were sent
// in, once per batch.
func TestRetireAppliedGivesBackByEpoch(t *testing.T) {
	n := realNetwork(2, 64)
	u := &realUser{User: &User{UID: 1}, lat: new(hist), port: newRealPort(n, 1, rand.New(rand.NewPCG(1, 1)), 1)}
	ep := n.ep
	e1, _ := ep.admit(2)
	ep.epoch.Store(5)
	e5, _ := ep.admit(1)
	for _, e := range []uint64{e1, e1, e5} {
		u.applied(&Event{Kind: MessageEvent, Epoch: e}, 0)
	}
	if ep.inflight.Load() != 3 {
		t.Fatal("room went back before the batch ended")
	}
	u.port.retire()
	if ep.inflight.Load() != 0 || ep.byEpoch[e1].Load() != 0 || ep.byEpoch[e5].Load() != 0 {
		t.Errorf("after retiring: %d in flight, epoch %d counts %d, epoch %d counts %d",
			ep.inflight.Load(), e1, ep.byEpoch[e1].Load(), e5, ep.byEpoch[e5].Load())
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
	p := newStepPort(n, 1, rand.New(rand.NewPCG(1, 1)), 1, sched)
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
// drawn from the sender's source; real time: at once, plus up to the
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
// (keys past the sender's 17 bits), and leaves nothing behind that would
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

package main

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// reportWorld is users in a report tree that send and apply counted
// events and report to their parents, whose reports arrive in any order,
// with gaps, as links let them through. The truth is what actually
// happened: the least epoch with a send not yet applied, or in which a
// user may still send. The root's stable epoch must never pass it, and
// once every report has climbed the tree and every user has moved on,
// must reach it.
type reportWorld struct {
	rng      *rand.Rand
	users    []*stability // users[i] is user i+1; users[0] the root
	epochs   []uint64     // each user's epoch
	inFlight []uint64     // the epochs of sends not yet applied
	queued   [][]*progress
	tick     uint64
}

func newReportWorld(seed uint64, n int) *reportWorld {
	w := &reportWorld{rng: rand.New(rand.NewPCG(seed, 9)), epochs: make([]uint64, n), queued: make([][]*progress, n)}
	for i := range n {
		w.users = append(w.users, newStability(int32(i+1), n))
	}
	return w
}

func (w *reportWorld) truth() uint64 {
	t := slices.Min(w.epochs)
	for _, e := range w.inFlight {
		t = min(t, e)
	}
	return t
}

// arrive delivers user i's queued report j to its parent.
func (w *reportWorld) arrive(i, j int) {
	w.users[treeParent(int32(i+1))-1].take(int32(i+1), w.queued[i][j])
	w.queued[i] = slices.Delete(w.queued[i], j, j+1)
}

// step does one random thing.
func (w *reportWorld) step(t *testing.T) {
	i := w.rng.IntN(len(w.users))
	switch w.rng.IntN(5) {
	case 0: // send a few
		k := 1 + w.rng.IntN(3)
		w.users[i].count(w.epochs[i], int64(k), true)
		for range k {
			w.inFlight = append(w.inFlight, w.epochs[i])
		}
	case 1: // apply one in flight
		if len(w.inFlight) > 0 {
			j := w.rng.IntN(len(w.inFlight))
			w.users[i].count(w.inFlight[j], 1, false)
			w.inFlight = slices.Delete(w.inFlight, j, j+1)
		}
	case 2: // move on, and hear the root's word
		w.epochs[i] += uint64(1 + w.rng.IntN(2))
		w.users[i].heard(w.users[0].word(), w.tick)
	case 3: // report
		if i > 0 {
			w.queued[i] = append(w.queued[i], w.users[i].report(w.epochs[i], arrivalNote{}))
		}
	case 4: // a report reaches the parent, in any order, or is lost
		if q := w.queued[i]; len(q) > 0 {
			j := w.rng.IntN(len(q))
			if w.rng.IntN(4) == 0 {
				w.queued[i] = slices.Delete(q, j, j+1)
				break
			}
			w.arrive(i, j)
		}
	}
	w.tick++
	root := w.users[0]
	root.settle(w.epochs[0], w.tick)
	if truth := w.truth(); root.stable > truth {
		t.Fatalf("stable %d passed the truth %d: epochs %v in flight %v sums %v", root.stable, truth, w.epochs, w.inFlight, root.sums())
	}
}

// Over random histories of sends, applies and reports arriving in any
// order or lost, up trees of one to three levels, the stable epoch the root
// learns is never early, and once every report is in it is exact.
func TestStabilityNeverEarly(t *testing.T) {
	for seed := range uint64(300) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			n := 2 + int(seed%5)
			if seed%3 == 0 {
				n = 2 + reportFanout + int(seed%10) // three levels
			}
			w := newReportWorld(seed, n)
			for range 400 + 20*n {
				w.step(t)
			}
			// Everything lands, every user moves on and reports, the
			// deepest first, and every report arrives.
			for len(w.inFlight) > 0 {
				w.users[0].count(w.inFlight[0], 1, false)
				w.inFlight = w.inFlight[1:]
			}
			end := slices.Max(w.epochs) + 1
			for i := len(w.users) - 1; i >= 0; i-- {
				w.epochs[i] = end
				if i == 0 {
					break
				}
				w.queued[i] = append(w.queued[i], w.users[i].report(end, arrivalNote{}))
				for len(w.queued[i]) > 0 {
					w.arrive(i, 0)
				}
			}
			w.users[0].settle(end, w.tick+1)
			if w.users[0].stable != w.truth() {
				t.Errorf("with every report in, stable %d, truth %d", w.users[0].stable, w.truth())
			}
		})
	}
}

// The report tree: every user but the root has one parent, and is among
// its parent's children.
func TestReportTree(t *testing.T) {
	for _, n := range []int{1, 2, 17, 18, 100, 1000} {
		seen := make([]int, n+1)
		for u := int32(1); u <= int32(n); u++ {
			lo, hi := treeChildren(u, n)
			for c := lo; c <= hi; c++ {
				if treeParent(c) != u {
					t.Fatalf("n=%d: child %d of %d has parent %d", n, c, u, treeParent(c))
				}
				seen[c]++
			}
		}
		for u := 2; u <= n; u++ {
			if seen[u] != 1 {
				t.Errorf("n=%d: user %d is a child %d times", n, u, seen[u])
			}
		}
	}
}

// What the root knows of stability it tells the others, and a user below
// it learns it that way; the horizon that goes with it only grows.
func TestStabilityHeard(t *testing.T) {
	s := newStability(2, 3)
	s.heard(stableWord{Stable: 5, Reclaim: 3, Horizon: 7}, 10)
	s.heard(stableWord{Stable: 4, Reclaim: 4, Horizon: 9}, 11) // an older word: the horizon is still a horizon for 5
	if s.stable != 5 || s.horizon != 9 {
		t.Errorf("stable %d, horizon %d; want 5 and 9", s.stable, s.horizon)
	}
	if w, h := s.reclaim(); w != 4 || h != 9 {
		t.Errorf("reclaim %d, %d; want the greatest point told, 4, and 9", w, h)
	}
}

// A late joiner holds reclaiming at its hello until its view is complete
// and everything it sent until then is stable.
func TestStabilityLateFloor(t *testing.T) {
	s := newStability(1, 3)
	s.heard(stableWord{Stable: 10, Horizon: 12}, 20)
	s.noteArrival(3, arrivalNote{Hello: 8})
	if w, _ := s.reclaim(); w != 8 {
		t.Fatalf("reclaim %d while the joiner's view is incomplete, want 8", w)
	}
	s.noteArrival(3, arrivalNote{Hello: 8, Done: 15})
	s.heard(stableWord{Stable: 15, Horizon: 16}, 21)
	if w, _ := s.reclaim(); w != 8 {
		t.Fatalf("reclaim %d before the joiner's sends until done are stable, want 8", w)
	}
	s.heard(stableWord{Stable: 16, Horizon: 17}, 22)
	if w, _ := s.reclaim(); w != 16 || len(s.guards) != 0 {
		t.Errorf("reclaim %d, floor %v once done is stable", w, s.guards)
	}
}

// A peer learns only from what reaches it: the step machine's inputs are
// a transmission addressed to it, its own tick and whether it is offline,
// what the run lets it do, who was there at the start, and an action
// asked of it; its port tells it only whether the network takes an
// action's sends now. Nothing counted across users can reach it.
func TestPeerKnowsOnlyItsOwn(t *testing.T) {
	allowed := map[string]string{
		"Kind": "which input", "Now": "its own clock", "D": "a transmission addressed to it",
		"Tick": "its own tick", "Due": "transmissions addressed to it", "Act": "what the run lets it do",
		"Away": "whether it has a connection", "Last": "who was there at the start", "Proposal": "an action asked of it",
	}
	in := reflect.TypeFor[Input]()
	for i := range in.NumField() {
		if f := in.Field(i); allowed[f.Name] == "" {
			t.Errorf("Input.%s is no input a user could have of its own", f.Name)
		}
	}
	pt := reflect.TypeFor[port]()
	for i := range pt.NumMethod() {
		m := pt.Method(i)
		if m.Type.NumOut() > 0 && (m.Name != "admit" || m.Type.NumOut() != 1 || m.Type.Out(0).Kind() != reflect.Bool) {
			t.Errorf("port.%s tells the peer something: %v", m.Name, m.Type)
		}
	}
}

// A user reports as often as keeps its reports near 2% of the deliveries
// it takes in, from every tick to every maxReportTicks.
func TestReportEvery(t *testing.T) {
	for _, c := range []struct {
		perTick int64
		want    uint64
	}{{0, maxReportTicks}, {2, maxReportTicks}, {20, 5}, {50, 2}, {100, 1}, {5000, 1}} {
		if got := reportEvery(8 * c.perTick); got != c.want {
			t.Errorf("%d deliveries a tick: a report every %d ticks, want %d", c.perTick, got, c.want)
		}
	}
}

// Once everything sent is stable everywhere, users stop reporting: a run
// gone quiet sends nothing for stability. Then one send starts the
// reports again, until it too is known stable by every user.
func TestQuietRunSendsNothing(t *testing.T) {
	const n = 80 // the root, 64 children, and 15 below the first of them
	tn := newTestNet(t, n, 0, false, 1)
	run := func(ticks int) { tickAndDeliver(tn, ticks) }
	sent := func() (k int64) {
		for _, p := range tn.ports[1:] {
			k += p.tx.Transmissions
		}
		return k
	}
	for round := range 2 {
		create := Proposal{Kind: CreateEvent, Group: newGroup(n, 3, 70+int32(round))}
		tn.p(70).Step(Input{Kind: proposeInput, Now: tn.now, Proposal: create}, tn.ports[70])
		epoch := tn.p(70).view.epoch
		run(60)
		for _, p := range tn.peers[1:] {
			if p.stab.stable <= epoch {
				t.Fatalf("round %d: %s knows W %d, not past the create's epoch %d", round, uidName(p.uid), p.stab.stable, epoch)
			}
		}
		before := sent()
		run(100)
		if k := sent() - before; k != 0 {
			t.Fatalf("round %d: %d transmissions in 100 quiet ticks, want none", round, k)
		}
	}
}

// A word of the report tree lost on its way costs a round, never
// stability: news raising want is cut off from a quiet child, and once the
// cut heals the child hears it again, reports, and W passes the send.
func TestLostNewsIsToldAgain(t *testing.T) {
	const n = 4
	tn := newTestNet(t, n, 0, false, 1)
	run := func(ticks int) { tickAndDeliver(tn, ticks) }
	tn.p(2).Step(Input{Kind: proposeInput, Now: tn.now, Proposal: Proposal{Kind: CreateEvent, Group: newGroup(n, 2, 3)}}, tn.ports[2])
	run(60) // everything stable: nobody reports
	room := tn.p(2).view.Rooms()[0]
	tn.p(2).Step(Input{Kind: proposeInput, Now: tn.now, Proposal: Proposal{Kind: MessageEvent, Room: room}}, tn.ports[2])
	e := tn.p(2).view.epoch
	tn.cut = func(from, to int32) bool { return from == 1 && to == 4 }
	run(15)
	tn.cut = nil
	run(60)
	for _, p := range tn.peers[1:] {
		if p.stab.stable <= e {
			t.Errorf("%s knows W %d, not past the message's epoch %d", uidName(p.uid), p.stab.stable, e)
		}
	}
}

// Over random histories in which a third of all transmissions are lost
// (the report tree's too) while users act and late joiners come in, once
// the faults end every late joiner's view becomes complete, W passes
// every send, and the run goes quiet: no report or news at all.
func TestTreeSurvivesLostWords(t *testing.T) {
	for seed := range uint64(60) {
		n, late := 3+int(seed%6), int(seed%3)
		if seed%10 == 9 {
			n = 66 + int(seed%7) // two levels below the root
		}
		tn := newTestNet(t, n, late, true, seed)
		rng := rand.New(rand.NewPCG(seed, 77))
		step := func(act actChoice) {
			tn.tickAll(act)
			for len(tn.flight) > 0 {
				tn.deliver(0)
			}
		}
		tn.cut = func(int32, int32) bool { return rng.Float64() < 0.3 }
		for i := range 60 {
			if j := int32(n - late + 1 + i/10); i%10 == 5 && int(j) <= n {
				tn.join(j)
			}
			step(actRoll)
		}
		tn.cut = nil
		tree := func() (k int64) {
			for _, p := range tn.peers[1:] {
				k += p.reports + p.news
			}
			return k
		}
		for range 400 {
			step(actNone)
		}
		lastSend := uint64(0)
		for _, p := range tn.peers[1:] {
			lastSend = max(lastSend, p.stab.ownLast)
		}
		before := tree()
		for range 200 {
			step(actNone)
		}
		if k := tree() - before; k != 0 || tn.late > 0 {
			t.Errorf("seed %d, %d users, %d late: %d reports and news in 200 quiet ticks, %d joiners incomplete", seed, n, late, k, tn.late)
		}
		for _, p := range tn.peers[1:] {
			if p.stab.stable <= lastSend {
				t.Errorf("seed %d: %s knows W %d, not past the last send's epoch %d", seed, uidName(p.uid), p.stab.stable, lastSend)
				break
			}
		}
	}
}

// tickAndDeliver runs ticks without actions, each followed by every
// delivery in flight.
func tickAndDeliver(tn *testNet, ticks int) {
	for range ticks {
		tn.tickAll(actNone)
		for len(tn.flight) > 0 {
			tn.deliver(0)
		}
	}
}

// TestSumsAddUpInPlace checks that a user with children, adding its
// subtree's counts up by epoch in place, reports what sorting and
// merging them would: the same epochs, from W, none zero. Each user
// reports again and again as W moves on, so the counts it keeps between
// reports are reused, and children report from below W too, as a child
// whose W lags its parent's does. Spans past maxDenseEpochs take the
// sorting way, and the reports agree across it.
func TestSumsAddUpInPlace(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	counts := func(from, span uint64) []epochCount {
		var cs []epochCount
		for e := from; e < from+span; e++ {
			if rng.IntN(3) > 0 {
				cs = append(cs, epochCount{e, int64(rng.IntN(5) - 2)}) // zero too: own counts may be
			}
		}
		return cs
	}
	below := func(w uint64, by int) uint64 { return w - min(w, uint64(rng.IntN(by))) }
	for i := range 300 {
		s := newStability(1, 70)
		for round := range 10 {
			s.stable += uint64(rng.IntN(6))
			span := uint64(1 + rng.IntN(40))
			if rng.IntN(10) == 0 {
				span = maxDenseEpochs + uint64(rng.IntN(3)) - 1
			}
			s.own = append(s.own, counts(below(s.stable, 5), span)...)
			slices.SortStableFunc(s.own, func(a, b epochCount) int { return cmp.Compare(a.Epoch, b.Epoch) })
			for k := range s.kids {
				if rng.IntN(4) > 0 {
					s.kids[k] = &progress{Counts: counts(below(s.stable, 10), span)}
				}
			}
			got := s.sums()
			want := s.merged()
			if len(got) != len(want) || (len(got) > 0 && !slices.Equal(got, want)) {
				t.Fatalf("case %d round %d (W %d, span %d): sums %v, sorted and merged %v", i, round, s.stable, span, got, want)
			}
			for _, c := range got {
				if c.Net == 0 || c.Epoch < s.stable {
					t.Fatalf("case %d round %d: sums holds %v with W %d", i, round, c, s.stable)
				}
			}
		}
	}
}

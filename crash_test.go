package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// crashPlay is what a history with crashes keeps beside the peers: when
// each crashed user restarts, and which deliveries the rule for crashes
// lets be lost (see restart.go): a message its sender's crash took before
// a member had it, and one a member held back, acknowledged, when it
// crashed.
type crashPlay struct {
	seed    uint64
	upAt    []int            // by uid: the step a crashed user restarts
	excused map[[2]Stamp]int // (message, member as Stamp{UID: member}): how many such losses
	crashed int
	trail   []string // when each crash and restart came, to explain a failure
}

// crashOrRestart crashes a user now and then (never the last two up, never
// a late joiner not yet online), and restarts each crashed user when its
// time comes.
func (h *peerHistory) crashOrRestart(i int) {
	tn := h.tn
	up := 0
	for u := int32(1); int(u) < len(tn.peers); u++ {
		if !tn.down[u] && tn.p(u).stage != notYetOnline {
			up++
		}
	}
	for u := int32(1); int(u) < len(tn.peers); u++ {
		switch {
		case tn.down[u]:
			if i >= h.crashes.upAt[u] {
				h.restart(u)
				up++
			}
		case tn.p(u).stage != notYetOnline && up > 2 && h.rng.IntN(50) == 0:
			h.crash(u)
			h.crashes.upAt[u] = i + 1 + h.rng.IntN(5)
			up--
		}
	}
}

// crash takes user u down, and notes what the rule lets it lose: what it
// sent that a member had not taken, and what it held back that no sender
// still owes it.
func (h *peerHistory) crash(u int32) {
	tn, c := h.tn, h.crashes
	h.collect()
	old := tn.p(u)
	for r := int32(1); int(r) < len(tn.peers); r++ {
		if r == u {
			continue
		}
		l := old.links.get(r)
		if l == nil {
			continue
		}
		for seq, ev := range l.kept() {
			if ev.Kind == MessageEvent && !settledNow(tn, r, old, seq) {
				c.excused[[2]Stamp{ev.ID(), {UID: r}}]++
			}
		}
	}
	for _, held := range old.view.held {
		for _, m := range held {
			if !owes(tn, m.From, old, m) {
				c.excused[[2]Stamp{m.ID(), {UID: u}}]++
			}
		}
	}
	if old.stage != settled && old.stage != notYetOnline {
		tn.late-- // it will never say it has caught up
	}
	// What it had sent and was still on its way dies with it.
	from := func(tr inTransit) bool { return tr.from == u }
	tn.flight = slices.DeleteFunc(tn.flight, from)
	tn.tree = slices.DeleteFunc(tn.tree, from)
	tn.down[u] = true
	c.crashed++
	c.trail = append(c.trail, fmt.Sprintf("tick %d: user_%d crashes", tn.tick, u))
}

// settledNow reports whether user r, as it is now, has taken number seq
// of what incarnation from sent it.
func settledNow(tn *testNet, r int32, from *Peer, seq uint32) bool {
	return !tn.down[r] && settledAt(tn.p(r), from, seq)
}

// owes reports whether user s still keeps m for incarnation to of its
// recipient, unacknowledged: it will send it to the next one.
func owes(tn *testNet, s int32, to *Peer, m *Event) bool {
	if tn.down[s] {
		return false
	}
	return keeps(tn.p(s), to.uid, to.cfg.inc, m)
}

// restart brings crashed user u back as a new incarnation.
func (h *peerHistory) restart(u int32) {
	tn := h.tn
	cfg := tn.cfg[u]
	cfg.inc, cfg.latecomer = uint32(tn.tick)+1, false
	tn.peers[u] = newPeer(u, cfg, rand.New(rand.NewPCG(h.crashes.seed, uint64(cfg.inc)<<16|uint64(u))))
	tn.down[u] = false
	tn.late++
	h.crashes.trail = append(h.crashes.trail, fmt.Sprintf("tick %d: user_%d restarts as %d", tn.tick, u, cfg.inc))
	tn.p(u).Step(Input{Kind: restartInput, Now: tn.now, Tick: tn.tick}, tn.ports[u])
	h.collect()
}

// holding reports whether a restarted user still holds W, or a user
// still holds back a message, which W passing its epoch may release: the
// run's drain waits for both (Sim.heldForGood).
func (h *peerHistory) holding() bool {
	for _, p := range h.tn.peers[1:] {
		if p.stab.hold || h.crashes != nil && p.view.HeldCount() > 0 {
			return true
		}
	}
	return false
}

// checkCrashes returns every way a history with crashes broke the rules:
// the same live rooms everywhere; no room live whose close a user that has
// not crashed since took; nothing held back; every message taken at most once by each
// incarnation of each other member, and by at least one unless the rule
// for crashes lets it be lost.
func (h *peerHistory) checkCrashes() []string {
	var bad []string
	peers := h.tn.peers[1:]
	ref := liveStamps(peers[0].view)
	for _, p := range peers[1:] {
		if got := liveStamps(p.view); !slices.Equal(got, ref) {
			bad = append(bad, fmt.Sprintf("%s has %v live, user_1 has %v", uidName(p.uid), got, ref))
		}
	}
	final := func(u int32, inc uint32) bool { return h.tn.p(u).cfg.inc == inc }
	closed := map[Stamp]bool{}
	groups := map[Stamp]*Group{}
	type sent struct {
		room Stamp
		from int32
	}
	var msgs []Stamp
	sends := map[Stamp]sent{}
	got := map[[2]Stamp]map[uint32]int{}
	for i, r := range h.log {
		switch r.Kind {
		case KindCreate:
			groups[r.Room] = r.Group
		case KindClose, KindCloseSeen:
			// A close that only incarnations since crashed took died
			// with them.
			closed[r.Room] = closed[r.Room] || final(r.User, h.incs[i])
		case KindMessage:
			msgs = append(msgs, r.Msg)
			sends[r.Msg] = sent{r.Room, r.User}
		case KindReceive:
			k := [2]Stamp{r.Msg, {UID: r.User}}
			if got[k] == nil {
				got[k] = map[uint32]int{}
			}
			got[k][h.incs[i]]++
		}
	}
	for _, s := range ref {
		if closed[s] {
			bad = append(bad, fmt.Sprintf("ghost: chat %s is live but was closed", s))
		}
	}
	held := 0
	for _, p := range peers {
		held += p.view.HeldCount()
		if p.view.NonMember != 0 {
			bad = append(bad, fmt.Sprintf("%s took %d messages of rooms it is not in", uidName(p.uid), p.view.NonMember))
		}
	}
	if held != 0 {
		bad = append(bad, fmt.Sprintf("%d messages still held", held))
	}
	for _, m := range msgs {
		s := sends[m]
		g := groups[s.room]
		if g == nil {
			bad = append(bad, fmt.Sprintf("message %s to chat %s, whose create is not in the log", m, s.room))
			continue
		}
		for r := range g.All() {
			if r == s.from {
				continue
			}
			k := [2]Stamp{m, {UID: r}}
			for inc, n := range got[k] {
				if n != 1 {
					bad = append(bad, fmt.Sprintf("message %s reached %s (incarnation %d) %d times", m, uidName(r), inc, n))
				}
			}
			if len(got[k]) == 0 && h.crashes.excused[k] == 0 {
				bad = append(bad, fmt.Sprintf("message %s never reached %s", m, uidName(r)))
			}
		}
	}
	return bad
}

// playCrashes plays one whole history with every fault, crashes
// included, and returns what broke.
func playCrashes(tb testing.TB, rng chooser, seed uint64, steps int) (*peerHistory, []string) {
	n := 3 + rng.IntN(5)
	h := newPeerHistory(tb, rng, seed, n, peerConfig{faulty: true, links: true, crash: true})
	h.crashes = &crashPlay{seed: seed, upAt: make([]int, n+1), excused: map[[2]Stamp]int{}}
	return h, h.play(steps)
}

// Over many random histories of whole peers with every fault and users
// that crash and restart with nothing in memory, every user ends with the
// same rooms, no room is a ghost, nothing stays held back, and each
// incarnation of each member takes each message at most once, and some
// incarnation takes it unless a crash lost it by the rule.
func TestCrashHistories(t *testing.T) {
	const histories = 600
	var crashed, excused int
	ran := 0
	for seed := range uint64(histories) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 19))
			h, bad := playCrashes(t, rng, seed, 40+rng.IntN(120))
			if len(bad) > 0 {
				t.Fatal(bad)
			}
			crashed += h.crashes.crashed
			excused += len(h.crashes.excused)
			ran++
		})
	}
	if ran < histories {
		return
	}
	if crashed == 0 {
		t.Error("no user crashed")
	}
	t.Logf("%d crashes; %d deliveries lost by the rule", crashed, excused)
}

// While a restarted child holds W, its parent keeps the last report of
// the child's earlier self, whose position and unsettled counts bound W;
// once the child lets W go, its report replaces the earlier one.
func TestRestartedChildHoldsW(t *testing.T) {
	s := newStability(1, 3)
	s.take(2, &progress{N: 4, Pos: 10, MaxPos: 10, Counts: []epochCount{{7, 2}}})
	s.take(3, &progress{N: 1, Pos: 12, MaxPos: 12})
	s.settle(20, 20)
	if s.stable != 7 {
		t.Fatalf("W is %d, want 7: the earlier self's unsettled sends", s.stable)
	}
	s.take(2, &progress{Inc: 15, Hold: true, N: 1, Pos: 0})
	s.settle(21, 21)
	if s.stable != 7 || s.kids[0].Inc != 0 {
		t.Fatalf("W is %d and the child's report is incarnation %d's, want 7 and the earlier self's", s.stable, s.kids[0].Inc)
	}
	s.take(2, &progress{Inc: 15, N: 2, Pos: 18, MaxPos: 18})
	s.settle(22, 22)
	if s.stable != 12 {
		t.Fatalf("W is %d once the restarted child let it go, want 12", s.stable)
	}
	r := newStability(1, 3) // a parent that has no earlier report takes the hold
	r.take(2, &progress{Inc: 15, Hold: true, N: 1, Pos: 0})
	if r.kids[0] == nil || r.least() != 0 {
		t.Fatal("a parent with no earlier report did not hold W at the child's word")
	}
}

// A message held back for a room no view will learn of again is
// delivered, late, once W passes its epoch: not before.
func TestReleaseBelow(t *testing.T) {
	v := NewView(2, true)
	m := &Event{Kind: MessageEvent, From: 1, Clock: 9, Room: Stamp{8, 1}, Group: newGroup(3, 1, 2), Epoch: 5}
	v.Apply(m, 0)
	v.ReleaseBelow(5, 0)
	if v.HeldCount() != 1 {
		t.Fatal("released before W passed the message's epoch")
	}
	v.ReleaseBelow(6, 0)
	if v.HeldCount() != 0 || v.Deliveries != 1 || v.Late != 1 {
		t.Fatalf("held %d, delivered %d, late %d: want it delivered once, late", v.HeldCount(), v.Deliveries, v.Late)
	}
}

// A restarted user's stamps start past any its earlier selves made, and
// it takes back the rooms it was in, members and all, from a member's
// welcome, so that it can act in them.
func TestRestartedUserTakesItsRoomsBack(t *testing.T) {
	tn := newTestNetOf(t, 3, 0, 1, peerConfig{faulty: true, links: true, crash: true})
	g := newGroup(3, 1, 2, 3)
	tn.p(1).Step(Input{Kind: proposeInput, Proposal: Proposal{Kind: CreateEvent, Group: g}}, tn.ports[1])
	for range ackTicks + 2 { // until the create is acknowledged: it will not come again
		tn.route(nil, nil)
		tn.tickAll(actNone)
	}
	if l := tn.p(1).links.get(3); l != nil && l.unacked.len() != 0 {
		t.Fatal("the create is still unacknowledged")
	}
	cfg := tn.cfg[3]
	cfg.inc = 41
	tn.peers[3] = newPeer(3, cfg, rand.New(rand.NewPCG(1, 3)))
	tn.tick = max(tn.tick, 40)
	tn.p(3).Step(Input{Kind: restartInput, Tick: 40}, tn.ports[3])
	for range 3 {
		tn.route(nil, nil)
		tn.tickAll(actNone)
	}
	p := tn.p(3)
	if p.view.RoomCount() != 1 || p.stab.hold {
		t.Fatalf("the restarted user is in %d rooms (want 1), holding W %v", p.view.RoomCount(), p.stab.hold)
	}
	p.Step(Input{Kind: proposeInput, Proposal: Proposal{Kind: CreateEvent, Group: newGroup(3, 2, 3)}}, tn.ports[3])
	if got := p.view.clock; got <= 41*3 {
		t.Errorf("its next stamp is %d, want past 41 ticks times 3 users", got)
	}
}

// A restarted root learns which late joiners to guard only from its
// children's reports: until every child has reported, it reclaims no
// further than the word it heard, whatever W it knows.
func TestRestartedRootReclaimsOnlyWhatItHeard(t *testing.T) {
	s := newStability(1, 3)
	s.inc = 30
	s.heard(stableWord{Stable: 20, Reclaim: 4, Horizon: 20}, 30)
	if r, _ := s.reclaim(); r != 4 {
		t.Fatalf("reclaims by %d before its children reported, want the 4 it heard", r)
	}
	s.take(2, &progress{Inc: 0, N: 1, Pos: 25, MaxPos: 25, Notes: []arrivalEntry{{3, arrivalNote{Hello: 6}}}})
	s.take(3, &progress{Inc: 0, N: 1, Pos: 25, MaxPos: 25})
	if r, _ := s.reclaim(); r != 6 {
		t.Fatalf("reclaims by %d once its children reported a late joiner's hello at 6, want 6", r)
	}
}

// A user the nemesis has let up is rebooting until its driver restarts it
// (in real time, at its next tick): it neither crashes again nor goes
// offline meanwhile, for the run would crash a peer already dead, and
// count its losses twice. Once restarted, it crashes and goes offline as
// before. Nor does it count as up: a real-time run many fault ticks behind
// its users (lag 40 here) must still keep two users alive, or it crashes
// them all at once.
func TestRebootingUserStaysUp(t *testing.T) {
	for _, c := range []struct {
		users int32
		lag   int64 // the driver restarts a user let up on a tick that is a multiple of lag
	}{{20, 3}, {5, 40}} {
		t.Run(fmt.Sprintf("users=%d,lag=%d", c.users, c.lag), func(t *testing.T) {
			const most = 3
			f := newFaults(int(c.users), 0, 0)
			m := newNemesis(f, 1, int(c.users), time.Second, faultPlan{crashMax: most, offMax: most})
			dead := map[int32]bool{}
			crashes, restarts := 0, 0
			for tick := int64(1); tick <= 3000; tick++ {
				m.apply(tick)
				for _, u := range m.crashed {
					if dead[u] {
						t.Fatalf("tick %d: user_%d crashed again before it restarted", tick, u)
					}
					dead[u] = true
					crashes++
				}
				if up := int(c.users) - len(dead); up < 2 {
					t.Fatalf("tick %d: %d users up, want 2 at least", tick, up)
				}
				for u := int32(1); u <= c.users; u++ {
					if !dead[u] || !f.rebooting[u].Load() {
						continue
					}
					if f.away[u].Load() {
						t.Fatalf("tick %d: user_%d went offline before it restarted", tick, u)
					}
					if tick%c.lag == 0 {
						delete(dead, u)
						f.rebooting[u].Store(false)
						restarts++
					}
				}
			}
			if crashes < 50 || restarts < 50 {
				t.Errorf("%d crashes, %d restarts", crashes, restarts)
			}
		})
	}
}

// A run stopped during start-up, before every user started, runs no
// fault but their end: a crash then could never be healed, for a
// restarted user waits for a welcome from every user, and users that
// never started send none.
func TestStopDuringStartUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{Users: 30, Seed: 1, Tick: time.Millisecond, Chance: 0.5, Duration: time.Hour, Quiet: true,
			Crash: time.Millisecond, Offline: time.Millisecond, Clog: time.Millisecond}
		s := newSim(cfg, io.Discard, io.Discard)
		rep, err := s.run(&cancelAfter{Context: context.Background(), checks: 10})
		if err != nil {
			t.Fatal(err)
		}
		requireConverged(t, rep)
		if len(s.users) >= cfg.Users || rep.Stopped != "interrupted" {
			t.Fatalf("%d users started, stopped %q: want a stop during start-up", len(s.users), rep.Stopped)
		}
		if f := rep.Faults; f.Crash.Crashes+f.Outages+f.Clogs != 0 {
			t.Errorf("faults after the stop: %d crashes, %d outages, %d clogs", f.Crash.Crashes, f.Outages, f.Clogs)
		}
	})
}

// cancelAfter is a context that is cancelled once Err has been asked
// checks times: a stop at a chosen point of start-up.
type cancelAfter struct {
	context.Context
	checks int
}

func (c *cancelAfter) Err() error {
	if c.checks--; c.checks < 0 {
		return context.Canceled
	}
	return nil
}

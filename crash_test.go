package main

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
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
		l := &old.links.table[r]
		for _, it := range l.unacked.items[l.unacked.head:] {
			if it.ev.Kind == MessageEvent && !settledNow(tn, r, old, it.seq) {
				c.excused[[2]Stamp{it.ev.ID(), {UID: r}}]++
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
	l := &tn.p(s).links.table[to.uid]
	if l.nextSeq == 0 || l.peerKnown && l.peerInc != to.cfg.inc {
		return false
	}
	return slices.ContainsFunc(l.unacked.items[l.unacked.head:], func(it sentItem) bool { return it.ev == m })
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

// holding reports whether a restarted user still holds W.
func (h *peerHistory) holding() bool {
	for _, p := range h.tn.peers[1:] {
		if p.stab.hold {
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
	h := &peerHistory{rng: rng, faults: true, maxDelay: time.Duration(1+rng.IntN(5)) * time.Second}
	h.late, h.lateAt = int32(n), 1+rng.IntN(40)
	h.tn = newTestNetOf(tb, n, 1, seed, peerConfig{faulty: true, crash: true})
	h.crashes = &crashPlay{seed: seed, upAt: make([]int, n+1), excused: map[[2]Stamp]int{}}
	for i := 1; i <= steps; i++ {
		h.step(i)
	}
	if !h.drain() {
		return h, []string{"the drain did not end"}
	}
	return h, h.checkCrashes()
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

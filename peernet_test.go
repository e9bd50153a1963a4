package main

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// testNet is an in-memory network for driving peers directly, as etcd
// raft's tests drive nodes: every transmission a peer makes waits in
// flight until the test delivers it, loses it or delivers it twice, in
// whatever order the test picks. The report tree's reports and news (see
// stability) are apart: they arrive at the next tick, unless an outage or
// a cut loses them, so that tests of the races need not step through
// them. At each tick it tells a user its own tick and whether it is
// offline; nothing else. Nothing here copies a driver: the peer decides
// what to do with each input.
type testNet struct {
	t      testing.TB
	peers  []*Peer // peers[u] is user_u; 0 unused
	ports  []*testPort
	flight []inTransit
	tree   []inTransit // the report tree's, due at the next tick
	made   int         // transmissions made so far
	late   int         // late joiners online whose view is not yet complete
	tick   uint64
	now    time.Duration
	period time.Duration
	away   []bool // by uid: the network has the user offline
	down   []bool // by uid: the user has crashed and not yet restarted
	cfg    []peerConfig
	cut    func(from, to int32) bool
}

// inTransit is one transmission on its way.
type inTransit struct {
	id       int // the order it was made in, from 1
	from, to int32
	d        Delivery
	k        txKind
	sent     time.Duration
}

// testPort is one peer's port on a testNet.
type testPort struct {
	n   *testNet
	uid int32
	tx  transportCounts
}

// newTestNet returns a network of n peers, all online (but for the last
// late ones, which come online when the test says), with links when faulty.
func newTestNet(t testing.TB, n, late int, faulty bool, seed uint64) *testNet {
	return newTestNetOf(t, n, late, seed, peerConfig{faulty: faulty, links: faulty})
}

// newTestNetOf is newTestNet with every peer's configuration from base.
func newTestNetOf(t testing.TB, n, late int, seed uint64, base peerConfig) *testNet {
	const tick = time.Second
	tn := &testNet{t: t, period: tick, away: make([]bool, n+1), down: make([]bool, n+1), peers: make([]*Peer, n+1), ports: make([]*testPort, n+1), cfg: make([]peerConfig, n+1)}
	timing := newLinkTiming(tick, 4*tick)
	if base.names == nil {
		base.names = newGroupNames()
	}
	for u := int32(1); int(u) <= n; u++ {
		cfg := base
		cfg.users, cfg.chance, cfg.latecomer, cfg.timing, cfg.log = n, 0.5, int(u) > n-late, timing, true
		tn.cfg[u] = cfg
		tn.peers[u] = newPeer(u, cfg, rand.New(rand.NewPCG(seed, uint64(u))))
		tn.ports[u] = &testPort{n: tn, uid: u}
		tn.away[u] = cfg.latecomer
	}
	online := int32(n - late)
	for u := int32(1); u <= online; u++ {
		tn.peers[u].Step(Input{Kind: newsInput, Last: online}, tn.ports[u])
		tn.peers[u].ResetRecords()
	}
	return tn
}

// p is user u's peer.
func (tn *testNet) p(u int32) *Peer { return tn.peers[u] }

// join brings late joiner j online, at its next tick: it says so itself.
func (tn *testNet) join(j int32) {
	tn.away[j] = false
	tn.late++
}

// tickAll advances time by a tick and ticks every peer, in uid order; act
// says whether they roll for an action.
func (tn *testNet) tickAll(act actChoice) {
	tn.now += tn.period
	tn.tick++
	tn.deliverTree()
	for u := 1; u < len(tn.peers); u++ {
		if !tn.down[u] {
			tn.tickOne(int32(u), act)
		}
	}
}

// tickOne ticks user u alone, at the current time.
func (tn *testNet) tickOne(u int32, act actChoice) {
	tn.peers[u].Step(Input{Kind: tickInput, Now: tn.now, Tick: tn.tick, Act: act, Away: tn.away[u]}, tn.ports[u])
}

// deliverTree hands the report tree's transmissions to their recipients.
func (tn *testNet) deliverTree() {
	due := tn.tree
	tn.tree = nil
	for _, tr := range due {
		tn.arrive(tr)
	}
}

// deliver hands the i-th transmission in flight to its recipient, unless
// the recipient is offline or cut off from the sender: then it is lost.
// It returns the records the delivery made.
func (tn *testNet) deliver(i int) []Record {
	tr := tn.flight[i]
	tn.flight = slices.Delete(tn.flight, i, i+1)
	return tn.arrive(tr)
}

// arrive hands one transmission to its recipient and returns the records
// that made, which stay in the peer's buffer too.
func (tn *testNet) arrive(tr inTransit) []Record {
	if tn.away[tr.to] || tn.away[tr.from] || tn.down[tr.to] || tn.cut != nil && tn.cut(tr.from, tr.to) {
		tn.ports[tr.to].tx.Lost++
		return nil
	}
	p := tn.peers[tr.to]
	before := len(p.Records())
	p.Step(Input{Kind: deliverInput, Now: tn.now, D: tr.d}, tn.ports[tr.to])
	return p.Records()[before:]
}

// take removes and returns what is in flight from one user to another, in
// order.
func (tn *testNet) take(from, to int32) []inTransit {
	var out []inTransit
	tn.flight = slices.DeleteFunc(tn.flight, func(tr inTransit) bool {
		if tr.from == from && tr.to == to {
			out = append(out, tr)
			return true
		}
		return false
	})
	return out
}

func (p *testPort) transmit(to int32, d Delivery, k txKind, now time.Duration) {
	n := p.n
	p.tx.Transmissions++
	if k == txResend {
		p.tx.Retransmitted++
	}
	d.Due = now
	if k := d.Event.Kind; d.Seq == 0 && (k == ReportEvent || k == NewsEvent) {
		n.tree = append(n.tree, inTransit{0, p.uid, to, d, txControl, now})
		return
	}
	n.made++
	n.flight = append(n.flight, inTransit{n.made, p.uid, to, d, k, now})
}

func (p *testPort) transmitAll(ev *Event, known int32) { transmitEach(p, ev, known) }
func (p *testPort) admit(int64) bool                   { return true }
func (p *testPort) release()                           {}
func (p *testPort) dropped()                           { p.tx.Lost++ }
func (p *testPort) caughtUp()                          { p.n.late-- }
func (p *testPort) applied(*Event, time.Duration)      {}

package main

import (
	"math/rand/v2"
	"slices"
	"time"
)

// nemesis is the fault schedule of a run, after Jepsen's: when the network
// splits and heals, who goes offline and for how long, and when each late
// joiner comes online. It is drawn from the seed and counted in ticks, the
// same in real time and in lockstep, and the run applies it tick by tick
// (apply) to the network, which loses what the faults cut off. It never
// touches a user: users notice and recover by what they send each other.
//
//   - Partitions: healed and split periods alternate, each lasting a whole
//     number of ticks uniform from 1 to splitMax. A split is, with equal
//     odds, random halves, one user cut off from all others, or a bridge:
//     two halves and one user who reaches both.
//     Half the splits are one-way: the first side reaches the second, but
//     nothing comes back (the isolated user can only send, or only
//     receive; a bridge still reaches both sides both ways).
//   - Outages: on every tick each online user goes offline with chance
//     1/(9L), L the mean outage in ticks, and stays away a whole number of
//     ticks uniform from 1 to offMax. So about one user in ten is away at
//     any moment: the chance of being away is qL/(1+qL) = 1/10.
//   - Clogs: on every tick each user that has no clog of its own gets a
//     clog with chance 1/(19L), L the mean clog in ticks, lasting a whole
//     number of ticks uniform from 1 to clogMax: with equal odds on what it
//     sends, on what is sent to it, or on what it sends to one other user.
//     So about one user in twenty has a clog at any moment. What is sent
//     over a clogged path is not lost: it goes on when the clog clears.
//   - Crashes: on every tick each user online, and not offline, crashes
//     with chance 1/(19L), L the mean time down in ticks, unless that would
//     leave fewer than two users up; it stays down a whole number of ticks
//     uniform from 1 to crashMax, and restarts with nothing in memory (see
//     restart.go). So about one user in twenty is down at any moment.
//     While down it is offline to the network, and it cannot go offline;
//     nor can it, or crash again, once up until its driver has restarted
//     it at its next tick (at once in lockstep; in real time a tick may
//     pass first).
//   - Late joiners: the last join users, user_{n-join+1} to user_n, come
//     online in that order at ticks uniform in the first half of the run
//     (of the first minute without -duration).
//
// At the stop, end heals the network, clears the clogs, restarts whoever
// is down and brings everyone online, so that the drain can deliver
// everything.
type nemesis struct {
	net        *faults
	rng        *rand.Rand
	users      int32
	tick       time.Duration
	splitMax   int64
	offMax     int64
	offChance  float64
	clogMax    int64
	clogChance float64
	clogs      spells
	crashMax   int64
	crashOdds  float64
	downs      spells
	up         int32   // users online and not down
	crashed    []int32 // the users that crashed at the last tick applied

	split     *split // the current split, or nil
	nextSplit int64  // the tick the partition next changes; 0: never
	splitAt   int64
	outages   spells
	firstLate int32   // the first late joiner; users+1 when none
	lateAt    []int64 // lateAt[i]: the tick user_{firstLate+i} comes online
	joined    int     // late joiners online so far

	tally faultTally
}

// spells are the users' turns of one fault of their own (an outage, a
// clog): by uid, the tick each began and the tick it ends, 0 while the
// user has none.
type spells struct{ since, until []int64 }

func newSpells(users int) spells {
	return spells{make([]int64, users+1), make([]int64, users+1)}
}

func (s spells) on(u int32) bool              { return s.until[u] != 0 }
func (s spells) endsAt(u int32, t int64) bool { return s.until[u] == t }

// start begins user u's spell at tick t, for ticks ticks.
func (s spells) start(u int32, t, ticks int64) { s.since[u], s.until[u] = t, t+ticks }

// end ends user u's spell at tick t, and returns how long it lasted.
func (s spells) end(u int32, t int64) int64 {
	s.until[u] = 0
	return t - s.since[u]
}

// faultTally counts what the nemesis did.
type faultTally struct {
	Splits, OneWay, Outages, Clogs, Crashes     int64
	SplitTicks, AwayTicks, ClogTicks, DownTicks int64
	LateJoiners                                 int64
}

// faultPlan is the fault schedule's settings, in ticks (0: none): the
// longest split or healed period, outage and clog, the late joiners, and
// the last tick one may come online.
type faultPlan struct {
	splitMax, offMax, clogMax, crashMax int64
	join                                int
	lateBy                              int64
}

// newNemesis draws the schedule of users users, with ticks of tick.
func newNemesis(net *faults, seed uint64, users int, tick time.Duration, plan faultPlan) *nemesis {
	m := &nemesis{
		net:       net,
		rng:       rand.New(rand.NewPCG(seed, 0x6e656d)),
		users:     int32(users),
		tick:      tick,
		splitMax:  plan.splitMax,
		offMax:    plan.offMax,
		clogMax:   plan.clogMax,
		outages:   newSpells(users),
		firstLate: int32(users - plan.join + 1),
	}
	splitMax, offMax, join, lateBy := plan.splitMax, plan.offMax, plan.join, plan.lateBy
	if splitMax > 0 {
		m.nextSplit = 1 + m.rng.Int64N(splitMax)
	}
	if offMax > 0 {
		mean := float64(offMax+1) / 2
		m.offChance = 1 / (9 * mean)
	}
	if plan.clogMax > 0 {
		mean := float64(plan.clogMax+1) / 2
		m.clogChance = 1 / (19 * mean)
		m.clogs = newSpells(users)
	}
	if plan.crashMax > 0 {
		m.crashMax = plan.crashMax
		m.crashOdds = 1 / (19 * float64(plan.crashMax+1) / 2)
		m.downs = newSpells(users)
	}
	m.up = int32(users - join)
	for range join {
		m.lateAt = append(m.lateAt, 1+m.rng.Int64N(max(1, lateBy)))
	}
	slices.Sort(m.lateAt)
	for u := m.firstLate; u <= m.users; u++ {
		net.away[u].Store(true)
	}
	return m
}

// apply carries out tick t's changes. It returns the network's log lines
// and the late joiners that come online now, whom the run announces.
func (m *nemesis) apply(t int64) (recs []Record, joined []int32) {
	if m.nextSplit == t {
		recs = append(recs, m.toggleSplit(t))
		m.nextSplit = t + 1 + m.rng.Int64N(m.splitMax)
	}
	if m.offMax > 0 {
		for u := int32(1); u < m.firstLate+int32(m.joined); u++ {
			switch {
			case m.outages.endsAt(u, t):
				m.comeBack(u, t)
			case !m.outages.on(u) && m.rng.Float64() < m.offChance && (m.crashMax == 0 || !m.downs.on(u) && !m.net.rebooting[u].Load()):
				m.outages.start(u, t, 1+m.rng.Int64N(m.offMax))
				m.tally.Outages++
				m.net.away[u].Store(true)
			}
		}
	}
	if m.clogMax > 0 {
		for u := int32(1); u <= m.users; u++ {
			switch {
			case m.clogs.endsAt(u, t):
				recs = append(recs, m.unclog(u, t))
			case !m.clogs.on(u) && m.rng.Float64() < m.clogChance:
				recs = append(recs, m.clog(u, t))
			}
		}
	}
	m.crashed = m.crashed[:0]
	if m.crashMax > 0 {
		m.crashes(t)
	}
	for m.joined < len(m.lateAt) && m.lateAt[m.joined] <= t {
		joined = append(joined, m.join())
	}
	return recs, joined
}

// crashes restarts the users whose time down ends at tick t, and crashes
// others: see nemesis. A crashed user is offline to the network until the
// nemesis lets it up, and rebooting until its driver restarts it at its
// next tick; the run (Sim.crash) takes its memory.
func (m *nemesis) crashes(t int64) {
	// Users let up but not restarted yet count in m.up, but are not up:
	// a crash must leave two users up without them. In real time an
	// overloaded run can be many fault ticks behind its users' ticks, and
	// would otherwise crash every user at once.
	var rebooting int32
	for u := int32(1); u < m.firstLate+int32(m.joined); u++ {
		if m.net.rebooting[u].Load() {
			rebooting++
		}
	}
	for u := int32(1); u < m.firstLate+int32(m.joined); u++ {
		switch {
		case m.downs.endsAt(u, t):
			m.restart(u, t)
			rebooting++
		case !m.downs.on(u) && !m.net.away[u].Load() && !m.net.rebooting[u].Load() && m.up-rebooting > 2 && m.rng.Float64() < m.crashOdds:
			m.downs.start(u, t, 1+m.rng.Int64N(m.crashMax))
			m.crashed = append(m.crashed, u)
			m.tally.Crashes++
			m.up--
			m.net.away[u].Store(true)
			m.net.down[u].Store(true)
		}
	}
}

// restart brings user u, down, up again at tick t.
func (m *nemesis) restart(u int32, t int64) {
	m.tally.DownTicks += m.downs.end(u, t)
	m.up++
	m.net.down[u].Store(false)
	m.net.away[u].Store(false)
	m.net.rebooting[u].Store(true)
}

// clog clogs user u's traffic from tick t, and returns the network's log
// line.
func (m *nemesis) clog(u int32, t int64) Record {
	c := &clog{dir: clogDir(m.rng.IntN(3))}
	if c.dir == clogPair {
		c.peer = 1 + int32(m.rng.IntN(int(m.users)-1))
		if c.peer >= u {
			c.peer++
		}
	}
	ticks := 1 + m.rng.Int64N(m.clogMax)
	m.clogs.start(u, t, ticks)
	m.net.clogs[u].Store(c)
	m.tally.Clogs++
	return Record{Kind: KindClog, By: u, Peer: c.peer, ClogDir: c.dir, Lasts: time.Duration(ticks) * m.tick}
}

// unclog clears user u's clog at tick t, and returns the network's log
// line. What the clog held goes on at its senders' next ticks (or
// sends, in real time).
func (m *nemesis) unclog(u int32, t int64) Record {
	c := m.net.clogs[u].Load()
	ticks := m.clogs.end(u, t)
	m.tally.ClogTicks += ticks
	m.net.clogs[u].Store(nil)
	return Record{Kind: KindUnclog, By: u, Peer: c.peer, ClogDir: c.dir, Lasts: time.Duration(ticks) * m.tick}
}

// end ends every fault at tick t, for the drain: the network heals, the
// users away come back, and the late joiners still to come come now.
func (m *nemesis) end(t int64) (recs []Record, joined []int32) {
	if m.split != nil {
		recs = append(recs, m.toggleSplit(t))
	}
	m.nextSplit = 0
	for u := int32(1); u <= m.users; u++ {
		if m.outages.on(u) {
			m.comeBack(u, t)
		}
	}
	m.offMax = 0
	for u := int32(1); u <= m.users && m.clogMax > 0; u++ {
		if m.clogs.on(u) {
			recs = append(recs, m.unclog(u, t))
		}
	}
	m.clogMax = 0
	m.crashed = m.crashed[:0]
	for u := int32(1); u <= m.users && m.crashMax > 0; u++ {
		if m.downs.on(u) {
			m.restart(u, t)
		}
	}
	m.crashMax = 0
	for m.joined < len(m.lateAt) {
		joined = append(joined, m.join())
	}
	return recs, joined
}

func (m *nemesis) comeBack(u int32, t int64) {
	m.tally.AwayTicks += m.outages.end(u, t)
	m.net.away[u].Store(false)
}

func (m *nemesis) join() int32 {
	u := m.firstLate + int32(m.joined)
	m.joined++
	m.tally.LateJoiners++
	m.up++
	m.net.away[u].Store(false)
	return u
}

// toggleSplit splits a whole network or heals a split one, and returns the
// network's log line.
func (m *nemesis) toggleSplit(t int64) Record {
	if m.split != nil {
		m.tally.SplitTicks += t - m.splitAt
		m.split = nil
		m.net.split.Store(nil)
		return Record{Kind: KindHeal}
	}
	n := int(m.users)
	s := &split{sides: make([]uint8, n+1)}
	perm := m.rng.Perm(n) // perm[i]+1 is a uid
	kinds := 3
	if n < 3 {
		kinds = 2 // no bridge without two others
	}
	s.oneWay = m.rng.IntN(2) == 0
	switch m.rng.IntN(kinds) {
	case 0: // random halves
		for i, p := range perm {
			s.sides[p+1] = sideOf(i < n/2)
		}
	case 1: // one user cut off
		for i, p := range perm {
			s.sides[p+1] = sideOf(i == 0)
		}
	default: // a bridge, and halves of the rest
		s.sides[perm[0]+1] = 3
		rest := perm[1:]
		for i, p := range rest {
			s.sides[p+1] = sideOf(i < len(rest)/2)
		}
	}
	if s.oneWay && m.rng.IntN(2) == 0 {
		// Either way round: the isolated user only sends, or only hears.
		for u, side := range s.sides {
			if side != 3 {
				s.sides[u] = side ^ 3
			}
		}
	}
	m.split, m.splitAt = s, t
	m.tally.Splits++
	if s.oneWay {
		m.tally.OneWay++
	}
	m.net.split.Store(s)
	var a, b []int32
	for u := int32(1); u <= m.users; u++ {
		if s.sides[u]&1 != 0 {
			a = append(a, u)
		}
		if s.sides[u]&2 != 0 {
			b = append(b, u)
		}
	}
	return Record{Kind: KindSplit, Sides: [][]int32{a, b}, OneWay: s.oneWay}
}

// sideOf is side 1 or side 2, as a bit.
func sideOf(first bool) uint8 {
	if first {
		return 1
	}
	return 2
}

package main

// Stability, learned from the peers: part of a peer's step machine.
//
// Epoch W is stable when every room event sent in an epoch below W has
// been applied by its recipient; a horizon H for it is an epoch such that
// no user sent anything in an epoch later than H before it had applied
// every room event below W. Views reclaim closed rooms by them (see View
// and docs/design.md). A peer's epoch is its own tick, raised to the epoch
// of anything it applies, so that what it sends after applying an event is
// never in an earlier epoch than the event.
//
// No user can count what is in flight across the network, so each learns
// W from what the others tell it. Every broadcast (a create, a close, a
// late joiner's hello, a heartbeat) carries its sender's report: how many
// counted events (those that change rooms, messages, and a late joiner's
// hello: see counted) it sent and applied, by epoch, since its last
// report, and its position (every counted event it sent in an epoch below
// the position is in its reports so far), with the position of its
// previous report. A peer sums the reports it takes: per epoch, sent minus applied (balance),
// and how many users' reports have reached each position (positions).
// Epoch e is complete once every user's position is past e (no more sends
// of e will be reported) and its balance is zero (every send of e is
// applied: an apply is reported only once it happened, and each payload is
// applied once). W is the least epoch not complete. Never early; late by
// how long reports take to arrive, which a heartbeat bounds when a user
// broadcasts nothing for heartbeatTicks.
//
// Reports may arrive in any order over links that repair loss: a report
// moves its sender from the previous position to the new one, so the
// positions count each user once, at the end of the run of its reports
// that has settled without a gap. That is never later than its true
// position, so W is never early.
//
// Every user of the run is counted, from the start: the membership is
// known. A user offline, cut off or not yet online holds W back while it
// lasts, the honest cost of causal stability.
//
// The sums need every report of every user. A late joiner misses those
// sent before the others knew of it, so it counts nothing itself: it
// learns W and H from the others' word, since every transmission carries
// its sender's (W, H), and any user's W is a fact about all. Taking the
// greater W and the greater H keeps them a valid pair. It learns the point
// to reclaim by in the same way (see reclaim).
//
// A late joiner also holds back reclaiming, for a while: see latecomerGuard.
type stability struct {
	counting bool // sums reports; a late joiner does not
	members  int

	stable, horizon uint64 // W and H, as known
	reclaimHeard    uint64 // the greatest reclaim point another user told
	pos             uint64 // the position of this user's last report
	pending         []epochCount
	maxPos          uint64 // the greatest position reported: a horizon

	base      uint64  // the epoch of positions[0] and balance[0]: the least position of any user
	positions []int32 // users whose reports have reached each position, from base
	balance   []int64 // sent minus applied, by epoch, from base

	guards []latecomerGuard // late joiners that may still send about what they did not know

	lags []int64 // lags[k]: epochs known stable k ticks after they ended
}

// epochCount is what one user sent and applied of one epoch's room
// events.
type epochCount struct {
	Epoch         uint64
	Sent, Applied int64
}

// progress is the report a broadcast carries of its sender's progress:
// see stability.
type progress struct {
	Prev, Pos uint64
	Counts    []epochCount
	Arrival   arrivalNote // the sender's own way in, if it came late
}

// arrivalNote is a late joiner's word on its way in: the epoch of its hello,
// and once its view is complete, the epoch it was complete in.
type arrivalNote struct {
	Hello, Done uint64
}

// latecomerGuard is a late joiner that may still send about rooms it does
// not know are closed: until its view is complete it may act on a state
// transfer that missed a close, and send to a closed incarnation or create
// below it. No view reclaims what such a send could need: reclaiming is
// held at the joiner's hello until its view is complete and everything it
// sent until then is stable. A tombstone whose second phase ends before the
// hello is safe to forget: its close was applied, and reported, by every
// user that could answer the joiner before it could answer, and every send
// it outlived was sent before anyone knew of the joiner.
type latecomerGuard struct {
	uid         int32
	hello, done uint64
}

// heartbeatTicks is how long a user stays without broadcasting before it
// sends a heartbeat: a report alone, to everyone it knows. Longer is
// fewer transmissions and later stability.
const heartbeatTicks = 20

// drainHeartbeatTicks is the same in the drain, where no one acts and only
// users that someone's stability waits for report: a late joiner's
// complete view waits for two rounds of stability, and the run's end for
// it. Measured in real time (6 users, -loss 0.2 -partition 10s -offline
// 10s -join 2, seeds 5 and 6), the drain took 60 s at 20 ticks, 37-44 s
// at 10, 30-34 s at 5 and 24-25 s at 2; in lockstep the faults golden run
// sent 1.0x, 1.1x, 1.6x and 2.9x the transmissions of 20. Five is the knee.
const drainHeartbeatTicks = 5

func newStability(members int, counting bool) *stability {
	s := &stability{counting: counting, members: members}
	if counting {
		s.positions = []int32{int32(members)}
		s.balance = []int64{0}
	}
	return s
}

// count notes k room events of epoch e sent (sent) or applied.
func (s *stability) count(e uint64, k int64, sent bool) {
	i := len(s.pending) - 1
	for i >= 0 && s.pending[i].Epoch != e {
		i--
	}
	if i < 0 {
		s.pending = append(s.pending, epochCount{Epoch: e})
		i = len(s.pending) - 1
	}
	if sent {
		s.pending[i].Sent += k
	} else {
		s.pending[i].Applied += k
	}
}

// report makes this user's report at epoch now, and takes it itself; or
// makes none, if it has reported in this epoch already. Positions rise
// from report to report, so that a report tells which came before it: a
// report whose previous has not settled leaves its sender where the
// settled ones do.
func (s *stability) report(now uint64, late arrivalNote) *progress {
	if now <= s.pos {
		return nil
	}
	r := &progress{Prev: s.pos, Pos: now, Counts: s.pending, Arrival: late}
	s.pending = nil
	s.pos = r.Pos
	s.take(r)
	return r
}

// take sums a report from a user, itself included.
func (s *stability) take(r *progress) {
	s.maxPos = max(s.maxPos, r.Pos)
	if !s.counting {
		return
	}
	s.at(r.Prev)
	s.positions[r.Prev-s.base]--
	s.at(r.Pos)
	s.positions[r.Pos-s.base]++
	for _, c := range r.Counts {
		if c.Epoch < s.base {
			continue // an epoch known complete: its counts are all in
		}
		s.at(c.Epoch)
		s.balance[c.Epoch-s.base] += c.Sent - c.Applied
	}
}

// at makes room for epoch e in the sums.
func (s *stability) at(e uint64) {
	for uint64(len(s.positions)) <= e-s.base {
		s.positions = append(s.positions, 0)
		s.balance = append(s.balance, 0)
	}
}

// heard takes the stable epoch, reclaim point and horizon another user
// knows.
func (s *stability) heard(stable, reclaim, horizon uint64, tick uint64) {
	s.reclaimHeard = max(s.reclaimHeard, reclaim)
	if stable > s.stable {
		s.advance(stable, max(s.horizon, horizon), tick)
	} else {
		s.horizon = max(s.horizon, horizon)
	}
}

// settle computes W from the sums at tick. Below the least position of
// any user every send is reported, so W is the least epoch whose
// position count or balance is not zero; the sums let go of the epochs
// below it.
func (s *stability) settle(tick uint64) {
	if !s.counting {
		return
	}
	for len(s.positions) > 1 && s.positions[0] == 0 && s.balance[0] == 0 {
		s.positions, s.balance = s.positions[1:], s.balance[1:]
		s.base++
	}
	if s.base > s.stable {
		s.advance(s.base, s.maxPos, tick)
	}
	s.compact()
}

// compact lets the sums' slices go back to the start of their memory
// once they have moved well along it.
func (s *stability) compact() {
	if cap(s.positions) > 64 && len(s.positions) < cap(s.positions)/4 {
		s.positions = append([]int32(nil), s.positions...)
		s.balance = append([]int64(nil), s.balance...)
	}
}

// advance raises W to w, with horizon h, at tick: every epoch from the old
// W up to w is known stable now, and its lag is counted.
func (s *stability) advance(w, h uint64, tick uint64) {
	for e := s.stable; e < w; e++ {
		lag := int64(0)
		if tick > e+1 {
			lag = int64(tick - e - 1)
		}
		for int64(len(s.lags)) <= lag {
			s.lags = append(s.lags, 0)
		}
		s.lags[lag]++
	}
	s.stable, s.horizon = w, max(s.horizon, h)
	s.guards = removeDone(s.guards, w)
}

// removeDone drops the late joiners whose view is complete and whose
// sends until then are all stable.
func removeDone(guards []latecomerGuard, w uint64) []latecomerGuard {
	out := guards[:0]
	for _, l := range guards {
		if l.done == 0 || w <= l.done {
			out = append(out, l)
		}
	}
	return out
}

// noteArrival takes a late joiner's word on its way in.
func (s *stability) noteArrival(uid int32, n arrivalNote) {
	if n.Hello == 0 {
		return
	}
	for i := range s.guards {
		if s.guards[i].uid == uid {
			s.guards[i].done = max(s.guards[i].done, n.Done)
			s.guards = removeDone(s.guards, s.stable)
			return
		}
	}
	if n.Done != 0 && s.stable > n.Done {
		return // long done
	}
	s.guards = append(s.guards, latecomerGuard{uid, n.Hello, n.Done})
}

// reclaim is the epoch views reclaim by, and the horizon: W held at the
// hello of the oldest late joiner still guarded, as this user knows them,
// or the greatest such point another user computed and told. Only a user
// that counts can be sure it knows every guard: every user
// online from the start has applied a joiner's hello before W can pass it.
// A late joiner may not have heard of an earlier one at all, so it reclaims
// by what it is told alone. Each point told is safe for every view, so the
// greatest is too.
func (s *stability) reclaim() (reclaim, horizon uint64) {
	r := s.reclaimHeard
	if s.counting {
		w := s.stable
		for _, l := range s.guards {
			w = min(w, l.hello)
		}
		r = max(r, w)
	}
	return r, s.horizon
}

package main

import (
	"slices"
	"sync/atomic"
	"time"
)

// User is one simulated person: a goroutine that drives its Peer, the
// user's protocol as a pure step machine, and changes the world only by
// what the peer sends through its port on the network. It never reads
// another user's state. The loop itself is the mode's: realUser in real
// time, stepUser in lockstep; this is what they share.
//
// UserChannel brings news of the users online at the start. In real time
// EventChannel brings transmissions from peers and the run's markers (a
// tick, a pause, the stop) behind them; in lockstep, where senders file
// deliveries straight into the recipient's buckets, only the start of each
// round.
// Each user sends from its own loop, never from a goroutine per send, so
// the events of one sender reach each recipient in the order they were
// sent, unless a delay or a clog is injected on purpose.
type User struct {
	UID          int32
	UserChannel  chan Online
	EventChannel chan Delivery

	peer   *Peer
	out    lineWriter
	keep   recordKeeper // the records for a page, or nil
	rend   renderer
	quiet  bool // print no records: they are kept for a page, or not made
	hidden bool // -follow leaves this user's lines out
	faulty bool
	buf    []byte // rendering scratch
	missed int64  // real time: tick markers a second one replaced before they ran
	trace  actionTrace

	// With crashes (see crash.go).
	dead    bool         // crashed: peer is the crashed incarnation, kept for its figures
	earlier *userFigures // its crashed incarnations' figures; nil until its first crash
	before  int64        // deliveries its crashed incarnations made

	// What the sampler reads while the user runs; the owner stores, others
	// load.
	liveGauge, deliveriesGauge, tombsGauge, heldGauge atomic.Int64
}

// lineWriter takes a user's rendered log lines: the run's sink in real
// time, a buffer of the user's own in lockstep, which the coordinator
// writes out in uid order.
type lineWriter interface{ Write(p []byte) }

// flushLog renders the peer's new records and hands them to out, and to
// keep when the run keeps them.
func (u *User) flushLog() {
	recs := u.peer.Records()
	if len(recs) == 0 {
		return
	}
	if u.keep != nil {
		u.keep.keep(recs)
		u.keepOrStop()
	}
	if !u.quiet && !u.hidden {
		for i := range recs {
			u.buf = u.rend.append(u.buf, &recs[i])
		}
		u.out.Write(u.buf)
		u.buf = u.buf[:0]
	}
	u.peer.ResetRecords()
}

// keepOrStop stops the peer making records once nothing more of them is
// printed or kept.
func (u *User) keepOrStop() {
	if u.keep != nil && (u.quiet || u.hidden) && u.keep.full() {
		u.peer.view.KeepRecords(false)
		u.keep = nil
	}
}

// publish brings the gauges the sampler reads up to date. A crashed
// user's stand as its last incarnation left them: its peer's deliveries
// are in before already.
func (u *User) publish() {
	if u.dead {
		return
	}
	u.deliveriesGauge.Store(u.before + u.peer.view.Deliveries)
	u.liveGauge.Store(int64(u.peer.view.LiveCount()))
	u.tombsGauge.Store(int64(u.peer.view.tombs.len()))
	u.heldGauge.Store(int64(u.peer.view.HeldCount()))
}

// gauge is the user's live rooms, deliveries and tombstones as last
// published.
func (u *User) gauge() (live, deliveries, tombs int64) {
	return u.liveGauge.Load(), u.deliveriesGauge.Load(), u.tombsGauge.Load()
}

// bury keeps the crashed peer's figures and leaves the user down.
func (u *User) bury() {
	f := peerFigures(u.peer)
	f.Held = 0 // held back when it crashed: the ledger counts them
	if u.earlier == nil {
		u.earlier = new(userFigures)
	}
	u.earlier.add(f)
	u.heldGauge.Store(0) // the drain waits for held messages; the dead hold none
	u.before += u.peer.view.Deliveries
	u.dead = true
}

// restart brings the user back at tick as a new incarnation with nothing
// in memory but its uid, the membership and its tick (see restart.go).
// The incarnation is numbered by the tick, which the user keeps by its own
// clock: ticks start at 1 and a user is down a tick at least, so each
// incarnation's number is greater than its earlier selves', the first
// one's 0 included. out is the user's driver.
func (u *User) restart(tick uint64, now time.Duration, out port) {
	cfg := u.peer.cfg
	cfg.inc, cfg.latecomer = uint32(tick), false
	u.peer = newPeer(u.UID, cfg, u.peer.rng)
	if u.keep == nil && (u.quiet || u.hidden) {
		u.peer.view.KeepRecords(false)
	}
	u.dead = false
	u.peer.Step(Input{Kind: restartInput, Now: now, Tick: tick}, out)
}

// figures reports the user's figures, with its port's and those of its
// crashed incarnations. Call it once the user has exited.
func (u *User) figures(p *Port, lat *hist) userFigures {
	f := peerFigures(u.peer)
	if u.earlier != nil {
		f.add(*u.earlier)
	}
	f.Skipped += u.missed
	f.Sent, f.Latency, f.Transport = p.sent, lat, p.tx
	return f
}

// peerFigures are the figures of one incarnation of a user.
func peerFigures(pr *Peer) userFigures {
	f := userFigures{
		Ticks: pr.ticks, Skipped: pr.skipped, Acted: pr.acted,
		Held:      int64(pr.view.HeldCount()),
		Counts:    pr.view.Counts,
		Lags:      slices.Clone(pr.stab.lags),
		TombsPeak: int64(pr.tombsPeak),
		Reports:   pr.reports,
		News:      pr.news,
	}
	if pr.cfg.latecomer && pr.roomsAt != 0 {
		f.Late = &lateFigures{ToRooms: int64(pr.roomsAt - pr.onlineAt - pr.awayTicks)}
		if pr.doneTick != 0 {
			f.Late.ToComplete = int64(pr.doneTick - pr.onlineAt)
		}
	}
	if pr.restarted() && pr.roomsAt != 0 {
		f.Restarts = []int64{int64(pr.roomsAt - pr.onlineAt)}
	}
	return f
}

// add adds an earlier incarnation's figures to f: what it did, what it
// counted and what it held are the user's too (a message it held when it
// crashed is counted by the run, as the rule has it: see crash.go).
func (f *userFigures) add(e userFigures) {
	f.Ticks += e.Ticks
	f.Skipped += e.Skipped
	f.Acted += e.Acted
	f.Counts.add(&e.Counts)
	f.TombsPeak = max(f.TombsPeak, e.TombsPeak)
	f.Reports += e.Reports
	f.News += e.News
	f.Lags = addCounts(f.Lags, e.Lags)
	if f.Late == nil {
		f.Late = e.Late
	}
	f.Restarts = append(f.Restarts, e.Restarts...)
}

package main

import (
	"context"
	"fmt"
	"io"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// Config is a run's settings, as the flags give them.
type Config struct {
	Users    int
	Seed     uint64
	Duration time.Duration // 0: until stopped
	Tick     time.Duration
	Chance   float64
	Quiet    bool
	JSON     bool
	Fast     bool
	Delay    time.Duration // each delivery is held back up to this long
	Stats    time.Duration // 0: no progress lines

	CPUProfile, MemProfile, Trace string

	inbox int // EventChannel capacity; 0 picks one by the number of users
}

// Sim is one run: the users, the directory of their channels, and the
// machinery around them: the clock, the stop, the log and the figures for
// the summary. The simulator may count things across users for reporting and
// checking, but no user ever reads another's state to decide what to do.
type Sim struct {
	cfg     Config
	users   []*User         // users[i] is user_{i+1}
	dir     []chan Delivery // dir[u] is user_u's EventChannel; fixed before any user starts
	out     *sink
	stderr  io.Writer
	rend    renderer
	logging bool
	t0      time.Time
	started time.Time // when the first tick could run: every user online

	delayTicks int64 // fast mode: the injected delay, in whole ticks
	stableSkew int64 // fast mode: added to the stable epoch views are told; tests only

	// Real time.
	//
	// inflight counts deliveries sent and not yet applied, against a
	// capacity: the network's admission control. Before a user acts it
	// reserves room for its widest possible fan-out; if the network is
	// full the tick is skipped, like a busy signal. Recipients give the
	// room back as they apply. So the events in flight, the memory they
	// hold and the time they wait stay bounded however much load is asked
	// for; the capacity is wide enough that light runs never meet it.
	inflight atomic.Int64
	capacity int64

	// Stability, real time. The network also counts deliveries in flight
	// by the epoch they were sent in; the clock advances epoch once a tick,
	// and stable past every epoch whose deliveries have all been applied.
	// Views reclaim closed rooms by stable (see View), which no stall,
	// pause or slow reader can fool, since nothing is assumed about time.
	epoch, stable atomic.Uint64
	flight        [epochRing]atomic.Int64
	allQuiet      chan struct{} // closed when every user has stopped sending
	dropped       []int64       // ticks the clock dropped, by user index; the clock's own
	quiet         sync.WaitGroup

	// Fast mode.
	phase   *phase
	barrier sync.WaitGroup
	ticks   int64 // action ticks run

	// afterTick, if set, is called between fast-mode ticks with the last
	// tick run, and stops the run by returning true. Benchmarks use it.
	afterTick func(tick int64) bool

	done     sync.WaitGroup
	runTime  time.Duration // simulated in fast mode
	wall     time.Duration // wall time from the first tick to the end of the drain
	stopped  string        // why the run ended
	live     series        // live rooms per sample
	delivers series        // deliveries per tick, per sample
}

// phase is one step of the lockstep coordinator. A user starts a phase
// when a start marker (a Delivery without an event) reaches it on its
// EventChannel; the coordinator fills in the phase and its next before it
// sends the markers, so a user that has the marker may read them without a
// lock.
type phase struct {
	tick  int64
	act   bool // roll for actions; off while draining
	final bool // settle and exit
	next  *phase
}

// networkCapacity is how many deliveries per user the network carries at
// once in real time: enough to keep every user busy, few enough that a
// delivery waits milliseconds, not seconds, when more is asked than the
// machine can do.
const networkCapacity = 64

// epochRing is how many epochs the network can count at once. The clock
// stops advancing the epoch rather than reuse the slot of an epoch not yet
// stable.
const epochRing = 1024

// enter admits n deliveries a user is about to send, counting them under
// the current epoch, which it returns; or refuses them, if the network is
// full. The epoch is read, counted under, then read again: if the clock has
// moved two epochs on meanwhile, it may already have judged this one
// stable, so the count is taken back and tried under the new epoch. A clock
// that sees the count can never judge the epoch stable while it stands.
func (s *Sim) enter(n int64) (epoch uint64, ok bool) {
	if s.inflight.Add(n) > s.capacity {
		s.inflight.Add(-n)
		return 0, false
	}
	for {
		e := s.epoch.Load()
		s.flight[e%epochRing].Add(n)
		if s.epoch.Load() <= e+1 {
			return e, true
		}
		s.flight[e%epochRing].Add(-n)
	}
}

// leave counts n deliveries of epoch e as applied, or as never sent.
func (s *Sim) leave(e uint64, n int64) {
	s.flight[e%epochRing].Add(-n)
	s.inflight.Add(-n)
}

// advanceEpoch moves stable past every epoch with nothing in flight, then
// starts a new epoch if the ring has room. An epoch is judged only once the
// current one is two past it: a user that counted under it after reading
// it either sees the clock moved on and takes its count back, or is seen.
func (s *Sim) advanceEpoch() {
	e, w := s.epoch.Load(), s.stable.Load()
	for w+2 <= e && s.flight[w%epochRing].Load() == 0 {
		w++
	}
	s.stable.Store(w)
	if e+1-w < epochRing-1 {
		s.epoch.Store(e + 1)
	}
}

func newSim(cfg Config, stdout, stderr io.Writer) *Sim {
	s := &Sim{
		cfg:      cfg,
		dir:      make([]chan Delivery, cfg.Users+1),
		out:      newSink(stdout),
		stderr:   stderr,
		rend:     renderer{json: cfg.JSON, elapsed: cfg.Fast},
		logging:  !cfg.Quiet,
		allQuiet: make(chan struct{}),
		phase:    &phase{},
		live:     newSeries(sparkWidth),
		delivers: newSeries(sparkWidth),
	}
	if cfg.Fast {
		s.delayTicks = int64((cfg.Delay + cfg.Tick - 1) / cfg.Tick)
	} else {
		s.capacity = networkCapacity * int64(cfg.Users)
		s.epoch.Store(1)
		s.stable.Store(1)
	}
	inbox := cfg.inbox
	if inbox == 0 {
		inbox = inboxCapacity(cfg.Users)
	}
	for u := 1; u <= cfg.Users; u++ {
		s.dir[u] = make(chan Delivery, inbox)
	}
	return s
}

// inboxCapacity sizes an EventChannel: room for a tick's worth of events
// from a few hundred senders, up to 1024, and for 256 MiB of inboxes in all
// (16 bytes a delivery), but never fewer than 64.
func inboxCapacity(users int) int {
	return max(min(users/4, 1024, inboxBudget/(16*users)), 64)
}

// inboxBudget is the memory all EventChannels may take together.
const inboxBudget = 256 << 20

// now is the simulation time in real time. In fast mode the only events
// outside ticks are the announcements at start-up, at time 0.
func (s *Sim) now() time.Duration {
	if s.cfg.Fast {
		return 0
	}
	return time.Since(s.t0)
}

// run runs the simulation until ctx ends, the duration passes or the
// output breaks, then drains it and returns the report.
func (s *Sim) run(ctx context.Context) *Report {
	s.t0 = time.Now()
	if !s.cfg.Fast {
		s.rend.base = s.t0
	}
	flushStop := make(chan struct{})
	var helpers sync.WaitGroup
	helpers.Go(func() { s.out.flushLoop(flushStop) })

	s.startUsers(ctx)
	if s.cfg.Fast {
		s.runFast(ctx)
	} else {
		s.runReal(ctx, &helpers)
	}
	s.done.Wait()
	s.wall = time.Since(s.started)
	close(flushStop)
	helpers.Wait()
	return s.report()
}

// startUsers brings users online one by one, each in its own goroutine.
// Every newcomer is told of everyone already there, and everyone there of
// the newcomer. Beyond a few hundred users the news for existing users is
// batched, so that start-up costs O(users) messages per user, not O(users²)
// in all.
func (s *Sim) startUsers(ctx context.Context) {
	batch := int32(max(1, s.cfg.Users/256))
	var announced int32 // every started user knows user_1..user_announced
	for k := int32(1); k <= int32(s.cfg.Users); k++ {
		if ctx.Err() != nil {
			break
		}
		u := newUser(s, k)
		s.users = append(s.users, u)
		s.done.Add(1)
		if s.cfg.Fast {
			go u.runFast(s.phase)
		} else {
			s.quiet.Add(1)
			go u.runReal()
		}
		if k > 1 {
			u.UserChannel <- Online{1, k - 1}
		}
		if k-announced >= batch || k == int32(s.cfg.Users) {
			for _, old := range s.users[:k-1] {
				old.UserChannel <- Online{announced + 1, k}
			}
			announced = k
		}
	}
}

// runReal starts the clock, which ticks every user at its own random phase,
// lets users act until the run ends, then stops them and waits for the
// drain.
func (s *Sim) runReal(ctx context.Context, helpers *sync.WaitGroup) {
	sampleStop := make(chan struct{})
	helpers.Go(func() { s.sampleReal(sampleStop) })
	var end <-chan time.Time
	if s.cfg.Duration > 0 {
		t := time.NewTimer(s.cfg.Duration)
		defer t.Stop()
		end = t.C
	}
	started := time.Now()
	s.started = started
	if ctx.Err() == nil {
		// Every user is online: start the clock.
		s.dropped = make([]int64, len(s.users))
		clockStop := make(chan struct{})
		var clock sync.WaitGroup
		clock.Go(func() { s.runClock(clockStop) })
		select {
		case <-ctx.Done():
			s.stopped = "interrupted"
		case <-end:
			s.stopped = "duration reached"
		case <-s.out.broken:
			s.stopped = "output failed"
		}
		close(clockStop)
		clock.Wait()
	} else {
		s.stopped = "interrupted"
	}
	s.runTime = time.Since(started)
	for _, u := range s.users {
		u.EventChannel <- Delivery{Event: stopMark}
	}
	go func() {
		s.quiet.Wait()
		close(s.allQuiet)
	}()
	s.done.Wait()
	close(sampleStop)
}

// runFast is the lockstep coordinator: it releases tick after tick and
// waits for every user to finish each. When the run ends it keeps releasing
// ticks without actions until every delivery has been applied, then a final
// phase in which users settle their views.
func (s *Sim) runFast(ctx context.Context) {
	// Action ticks to run: -duration in whole ticks, rounded up, and never
	// past maxSimTime, where simulated times would come near overflowing.
	limit, reason := int64(maxSimTime/s.cfg.Tick), "simulated time limit reached"
	if s.cfg.Duration > 0 {
		limit, reason = int64((s.cfg.Duration+s.cfg.Tick-1)/s.cfg.Tick), "duration reached"
	}
	started := time.Now()
	s.started = started
	// Users hold the phases they are in; the coordinator holds the current
	// one. Nothing may keep the first, or it would keep every phase after.
	p, acting := s.phase, true
	s.phase = nil
	var lastDeliveries int64
	nextStats := s.cfg.Stats
	for t := int64(1); ; t++ {
		if acting {
			switch {
			case t > limit:
				s.stopped = reason
			case ctx.Err() != nil:
				s.stopped = "interrupted"
			case isClosed(s.out.broken):
				s.stopped = "output failed"
			case s.afterTick != nil && s.afterTick(t-1):
				s.stopped = "benchmark done"
			}
			if s.stopped != "" {
				acting, s.ticks = false, t-1
			}
		}
		if !acting && s.outstanding() == 0 {
			break
		}
		p.tick, p.act = t, acting
		p = s.release(p)
		// Sample every tick, the drain's too, so that the sparklines show
		// what was delivered after the last action.
		var live, deliveries int64
		for _, u := range s.users {
			live += int64(u.view.LiveCount())
			deliveries += u.view.Deliveries
		}
		s.live.add(float64(live) / float64(len(s.users)))
		s.delivers.add(float64(deliveries - lastDeliveries))
		lastDeliveries = deliveries
		if now := time.Duration(t) * s.cfg.Tick; acting && s.cfg.Stats > 0 && now >= nextStats {
			s.printStats(now, t, float64(live)/float64(len(s.users)), deliveries, time.Since(started))
			nextStats += s.cfg.Stats
		}
	}
	s.runTime = time.Duration(s.ticks) * s.cfg.Tick
	p.final = true
	s.release(p)
}

// release runs one phase on every user and writes the phase's log lines in
// uid order. It returns the next phase.
func (s *Sim) release(p *phase) *phase {
	p.next = &phase{}
	s.barrier.Add(len(s.users))
	for _, u := range s.users {
		u.EventChannel <- Delivery{} // behind every delivery of the last phase
	}
	s.barrier.Wait()
	for _, u := range s.users {
		s.out.Write(u.buf)
		u.buf = u.buf[:0]
	}
	return p.next
}

// applied counts deliveries applied so far, between phases.
func (s *Sim) applied() int64 {
	var n int64
	for _, u := range s.users {
		n += u.applied
	}
	return n
}

// outstanding counts deliveries sent but not yet applied. It is read
// between phases, when no user is working.
func (s *Sim) outstanding() int64 {
	var n int64
	for _, u := range s.users {
		n += u.sent - u.applied
	}
	return n
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// sampleReal samples live rooms and deliveries once a tick for the
// sparklines, and writes a progress line every -stats.
func (s *Sim) sampleReal(stop <-chan struct{}) {
	tk := time.NewTicker(s.cfg.Tick)
	defer tk.Stop()
	var statsC <-chan time.Time
	if s.cfg.Stats > 0 {
		st := time.NewTicker(s.cfg.Stats)
		defer st.Stop()
		statsC = st.C
	}
	var last int64
	sample := func(live float64, d int64) {
		s.live.add(live)
		s.delivers.add(float64(d - last))
		last = d
	}
	gauge := func() (live float64, deliveries int64) {
		var l int64
		for _, u := range s.users {
			l += u.pubLive.Load()
			deliveries += u.pubDeliveries.Load()
		}
		return float64(l) / float64(len(s.users)), deliveries
	}
	for {
		select {
		case <-stop:
			// Every user has drained and published: one last sample, so
			// that the sparklines end with what the drain delivered.
			sample(gauge())
			return
		case <-tk.C:
			sample(gauge())
		case <-statsC:
			live, d := gauge()
			now := s.now()
			s.printStats(now, int64(now/s.cfg.Tick), live, d, now)
		}
	}
}

// printStats writes one progress line to stderr, never into the log.
func (s *Sim) printStats(now time.Duration, ticks int64, live float64, deliveries int64, wall time.Duration) {
	rate := 0.0
	if wall > 0 {
		rate = float64(deliveries) / wall.Seconds()
	}
	fmt.Fprintf(s.stderr, "chatsim: %s tick %d, live rooms %.1f, deliveries %d (%.0f/s), memory %s\n",
		clockString(now), ticks, live, deliveries, rate, bytesString(heapBytes()))
}

// heapBytes is the memory held by live heap objects.
func heapBytes() uint64 {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return sample[0].Value.Uint64()
}

// clockString shows a time since the start as hours:minutes:seconds, the
// hours running past 24.
func clockString(d time.Duration) string {
	b := appendElapsed(nil, d)
	return string(b[:len(b)-7]) // without the microseconds
}

func bytesString(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	default:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
}

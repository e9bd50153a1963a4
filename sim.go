package main

import (
	"context"
	"fmt"
	"io"
	"runtime/metrics"
	"slices"
	"sync"
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

	// Faults: every transmission is lost with chance Loss, delivered twice
	// with chance Dup; the network splits for up to Partition at a time,
	// users go offline for up to Offline, and the last Join users come
	// online late.
	Loss, Dup          float64
	Partition, Offline time.Duration
	Join               int

	Color  bool    // colour the text log and summary (decided from -color, the terminal and NO_COLOR)
	Follow []int32 // show only these users' lines, and the network's; nil shows everyone's
	MaxMem uint64  // stop before the heap passes this many bytes; 0 for no limit

	HTML, ShiViz string     // files to write the run to, as a page and as a ShiViz log
	Window       timeWindow // the stretch they draw

	CPUProfile, MemProfile, Trace string
}

// faulty reports whether any fault is injected.
func (c Config) faulty() bool {
	return c.Loss > 0 || c.Dup > 0 || c.Partition > 0 || c.Offline > 0 || c.Join > 0
}

// joinBy is the last tick a late joiner may come online: the first half
// of the run, or of its first minute when it runs until stopped.
func (c Config) joinBy() int64 {
	run := c.Duration
	if run == 0 {
		run = time.Minute
	}
	return max(1, wholeTicks(run, c.Tick)/2)
}

// Sim is one run: the users and the network between them, and the
// machinery around them: the clock or the lockstep coordinator, the stop,
// the log and the figures for the summary. The simulator may count things
// across users for reporting and checking, but no user ever reads another's
// state to decide what to do, and no user sees the Sim.
type Sim struct {
	cfg     Config
	users   []*User // users[i] is user_{i+1}
	net     *Network
	out     *sink
	stderr  io.Writer
	clock   timebase
	rend    renderer
	started time.Time // when the first tick could run: every user online
	running sync.WaitGroup

	flushStop chan struct{}
	flusher   sync.WaitGroup

	dropped []int64 // real time: ticks the clock dropped, by user index

	nemesis   *nemesis      // the fault schedule; nil without faults
	mem       *memWatch     // the memory limit; nil without one
	memHit    chan struct{} // real time: closed when the memory limit is reached
	recording *recording    // the records for -html and -shiviz; nil without them

	// Lockstep.
	first   *phase         // the phase users start in, until the coordinator takes it
	barrier sync.WaitGroup // every phase's done
	lines   []lineBuffer   // lines[i] holds user_{i+1}'s lines of a phase
	ticks   int64          // action ticks run

	runTime  time.Duration // simulated in fast mode
	wall     time.Duration // wall time from the first tick to the end of the drain
	stopped  string        // why the run ended
	live     series        // live rooms per sample
	delivers series        // deliveries per tick, per sample
	sampled  int64         // deliveries at the last sample
}

func newSim(cfg Config, stdout, stderr io.Writer) *Sim {
	s := &Sim{
		cfg: cfg,
		net: newNetwork(netConfig{
			users: cfg.Users, inbox: inboxCapacity(cfg.Users), fast: cfg.Fast, tick: cfg.Tick, delay: cfg.Delay,
			faulty: cfg.faulty(), loss: cfg.Loss, dup: cfg.Dup, keepLost: keepLost(cfg), keepFrom: cfg.Window.From,
		}),
		out:      newSink(stdout),
		stderr:   stderr,
		rend:     renderer{json: cfg.JSON, elapsed: cfg.Fast, color: cfg.Color && !cfg.JSON},
		live:     newSeries(sparkWidth),
		delivers: newSeries(sparkWidth),
	}
	if cfg.Fast {
		s.first = &phase{done: &s.barrier}
		s.lines = make([]lineBuffer, cfg.Users)
	}
	if cfg.MaxMem > 0 {
		s.mem = newMemWatch(cfg)
		s.memHit = make(chan struct{})
	}
	if cfg.HTML != "" || cfg.ShiViz != "" {
		s.recording = newRecording(cfg.Window, maxDrawn, cfg.Users, cfg.Fast)
	}
	if cfg.faulty() {
		ticks := func(d time.Duration) int64 {
			if d == 0 {
				return 0
			}
			return max(1, wholeTicks(d, cfg.Tick))
		}
		s.nemesis = newNemesis(s.net, cfg.Seed, cfg.Users, ticks(cfg.Partition), ticks(cfg.Offline), cfg.Join, cfg.joinBy())
	}
	return s
}

// run runs the simulation until ctx ends, the duration passes or the
// output breaks, then drains it, flushes the output and returns the
// report, with the output's error if writing failed.
func (s *Sim) run(ctx context.Context) (*Report, error) {
	s.begin(ctx)
	if s.cfg.Fast {
		s.runFast(ctx)
	} else {
		s.runReal(ctx)
	}
	return s.end()
}

// begin starts the output's flusher and brings the users online.
func (s *Sim) begin(ctx context.Context) {
	s.clock = timebase{t0: time.Now(), virtual: s.cfg.Fast}
	if !s.cfg.Fast {
		s.rend.base = s.clock.t0
	}
	s.flushStop = make(chan struct{})
	s.flusher.Go(func() { s.out.flushLoop(s.flushStop) })
	s.startUsers(ctx)
}

// end waits for every user to exit, flushes the output and builds the
// report.
func (s *Sim) end() (*Report, error) {
	s.running.Wait()
	s.wall = time.Since(s.started)
	close(s.flushStop)
	s.flusher.Wait()
	err := s.out.Flush()
	if s.recording != nil {
		s.recording.wire, s.recording.perPort = s.net.transmissions(), keepLost(s.cfg)
	}
	return s.report(), err
}

// keepLost is how many lost or resent transmissions each port keeps for a
// page: enough for a page's share of the diagram, and a bounded memory.
func keepLost(cfg Config) int {
	if cfg.HTML == "" {
		return 0
	}
	return max(16, 4*maxDrawn/cfg.Users)
}

// startUsers brings users online one by one, each in its own goroutine.
// Every newcomer is told of everyone already there, and everyone there of
// the newcomer. Beyond a few hundred users the news for existing users is
// batched, so that start-up costs O(users) messages per user, not O(users²)
// in all.
func (s *Sim) startUsers(ctx context.Context) {
	opts := userOptions{
		users:  s.cfg.Users,
		chance: s.cfg.Chance,
		tick:   s.cfg.Tick,
		seed:   s.cfg.Seed,
		clock:  s.clock,
		log:    !s.cfg.Quiet || s.recording != nil,
		quiet:  s.cfg.Quiet,
		rend:   s.rend,
		faulty: s.cfg.faulty(),
		listen: s.cfg.Join > 0,
	}
	online := int32(s.cfg.Users - s.cfg.Join) // the others come late, unannounced
	batch := int32(max(1, int(online)/256))
	var announced int32 // every started user knows user_1..user_announced
	for k := int32(1); k <= int32(s.cfg.Users); k++ {
		if ctx.Err() != nil {
			break
		}
		var out lineWriter = s.out
		var keep recordKeeper
		if s.recording != nil {
			keep = s.recording
		}
		if s.cfg.Fast {
			out = &s.lines[k-1]
			if s.recording != nil {
				s.lines[k-1].rec = s.recording
				keep = &s.lines[k-1]
			}
		}
		opts.late = k > online
		opts.hidden = s.cfg.Follow != nil && !slices.Contains(s.cfg.Follow, k)
		opts.log = !s.cfg.Quiet && !opts.hidden || s.recording != nil
		u := newUser(s.net, k, opts, out, keep)
		s.users = append(s.users, u)
		if s.cfg.Fast {
			first := s.first
			s.running.Go(func() { u.runFast(first) })
		} else {
			s.running.Go(u.runReal)
		}
		if k > online {
			continue
		}
		if k > 1 {
			u.UserChannel <- Online{First: 1, Last: k - 1}
		}
		if k-announced >= batch || k == online {
			for _, old := range s.users[:k-1] {
				old.UserChannel <- Online{First: announced + 1, Last: k}
			}
			announced = k
		}
	}
}

// applyFaults carries out tick t of the fault schedule, or ends every
// fault once the run has stopped, for the drain; it logs what the network
// did and announces the late joiners that come online.
func (s *Sim) applyFaults(t int64, now time.Duration, stopped bool) {
	var recs []Record
	var joined []int32
	if stopped {
		recs, joined = s.nemesis.end(t)
	} else {
		recs, joined = s.nemesis.apply(t)
	}
	for i := range recs {
		recs[i].T = now
	}
	if s.recording != nil {
		s.recording.keep(recs)
	}
	if !s.cfg.Quiet {
		var b []byte
		for i := range recs {
			b = s.rend.append(b, &recs[i])
		}
		s.out.Write(b)
	}
	for _, j := range joined {
		s.announce(j)
	}
}

// announce tells everyone online before it that late joiner j is online,
// and j who they are. The news is counted in flight until each has learned
// it, and j waits for that before it asks for the rooms: see User.join.
func (s *Sim) announce(j int32) {
	if int(j) > len(s.users) {
		return // stopped during start-up: j never started
	}
	e := s.net.count(int64(j - 1))
	s.net.joinPending(j, e)
	for _, old := range s.users[:j-1] {
		old.UserChannel <- Online{First: j, Last: j, Epoch: e}
	}
	s.users[j-1].UserChannel <- Online{First: 1, Last: j - 1}
}

// runReal starts the clock, which ticks every user at its own random phase,
// lets users act until the run ends, then stops them and waits for the
// drain.
func (s *Sim) runReal(ctx context.Context) {
	var sampler sync.WaitGroup
	sampleStop := make(chan struct{})
	sampler.Go(func() { s.sampleReal(sampleStop) })
	var end <-chan time.Time
	if s.cfg.Duration > 0 {
		t := time.NewTimer(s.cfg.Duration)
		defer t.Stop()
		end = t.C
	}
	s.started = time.Now()
	// With faults the clock goes on ticking in the drain, until the users
	// have exited: it ends the faults, advances the epoch and ticks the
	// users, who tend their links, and it finds the network silent.
	clockStop, stopping := make(chan struct{}), make(chan struct{})
	var clock sync.WaitGroup
	s.dropped = make([]int64, len(s.users))
	if ctx.Err() == nil {
		// Every user is online: start the clock.
		clock.Go(func() { s.runClock(stopping, clockStop) })
		select {
		case <-ctx.Done():
			s.stopped = "interrupted"
		case <-end:
			s.stopped = "duration reached"
		case <-s.out.broken:
			s.stopped = "output failed"
		case <-s.memHit:
			s.memoryReached(int64(time.Since(s.started)/s.cfg.Tick) + 1) // the tick that would come next
		}
	} else {
		s.stopped = "interrupted"
		if s.nemesis != nil {
			clock.Go(func() { s.runClock(stopping, clockStop) })
		}
	}
	close(stopping)
	if s.nemesis == nil {
		close(clockStop)
		clock.Wait()
	}
	s.runTime = time.Since(s.started)
	for _, u := range s.users {
		u.EventChannel <- Delivery{Event: stopMark}
	}
	s.net.closeWhenSilent()
	s.running.Wait()
	if s.nemesis != nil {
		close(clockStop)
		clock.Wait()
	}
	close(sampleStop)
	sampler.Wait()
}

// runFast runs the lockstep to its end.
func (s *Sim) runFast(ctx context.Context) {
	l := s.newLockstep(ctx)
	for l.step() {
	}
}

// lockstep is the fast-mode coordinator. Each step releases one tick to
// every user and waits until all have finished it; when the run ends it
// keeps releasing ticks without actions until every delivery has been
// applied, then a final phase in which users settle their views. runFast
// is a loop over step; a benchmark drives the same steps and looks between
// them, as a driver does with etcd raft's RawNode.
type lockstep struct {
	s         *Sim
	ctx       context.Context
	p         *phase // the next phase to release
	t         int64  // the last tick run
	acting    bool
	ended     bool // the faults have ended, for the drain
	over      bool
	limit     int64 // action ticks to run
	reason    string
	nextStats time.Duration
}

// newLockstep returns the coordinator of a fast run that has begun.
func (s *Sim) newLockstep(ctx context.Context) *lockstep {
	// Action ticks to run: -duration in whole ticks, rounded up, and never
	// past maxSimTime, where simulated times would come near overflowing.
	l := &lockstep{s: s, ctx: ctx, p: s.first, acting: true,
		limit: int64(maxSimTime / s.cfg.Tick), reason: "simulated time limit reached", nextStats: s.cfg.Stats}
	if s.cfg.Duration > 0 {
		l.limit, l.reason = wholeTicks(s.cfg.Duration, s.cfg.Tick), "duration reached"
	}
	// Users hold the phases they are in; the coordinator holds the next
	// one. Nothing may keep the first, or it would keep every phase after.
	s.first = nil
	s.started = time.Now()
	return l
}

// step runs the next tick, and reports whether there is more to run: once
// every delivery is applied after the stop it runs the final phase instead
// and returns false.
func (l *lockstep) step() bool {
	s := l.s
	if l.over {
		return false
	}
	t := l.t + 1
	if l.acting {
		switch {
		case t > l.limit:
			s.stopped = l.reason
		case l.ctx.Err() != nil:
			s.stopped = "interrupted"
		case isClosed(s.out.broken):
			s.stopped = "output failed"
		case s.mem != nil && s.mem.over(s.net.outstanding()):
			s.memoryReached(t)
		}
		if s.stopped != "" {
			l.acting, s.ticks = false, t-1
		}
	}
	if s.nemesis != nil && !l.ended {
		now := time.Duration(t-1) * s.cfg.Tick // the changes come between ticks t-1 and t
		s.applyFaults(t, now, !l.acting)
		l.ended = !l.acting
	}
	if !l.acting && s.net.outstanding() == 0 {
		s.runTime = time.Duration(s.ticks) * s.cfg.Tick
		l.p.final = true
		s.runPhase(l.p)
		l.over = true
		return false
	}
	l.p.tick, l.p.act = t, l.acting
	s.net.beginTick(t)
	l.p = s.runPhase(l.p)
	l.t = t
	// Sample every tick, the drain's too, so that the sparklines show
	// what was delivered after the last action.
	live, deliveries := s.sample()
	if now := time.Duration(t) * s.cfg.Tick; l.acting && s.cfg.Stats > 0 && now >= l.nextStats {
		s.printStats(now, t, live, deliveries, time.Since(s.started))
		l.nextStats += s.cfg.Stats
	}
	return true
}

// runPhase runs one phase on every user and writes the phase's log lines
// in uid order. It returns the next phase.
func (s *Sim) runPhase(p *phase) *phase {
	p.next = &phase{done: &s.barrier}
	s.barrier.Add(len(s.users))
	for _, u := range s.users {
		u.EventChannel <- Delivery{} // behind every delivery of the last phase
	}
	s.barrier.Wait()
	for i := range s.users {
		l := &s.lines[i]
		s.out.Write(l.b)
		if s.recording != nil {
			s.recording.keep(l.recs)
		}
		l.reset()
	}
	return p.next
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// sample adds the users' live rooms (the mean over views) and the
// deliveries since the last sample to the sparklines, and returns the
// live rooms and the deliveries so far.
func (s *Sim) sample() (live float64, deliveries int64) {
	live, deliveries = s.gauge()
	s.live.add(live)
	s.delivers.add(float64(deliveries - s.sampled))
	s.sampled = deliveries
	return live, deliveries
}

// gauge is the users' live rooms (the mean over views) and deliveries so
// far, as they last published them.
func (s *Sim) gauge() (live float64, deliveries int64) {
	var rooms int64
	for _, u := range s.users {
		l, d := u.gauge()
		rooms += l
		deliveries += d
	}
	if len(s.users) > 0 {
		live = float64(rooms) / float64(len(s.users))
	}
	return live, deliveries
}

// sampleReal samples once a tick in real time, and writes a progress line
// every -stats.
func (s *Sim) sampleReal(stop <-chan struct{}) {
	tk := time.NewTicker(s.cfg.Tick)
	defer tk.Stop()
	var memC <-chan time.Time
	if s.mem != nil {
		mt := time.NewTicker(memCheck)
		defer mt.Stop()
		memC = mt.C
	}
	var statsC <-chan time.Time
	if s.cfg.Stats > 0 {
		st := time.NewTicker(s.cfg.Stats)
		defer st.Stop()
		statsC = st.C
	}
	for {
		select {
		case <-stop:
			// Every user has drained and published: one last sample, so
			// that the sparklines end with what the drain delivered.
			s.sample()
			return
		case <-tk.C:
			s.sample()
		case <-memC:
			if s.mem.over(s.net.inflight.Load()) && !isClosed(s.memHit) {
				close(s.memHit)
			}
		case <-statsC:
			live, deliveries := s.gauge()
			now := s.clock.now()
			s.printStats(now, int64(now/s.cfg.Tick), live, deliveries, now)
		}
	}
}

// report builds the report once every user has exited.
func (s *Sim) report() *Report {
	figs := make([]userFigures, len(s.users))
	views := make([]*View, len(s.users))
	for i, u := range s.users {
		figs[i] = u.figures()
		if s.dropped != nil {
			figs[i].Skipped += s.dropped[i]
		}
		views[i] = u.finalView()
	}
	facts := runFacts{
		Online: len(s.users), Stopped: s.stopped, RunTime: s.runTime, Wall: s.wall, FastTicks: s.ticks,
		LiveRooms: s.live.spark(), Deliveries: s.delivers.spark(),
		LiveSeries: s.live.averages(), DelSeries: s.delivers.averages(),
	}
	if s.nemesis != nil {
		facts.Faults = &s.nemesis.tally
	}
	return buildReport(s.cfg, facts, figs, views)
}

// memCheck is how often a real-time run looks at its heap.
const memCheck = 100 * time.Millisecond

// memoryReached stops the run at tick t for the memory limit, and says so
// on stderr at once.
func (s *Sim) memoryReached(t int64) {
	s.stopped = fmt.Sprintf("memory limit %s reached at tick %d", sizeString(s.cfg.MaxMem), t)
	hint := "-maxmem sets the limit"
	if t <= 1 {
		hint = "no tick fits in it: -maxmem " + sizeFlag(roundUp(runNeed(s.cfg))) + " would let the users act once"
	}
	fmt.Fprintf(s.stderr, "chatsim: %s: stopping, delivering what is in flight and printing the summary (%s)\n", s.stopped, hint)
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

package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime/metrics"
	"slices"
	"strings"
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
	// users go offline for up to Offline, paths clog for up to Clog, users
	// crash and stay down for up to Crash, and the last Join users come
	// online late.
	Loss, Dup                       float64
	Partition, Offline, Clog, Crash time.Duration
	Join                            int

	Color  bool    // colour the text log and summary (decided from -color, the terminal and NO_COLOR)
	Follow []int32 // show only these users' lines, and the network's; nil shows everyone's
	MaxMem uint64  // stop before the heap passes this many bytes; 0 for no limit

	HTML, ShiViz string     // files to write the run to, as a page and as a ShiViz log
	Window       timeWindow // the stretch they draw

	CPUProfile, MemProfile, Trace string
}

// faulty reports whether any fault is injected.
func (c Config) faulty() bool { return c.lossy() || c.Join > 0 }

// lossy reports whether the network may lose or repeat what a user
// sends, so that users keep links (links.go). Late joiners alone do not
// make it so: a user learns of a joiner only from its hello or a later
// joiner's, and joiners come online in uid order and stay online, so
// nothing is sent to a joiner the network does not have online, and
// nothing sent is lost (Peer.deliver keeps what reaches a joiner before it
// notices); a joiner learns what it missed by state transfer (see
// Peer.comeOnline), not by retransmission. Links would only cost: at 1000
// users they made -join alone three times slower (docs/performance.md).
func (c Config) lossy() bool {
	return c.Loss > 0 || c.Dup > 0 || c.Partition > 0 || c.Offline > 0 || c.Clog > 0 || c.Crash > 0
}

// lateBy is the last tick a late joiner may come online: the first half
// of the run, or of its first minute when it runs until stopped.
func (c Config) lateBy() int64 {
	run := c.Duration
	if run == 0 {
		run = time.Minute
	}
	return max(1, wholeTicks(run, c.Tick)/2)
}

// Sim is one run: the users and the network between them, and the
// machinery around them: the ticker or the lockstep coordinator, the stop,
// the log and the figures for the summary. The simulator may count things
// across users for reporting and checking, but no user ever reads another's
// state to decide what to do, and no user sees the Sim.
type Sim struct {
	cfg     Config
	users   []*User // users[i] is user_{i+1}
	net     *Network
	out     *sink
	stderr  io.Writer
	elapsed simTime
	rend    renderer
	started time.Time // when the first tick could run: every user online
	running sync.WaitGroup
	names   *groupNames // the run's names of groups, which every user's creates write

	flushStop chan struct{}
	flusher   sync.WaitGroup

	dropped []int64 // real time: ticks the ticker dropped, by user index
	lats    []*hist // real time: each user's send-to-apply latency
	drain   *drain  // real time: the end of the run
	pauses  pauses  // real time: to crash users

	nemesis   *nemesis      // the fault schedule; nil without faults
	crashes   crashLedger   // what crashes cost, by the rule (see crash.go)
	mem       *memWatch     // the memory limit; nil without one
	memHit    chan struct{} // real time: closed when the memory limit is reached
	recording *recording    // the records for -html and -shiviz; nil without them
	wires     *wireKeeper   // the lost and resent transmissions a page draws; nil without them

	// Lockstep.
	first   *round         // the round users start in, until the coordinator takes it
	barrier sync.WaitGroup // every round's done
	lines   []lineBuffer   // lines[i] holds user_{i+1}'s lines of a round
	ticks   int64          // action ticks run
	drained int64          // ticks run after the last action tick, to the end of the drain

	runTime  time.Duration // simulated in fast mode
	wall     time.Duration // wall time from the first tick to the end of the drain
	stopped  string        // why the run ended
	live     series        // live rooms per sample
	delivers series        // deliveries per tick, per sample
	sampled  int64         // deliveries at the last sample
	tombsAll int64         // the most tombstones all views kept at once, as sampled
}

func newSim(cfg Config, stdout, stderr io.Writer) *Sim {
	s := &Sim{
		cfg:      cfg,
		net:      newNetwork(netConfigOf(cfg)),
		out:      newSink(stdout),
		stderr:   stderr,
		rend:     renderer{json: cfg.JSON, elapsed: cfg.Fast, color: cfg.Color && !cfg.JSON},
		live:     newSeries(sparkWidth),
		delivers: newSeries(sparkWidth),
		names:    newGroupNames(),
	}
	if cfg.Fast {
		s.first = &round{done: &s.barrier}
		s.lines = make([]lineBuffer, cfg.Users)
	} else {
		s.drain = &drain{faulty: cfg.faulty(), quiet: make(chan struct{}), over: make(chan struct{})}
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
		s.nemesis = newNemesis(s.net.faults, cfg.Seed, cfg.Users, cfg.Tick,
			faultPlan{splitMax: ticks(cfg.Partition), offMax: ticks(cfg.Offline), clogMax: ticks(cfg.Clog), crashMax: ticks(cfg.Crash), join: cfg.Join, lateBy: cfg.lateBy()})
		if cfg.HTML != "" {
			s.wires = newWireKeeper(cfg.Users, keepLost(cfg), cfg.Window.From)
			s.net.wires = s.wires
		}
	}
	return s
}

// netConfigOf is the network of a run: its mode's schedule, and with
// faults the fault layer.
func netConfigOf(cfg Config) netConfig {
	c := netConfig{users: cfg.Users, inbox: inboxCapacity(cfg.Users), tick: cfg.Tick,
		sched: realSchedule{cfg.Delay}, transit: cfg.Tick + cfg.Delay, capacity: networkCapacity * int64(cfg.Users)}
	if cfg.Fast {
		ts := tickSchedule{cfg.Tick, wholeTicks(cfg.Delay, cfg.Tick)}
		c.sched, c.transit, c.capacity = ts, time.Duration(ts.delayTicks+1)*cfg.Tick, math.MaxInt64
		c.inbox = 1 // deliveries are filed straight into buckets: the channel carries the round's start
	}
	if cfg.faulty() {
		c.faults = newFaults(cfg.Users, cfg.Loss, cfg.Dup)
	}
	return c
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
	s.elapsed = simTime{t0: time.Now(), virtual: s.cfg.Fast}
	if !s.cfg.Fast {
		s.rend.base = s.elapsed.t0
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
	if s.wires != nil {
		s.recording.wire, s.recording.perPort = s.wires.all(), s.wires.perPort
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
// batched, so that start-up costs at most 257 messages per user, not
// O(users). In lockstep a user's loop starts only once all its news is in
// its UserChannel, which holds exactly that much (see startNews), since
// the news is learned at the first round anyway: a message to a loop that
// is not yet waiting wakes nobody, and at a million users the wake-ups
// were most of start-up.
func (s *Sim) startUsers(ctx context.Context) {
	online := int32(s.cfg.Users - s.cfg.Join) // the others come late, and say so themselves
	batch := int32(max(1, int(online)/256))
	var announced int32 // every started user knows user_1..user_announced
	var loops []*stepUser
	for k := int32(1); k <= int32(s.cfg.Users); k++ {
		if ctx.Err() != nil {
			break
		}
		u, loop := s.newUser(k, k > online, startNews(k, online, batch))
		if loop != nil {
			loops = append(loops, loop)
		}
		if k > online {
			continue
		}
		if k > 1 {
			u.UserChannel <- Online{Last: k - 1}
		}
		if k-announced >= batch || k == online {
			for _, old := range s.users[:k-1] {
				old.UserChannel <- Online{Last: k}
			}
			announced = k
		}
	}
	first := s.first
	for _, su := range loops {
		s.running.Go(func() { su.run(first) })
	}
}

// startNews is how many messages of news startUsers sends user k: who was
// there when it came, and then each batch after it (every batch-th user,
// and the last user online).
func startNews(k, online, batch int32) int {
	if k > online {
		return 0
	}
	n := int(online/batch - k/batch)
	if online%batch != 0 && k < online {
		n++
	}
	if k > 1 {
		n++
	}
	return n
}

// newUser makes user k, its peer and its port, and its loop in the run's
// mode: in real time it starts the loop; in lockstep it returns it, for
// startUsers to start. A late joiner is not online yet. news is how many
// messages of news the user will get at the start.
func (s *Sim) newUser(k int32, late bool, news int) (*User, *stepUser) {
	cfg := s.cfg
	hidden := cfg.Follow != nil && !slices.Contains(cfg.Follow, k)
	rng := rand.New(rand.NewPCG(cfg.Seed, uint64(k)))
	u := &User{
		UID: k,
		peer: newPeer(k, peerConfig{users: cfg.Users, chance: cfg.Chance, faulty: cfg.faulty(), links: cfg.lossy(), latecomer: late,
			crash: cfg.Crash > 0, timing: s.net.timing, log: !cfg.Quiet && !hidden || s.recording != nil, names: s.names}, rng),
		out:    s.out,
		rend:   s.rend,
		quiet:  cfg.Quiet,
		hidden: hidden,
		faulty: cfg.faulty(),
	}
	if s.recording != nil {
		u.keep = s.recording
	}
	s.users = append(s.users, u)
	if cfg.Fast {
		lb := &s.lines[k-1]
		u.out = lb
		if s.recording != nil {
			lb.rec = s.recording
			u.keep = lb
		}
		su := &stepUser{User: u, period: cfg.Tick, port: newStepPort(s.net, k, cfg.Seed, s.net.sched.(tickSchedule))}
		u.EventChannel = su.port.inbox
		u.UserChannel = make(chan Online, news)
		return u, su
	}
	u.UserChannel = make(chan Online, 16)
	ru := &realUser{User: u, elapsed: s.elapsed, period: cfg.Tick, lat: new(hist), tickAt: -1, drain: s.drain, pauses: &s.pauses,
		port: newRealPort(s.net, k, cfg.Seed)}
	u.EventChannel = ru.port.inbox
	s.lats = append(s.lats, ru.lat)
	s.running.Go(ru.run)
	return u, nil
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
	s.writeRecords(nil, recs)
	for _, j := range joined {
		s.announce(j)
	}
	if len(s.nemesis.crashed) == 0 {
		return
	}
	if !s.cfg.Fast {
		// Lockstep crashes users between rounds; real time stops them.
		p := s.stopTheWorld()
		defer close(p.over)
		now = s.elapsed.now()
	}
	for _, u := range s.nemesis.crashed {
		s.crash(u, now)
	}
}

// writeRecords writes records made between rounds, the network's or
// user u's, to the log and the recording.
func (s *Sim) writeRecords(u *User, recs []Record) {
	if s.recording != nil {
		s.recording.keep(recs)
	}
	if s.cfg.Quiet || u != nil && u.hidden {
		return
	}
	var b []byte
	for i := range recs {
		b = s.rend.append(b, &recs[i])
	}
	s.out.Write(b)
}

// announce counts late joiner j, now online, until its view is complete:
// the drain waits for it. Nothing is said to anyone: j says hello itself.
func (s *Sim) announce(j int32) {
	if int(j) > len(s.users) {
		return // stopped during start-up: j never started
	}
	s.net.fl.arriving.Add(1)
}

// runReal starts the ticker, which ticks every user at its own random
// phase, lets users act until the run ends, then stops them and waits for
// the drain.
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
	s.drain.expect(len(s.users))
	// With faults the ticker goes on in the drain, until the users have
	// exited: it ends the faults, advances the epoch and ticks the users,
	// who tend their links, and it finds the network quiet.
	tickerStop, stopping := make(chan struct{}), make(chan struct{})
	var ticker sync.WaitGroup
	s.dropped = make([]int64, len(s.users))
	// With faults the drain can take a while: say why, unless the reason
	// to stop said so already or the output is gone.
	said := false
	tickerOn := ctx.Err() == nil
	if tickerOn {
		// Every user is online: start the ticker.
		ticker.Go(func() { s.runTicker(stopping, tickerStop) })
		select {
		case <-ctx.Done():
			s.stopped = "interrupted"
		case <-end:
			s.stopped = "duration reached"
		case <-s.out.broken:
			s.stopped, said = "output failed", true
		case <-s.memHit:
			s.memoryReached(int64(time.Since(s.started)/s.cfg.Tick) + 1) // the tick that would come next
			said = true
		}
	} else {
		s.stopped = "interrupted"
	}
	if s.nemesis != nil && !said {
		fmt.Fprintf(s.stderr, "chatsim: %s: stopping; the faults end and users deliver what is still in flight%s, then the summary\n", s.stopped, drainWork(s.cfg))
	}
	close(stopping)
	if !tickerOn && s.nemesis != nil {
		// Stopped during start-up: the ticker only ends the faults and
		// ticks the users through the drain.
		ticker.Go(func() { s.runTicker(stopping, tickerStop) })
	}
	if s.nemesis == nil {
		close(tickerStop)
		ticker.Wait()
	}
	s.runTime = time.Since(s.started)
	for _, u := range s.users {
		u.EventChannel <- Delivery{Event: stopMark}
	}
	drained := make(chan struct{})
	var progress sync.WaitGroup
	if s.nemesis != nil && !said {
		progress.Go(func() { s.sayDraining(drained) })
	}
	s.running.Wait()
	close(drained)
	progress.Wait()
	if s.nemesis != nil {
		close(tickerStop)
		ticker.Wait()
	}
	close(sampleStop)
	sampler.Wait()
}

// drainWork says what the drain of a run with faults has to do beyond
// delivering what is in flight, in parentheses, or nothing: only what
// loses transmissions makes retransmissions.
func drainWork(c Config) string {
	var what []string
	if c.Loss > 0 || c.Partition > 0 || c.Offline > 0 || c.Crash > 0 {
		what = append(what, "retransmissions")
	}
	if c.Clog > 0 {
		what = append(what, "what clogs held")
	}
	if c.Join > 0 {
		what = append(what, "late joiners' rooms")
	}
	if c.Crash > 0 {
		what = append(what, "crashed users' restarts")
	}
	if len(what) == 0 {
		return ""
	}
	return " (" + strings.Join(what, ", ") + ")"
}

// runFast runs the lockstep to its end.
func (s *Sim) runFast(ctx context.Context) {
	l := s.newLockstep(ctx, s.first)
	// Users hold the rounds they are in; the coordinator holds the next
	// one. Nothing may keep the first, or it would keep every round after.
	s.first = nil
	for l.step() {
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// gauges are the users' figures as they last published them: live rooms
// (the mean over views), deliveries so far, and tombstones kept now.
type gauges struct {
	live              float64
	deliveries, tombs int64
}

// sample adds the users' live rooms and the deliveries since the last
// sample to the sparklines, notes the most tombstones kept at once, and
// returns the gauges.
func (s *Sim) sample() gauges {
	g := s.gauge()
	s.live.add(g.live)
	s.delivers.add(float64(g.deliveries - s.sampled))
	s.sampled = g.deliveries
	s.tombsAll = max(s.tombsAll, g.tombs)
	return g
}

// gauge reads the users' gauges.
func (s *Sim) gauge() gauges {
	var g gauges
	var rooms int64
	for _, u := range s.users {
		l, d, t := u.gauge()
		rooms += l
		g.deliveries += d
		g.tombs += t
	}
	if len(s.users) > 0 {
		g.live = float64(rooms) / float64(len(s.users))
	}
	return g
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
			if s.mem.over(s.net.fl.inflight.Load()+s.net.fl.again.Load()) && !isClosed(s.memHit) {
				close(s.memHit)
			}
		case <-statsC:
			now := s.elapsed.now()
			s.printStats(now, int64(now/s.cfg.Tick), s.gauge(), now)
		}
	}
}

// report builds the report once every user has exited.
func (s *Sim) report() *Report {
	// Each user's figures are made as the report takes them: at 100,000
	// users all of them at once were 31 MB at the run's largest heap.
	figs := func(yield func(userFigures) bool) {
		for i, u := range s.users {
			var lat *hist
			if s.lats != nil {
				lat = s.lats[i]
			}
			f := u.figures(s.net.ports[i], lat)
			if s.dropped != nil {
				f.Skipped += s.dropped[i]
			}
			if !yield(f) {
				return
			}
		}
	}
	views := make([]*View, len(s.users))
	for i, u := range s.users {
		views[i] = u.peer.view
	}
	facts := runFacts{
		Online: len(s.users), Stopped: s.stopped, RunTime: s.runTime, Wall: s.wall, FastTicks: s.ticks, FastDrain: s.drained,
		LiveRooms: s.live.spark(), Deliveries: s.delivers.spark(),
		LiveSeries: s.live.averages(), DelSeries: s.delivers.averages(), TombsAll: s.tombsAll,
	}
	if s.nemesis != nil {
		facts.Faults = &s.nemesis.tally
	}
	if s.cfg.Crash > 0 {
		facts.Crashes = &s.crashes
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

// drainNote is how often a long drain in real time says on stderr that it
// is still at work.
const drainNote = 10 * time.Second

// sayDraining writes a line to stderr every drainNote until drained is
// closed: with heavy faults a drain can take minutes, and a person should
// not take it for a hang and lose the summary to a second Ctrl-C.
func (s *Sim) sayDraining(drained <-chan struct{}) {
	t := time.NewTicker(drainNote)
	defer t.Stop()
	for start := time.Now(); ; {
		select {
		case <-drained:
			return
		case <-t.C:
			fl := s.net.fl
			msg := fmt.Sprintf("chatsim: still draining after %s: %s in flight", time.Since(start).Round(time.Second), plural(fl.inflight.Load()+fl.again.Load(), "delivery"))
			if k := fl.arriving.Load(); k > 0 {
				who := "late joiner"
				if s.cfg.Crash > 0 {
					who = "late or restarted user"
				}
				msg += fmt.Sprintf(", %s catching up", plural(k, who))
			}
			if k := s.heldNow(); k > 0 {
				msg += fmt.Sprintf(", %s held back", plural(k, "message"))
			}
			fmt.Fprintln(s.stderr, msg)
		}
	}
}

// printStats writes one progress line to stderr, never into the log.
func (s *Sim) printStats(now time.Duration, ticks int64, g gauges, wall time.Duration) {
	rate := 0.0
	if wall > 0 {
		rate = float64(g.deliveries) / wall.Seconds()
	}
	fmt.Fprintf(s.stderr, "chatsim: %s tick %d, live rooms %.1f, deliveries %d (%.0f/s), tombstones %d, memory %s\n",
		clockString(now), ticks, g.live, g.deliveries, rate, g.tombs, bytesString(heapBytes()))
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

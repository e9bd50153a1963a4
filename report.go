package main

import (
	"fmt"
	"io"
	"iter"
	"math"
	"slices"
	"strings"
	"time"
)

// Report is everything the summary says, gathered before anything is
// printed, so that text and JSON say the same.
type Report struct {
	Settings
	Online     int     `json:"online"` // users that came online: all of them, unless stopped during start-up
	Stopped    string  `json:"stopped"`
	RunTime    float64 `json:"run_time"`              // seconds; simulated in fast mode
	Drain      float64 `json:"drain_time,omitempty"`  // real time: seconds from the stop to the end of the drain
	DrainTicks int64   `json:"drain_ticks,omitempty"` // fast mode: ticks from the stop to the end of the drain
	Ticks      int64   `json:"ticks"`                 // ticks run: in real time, those that passed before the stop, or the most any user had
	Served     int64   `json:"ticks_served"`
	Skipped    int64   `json:"ticks_skipped"`
	Actions    Actions `json:"actions"`
	Traffic    Traffic `json:"traffic"`
	Rooms      Rooms   `json:"rooms"`
	Messages   Msgs    `json:"messages"`

	Latency   *Latency      `json:"latency,omitempty"` // real time only
	Stability Stability     `json:"stability"`
	Network   *NetFigures   `json:"network,omitempty"`
	Faults    *FaultFigures `json:"faults,omitempty"` // with faults only

	LiveRooms  Spark `json:"live_rooms"`
	Deliveries Spark `json:"deliveries_per_tick"`

	Converged bool     `json:"converged"`
	Problems  []string `json:"problems,omitempty"`

	finals []finalLine // JSON mode: each user's live rooms
	color  bool        // text: the verdict in colour

	// For the page: the samples behind the sparklines, and in real time
	// the latency histogram.
	liveSeries, deliverSeries []float64
	latency                   *histTotal
}

// Spark is a value over the run: a sparkline from 0 to Max.
type Spark struct {
	Line string  `json:"sparkline"`
	Max  float64 `json:"max"`
}

func (s Spark) String() string {
	return fmt.Sprintf("%s max %.4g", s.Line, s.Max)
}

// Settings are what a run was asked for, as the start line and the summary
// show them.
type Settings struct {
	Seed      uint64  `json:"seed"`
	Users     int     `json:"users"`
	Mode      string  `json:"mode"`
	Tick      string  `json:"tick"`
	Chance    float64 `json:"chance"`
	Delay     string  `json:"delay,omitempty"`
	Loss      float64 `json:"loss,omitempty"`
	Dup       float64 `json:"dup,omitempty"`
	Partition string  `json:"partition,omitempty"`
	Offline   string  `json:"offline,omitempty"`
	Clog      string  `json:"clog,omitempty"`
	Crash     string  `json:"crash,omitempty"`
	Join      int     `json:"join,omitempty"`
}

// delayText says the injected delay, if any, as the start line and the
// summary show it.
func (st Settings) delayText() string {
	if st.Delay == "" {
		return ""
	}
	return ", delay up to " + st.Delay
}

// faultText says the faults injected, if any, as the start line and the
// summary show them.
func (st Settings) faultText() string {
	var b strings.Builder
	if st.Loss > 0 {
		fmt.Fprintf(&b, ", loss %g", st.Loss)
	}
	if st.Dup > 0 {
		fmt.Fprintf(&b, ", dup %g", st.Dup)
	}
	if st.Partition != "" {
		b.WriteString(", partitions up to " + st.Partition)
	}
	if st.Offline != "" {
		b.WriteString(", outages up to " + st.Offline)
	}
	if st.Clog != "" {
		b.WriteString(", clogs up to " + st.Clog)
	}
	if st.Crash != "" {
		b.WriteString(", crashes down up to " + st.Crash)
	}
	if st.Join > 0 {
		b.WriteString(", " + plural(int64(st.Join), "late joiner"))
	}
	return b.String()
}

func settingsOf(c Config) Settings {
	st := Settings{Seed: c.Seed, Users: c.Users, Mode: "real time", Tick: c.Tick.String(), Chance: c.Chance}
	if c.Fast {
		st.Mode = "fast"
	}
	if c.Delay > 0 {
		st.Delay = c.Delay.String()
	}
	st.Loss, st.Dup, st.Join = c.Loss, c.Dup, c.Join
	if c.Partition > 0 {
		st.Partition = c.Partition.String()
	}
	if c.Offline > 0 {
		st.Offline = c.Offline.String()
	}
	if c.Clog > 0 {
		st.Clog = c.Clog.String()
	}
	if c.Crash > 0 {
		st.Crash = c.Crash.String()
	}
	return st
}

// Traffic is every event delivered, of all kinds, and in real time how
// many a second from the first tick to the end of the drain. Fast mode
// leaves the rate out, so that its output stays a function of the flags and
// the seed (-stats shows it on stderr).
type Traffic struct {
	Delivered int64   `json:"delivered"`
	PerSecond float64 `json:"per_second,omitempty"`
}

// Actions counts the users' rolls that led to an action, by kind.
type Actions struct {
	Total   int64  `json:"total"`
	Create  Action `json:"create"`
	Message Action `json:"message"`
	Close   Action `json:"close"`
}

// Action is the count of one kind of action and of its failures.
type Action struct {
	Tried  int64 `json:"tried"`
	Failed int64 `json:"failed"`
}

// Rooms is what became of the rooms created: each was closed, replaced by a
// concurrent duplicate, or is live at the end.
type Rooms struct {
	Created    int64 `json:"created"`
	Duplicates int64 `json:"duplicates_resolved"`
	Closed     int64 `json:"closed"`
	Live       int64 `json:"live"`
}

// Msgs accounts for messages: every message owes one delivery to each other
// member of its room, and after the drain all are paid.
type Msgs struct {
	Sent       int64 `json:"sent"`
	Expected   int64 `json:"expected"`
	Deliveries int64 `json:"deliveries"`
	Late       int64 `json:"late"`
	Held       int64 `json:"held"`
}

// NetFigures are what the network carried: every transmission, payload,
// report, news or acknowledgement, first or again, and how many it took per
// delivery (Maelstrom's msgs-per-op; the floor with loss p is 1/(1-p));
// with faults, what was lost, duplicated and resent.
type NetFigures struct {
	Transmissions int64   `json:"transmissions"`
	Lost          int64   `json:"lost"`
	Duplicated    int64   `json:"duplicated"`
	Retransmitted int64   `json:"retransmitted"`
	Clogged       int64   `json:"held_by_clogs,omitempty"`
	PerDelivery   float64 `json:"per_delivery"`
}

// Stability is what users pay to learn stability from each other: how
// long after an epoch ended each user knew it stable (the lag, in ticks,
// over every user and epoch), the tombstones views kept while they
// waited for it, and the transmissions of the report tree that rode on
// nothing else: reports up it and news down it.
type Stability struct {
	LagMedian    int64 `json:"lag_median_ticks"`
	LagMax       int64 `json:"lag_max_ticks"`
	Known        int64 `json:"known_stable"`        // (user, epoch) pairs known stable; 0: the lag figures mean nothing yet
	TombsPeak    int64 `json:"tombstones_peak"`     // the most one view kept at once
	TombsPeakAll int64 `json:"tombstones_peak_all"` // the most all views kept at once, sampled each tick
	Reports      int64 `json:"reports"`             // sent alone, up the report tree
	News         int64 `json:"news"`                // down it
}

// CrashFigures are what crashes did, by the rule for crashes (see
// crash.go): what crashed users forgot, the deliveries the rule lost and
// owed again, and how soon a restarted user had the rooms, in ticks.
type CrashFigures struct {
	Crashes        int64   `json:"crashes"`
	DownSeconds    float64 `json:"down_seconds"`
	RoomsForgotten int64   `json:"rooms_forgotten"`
	HeldLost       int64   `json:"held_lost"`   // of lost: held back by a member that crashed
	Lost           int64   `json:"lost"`        // deliveries lost by the rule
	Redelivered    int64   `json:"redelivered"` // deliveries owed again to a restarted member
	ToRoomsMedian  int64   `json:"to_rooms_median_ticks"`
	ToRoomsMax     int64   `json:"to_rooms_max_ticks"`
}

// FaultFigures are what the faults did.
type FaultFigures struct {
	Splits        int64         `json:"splits"`
	OneWay        int64         `json:"one_way_splits"` // of the splits
	SplitSeconds  float64       `json:"split_seconds"`
	Outages       int64         `json:"outages"`
	OutageSeconds float64       `json:"outage_seconds"`
	Clogs         int64         `json:"clogs"`
	ClogSeconds   float64       `json:"clog_seconds"`
	LateJoiners   int64         `json:"late_joiners"`
	RoomsLearned  int64         `json:"rooms_learned"`
	Crash         *CrashFigures `json:"crashes,omitempty"`

	// Late joiners: ticks from coming online to having the rooms (those
	// it was online), and to a complete view; the median and the most over
	// joiners.
	ToRoomsMedian    int64 `json:"to_rooms_median_ticks,omitempty"`
	ToRoomsMax       int64 `json:"to_rooms_max_ticks,omitempty"`
	ToCompleteMedian int64 `json:"to_complete_median_ticks,omitempty"`
	ToCompleteMax    int64 `json:"to_complete_max_ticks,omitempty"`
}

// Latency is the spread of send-to-apply times in real time.
type Latency struct {
	P50 time.Duration `json:"p50_ns"`
	P95 time.Duration `json:"p95_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
}

// finalLine is one user's live rooms after the drain, as a JSON line.
type finalLine struct {
	Kind  string   `json:"kind"`
	User  string   `json:"user"`
	Rooms []string `json:"rooms"`
}

// runFacts are what the run itself knows at its end, beside the users'
// own figures.
type runFacts struct {
	Online     int
	Stopped    string
	RunTime    time.Duration // simulated in fast mode
	Wall       time.Duration // from the first tick to the end of the drain
	FastTicks  int64         // fast mode: action ticks run
	FastDrain  int64         // fast mode: ticks run after them, to the end of the drain
	LiveRooms  Spark
	Deliveries Spark
	LiveSeries []float64 // the samples behind the sparklines
	DelSeries  []float64
	Faults     *faultTally  // with faults only
	Crashes    *crashLedger // with -crash only
	TombsAll   int64        // the most tombstones all views kept at once, sampled
}

// userFigures are what a user reports of its run, as values: taken once
// it has exited.
type userFigures struct {
	Ticks, Skipped, Acted int64
	Sent                  int64 // deliveries sent, of every kind
	Held                  int64 // messages still held back
	Counts                Counts
	Latency               *hist // real time only
	Transport             transportCounts
	Lags                  []int64 // Lags[k]: epochs this user knew stable k ticks after they ended
	TombsPeak             int64
	Reports, News         int64
	Late                  *lateFigures // a late joiner's way in; nil for others
	Restarts              []int64      // after each restart, the ticks until it had the rooms
}

// lateFigures are a late joiner's way in, in ticks from coming online:
// to having the rooms, counting only ticks it was online (it can learn
// nothing while it is away), and to a complete view.
type lateFigures struct {
	ToRooms, ToComplete int64 // ToComplete 0: never complete
}

// buildReport gathers the summary from values: the settings, what the run
// knows, each user's figures (taken once each, in turn) and each user's
// final view.
func buildReport(c Config, run runFacts, users iter.Seq[userFigures], views []*View) *Report {
	r := &Report{Settings: settingsOf(c), Online: run.Online, Stopped: run.Stopped, RunTime: run.RunTime.Seconds()}
	var lat histTotal
	var tot Counts
	var tx transportCounts
	var lags []int64
	var toRooms, toComplete, restarts []int64
	for u := range users {
		restarts = append(restarts, u.Restarts...)
		lags = addCounts(lags, u.Lags)
		r.Stability.TombsPeak = max(r.Stability.TombsPeak, u.TombsPeak)
		r.Stability.Reports += u.Reports
		r.Stability.News += u.News
		if u.Late != nil {
			toRooms = append(toRooms, u.Late.ToRooms)
			if u.Late.ToComplete > 0 {
				toComplete = append(toComplete, u.Late.ToComplete)
			}
		}
		tx.add(u.Transport)
		r.Served += u.Ticks
		r.Skipped += u.Skipped
		r.Ticks = max(r.Ticks, u.Ticks+u.Skipped)
		r.Actions.Total += u.Acted
		r.Traffic.Delivered += u.Sent
		r.Messages.Held += u.Held
		tot.add(&u.Counts)
		if u.Latency != nil {
			lat.add(u.Latency)
		}
	}
	if c.Fast {
		r.Ticks, r.DrainTicks = run.FastTicks, run.FastDrain
	} else if c.Tick > 0 {
		// The ticks that passed, though every user missed some: offline,
		// or not yet online.
		r.Ticks = max(r.Ticks, int64(run.RunTime/c.Tick))
	}
	if !c.Fast && run.Wall > 0 {
		r.Drain = max(run.Wall-run.RunTime, 0).Seconds()
		r.Traffic.PerSecond = float64(r.Traffic.Delivered) / run.Wall.Seconds()
	}
	if l := run.Crashes; l != nil {
		// By the rule for crashes (crash.go), some deliveries are lost and
		// some are owed again.
		tot.Expected += l.again - l.lost
		tot.OwedSum += l.againSum - l.lostSum
	}
	r.Actions.Create = Action{tot.Creates, tot.CreateFailed}
	r.Actions.Message = Action{tot.Messages, tot.MessageFailed}
	r.Actions.Close = Action{tot.Closes, tot.CloseFailed}
	r.Rooms = Rooms{Created: tot.Created, Duplicates: tot.Duplicates, Closed: tot.Closed, Live: tot.OwnLive}
	r.Messages.Sent = tot.Messages - tot.MessageFailed
	r.Messages.Expected = tot.Expected
	r.Messages.Deliveries = tot.Deliveries
	r.Messages.Late = tot.Late
	if !c.Fast && lat.n > 0 {
		r.Latency = &Latency{lat.quantile(0.50), lat.quantile(0.95), lat.quantile(0.99), lat.max}
		r.latency = &lat
	}
	r.Stability.LagMedian, r.Stability.LagMax = countQuantile(lags, 0.5), countQuantile(lags, 1)
	for _, n := range lags {
		r.Stability.Known += n
	}
	r.Stability.TombsPeakAll = run.TombsAll
	r.liveSeries, r.deliverSeries = run.LiveSeries, run.DelSeries
	r.LiveRooms = run.LiveRooms
	r.Deliveries = run.Deliveries
	r.Network = &NetFigures{Transmissions: tx.Transmissions, Lost: tx.Lost, Duplicated: tx.Duplicated, Retransmitted: tx.Retransmitted, Clogged: tx.Clogged}
	if r.Traffic.Delivered > 0 {
		r.Network.PerDelivery = float64(tx.Transmissions) / float64(r.Traffic.Delivered)
	}
	if f := run.Faults; f != nil {
		seconds := func(ticks int64) float64 { return (time.Duration(ticks) * c.Tick).Seconds() }
		r.Faults = &FaultFigures{
			Splits: f.Splits, OneWay: f.OneWay, SplitSeconds: seconds(f.SplitTicks),
			Outages: f.Outages, OutageSeconds: seconds(f.AwayTicks),
			Clogs: f.Clogs, ClogSeconds: seconds(f.ClogTicks),
			LateJoiners: f.LateJoiners, RoomsLearned: tot.StateRooms,
		}
		r.Faults.ToRoomsMedian, r.Faults.ToRoomsMax = median(toRooms), slices.Max(append(toRooms, 0))
		r.Faults.ToCompleteMedian, r.Faults.ToCompleteMax = median(toComplete), slices.Max(append(toComplete, 0))
		if l := run.Crashes; l != nil {
			r.Faults.Crash = &CrashFigures{Crashes: f.Crashes, DownSeconds: seconds(f.DownTicks),
				RoomsForgotten: l.roomsForgotten, HeldLost: l.heldLost, Lost: l.lost, Redelivered: l.again,
				ToRoomsMedian: median(restarts), ToRoomsMax: slices.Max(append(restarts, 0))}
		}
	}
	r.Problems = check(views, &tot, r.Messages.Held, run.Crashes != nil)
	if run.Crashes != nil && len(views) > 0 {
		r.Rooms.Live = int64(len(views[0].Rooms())) // a crashed creator forgets its rooms: count what the views agree on
	}
	r.Converged = len(r.Problems) == 0
	if c.JSON {
		for _, v := range views {
			f := finalLine{Kind: "final", User: uidName(v.Self()), Rooms: []string{}}
			for _, room := range v.Rooms() {
				f.Rooms = append(f.Rooms, room.String())
			}
			r.finals = append(r.finals, f)
		}
	}
	return r
}

// countQuantile is the q-quantile of values counted by value: counts[k]
// values are k. 0 when there are none.
func countQuantile(counts []int64, q float64) int64 {
	var n int64
	for _, c := range counts {
		n += c
	}
	rank := int64(math.Ceil(q * float64(n)))
	var seen int64
	for k, c := range counts {
		seen += c
		if c > 0 && seen >= max(rank, 1) {
			return int64(k)
		}
	}
	return 0
}

// median is the median of xs, the lower of the middle two; 0 when empty.
func median(xs []int64) int64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	return s[(len(s)-1)/2]
}

// maxProblems caps how many differences the verdict lists.
const maxProblems = 5

// check compares every user's final view and the users' summed counts,
// with the messages still held back. It returns what is wrong, or nothing
// when the run converged: every user has the same live rooms, no two live
// rooms share a group, every room created was closed, replaced or is live,
// and every message reached every other member of its room exactly once.
func check(views []*View, tot *Counts, held int64, crashes bool) []string {
	var problems []string
	add := func(format string, args ...any) {
		if len(problems) < maxProblems {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	if len(views) == 0 {
		return nil
	}
	ref := views[0].Rooms()
	var each roomLister
	for _, v := range views[1:] {
		if d := diffRooms(ref, each.list(v)); d != "" {
			add("%s and %s disagree: %s", uidName(views[0].Self()), uidName(v.Self()), d)
		}
	}
	if !crashes {
		problems = append(problems, checkCreators(views, tot, len(ref))...)
	}
	if held > 0 {
		add("%d messages still held back", held)
	}
	if tot.Deliveries != tot.Expected {
		add("%d deliveries, but messages were owed %d", tot.Deliveries, tot.Expected)
	} else if tot.GotSum != tot.OwedSum {
		add("as many deliveries as owed, but not to the members they were owed to")
	}
	if tot.NonMember > 0 {
		add("%d messages reached a non-member", tot.NonMember)
	}
	if len(problems) > maxProblems {
		problems = problems[:maxProblems]
	}
	return problems
}

// checkCreators compares the rooms with what their creators know of them:
// no two live rooms share a group, and the creators' counts of their
// rooms add up, live ones to the live in the views. A crashed creator
// forgets its rooms, so runs with crashes rely on the views' agreement.
func checkCreators(views []*View, tot *Counts, live int) []string {
	var problems []string
	add := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	// Each creator knows the group of its own live rooms: compare member
	// sets themselves, not the fingerprints views key them by.
	var own []Room
	for _, v := range views {
		own = append(own, v.Own()...)
	}
	slices.SortFunc(own, func(a, b Room) int { return a.Group.Compare(b.Group) })
	for i := 1; i < len(own); i++ {
		if own[i].Group.Equal(own[i-1].Group) {
			add("two live rooms share a group: chats %s and %s", own[i-1].Stamp, own[i].Stamp)
		}
	}
	if int64(live) != tot.OwnLive {
		add("%d rooms are live in the views, but their creators count %d live", live, tot.OwnLive)
	}
	if n := tot.Closed + tot.Duplicates + tot.OwnLive; n != tot.Created {
		add("%d rooms created, but %d closed, replaced or live", tot.Created, n)
	}
	return problems
}

// diffRooms describes how two sorted lists of live rooms differ, or
// returns "".
func diffRooms(a, b []Stamp) string {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] == b[j]:
			i++
			j++
		case a[i].Less(b[j]):
			return fmt.Sprintf("only the first has chat %s live", a[i])
		default:
			return fmt.Sprintf("only the second has chat %s live", b[j])
		}
	}
	if i < len(a) {
		return fmt.Sprintf("only the first has chat %s live", a[i])
	}
	if j < len(b) {
		return fmt.Sprintf("only the second has chat %s live", b[j])
	}
	return ""
}

// faultsDone says what the faults asked for did, and nothing of those not
// asked for; "" without partitions, outages or late joiners.
func (r *Report) faultsDone() string {
	f := r.Faults
	if f == nil {
		return ""
	}
	var parts []string
	if r.Partition != "" {
		parts = append(parts, fmt.Sprintf("%s (%d one-way, %s)", plural(f.Splits, "split"), f.OneWay, fmtSeconds(f.SplitSeconds)))
	}
	if r.Offline != "" {
		parts = append(parts, fmt.Sprintf("%s (%s)", plural(f.Outages, "outage"), fmtSeconds(f.OutageSeconds)))
	}
	if r.Clog != "" {
		parts = append(parts, fmt.Sprintf("%s (%s)", plural(f.Clogs, "clog"), fmtSeconds(f.ClogSeconds)))
	}
	if r.Join > 0 {
		parts = append(parts, fmt.Sprintf("%s learned %s", plural(f.LateJoiners, "late joiner"), plural(f.RoomsLearned, "live room")))
	}
	if c := f.Crash; c != nil {
		parts = append(parts, fmt.Sprintf("%s (%s down) forgot %s and %s; restarted users had the rooms after %d ticks in the median (at most %d); by the rule for crashes %s lost (%d held back) and %s again",
			plural(c.Crashes, "crash"), fmtSeconds(c.DownSeconds), plural(c.RoomsForgotten, "live room"), plural(c.HeldLost, "held message"),
			c.ToRoomsMedian, c.ToRoomsMax, plural(c.Lost, "delivery"), c.HeldLost, plural(c.Redelivered, "delivery")))
	}
	return strings.Join(parts, ", ")
}

// writeText prints the summary for people.
func (r *Report) writeText(w io.Writer) error {
	var b strings.Builder
	p := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "  %-11s ", label)
		fmt.Fprintf(&b, format, args...)
		b.WriteByte('\n')
	}
	b.WriteString("\nsummary\n")
	p("seed", "%d (repeat the run with -seed %d)", r.Seed, r.Seed)
	mode := r.Mode + r.delayText()
	online := ""
	if r.Online < r.Users {
		online = fmt.Sprintf(" (%d came online before the stop)", r.Online)
	}
	p("users", "%d%s, %s, tick %s, chance %g%s", r.Users, online, mode, r.Tick, r.Chance, r.faultText())
	drain := ""
	switch {
	case r.Drain >= 0.0005: // shown when it rounds to a millisecond or more
		drain = ", then " + fmtSeconds(r.Drain) + " to drain"
	case r.DrainTicks > 0:
		drain = ", then " + plural(r.DrainTicks, "tick") + " to drain"
	}
	p("run", "%s, %s, %s%s", fmtSeconds(r.RunTime), plural(r.Ticks, "tick"), r.Stopped, drain)
	p("ticks", "%d served, %d skipped under load", r.Served, r.Skipped)
	a := r.Actions
	p("actions", "%d: create %d (%d failed), message %d (%d failed), close %d (%d failed)",
		a.Total, a.Create.Tried, a.Create.Failed, a.Message.Tried, a.Message.Failed, a.Close.Tried, a.Close.Failed)
	m := r.Rooms
	forgot := ""
	if r.Crash != "" {
		forgot = " (closed and resolved as their creators counted them: a crash forgets a creator's own)"
	}
	p("rooms", "%d created: %d closed, %s resolved, %d live at the end%s",
		m.Created, m.Closed, plural(m.Duplicates, "concurrent duplicate"), m.Live, forgot)
	if r.Traffic.PerSecond > 0 {
		p("traffic", "%d events delivered, %s a second (run and drain)", r.Traffic.Delivered, fmtCount(r.Traffic.PerSecond))
	} else {
		p("traffic", "%d events delivered", r.Traffic.Delivered)
	}
	g := r.Messages
	p("messages", "%d sent, %s of %d owed, %d late, %d held back", g.Sent, plural(g.Deliveries, "delivery"), g.Expected, g.Late, g.Held)
	if n := r.Network; r.Faults != nil {
		clogged := ""
		if r.Clog != "" {
			clogged = fmt.Sprintf(", %d held by clogs", n.Clogged)
		}
		p("network", "%d transmissions: %d lost, %d duplicated, %d retransmitted%s; %.3g per delivery",
			n.Transmissions, n.Lost, n.Duplicated, n.Retransmitted, clogged, n.PerDelivery)
	} else if n != nil {
		p("network", "%d transmissions, %.3g per delivery", n.Transmissions, n.PerDelivery)
	}
	if s := r.faultsDone(); s != "" {
		p("faults", "%s", s)
	}
	st := r.Stability
	known := "no epoch known stable yet"
	if st.Known > 0 {
		known = fmt.Sprintf("epochs known stable %s after they ended (median), %s at most", plural(st.LagMedian, "tick"), plural(st.LagMax, "tick"))
	}
	p("stability", "%s; tombstones kept: at most %d in a view, %d in all at once; %s and %d news",
		known, st.TombsPeak, st.TombsPeakAll, plural(st.Reports, "report"), st.News)
	if f := r.Faults; f != nil && f.LateJoiners > 0 {
		p("late", "joiners had the rooms after %s online (median), %s at most; a complete view after %s (median), %s at most",
			plural(f.ToRoomsMedian, "tick"), plural(f.ToRoomsMax, "tick"), plural(f.ToCompleteMedian, "tick"), plural(f.ToCompleteMax, "tick"))
	}
	if l := r.Latency; l != nil {
		p("latency", "p50 %s, p95 %s, p99 %s, max %s (send to apply)", fmtDur(l.P50), fmtDur(l.P95), fmtDur(l.P99), fmtDur(l.Max))
	}
	p("live rooms", "%s", r.LiveRooms)
	p("deliveries", "%s (message deliveries per tick)", r.Deliveries)
	good, bad, reset := "", "", ""
	if r.color {
		good, bad, reset = styleGood, styleBad, styleReset
	}
	if r.Converged {
		once := "every message delivered once"
		if r.Crash != "" {
			once += " to each member, by the rule for crashes"
		}
		p("verdict", "%sconverged%s: all %d users agree on %s, no two share a group, %s", good, reset, r.Online, plural(r.Rooms.Live, "live room"), once)
	} else {
		p("verdict", "%sNOT CONVERGED%s", bad, reset)
		for _, s := range r.Problems {
			p("", "%s", s)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeJSON prints each user's final rooms, then the summary, as JSON Lines.
func (r *Report) writeJSON(w io.Writer) error {
	var b []byte
	for _, f := range r.finals {
		b = appendJSONLine(b, f)
	}
	b = appendJSONLine(b, struct {
		Kind string `json:"kind"`
		*Report
	}{"summary", r})
	_, err := w.Write(b)
	return err
}

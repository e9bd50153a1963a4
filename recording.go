package main

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// recording keeps a run's log records for the page and the ShiViz log: the
// records in the time window asked for, until maxDrawn deliveries are kept
// (or twice as many other records). From then on it keeps nothing at or
// after the time of the record that did not fit (the cut) and only counts
// what it leaves out, so its memory is bounded however long or large the
// run. In lockstep the records come in a fixed order, so the window ends
// part way through the tick of the cut, the same way every time. The
// records are the log's own: the page draws what the log says.
type recording struct {
	mu       sync.Mutex
	window   timeWindow
	maxDrawn int
	recs     []Record
	drawn    int               // deliveries kept
	others   int               // other records kept
	online   []bool            // online[u]: user_u's first online record has come
	settled  []time.Duration   // settled[u]: when user_u came online, or -1
	before   *Record           // the last network record before the window
	fast     bool              // lockstep: records come in a fixed order, sends before what they sent
	sent     map[eventKey]bool // the sendings kept
	capped   bool              // the cut is the caps', not the window's end
	closed   atomic.Bool       // set with cut: see full
	cut      time.Duration     // once full: nothing at or after it is kept; -1 before
	horizon  time.Duration     // the latest record seen, kept or not
	wire     []transmission    // lost and resent transmissions, once the run is over
	perPort  int               // the most of them each port kept
}

// timeWindow is a stretch of simulation time, [From, To); To 0 is open.
type timeWindow struct{ From, To time.Duration }

func (w timeWindow) holds(t time.Duration) bool {
	return t >= w.From && (w.To == 0 || t < w.To)
}

// maxDrawn is how many deliveries a page draws: a few thousand arrows keep
// a browser responsive and the file a few megabytes. Records that are no
// deliveries (sends, failures, outages) may be twice as many.
const maxDrawn = 5000

func newRecording(w timeWindow, maxDeliveries, users int, fast bool) *recording {
	rc := &recording{window: w, maxDrawn: maxDeliveries, cut: -1, online: make([]bool, users+1),
		settled: make([]time.Duration, users+1), fast: fast, sent: make(map[eventKey]bool)}
	for i := range rc.settled {
		rc.settled[i] = -1
	}
	return rc
}

// recordKeeper takes a user's records after they are logged; once it is
// full, it takes no more, and a user that prints no log may stop making
// records.
type recordKeeper interface {
	keep(recs []Record)
	full() bool
}

// full reports whether the recording keeps nothing more that comes now:
// its caps are reached, or the window is over.
func (rc *recording) full() bool { return rc.closed.Load() }

// setCut cuts at t: nothing at or after it is kept.
func (rc *recording) setCut(t time.Duration) {
	rc.cut = t
	rc.closed.Store(true)
}

// keep takes records as the log has them. A user's records come in time
// order, but two users' records may come in any order, so the cut is a
// time: everything before it is kept, however late it comes.
func (rc *recording) keep(recs []Record) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for i := range recs {
		onlineRange(&recs[i], rc.keepOne)
	}
}

// keepOne keeps one record the log shows, if it is in the window and the
// caps allow.
func (rc *recording) keepOne(r *Record) {
	if r.Kind == KindOnline {
		// Every user learns of every other: a million lines at the
		// start of a run of a thousand users, and no one's action.
		// Only a user's first is kept: where its lane starts.
		if rc.online[r.User] {
			return
		}
		rc.online[r.User] = true
		rc.settled[r.User] = r.T
	}
	if r.User == 0 && r.T < rc.window.From {
		// The network's last word before the window: a split that
		// is still on when it starts is drawn from its start.
		b := *r
		rc.before = &b
		return
	}
	rc.horizon = max(rc.horizon, r.T)
	if rc.window.To > 0 && r.T >= rc.window.To && rc.cut < 0 {
		rc.setCut(rc.window.To)
	}
	k, applied := appliedKey(r)
	if !rc.window.holds(r.T) || rc.cut >= 0 && r.T >= rc.cut {
		return
	}
	// In lockstep a sending is kept before anything applies what it
	// sent, so a delivery whose sending is not here was sent before
	// the window: it cannot be drawn, and would crowd out what can. In
	// real time users' batches come in any order, so it is kept, on
	// the budget of other records, and linked if its sending comes.
	drawable := applied && rc.sent[k]
	if applied && !drawable && rc.fast {
		return
	}
	n, limit := &rc.others, 2*rc.maxDrawn
	if drawable {
		n, limit = &rc.drawn, rc.maxDrawn
	}
	if rc.cut < 0 && *n >= limit {
		rc.setCut(r.T)
		rc.capped = true
		return
	}
	*n++
	if sk, ok := sentKey(r); ok {
		rc.sent[sk] = true
	}
	rc.recs = append(rc.recs, *r)
}

// timeline is what a trace holds, in an order that every delivery respects:
// by time, then as the log had them. Deliveries link each record of an
// applied event to the record of its sending.
type timeline struct {
	recs    []Record
	sentAt  []int // for each record: the index of the record that sent what it applied, or -1
	first   []bool
	wire    []transmission  // lost and resent transmissions in shown
	perPort int             // the most of them each user's port kept
	shown   timeWindow      // what the records cover: From to To (included when the caps cut there)
	capped  bool            // the caps ended the stretch shown
	end     time.Duration   // the run's last log record
	settled []time.Duration // settled[u]: when user_u came online, or -1
	users   int
}

// history sorts the records kept and links deliveries to sends.
func (rc *recording) history(users int) *timeline {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	h := &timeline{users: users, shown: rc.window, recs: slices.Clone(rc.recs), capped: rc.capped, end: rc.horizon,
		settled: slices.Clone(rc.settled), perPort: rc.perPort}
	if b := rc.before; b != nil {
		h.recs = append(h.recs, *b)
	}
	if rc.cut >= 0 {
		h.shown.To = rc.cut
	}
	if h.shown.To == 0 || !rc.capped && h.shown.To > rc.horizon {
		h.shown.To = max(rc.horizon, h.shown.From) // a window past the run's end ends with it
	}
	for _, w := range rc.wire {
		if w.Sent >= h.shown.From && w.Sent <= h.shown.To && len(h.wire) < rc.maxDrawn {
			h.wire = append(h.wire, w)
		}
	}
	slices.SortStableFunc(h.recs, func(a, b Record) int { return cmp.Compare(a.T, b.T) })
	h.sentAt = make([]int, len(h.recs))
	h.first = make([]bool, len(h.recs))
	sends := make(map[eventKey]int)
	applied := make(map[appliedBy]bool)
	for i := range h.recs {
		r := &h.recs[i]
		h.sentAt[i] = -1
		if k, ok := sentKey(r); ok {
			sends[k] = i
		}
		k, ok := appliedKey(r)
		if !ok {
			continue
		}
		// One delivery may log two records (a merge, then the close that
		// caused it): the first is where it was applied.
		if a := (appliedBy{k, r.User}); !applied[a] {
			applied[a] = true
			h.first[i] = true
		}
		if s, ok := sends[k]; ok {
			h.sentAt[i] = s
		}
	}
	return h
}

// appliedBy is one user's application of one event.
type appliedBy struct {
	key  eventKey
	user int32
}

// wireKeeper keeps, for the page, each user's first perPort lost or resent
// payload transmissions from the window's start: a bounded sample, however
// long the run. Each port tells only its own, from its own goroutine, so
// each keeps its own list.
type wireKeeper struct {
	from    time.Duration
	perPort int
	kept    [][]transmission // by uid
}

func newWireKeeper(users, perPort int, from time.Duration) *wireKeeper {
	return &wireKeeper{from: from, perPort: perPort, kept: make([][]transmission, users+1)}
}

func (w *wireKeeper) wire(uid int32, t transmission) {
	if k := &w.kept[uid]; len(*k) < w.perPort && t.Sent >= w.from && !linkWord(t.Event.Kind) {
		*k = append(*k, t)
	}
}

// all is every transmission kept, in an order that is the same for the
// same run. Call it once the users have exited.
func (w *wireKeeper) all() []transmission {
	var all []transmission
	for _, k := range w.kept {
		all = append(all, k...)
	}
	sortTransmissions(all)
	return all
}

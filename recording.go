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
	arrived  []time.Duration   // arrived[u]: when user_u came online, or -1
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
	tr := &recording{window: w, maxDrawn: maxDeliveries, cut: -1, online: make([]bool, users+1),
		arrived: make([]time.Duration, users+1), fast: fast, sent: make(map[eventKey]bool)}
	for i := range tr.arrived {
		tr.arrived[i] = -1
	}
	return tr
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
func (tr *recording) full() bool { return tr.closed.Load() }

// setCut cuts at t: nothing at or after it is kept.
func (tr *recording) setCut(t time.Duration) {
	tr.cut = t
	tr.closed.Store(true)
}

// keep takes records as the log has them. A user's records come in time
// order, but two users' records may come in any order, so the cut is a
// time: everything before it is kept, however late it comes.
func (tr *recording) keep(recs []Record) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for i := range recs {
		r := &recs[i]
		if r.Kind == KindOnline {
			// Every user learns of every other: a million lines at the
			// start of a run of a thousand users, and no one's action.
			// Only a user's first is kept: where its lane starts.
			if tr.online[r.User] {
				continue
			}
			tr.online[r.User] = true
			tr.arrived[r.User] = r.T
		}
		if r.User == 0 && r.T < tr.window.From {
			// The network's last word before the window: a split that
			// is still on when it starts is drawn from its start.
			b := *r
			tr.before = &b
			continue
		}
		tr.horizon = max(tr.horizon, r.T)
		if tr.window.To > 0 && r.T >= tr.window.To && tr.cut < 0 {
			tr.setCut(tr.window.To)
		}
		k, applied := appliedKey(r)
		if !tr.window.holds(r.T) || tr.cut >= 0 && r.T >= tr.cut {
			continue
		}
		// In lockstep a sending is kept before anything applies what it
		// sent, so a delivery whose sending is not here was sent before
		// the window: it cannot be drawn, and would crowd out what can. In
		// real time users' batches come in any order, so it is kept, on
		// the budget of other records, and linked if its sending comes.
		drawable := applied && tr.sent[k]
		if applied && !drawable && tr.fast {
			continue
		}
		n, limit := &tr.others, 2*tr.maxDrawn
		if drawable {
			n, limit = &tr.drawn, tr.maxDrawn
		}
		if tr.cut < 0 && *n >= limit {
			tr.setCut(r.T)
			tr.capped = true
			continue
		}
		*n++
		if sk, ok := sentKey(r); ok {
			tr.sent[sk] = true
		}
		tr.recs = append(tr.recs, *r)
	}
}

// traced is what a trace holds, in an order that every delivery respects:
// by time, then as the log had them. Deliveries link each record of an
// applied event to the record of its sending.
type traced struct {
	recs    []Record
	sentAt  []int // for each record: the index of the record that sent what it applied, or -1
	first   []bool
	wire    []transmission  // lost and resent transmissions in shown
	perPort int             // the most of them each user's port kept
	shown   timeWindow      // what the records cover: From to To (included when the caps cut there)
	capped  bool            // the caps ended the stretch shown
	end     time.Duration   // the run's last log record
	arrived []time.Duration // arrived[u]: when user_u came online, or -1
	users   int
}

// history sorts the records kept and links deliveries to sends.
func (tr *recording) history(users int) *traced {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	h := &traced{users: users, shown: tr.window, recs: slices.Clone(tr.recs), capped: tr.capped, end: tr.horizon,
		arrived: slices.Clone(tr.arrived), perPort: tr.perPort}
	if b := tr.before; b != nil {
		h.recs = append(h.recs, *b)
	}
	if tr.cut >= 0 {
		h.shown.To = tr.cut
	}
	if h.shown.To == 0 || !tr.capped && h.shown.To > tr.horizon {
		h.shown.To = max(tr.horizon, h.shown.From) // a window past the run's end ends with it
	}
	for _, w := range tr.wire {
		if w.Sent >= h.shown.From && w.Sent <= h.shown.To && len(h.wire) < tr.maxDrawn {
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

// eventKey names one event a user sent: the create or the close of an
// incarnation, or a message. Two users may close one incarnation, so a
// close is named by its closer too.
type eventKey struct {
	kind  EventKind
	stamp Stamp
	from  int32
}

// sentKey is the event a record tells of sending, if any.
func sentKey(r *Record) (eventKey, bool) {
	switch r.Kind {
	case KindCreate:
		return eventKey{CreateEvent, r.Room, r.User}, true
	case KindMessage:
		return eventKey{MessageEvent, r.Msg, r.User}, true
	case KindClose:
		return eventKey{CloseEvent, r.Room, r.User}, true
	}
	return eventKey{}, false
}

// appliedKey is the event a record tells of applying, if any.
func appliedKey(r *Record) (eventKey, bool) {
	switch r.Kind {
	case KindJoin, KindSee:
		return eventKey{CreateEvent, r.Room, r.By}, true
	case KindReceive:
		return eventKey{MessageEvent, r.Msg, r.By}, true
	case KindCloseSeen:
		return eventKey{CloseEvent, r.Room, r.By}, true
	case KindStale:
		return eventKey{r.EventKind, r.Room, r.By}, true
	case KindMerge:
		if r.Won {
			return eventKey{r.EventKind, r.Room, r.By}, true
		}
		return eventKey{CreateEvent, r.Dropped, r.By}, true
	}
	return eventKey{}, false
}

package main

import (
	"cmp"
	"slices"
	"sync"
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
	drawn    int            // deliveries kept
	others   int            // other records kept
	online   []bool         // online[u]: user_u's first online record has come
	cut      time.Duration  // once full: nothing at or after it is kept; -1 before
	left     int64          // deliveries left out
	horizon  time.Duration  // the latest record seen, kept or not
	wire     []transmission // lost and resent transmissions, once the run is over
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

func newRecording(w timeWindow, maxDeliveries, users int) *recording {
	return &recording{window: w, maxDrawn: maxDeliveries, cut: -1, online: make([]bool, users+1)}
}

// recordKeeper takes a user's records after they are logged.
type recordKeeper interface{ keep(recs []Record) }

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
		}
		tr.horizon = max(tr.horizon, r.T)
		_, applied := appliedKey(r)
		if !tr.window.holds(r.T) || tr.cut >= 0 && r.T >= tr.cut {
			if applied {
				tr.left++
			}
			continue
		}
		n, limit := &tr.others, 2*tr.maxDrawn
		if applied {
			n, limit = &tr.drawn, tr.maxDrawn
		}
		if tr.cut < 0 && *n >= limit {
			tr.cut = r.T
			if applied {
				tr.left++
			}
			continue
		}
		*n++
		tr.recs = append(tr.recs, *r)
	}
}

// traced is what a trace holds, in an order that every delivery respects:
// by time, then as the log had them. Deliveries link each record of an
// applied event to the record of its sending.
type traced struct {
	recs   []Record
	sentAt []int // for each record: the index of the record that sent what it applied, or -1
	first  []bool
	wire   []transmission // lost and resent transmissions in shown
	shown  timeWindow     // what the records cover: From to To, To included
	left   int64          // deliveries left out
	users  int
}

// history sorts the records kept and links deliveries to sends.
func (tr *recording) history(users int) *traced {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	h := &traced{users: users, left: tr.left, shown: tr.window, recs: slices.Clone(tr.recs)}
	if tr.cut >= 0 {
		h.shown.To = tr.cut
	}
	if h.shown.To == 0 {
		h.shown.To = max(tr.horizon, h.shown.From)
	}
	for _, w := range tr.wire {
		if w.Sent >= h.shown.From && w.Sent <= h.shown.To {
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

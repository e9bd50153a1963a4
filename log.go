package main

import (
	"bufio"
	"encoding/json"
	"io"
	"strconv"
	"sync"
	"time"
)

// phrases are the messages users send; a message's text is picked by its id.
var phrases = [...]string{
	"hi all", "anyone around?", "lunch at noon?", "did the build pass?",
	"brb", "sounds good", "who has the notes?", "see you tomorrow",
	"+1", "on my way", "which room was that?", "thanks!",
}

func messageText(id Stamp) string {
	return phrases[(id.Clock*31+uint64(id.UID))%uint64(len(phrases))]
}

// maxShown is how many members a log line lists before it abbreviates, so
// that a line stays readable for a room of a thousand.
const maxShown = 8

// renderer turns records into log lines, as text or as JSON Lines; text
// in colour when color is set.
type renderer struct {
	json    bool
	elapsed bool      // show the time since the start (fast mode), not the time of day
	base    time.Time // the wall time shown for simulation time 0
	color   bool      // ANSI colours: a colour per user, and the races and failures stand out
}

// Colours, from the 256-colour palette: mid tones, which read on a dark
// and on a light background alike. Every coloured phrase also says in
// words what it is, so colour only helps the eye.
const (
	styleReset  = "\x1b[0m"
	styleMerge  = "\x1b[1;38;5;166m" // bold dark orange: a concurrent duplicate resolved
	styleHeld   = "\x1b[1;38;5;129m" // bold purple: a message held back
	styleLate   = "\x1b[1;38;5;199m" // bold pink: a late delivery
	styleStale  = "\x1b[1;38;5;244m" // bold grey: an outdated event ignored
	styleFailed = "\x1b[38;5;160m"   // red: an action that failed
	styleAway   = "\x1b[2m"          // dim: offline and back
	styleNet    = "\x1b[7m"          // reverse video: the network split or healed
	styleGood   = "\x1b[1;38;5;34m"  // bold green: the verdict, converged
	styleBad    = "\x1b[1;38;5;160m" // bold red: the verdict, not converged
)

// userColors are the users' colours, user_u's being userColors[(u-1)%len]:
// distinct for sixteen users, the same for a user all run long, and none of
// them a colour of the styles above.
var userColors = [...]string{
	"\x1b[38;5;33m", "\x1b[38;5;130m", "\x1b[38;5;71m", "\x1b[38;5;163m",
	"\x1b[38;5;37m", "\x1b[38;5;136m", "\x1b[38;5;63m", "\x1b[38;5;94m",
	"\x1b[38;5;29m", "\x1b[38;5;98m", "\x1b[38;5;172m", "\x1b[38;5;68m",
	"\x1b[38;5;107m", "\x1b[38;5;168m", "\x1b[38;5;31m", "\x1b[38;5;139m",
}

// uid appends a user's name, in its colour.
func (r *renderer) uid(b []byte, u int32) []byte {
	if !r.color {
		return appendUID(b, u)
	}
	b = append(b, userColors[(u-1)%int32(len(userColors))]...)
	return append(appendUID(b, u), styleReset...)
}

// styled appends text in style.
func (r *renderer) styled(b []byte, style, text string) []byte {
	if !r.color {
		return append(b, text...)
	}
	return append(append(append(b, style...), text...), styleReset...)
}

// start and end bracket a styled stretch that holds no user names.
func (r *renderer) start(b []byte, style string) []byte {
	if r.color {
		b = append(b, style...)
	}
	return b
}

func (r *renderer) end(b []byte) []byte {
	if r.color {
		b = append(b, styleReset...)
	}
	return b
}

// append renders rec as the log shows it, newline included: one line, or
// for news of a few users coming online at once, a line for each.
func (r *renderer) append(b []byte, rec *Record) []byte {
	onlineRange(rec, func(one *Record) { b = r.line(b, one) })
	return b
}

// line renders one record as one line.
func (r *renderer) line(b []byte, rec *Record) []byte {
	if r.json {
		return r.appendJSON(b, rec)
	}
	b = append(b, '[')
	if r.elapsed {
		b = appendElapsed(b, rec.T)
	} else {
		b = r.base.Add(rec.T).AppendFormat(b, "15:04:05.000000")
	}
	b = append(b, ' ')
	if rec.User == 0 {
		b = append(b, "network"...)
	} else {
		b = r.uid(b, rec.User)
	}
	b = append(b, "] "...)
	b = recordKinds[rec.Kind].text(r, b, rec)
	return append(b, '\n')
}

// appendElapsed shows a time since the start as hh:mm:ss.micros, the hours
// running past 24 rather than wrapping.
func appendElapsed(b []byte, d time.Duration) []byte {
	us := int64(d / time.Microsecond)
	h, m, s := us/3_600_000_000, us/60_000_000%60, us/1_000_000%60
	if h < 10 {
		b = append(b, '0')
	}
	b = strconv.AppendInt(b, h, 10)
	for _, x := range []int64{m, s} {
		b = append(b, ':', byte('0'+x/10), byte('0'+x%10))
	}
	b = append(b, '.')
	frac := us % 1_000_000
	for div := int64(100_000); div > 0; div /= 10 {
		b = append(b, byte('0'+frac/div%10))
	}
	return b
}

func appendChat(b []byte, s Stamp) []byte { return s.append(append(b, "chat "...)) }

func appendQuoted(b []byte, msg Stamp) []byte { return strconv.AppendQuote(b, messageText(msg)) }

// members lists up to maxShown members, then how many more there are.
func (r *renderer) members(b []byte, g *Group) []byte {
	shown := 0
	for u := range g.All() {
		if shown == maxShown {
			break
		}
		if shown > 0 {
			b = append(b, ", "...)
		}
		b = r.uid(b, u)
		shown++
	}
	if more := g.Size() - shown; more > 0 {
		b = append(b, " and "...)
		b = strconv.AppendInt(b, int64(more), 10)
		b = append(b, " more"...)
	}
	return b
}

// jsonRecord is the JSON Lines form of a Record.
type jsonRecord struct {
	T           float64    `json:"t"`
	User        string     `json:"user,omitempty"`
	Kind        string     `json:"kind"`
	Peer        string     `json:"peer,omitempty"`
	PeerTo      string     `json:"peer_to,omitempty"`
	Room        string     `json:"room,omitempty"`
	DroppedRoom string     `json:"dropped_room,omitempty"`
	Members     []string   `json:"members,omitempty"`
	By          string     `json:"by,omitempty"`
	Msg         string     `json:"msg,omitempty"`
	Text        string     `json:"text,omitempty"`
	Event       string     `json:"event,omitempty"`
	Late        *bool      `json:"late,omitempty"`
	Held        bool       `json:"held,omitempty"`
	Reason      string     `json:"reason,omitempty"`
	Away        float64    `json:"away,omitempty"`
	Rooms       *[]string  `json:"rooms,omitempty"`
	Sides       [][]string `json:"sides,omitempty"`
	OneWay      bool       `json:"one_way,omitempty"`        // split: only the first side reaches the second
	Clogged     string     `json:"clogged,omitempty"`        // clog, unclog: "out" of by, "in" to by, or "pair" from by to peer
	Lasts       float64    `json:"lasts,omitempty"`          // clog: seconds it will last; unclog: it lasted
	Incarnation uint32     `json:"incarnation,omitempty"`    // restart, and a restarted user's state
	Forgotten   *int32     `json:"held_forgotten,omitempty"` // crash: the messages it held back
	Lost        [][]string `json:"lost,omitempty"`           // crash: the deliveries lost with it, as [message, member]
}

func (r *renderer) appendJSON(b []byte, rec *Record) []byte {
	j := jsonRecord{T: rec.T.Seconds(), Kind: rec.Kind.String(), Reason: rec.Reason, Away: rec.Away.Seconds()}
	if rec.User != 0 {
		j.User = uidName(rec.User)
	}
	if rec.Rooms != nil {
		rooms := make([]string, len(rec.Rooms))
		for i, r := range rec.Rooms {
			rooms[i] = r.String()
		}
		j.Rooms = &rooms
	}
	for _, side := range rec.Sides {
		names := make([]string, len(side))
		for i, u := range side {
			names[i] = uidName(u)
		}
		j.Sides = append(j.Sides, names)
	}
	if rec.Peer != 0 {
		j.Peer = uidName(rec.Peer)
	}
	if rec.PeerTo != 0 {
		j.PeerTo = uidName(rec.PeerTo)
	}
	if !rec.Room.IsZero() {
		j.Room = rec.Room.String()
	}
	if !rec.Dropped.IsZero() {
		j.DroppedRoom = rec.Dropped.String()
	}
	if rec.Group != nil {
		for _, u := range rec.Group.Members() {
			j.Members = append(j.Members, uidName(u))
		}
	}
	if rec.By != 0 {
		j.By = uidName(rec.By)
	}
	if !rec.Msg.IsZero() {
		j.Msg, j.Text = rec.Msg.String(), messageText(rec.Msg)
	}
	if rec.Kind == KindStale { // a merge's event is for the page
		j.Event = rec.EventKind.String()
	}
	if rec.Kind == KindReceive {
		j.Late, j.Held = &rec.Late, rec.Held
	}
	if rec.Kind == KindClog || rec.Kind == KindUnclog {
		j.Clogged, j.Lasts = rec.ClogDir.String(), rec.Lasts.Seconds()
	}
	if rec.Kind == KindCrash {
		j.Forgotten = &rec.Lost
		for _, d := range rec.Losses {
			j.Lost = append(j.Lost, []string{d.Msg.String(), uidName(d.To)})
		}
	}
	j.OneWay, j.Incarnation = rec.OneWay, rec.Inc
	return appendJSONLine(b, j)
}

// appendJSONLine appends v as one line of JSON.
func appendJSONLine(b []byte, v any) []byte {
	line, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain structs are marshalled
	}
	return append(append(b, line...), '\n')
}

// sink is the one serialized, buffered writer that every line goes
// through. Whole batches of lines are written under the lock, so lines never
// interleave; a flusher writes the buffer out shortly after it becomes
// dirty, so a person watching sees lines as they happen while a busy run
// still makes few system calls.
type sink struct {
	mu     sync.Mutex
	w      *bufio.Writer
	err    error
	kick   chan struct{} // one slot: the buffer has something to flush
	broken chan struct{} // closed on the first write error
}

// lineBuffer keeps one user's lines of a lockstep phase until the
// coordinator writes them out, in uid order, so that the output does not
// depend on which user finished first.
// Its records wait there too, for the run's recording.
type lineBuffer struct {
	b      []byte
	recs   []Record
	online bool       // the user's first online record has been kept
	rec    *recording // where the records go once the phase is over
}

func (l *lineBuffer) full() bool { return l.rec.full() }

func (l *lineBuffer) Write(p []byte) { l.b = append(l.b, p...) }

// keep keeps the records the recording keeps: of a user's online
// records, the first (see recording.keep).
func (l *lineBuffer) keep(recs []Record) {
	for i := range recs {
		if recs[i].Kind == KindOnline {
			if l.online {
				continue
			}
			l.online = true
			first := true // of the lines the record makes, only the first: see recording.keep
			onlineRange(&recs[i], func(r *Record) {
				if first {
					l.recs, first = append(l.recs, *r), false
				}
			})
			continue
		}
		l.recs = append(l.recs, recs[i])
	}
}

// reset empties the buffer once the coordinator has written it out.
func (l *lineBuffer) reset() {
	l.b = l.b[:0]
	if cap(l.b) > keptRecords<<8 {
		l.b = nil // a large batch's lines are let go, as its records are
	}
	if cap(l.recs) > keptRecords {
		l.recs = nil
		return
	}
	clear(l.recs)
	l.recs = l.recs[:0]
}

// flushDelay is how long a line may wait in the buffer.
const flushDelay = 20 * time.Millisecond

func newSink(w io.Writer) *sink {
	return &sink{
		w:      bufio.NewWriterSize(w, 64<<10),
		kick:   make(chan struct{}, 1),
		broken: make(chan struct{}),
	}
}

// Write writes p whole, or drops it once the output has failed (a reader
// that went away, as in `chatsim | head`).
func (s *sink) Write(p []byte) {
	if len(p) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return
	}
	if _, err := s.w.Write(p); err != nil {
		s.fail(err)
		return
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Flush writes out the buffer now.
func (s *sink) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		if err := s.w.Flush(); err != nil {
			s.fail(err)
		}
	}
	return s.err
}

func (s *sink) fail(err error) {
	s.err = err
	close(s.broken)
}

// flushLoop flushes the buffer flushDelay after it becomes dirty, until
// stop is closed.
func (s *sink) flushLoop(stop <-chan struct{}) {
	t := time.NewTimer(flushDelay)
	t.Stop()
	for {
		select {
		case <-stop:
			t.Stop()
			return
		case <-s.kick:
			t.Reset(flushDelay)
			select {
			case <-stop:
				t.Stop()
				return
			case <-t.C:
			}
			s.Flush()
		}
	}
}

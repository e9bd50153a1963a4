package main

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"maps"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The page (-html) shows a run as a space-time diagram: a lane per user,
// time along the lanes, a mark for every log record and an arrow for every
// delivery, from the record of its sending to the record of its applying.
// It is drawn from the records the log is made of, and the summary is the
// report's own text, so the page says nothing the log and the summary do
// not. It is one file: the SVG is drawn here, and a little script adds
// hover, highlighting, filters and zoom; it loads nothing.

//go:embed page.html
var pageSource string

var pageTemplate = template.Must(template.New("page").Parse(pageSource))

// pageData is everything the template shows, in drawing units: the
// diagram's coordinates are pixels at zoom 1, and every element carries its
// time in seconds (data-t) so that the script can zoom.
type pageData struct {
	Title     string
	StartLine string
	Summary   string
	Converged bool
	Verdict   string
	Window    string // what the diagram covers, and what it leaves out
	Stats     []pageStat

	Width, Height int
	Left          float64 // x of time From
	Scale         float64 // pixels per second at zoom 1
	From          float64 // seconds
	LaneH         int
	Font          int
	Lanes         []pageLane
	Axis          []pageTick
	Bands         []pageBand
	Arrows        []pageArrow
	Wires         []pageArrow // lost and resent transmissions
	Marks         []pageMark
	Races         []pageRace
	MoreRaces     int
	RaceCounts    string
	Faulty        bool   // the legend shows the faults
	Stop          string // x of the stop, where the drain starts; empty outside the stretch
	StopT         string

	Charts []pageChart
}

// pageStat is one headline figure.
type pageStat struct{ Label, Value string }

// pageLane is one user's lane, from when it came online.
type pageLane struct {
	UID    int32
	Name   string
	Y      int
	X      string
	T      string
	Joiner bool
}

// pageTick is a label on the time axis.
type pageTick struct {
	X, T, Label string
}

// pageBand shades part of a lane: an outage, or a side of a split.
type pageBand struct {
	Class        string
	X, W, T1, T2 string
	Y, H         int
	Title        string
}

// pageArrow is one delivery.
type pageArrow struct {
	Class          string
	X1, X2, T1, T2 string
	Y1, Y2         int
	From, To       int32
	Room, Msg      string
	Title          string
}

// pageMark is one record on its user's lane.
type pageMark struct {
	Class, Shape string
	X, T         string
	Y            int
	U            int32
	Room, Msg    string
	Title        string
}

// pageRace is a race in the list under the diagram.
type pageRace struct {
	What, Line, Room, Msg string
}

// pageChart is a small chart over the run.
type pageChart struct {
	Title, Note string
	Bars        []pageBar
	Max         string
	From, To    string // what the first and the last bar stand for
}

// pageBar is one bar of a chart, its height in pixels of 100.
type pageBar struct {
	X, W, Y, H string
	Title      string
}

// maxRaces is how many races the list names.
const maxRaces = 200

// pageOf lays out the page of a run from its report, its summary text and
// its history; rend renders a record as the text log does.
func pageOf(rep *Report, summary, startLine string, h *timeline, rend renderer) *pageData {
	p := &pageData{
		Title:     fmt.Sprintf("chatsim: %d users, seed %d", rep.Users, rep.Seed),
		StartLine: strings.TrimSpace(startLine),
		Summary:   summary,
		Converged: rep.Converged,
	}
	p.Verdict = "converged"
	if !rep.Converged {
		p.Verdict = "NOT CONVERGED"
	}
	p.Stats = []pageStat{
		{"verdict", p.Verdict},
		{"actions", strconv.FormatInt(rep.Actions.Total, 10)},
		{"rooms created", strconv.FormatInt(rep.Rooms.Created, 10)},
		{"rooms replaced by a duplicate", strconv.FormatInt(rep.Rooms.Duplicates, 10)},
		{"messages sent", strconv.FormatInt(rep.Messages.Sent, 10)},
		{"deliveries", fmt.Sprintf("%d of %d owed", rep.Messages.Deliveries, rep.Messages.Expected)},
		{"late deliveries", strconv.FormatInt(rep.Messages.Late, 10)},
		{"held back at the end", strconv.FormatInt(rep.Messages.Held, 10)},
	}
	if n := rep.Network; n != nil && rep.Faults != nil {
		p.Stats = append(p.Stats, pageStat{"lost", strconv.FormatInt(n.Lost, 10)}, pageStat{"retransmitted", strconv.FormatInt(n.Retransmitted, 10)})
	}
	p.layout(rep, h, rend)
	p.Charts = chartsOf(rep)
	return p
}

// layout draws the diagram.
func (p *pageData) layout(rep *Report, h *timeline, rend renderer) {
	rend.json, rend.color = false, false
	users := rep.Online
	p.LaneH = max(10, min(56, 720/max(users, 1)))
	p.Font = min(12, p.LaneH-1)
	p.Left, p.From = 12, h.shown.From.Seconds()
	span := max((h.shown.To - h.shown.From).Seconds(), 1)
	p.Scale = 1100 / span
	top := 34
	p.Width = int(p.Left+span*p.Scale) + 40
	p.Height = top + users*p.LaneH + 10
	x := func(t time.Duration) string { return fmtCoord(p.Left + (t.Seconds()-p.From)*p.Scale) }
	sec := func(t time.Duration) string { return fmtCoord(t.Seconds()) }
	y := func(u int32) int { return top + (int(u)-1)*p.LaneH + p.LaneH/2 }

	drawn := 0
	for i := range h.recs {
		if h.first[i] && h.sentAt[i] >= 0 {
			drawn++
		}
	}
	p.Window = windowNote(rep, h, drawn)
	p.Faulty = rep.Faults != nil // every run has network figures; only a faulty one has faults to show
	if stop := time.Duration(rep.RunTime * float64(time.Second)); stop >= h.shown.From && stop < h.shown.To {
		p.Stop, p.StopT = x(stop), sec(stop)
	}

	// Lanes start where their users came online: a late joiner's lane
	// where it did, or at the end if that is after the stretch drawn.
	start := make([]time.Duration, users+1)
	joiners := int32(rep.Users - rep.Join)
	for u := int32(1); u <= int32(users); u++ {
		start[u] = h.shown.From
		l := pageLane{UID: u, Name: uidName(u), Y: y(u)}
		if u > joiners {
			l.Joiner = true
			switch at := h.settled[u]; {
			case at < 0 || at > h.shown.To:
				start[u] = h.shown.To
			case at > h.shown.From:
				start[u] = at
			}
		}
		l.X, l.T = x(start[u]), sec(start[u])
		p.Lanes = append(p.Lanes, l)
	}
	for _, t := range axisTicks(h.shown.From, h.shown.To) {
		p.Axis = append(p.Axis, pageTick{X: x(t), T: sec(t), Label: fmtDur(t)})
	}

	var line []byte
	lineOf := func(r *Record) string {
		line = rend.append(line[:0], r)
		return strings.TrimSuffix(string(line), "\n")
	}
	band := func(class string, u int32, from, to time.Duration, title string) {
		if int(u) > users {
			return
		}
		from = max(from, start[u]) // nothing before the stretch, or before the user came online
		if to <= from {
			return
		}
		p.Bands = append(p.Bands, pageBand{Class: class, X: x(from), W: fmtCoord((to - from).Seconds() * p.Scale),
			T1: sec(from), T2: sec(to), Y: y(u) - p.LaneH/2, H: p.LaneH, Title: title})
	}
	away := make(map[int32]time.Duration)
	down := make(map[int32]*Record)
	clogged := make(map[int32]*Record)
	races := make(map[string][]pageRace)
	var split *Record
	endSplit := func(to time.Duration) {
		if split == nil {
			return
		}
		sideOf := make(map[int32]int)
		for i, side := range split.Sides {
			for _, u := range side {
				if _, ok := sideOf[u]; ok {
					sideOf[u] = -1 // a bridge: on both sides
				} else {
					sideOf[u] = i
				}
			}
		}
		for u := int32(1); u <= int32(users); u++ {
			if s, ok := sideOf[u]; ok {
				class := "side" + strconv.Itoa(s%2)
				where := fmt.Sprintf("on side %d of %d", s+1, len(split.Sides))
				switch {
				case s < 0:
					class, where = "bridge", "on both sides"
				case split.OneWay && s == 0:
					where += ": its sends reach side 2, and nothing from side 2 reaches it"
				case split.OneWay:
					where += ": its sends do not reach side 1"
				}
				how := "split"
				if split.OneWay {
					how = "split one way"
				}
				band(class, u, split.T, to, fmt.Sprintf("the network %s at %s: %s is %s, until %s", how, fmtDur(split.T), uidName(u), where, fmtDur(to)))
			}
		}
		split = nil
	}
	for i := range h.recs {
		r := &h.recs[i]
		switch r.Kind {
		case KindSplit:
			endSplit(r.T)
			split = r
			continue
		case KindHeal:
			endSplit(r.T)
			continue
		case KindClog:
			clogged[r.By] = r
			continue
		case KindUnclog:
			from, title := r.T-r.Lasts, lineOf(r) // it began before the stretch drawn
			if c, ok := clogged[r.By]; ok {
				from, title = c.T, lineOf(c)
			}
			band("clog", r.By, from, r.T, title)
			delete(clogged, r.By)
			continue
		case KindCrash:
			down[r.User] = r
			delete(away, r.User) // what it knew of being offline died with it
		case KindRestart:
			if c, ok := down[r.User]; ok {
				band("down", r.User, c.T, r.T, lineOf(c))
				delete(down, r.User)
			}
		case KindOffline:
			away[r.User] = r.T
		case KindBack:
			from, ok := away[r.User]
			if !ok {
				from = r.T - r.Away // it went offline before the stretch drawn
			}
			band("away", r.User, from, r.T, lineOf(r))
			delete(away, r.User)
		}
		if r.User == 0 || int(r.User) > users {
			continue
		}
		title := lineOf(r)
		m := pageMark{X: x(r.T), T: sec(r.T), Y: y(r.User), U: r.User, Title: title}
		m.Class, m.Shape = markStyle(r)
		m.Room, m.Msg = roomsOf(r), msgOf(r)
		p.Marks = append(p.Marks, m)
		if what := raceOf(r); what != "" {
			races[what] = append(races[what], pageRace{What: what, Line: title, Room: m.Room, Msg: m.Msg})
		}
		if !h.first[i] || h.sentAt[i] < 0 {
			continue
		}
		s := &h.recs[h.sentAt[i]]
		p.Arrows = append(p.Arrows, pageArrow{
			Class: arrowClass(r), X1: x(s.T), X2: x(r.T), T1: sec(s.T), T2: sec(r.T),
			Y1: y(s.User), Y2: y(r.User), From: s.User, To: r.User, Room: m.Room, Msg: m.Msg,
			Title: fmt.Sprintf("%s → %s: %s", uidName(s.User), uidName(r.User), title),
		})
	}
	endSplit(h.shown.To)
	for _, u := range slices.Sorted(maps.Keys(clogged)) { // clogs that outlast the stretch drawn
		band("clog", u, clogged[u].T, h.shown.To, lineOf(clogged[u]))
	}
	p.listRaces(races)
	for _, w := range h.wire {
		if int(w.From) > users || int(w.To) > users {
			continue
		}
		p.Wires = append(p.Wires, wireArrow(w, x, sec, y))
	}
	for u := int32(1); u <= int32(users); u++ { // in uid order: the same page for the same run
		if from, ok := away[u]; ok {
			band("away", u, from, h.shown.To, uidName(u)+" is offline to the end of the diagram")
		}
		if c, ok := down[u]; ok {
			band("down", u, c.T, h.shown.To, lineOf(c))
		}
	}
}

// wireArrow draws a lost or resent transmission: a lost one half way to
// its recipient, ending in a cross; a resent one to where it arrives.
func wireArrow(w transmission, x, sec func(time.Duration) string, y func(int32) int) pageArrow {
	ev := w.Event
	a := pageArrow{Class: "w " + kindClass(ev.Kind), X1: x(w.Sent), T1: sec(w.Sent), Y1: y(w.From), From: w.From, To: w.To, Y2: y(w.To)}
	if !ev.Room.IsZero() {
		a.Room = ev.Room.String()
	}
	what := map[EventKind]string{CreateEvent: "create of chat ", CloseEvent: "close of chat ", StateEvent: "live rooms",
		StateRequestEvent: "request for the live rooms"}[ev.Kind] + a.Room
	if ev.Kind == MessageEvent {
		a.Msg = ev.ID().String()
		what = fmt.Sprintf("message %s in chat %s", a.Msg, a.Room)
	}
	verb := "sent"
	if w.Resent {
		verb = "resent"
	}
	end := w.Due
	if w.Lost {
		end = w.Sent + (w.Due-w.Sent)/2
		a.Y2 = (a.Y1 + a.Y2) / 2
		a.Class += " lost"
		a.Title = fmt.Sprintf("%s → %s: the %s, %s at %s, was lost", uidName(w.From), uidName(w.To), what, verb, fmtDur(w.Sent))
	} else {
		a.Class += " resent"
		a.Title = fmt.Sprintf("%s → %s: the %s, resent at %s, arrives at %s", uidName(w.From), uidName(w.To), what, fmtDur(w.Sent), fmtDur(w.Due))
	}
	a.X2, a.T2 = x(end), sec(end)
	return a
}

// windowNote says what the diagram covers, of drawn deliveries, and what
// it leaves out.
func windowNote(rep *Report, h *timeline, drawn int) string {
	note := fmt.Sprintf("The diagram shows %s to %s of the run: %s, %s drawn.",
		fmtDur(h.shown.From), fmtDur(h.shown.To), plural(int64(len(h.recs)), "log record"), plural(int64(drawn), "delivery"))
	left := max(0, rep.Traffic.Delivered-int64(drawn)) // of every event delivered in the run
	whole := h.shown.From == 0 && !h.capped && h.shown.To >= h.end
	switch {
	case h.shown.From > h.end:
		note = fmt.Sprintf("The window starts at %s, after the run's last log line at %s: there is nothing to draw.", fmtDur(h.shown.From), fmtDur(h.end))
	case h.capped:
		note = fmt.Sprintf("The diagram shows the first %s from %s, up to %s (%s in all): a page draws about %d deliveries and twice as many other records. The run's other %s, after it or sent before it, %s left out; -html-window picks another stretch, like -html-window %s:.",
			plural(int64(drawn), "delivery"), fmtDur(h.shown.From), fmtDur(h.shown.To), plural(int64(len(h.recs)), "log record"), maxDrawn,
			plural(left, "delivery"), isAre(left), fmtDur(h.shown.To))
	case !whole && left > 0:
		note += fmt.Sprintf(" The run's other %s, outside it or sent before it, %s left out.", plural(left, "delivery"), isAre(left))
	}
	if len(h.wire) > 0 {
		note += fmt.Sprintf(" Beside the deliveries: each user's first %d payload transmissions that were lost or resent, %d in all (acknowledgements and gap reports are not drawn; the summary counts them too).",
			h.perPort, len(h.wire))
	}
	return note + " The summary and the charts cover the whole run."
}

// raceNames are the races in the order the list shows them: the rarer
// and more telling first.
var raceNames = []struct{ one, many string }{
	{"merge", "merges"}, {"held back", "held back"}, {"held back, then late", "held back, then late"},
	{"late delivery", "late deliveries"}, {"outdated create ignored", "outdated creates ignored"},
	{"outdated close ignored", "outdated closes ignored"},
}

// listRaces lists up to maxRaces races, each kind in time order, and
// counts them all.
func (p *pageData) listRaces(races map[string][]pageRace) {
	var counts []string
	for _, name := range raceNames {
		rs := races[name.one]
		if len(rs) == 0 {
			continue
		}
		what := name.many
		if len(rs) == 1 {
			what = name.one
		}
		counts = append(counts, fmt.Sprintf("%d %s", len(rs), what))
		n := min(len(rs), maxRaces-len(p.Races))
		p.Races = append(p.Races, rs[:n]...)
		p.MoreRaces += len(rs) - n
	}
	p.RaceCounts = strings.Join(counts, ", ")
}

func isAre(n int64) string {
	if n == 1 {
		return "is"
	}
	return "are"
}

// roomsOf is the rooms a record concerns, space-separated.
func roomsOf(r *Record) string {
	switch {
	case !r.Dropped.IsZero():
		return r.Room.String() + " " + r.Dropped.String()
	case !r.Room.IsZero():
		return r.Room.String()
	}
	return ""
}

func msgOf(r *Record) string {
	if r.Msg.IsZero() {
		return ""
	}
	return r.Msg.String()
}

// axisTicks are round times between from and to, about ten of them.
func axisTicks(from, to time.Duration) []time.Duration {
	span := to - from
	step := time.Millisecond
	for i := 0; step*10 < span; i++ {
		if i%3 == 1 {
			step = step * 5 / 2 // 2 to 5
		} else {
			step *= 2 // 1 to 2, 5 to 10
		}
	}
	var ts []time.Duration
	for t := (from + step - 1) / step * step; t <= to; t += step {
		ts = append(ts, t)
	}
	return ts
}

func fmtCoord(v float64) string {
	return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64)
}

// chartsOf draws the charts over the whole run: live rooms and deliveries
// per tick from the report's samples, and in real time the latency
// distribution.
func chartsOf(rep *Report) []pageChart {
	charts := []pageChart{
		seriesChart("Live rooms", "mean over users' views", rep.liveSeries),
		seriesChart("Message deliveries per tick", "the drain included", rep.deliverSeries),
	}
	if rep.latency != nil && rep.latency.n > 0 {
		charts = append(charts, latencyChart(rep.latency))
	}
	return charts
}

func seriesChart(title, note string, xs []float64) pageChart {
	c := pageChart{Title: title, Note: note, From: "start", To: "end"}
	top := 0.0
	for _, x := range xs {
		top = max(top, x)
	}
	c.Max = fmtCount(top)
	w := 480 / float64(max(len(xs), 1))
	for i, v := range xs {
		hgt := 0.0
		if top > 0 {
			hgt = v / top * 100
		}
		c.Bars = append(c.Bars, pageBar{X: fmtCoord(float64(i) * w), W: fmtCoord(w * 0.9), Y: fmtCoord(100 - hgt), H: fmtCoord(hgt),
			Title: fmt.Sprintf("%.4g", v)})
	}
	return c
}

// latencyChart shows how many deliveries took each power of two of time,
// from send to apply.
func latencyChart(t *histTotal) pageChart {
	var counts [64]int64
	lo, hi := 64, 0
	for i, n := range t.counts {
		if n == 0 {
			continue
		}
		b := bits.Len64(uint64(histUpper(i)))
		counts[b] += n
		lo, hi = min(lo, b), max(hi, b)
	}
	c := pageChart{Title: "Latency, send to apply", Note: "deliveries by time taken, in powers of two",
		From: "≤ " + fmtDur(time.Duration(uint64(1)<<lo-1)), To: "≤ " + fmtDur(time.Duration(uint64(1)<<hi-1))}
	var top int64
	for b := lo; b <= hi; b++ {
		top = max(top, counts[b])
	}
	c.Max = strconv.FormatInt(top, 10)
	n := hi - lo + 1
	w := 480 / float64(n)
	for b := lo; b <= hi; b++ {
		hgt := float64(counts[b]) / float64(top) * 100
		upper := time.Duration(uint64(1)<<b - 1)
		c.Bars = append(c.Bars, pageBar{X: fmtCoord(float64(b-lo) * w), W: fmtCoord(w * 0.9), Y: fmtCoord(100 - hgt), H: fmtCoord(hgt),
			Title: fmt.Sprintf("up to %s: %d", fmtDur(upper), counts[b])})
	}
	return c
}

// writePage writes the page.
func writePage(w io.Writer, p *pageData) error {
	return pageTemplate.Execute(w, p)
}

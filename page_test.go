package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"html"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// runPage runs args in-process with -html and -shiviz into a temporary
// directory and returns stdout, the page and the ShiViz log.
func runPage(t *testing.T, args ...string) (out, page, shiviz string) {
	t.Helper()
	dir := t.TempDir()
	pagePath, logPath := filepath.Join(dir, "run.html"), filepath.Join(dir, "run.shiviz")
	out = runArgs(t, append(args, "-html", pagePath, "-shiviz", logPath)...)
	p, err := os.ReadFile(pagePath)
	if err != nil {
		t.Fatal(err)
	}
	l, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if files, _ := os.ReadDir(dir); len(files) != 2 {
		t.Errorf("%d files where the page and the log were written, want 2: no temporary file left", len(files))
	}
	return out, string(p), string(l)
}

// svgElement is an element of the diagram, as encoding/xml reads it.
type svgElement struct {
	name  string
	attrs map[string]string
}

func (e svgElement) class() string { return e.attrs["class"] }

func (e svgElement) is(prefix string) bool { return strings.HasPrefix(e.class()+" ", prefix+" ") }

func (e svgElement) float(t *testing.T, name string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(e.attrs[name], 64)
	if err != nil {
		t.Fatalf("%s %s=%q: %v", e.name, name, e.attrs[name], err)
	}
	return f
}

// diagram parses the page's diagram as XML and returns its elements.
func diagram(t *testing.T, page string) []svgElement {
	t.Helper()
	start := strings.Index(page, `<svg id="diagram"`)
	if start < 0 {
		t.Fatal("no diagram on the page")
	}
	end := strings.Index(page[start:], "</svg>")
	d := xml.NewDecoder(strings.NewReader(page[start : start+end+len("</svg>")]))
	d.Strict = true
	var els []svgElement
	for {
		tok, err := d.Token()
		if err != nil {
			if err.Error() == "EOF" {
				return els
			}
			t.Fatalf("the diagram is not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			e := svgElement{name: se.Name.Local, attrs: map[string]string{}}
			for _, a := range se.Attr {
				e.attrs[a.Name.Local] = a.Value
			}
			els = append(els, e)
		}
	}
}

// count returns how many elements have a class starting with prefix.
func count(els []svgElement, prefix string) int {
	n := 0
	for _, e := range els {
		if e.is(prefix) {
			n++
		}
	}
	return n
}

// jsonLog runs args with -json and returns its records and summary.
func jsonLog(t *testing.T, args ...string) (recs []map[string]any, summary Report) {
	t.Helper()
	out := runArgs(t, append(args, "-json")...)
	for line := range strings.Lines(out) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		switch m["kind"] {
		case "summary":
			if err := json.Unmarshal([]byte(line), &summary); err != nil {
				t.Fatal(err)
			}
		case "start", "final":
		default:
			recs = append(recs, m)
		}
	}
	return recs, summary
}

// pageRun is the run the new user tries: six users, a minute,
// delays that make races.
var pageRun = []string{"-fast", "-users", "6", "-duration", "60s", "-delay", "3s", "-seed", "2"}

// The page's diagram is valid XML with a lane per user, a mark per log
// record of a user and an arrow per event delivered, every arrow going
// forward in time, and the races the log tells of marked as races.
func TestPageDrawsTheRun(t *testing.T) {
	out, page, _ := runPage(t, pageRun...)
	els := diagram(t, page)
	recs, sum := jsonLog(t, pageRun...)
	users := 0
	kinds := map[string]int{}
	online := map[any]bool{}
	for _, r := range recs {
		if r["kind"] == "online" {
			if online[r["user"]] {
				continue // only a user's first is drawn: where its lane starts
			}
			online[r["user"]] = true
		}
		if r["user"] != nil {
			users++
			kinds[r["kind"].(string)]++
			if r["held"] == true {
				kinds["held"]++
			}
			if r["late"] == true {
				kinds["late"]++
			}
		}
	}
	if got := count(els, "lane"); got != 6 {
		t.Errorf("%d lanes, want 6", got)
	}
	if got := count(els, "m"); got != users {
		t.Errorf("%d marks, want one per record of a user (of online records, each user's first): %d", got, users)
	}
	if got, want := count(els, "a"), int(sum.Traffic.Delivered); got != want {
		t.Errorf("%d arrows, want one per event delivered: %d", got, want)
	}
	for _, e := range els {
		if e.is("a") && e.float(t, "data-t1") > e.float(t, "data-t2") {
			t.Errorf("an arrow goes back in time: %v", e.attrs)
		}
	}
	for kind, class := range map[string]string{"merge": "m k-merge", "stale": "m k-stale", "held": "m k-receive c-message race held", "late": "m k-receive c-message race late"} {
		got := count(els, class)
		want := kinds[kind]
		if kind == "late" {
			want -= countBoth(recs) // held and late is marked as held
		}
		if got != want || want == 0 && kind != "held" {
			t.Errorf("%d %s marks, want %d (and some)", got, kind, want)
		}
	}
	// The summary on the page is the text summary, word for word, and the
	// verdict stands out.
	m := regexp.MustCompile(`(?s)<pre id="summary">(.*?)</pre>`).FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no summary on the page")
	}
	_, text, _ := strings.Cut(out, "\nsummary\n")
	if got := html.UnescapeString(m[1]); got != "summary\n"+text {
		t.Errorf("the page's summary differs from the text summary:\n%s", firstDiff("summary\n"+text, got))
	}
	if !strings.Contains(page, `<div id="verdict" class="verdict ok">converged</div>`) {
		t.Error("no verdict at the top of the page")
	}
	if !strings.Contains(page, "87 of 87 owed") {
		t.Error("the headline figures lack the deliveries")
	}
}

func countBoth(recs []map[string]any) int {
	n := 0
	for _, r := range recs {
		if r["held"] == true && r["late"] == true {
			n++
		}
	}
	return n
}

// The page is one file: nothing in it loads anything from elsewhere.
func TestPageIsSelfContained(t *testing.T) {
	_, page, _ := runPage(t, "-fast", "-users", "4", "-duration", "20s", "-seed", "3")
	for _, re := range []string{
		`(?i)\b(src|href)\s*=\s*["']?\s*(https?:|//)`,
		`(?i)url\(\s*["']?(?:[^#"'\s)])`,
		`(?i)@import`,
		`(?i)<link\b`,
		`(?i)<(script|img|iframe)\b[^>]*\bsrc=`,
	} {
		if loc := regexp.MustCompile(re).FindStringIndex(page); loc != nil {
			t.Errorf("the page refers outside itself: %q", page[max(0, loc[0]-40):min(len(page), loc[1]+40)])
		}
	}
}

// With faults, late joiners' lanes start where they came online, outages
// and splits are shaded, and lost and resent transmissions are drawn apart
// from the deliveries.
func TestPageShowsFaults(t *testing.T) {
	args := []string{"-fast", "-users", "8", "-duration", "60s", "-seed", "3", "-loss", "0.2", "-partition", "10s", "-offline", "10s", "-clog", "10s", "-join", "2"}
	_, page, _ := runPage(t, args...)
	els := diagram(t, page)
	recs, _ := jsonLog(t, args...)
	for _, class := range []string{"lane joiner", "band away", "band side0", "band side1", "band clog", "w c-create lost", "w c-message resent"} {
		if count(els, class) == 0 {
			t.Errorf("no %q on the page", class)
		}
	}
	// Which way a one-way split cuts, and what a clog holds, on hovering.
	for _, want := range []string{"split one way at", ": its sends reach side 2, and nothing from side 2 reaches it", ": its sends do not reach side 1", " are clogged for "} {
		if !strings.Contains(page, want) {
			t.Errorf("the page never says %q", want)
		}
	}
	joiners := 0
	for _, e := range els {
		if e.is("lane joiner") {
			joiners++
			if e.float(t, "data-t1") <= 0 && e.attrs["data-u"] == "8" {
				t.Errorf("user_8's lane starts at 0: %v", e.attrs)
			}
		}
	}
	if joiners != 2 {
		t.Errorf("%d late joiners' lanes, want 2", joiners)
	}
	// An arrow for every event applied: each record of applying. A merge
	// followed by a close of its winner from the same sender at the same
	// time is one delivery (the close brought the merge) or two (the
	// create, then the close): the log alone cannot tell, so each such
	// pair may count once or twice.
	applied, either := 0, 0
	for i, r := range recs {
		switch r["kind"] {
		case "join", "see", "receive", "close_seen", "stale":
			applied++
		case "merge":
			if n := recs[min(i+1, len(recs)-1)]; n["kind"] == "close_seen" && n["user"] == r["user"] && n["room"] == r["room"] && n["t"] == r["t"] && n["by"] == r["by"] {
				either++
			} else {
				applied++
			}
		}
	}
	if got := count(els, "a"); got < applied || got > applied+either {
		t.Errorf("%d arrows, want one per event applied: %d to %d", got, applied, applied+either)
	}
}

// Past maxDrawn deliveries the page draws a window, says what it left
// out, and stays small; -html-window draws the stretch asked for.
func TestPageWindow(t *testing.T) {
	t.Run("cap", func(t *testing.T) {
		_, page, shiviz := runPage(t, "-fast", "-quiet", "-users", "60", "-duration", "30s", "-seed", "1")
		checkShiViz(t, shiviz)
		els := diagram(t, page)
		if got := count(els, "a"); got > maxDrawn || got < maxDrawn/2 {
			t.Errorf("%d arrows, want at most %d and near it", got, maxDrawn)
		}
		if !regexp.MustCompile(`The run&#39;s other [0-9]+ deliveries, after it or sent before it, are left out`).MatchString(page) {
			t.Error("the page does not say what it left out")
		}
		if len(page) > 10<<20 {
			t.Errorf("the page is %d bytes", len(page))
		}
	})
	t.Run("window at scale", func(t *testing.T) {
		// Deliveries of what was sent before the window do not crowd out
		// what the window can draw.
		_, page, _ := runPage(t, "-fast", "-quiet", "-users", "60", "-duration", "40s", "-seed", "1", "-html-window", "20s:40s")
		els := diagram(t, page)
		if got := count(els, "a"); got < maxDrawn*95/100 {
			t.Errorf("%d arrows in the window, want nearly the %d a page draws", got, maxDrawn)
		}
		for _, e := range els {
			if e.is("a") && e.float(t, "data-t1") < 20 {
				t.Fatalf("an arrow from before the window: %v", e.attrs)
			}
		}
	})
	t.Run("past the end", func(t *testing.T) {
		_, page, _ := runPage(t, "-fast", "-users", "4", "-duration", "5s", "-seed", "1", "-html-window", "10s:20s")
		if !strings.Contains(page, "after the run&#39;s last log line") {
			t.Error("the page does not say the window is past the run")
		}
	})
	t.Run("window", func(t *testing.T) {
		_, page, shiviz := runPage(t, append(pageRun, "-html-window", "20s:40s")...)
		els := diagram(t, page)
		if count(els, "m") == 0 {
			t.Fatal("no marks")
		}
		for _, e := range els {
			if e.is("m") {
				if tm := e.float(t, "data-t"); tm < 20 || tm >= 40 {
					t.Errorf("a mark at %gs, outside 20s:40s", tm)
				}
			}
		}
		if !strings.Contains(page, "The diagram shows 20s to 40s of the run") {
			t.Error("the page does not say which stretch it shows")
		}
		if strings.Contains(shiviz, "[00:00:19") || strings.Contains(shiviz, "[00:00:40") {
			t.Error("the ShiViz log has events outside 20s:40s")
		}
	})
}

// With -fast the page and the ShiViz log are functions of the flags and
// the seed, like the output, whatever the output mode.
func TestPageReplays(t *testing.T) {
	for name, args := range map[string][]string{
		"faults": append([]string{"-dup", "0.1"}, faultArgs...),
		// Ten users: news of more than eight comes as one line.
		"ten users": {"-fast", "-users", "10", "-duration", "30s", "-seed", "2", "-delay", "2s"},
		// Capped: the count of what is left out does not depend on the mode.
		"capped": {"-fast", "-users", "20", "-duration", "10m", "-seed", "1"},
	} {
		t.Run(name, func(t *testing.T) {
			_, page1, log1 := runPage(t, args...)
			for _, mode := range [][]string{{"-quiet"}, {"-json"}, {"-follow", "user_2"}, {"-json", "-follow", "user_1,user_3"}, {"-color", "always"}} {
				_, page2, log2 := runPage(t, append(append([]string{}, args...), mode...)...)
				if page1 != page2 {
					t.Errorf("the page differs with %v:\n%s", mode, firstDiff(page1, page2))
				}
				if log1 != log2 {
					t.Errorf("the ShiViz log differs with %v:\n%s", mode, firstDiff(log1, log2))
				}
			}
		})
	}
}

// A real-time run's page charts the latency too.
func TestPageRealTime(t *testing.T) {
	_, page, shiviz := runPage(t, "-users", "4", "-tick", "20ms", "-duration", "400ms", "-quiet")
	if !strings.Contains(page, "Latency, send to apply") {
		t.Error("no latency chart")
	}
	if count(diagram(t, page), "a") == 0 {
		t.Error("no deliveries drawn")
	}
	checkShiViz(t, shiviz)
}

// A small run's page is checked in: go test -run Golden -update rewrites
// it after a deliberate change.
func TestGoldenPage(t *testing.T) {
	_, page, _ := runPage(t, "-fast", "-users", "4", "-duration", "20s", "-seed", "7", "-delay", "2s")
	matchGolden(t, "page.golden.html", page, "the page")
}

// The ShiViz log follows ShiViz's rules, with a delivery drawn for events
// applied, and an event per log record of a user.
func TestShiViz(t *testing.T) {
	for name, args := range map[string][]string{"delay": pageRun, "faults": faultArgs} {
		t.Run(name, func(t *testing.T) {
			_, page, shiviz := runPage(t, args...)
			events, merges := checkShiViz(t, shiviz)
			els := diagram(t, page)
			if marks := count(els, "m"); events != marks {
				t.Errorf("%d events, want one per mark on the page: %d", events, marks)
			}
			if arrows := count(els, "a"); merges == 0 || merges > arrows {
				t.Errorf("%d events merge a sender's clock, want some and at most the %d deliveries", merges, arrows)
			}
		})
	}
}

// checkShiViz checks a ShiViz log against the rules ShiViz applies: the
// first line is the parser, the second the (empty) delimiter; each host's
// own entry rises by exactly one per event, from 1; and every clock is the
// merge of the host's previous clock and the clock of one earlier event
// of the host it received from. It returns the events and how many of
// them received.
func checkShiViz(t *testing.T, log string) (events, merges int) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(log, "\n"), "\n")
	if len(lines) < 2 || lines[0] != shivizRegexp || lines[1] != "" {
		t.Fatalf("the log does not start with the parser and an empty line: %q", lines[:min(2, len(lines))])
	}
	parser := regexp.MustCompile(`^(.*)\n(\S*) (\{.*\})$`)
	type vc map[string]uint64
	prev := map[string]vc{}
	byHost := map[string][]vc{} // byHost[h][i] is the clock of h's event i+1
	body := lines[2:]
	if len(body)%2 != 0 {
		t.Fatalf("%d lines after the header: events come in pairs of lines", len(body))
	}
	for i := 0; i < len(body); i += 2 {
		m := parser.FindStringSubmatch(body[i] + "\n" + body[i+1])
		if m == nil {
			t.Fatalf("line %d does not parse: %q", i+3, body[i+1])
		}
		host := m[2]
		var c vc
		if err := json.Unmarshal([]byte(m[3]), &c); err != nil {
			t.Fatalf("line %d: %v", i+4, err)
		}
		if !strings.Contains(m[1], " "+host+"] ") {
			t.Errorf("line %d: the event is not %s's: %q", i+3, host, m[1])
		}
		p := prev[host]
		if c[host] != p[host]+1 {
			t.Fatalf("line %d: %s's own entry is %d after %d", i+4, host, c[host], p[host])
		}
		var rose []string
		for h, x := range c {
			switch {
			case h == host:
			case x < p[h]:
				t.Fatalf("line %d: entry %s fell from %d to %d", i+4, h, p[h], x)
			case x > p[h]:
				rose = append(rose, h)
			}
		}
		for h := range p {
			if _, ok := c[h]; !ok {
				t.Fatalf("line %d: entry %s dropped", i+4, h)
			}
		}
		if len(rose) > 0 {
			merges++
			ok := false
			for _, s := range rose { // one of them is the sender
				if int(c[s]) > len(byHost[s]) {
					continue
				}
				sent := byHost[s][c[s]-1]
				if merged(p, sent, host, c) {
					ok = true
					break
				}
			}
			if !ok {
				t.Fatalf("line %d: %v is no merge of %s's previous clock %v and a sender's", i+4, c, host, p)
			}
		}
		prev[host] = c
		byHost[host] = append(byHost[host], c)
		events++
	}
	return events, merges
}

// merged reports whether c is the merge of prev and sent, with host's own
// entry one up.
func merged[M ~map[string]uint64](prev, sent M, host string, c M) bool {
	if sent[host] > prev[host] {
		return false
	}
	keys := map[string]bool{}
	for _, m := range []M{prev, sent, c} {
		for k := range m {
			keys[k] = true
		}
	}
	for k := range keys {
		want := max(prev[k], sent[k])
		if k == host {
			want = prev[k] + 1
		}
		if c[k] != want {
			return false
		}
	}
	return true
}

// A path that cannot be written fails before the run, naming the flag.
func TestPageUnwritable(t *testing.T) {
	dir := t.TempDir()
	for _, flagName := range []string{"-html", "-shiviz"} {
		for path, want := range map[string]string{
			filepath.Join(dir, "no", "such", "dir", "x"): ": cannot write ",
			dir:                             ": " + dir + " is a directory",
			dir + "/":                       " is a directory",
			filepath.Join(dir, "new") + "/": " names a directory",
		} {
			var out, errs bytes.Buffer
			code := run([]string{"-fast", "-duration", "5s", flagName, path}, &out, &errs)
			if code != 2 || !strings.HasPrefix(errs.String(), "chatsim: "+flagName) || !strings.Contains(errs.String(), want) || strings.Count(errs.String(), "\n") != 1 {
				t.Errorf("%s %s: exit %d, stderr %q", flagName, path, code, errs.String())
			}
			if out.Len() > 0 {
				t.Errorf("%s %s ran anyway: %q", flagName, path, out.String())
			}
		}
	}
	if files, _ := os.ReadDir(dir); len(files) != 0 {
		t.Errorf("%d files left behind", len(files))
	}
}

// A recording links each record of applying an event to the record of its
// sending; one delivery that logs two records (a merge, then the close
// that brought it) is one arrow, to the first; a merge tells by Won
// whether the event applied named the room kept or the one dropped.
func TestRecordingLinksDeliveries(t *testing.T) {
	a, b := Stamp{1, 1}, Stamp{2, 5}
	s := time.Second
	recs := []Record{
		{T: 0, User: 1, Kind: KindCreate, Room: a},
		{T: 0, User: 5, Kind: KindCreate, Room: b},
		{T: s, User: 2, Kind: KindSee, Room: a, By: 1},
		{T: s, User: 3, Kind: KindClose, Room: b},
		{T: 2 * s, User: 2, Kind: KindMerge, Room: b, Dropped: a, By: 3, EventKind: CloseEvent, Won: true},
		{T: 2 * s, User: 2, Kind: KindCloseSeen, Room: b, By: 3},
		{T: 2 * s, User: 4, Kind: KindMerge, Room: a, Dropped: b, By: 5, EventKind: CreateEvent},
		{T: 3 * s, User: 4, Kind: KindSee, Room: Stamp{9, 9}, By: 9}, // its create is not in the recording
		{T: 4 * s, User: 4, Kind: KindCloseSeen, Room: b, By: 3},
	}
	// The cap counts the deliveries whose sending was kept when they came:
	// here the merge and the close seen at 2s, then the close seen at 4s.
	tr := newRecording(timeWindow{}, 2, 9, false)
	// One user's records come in order, but users' in any order: the
	// creates come last, and are kept, as they are before the cut.
	tr.keep(recs[2:4])
	tr.keep(recs[4:])
	tr.keep(recs[:2])
	h := tr.history(5)
	type link struct {
		sentAt int
		first  bool
	}
	want := []link{{-1, false}, {-1, false}, {0, true}, {-1, false}, {3, true}, {3, false}, {1, true}, {-1, true}}
	if len(h.recs) != len(want) {
		t.Fatalf("%d records kept, want %d: the third drawable delivery, at 4s, is past the cap", len(h.recs), len(want))
	}
	for i, w := range want {
		if got := (link{h.sentAt[i], h.first[i]}); got != w {
			t.Errorf("record %d (%v of %v): linked %+v, want %+v", i, h.recs[i].Kind, h.recs[i].Room, got, w)
		}
	}
	if !h.capped || h.shown.To != 4*s || !tr.full() {
		t.Errorf("capped %v, shown up to %v, full %v; want capped, up to 4s, full", h.capped, h.shown.To, tr.full())
	}

	// In lockstep, sendings come first: a delivery whose sending was not
	// kept was sent before the window, and is left out.
	tr = newRecording(timeWindow{From: s}, 5, 9, true)
	tr.keep(recs)
	h = tr.history(9)
	for _, r := range h.recs {
		if r.T < s || r.Room == (Stamp{9, 9}) || r.Kind == KindSee && r.Room == a {
			t.Errorf("kept %v of %v at %v: outside the window or sent before it", r.Kind, r.Room, r.T)
		}
	}
	if len(h.recs) != 4 { // the close at 1s, the merge and close seen at 2s, the close seen at 4s
		t.Errorf("kept %d records, want 4", len(h.recs))
	}
}

// A run without faults has no faults in its legend or its figures: every
// run has network figures now, but only a faulty one has faults to show.
func TestPageWithoutFaultsShowsNone(t *testing.T) {
	_, page, _ := runPage(t, "-fast", "-users", "4", "-duration", "20s", "-seed", "7")
	for _, not := range []string{"transmission lost", "sides of a split", "clogged", ">lost<", ">retransmitted<"} {
		if strings.Contains(page, not) {
			t.Errorf("a run without faults shows %q", not)
		}
	}
}

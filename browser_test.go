//go:build browser

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"html"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The browser test (make browser-test) opens the page of a real run in
// headless Chromium. A harness page loads it in a frame, works it as a
// person would (hover, focus, click, filter, hide a lane, zoom, pick a
// race from the list) and writes what it saw into its own DOM, which
// Chromium dumps once scripts have run. Any console message fails the
// test: the page logs nothing when all is well. A screenshot of the page
// goes to $CHATSIM_SCREENSHOT (page.png by default).

// harness drives the page in the frame and reports in #result.
const harness = `<!DOCTYPE html>
<html><body><pre id="result">no result</pre>
<iframe id="f" src="run.html" width="1400" height="900"></iframe>
<script>
"use strict";
document.getElementById("f").addEventListener("load", () => {
  const r = {};
  try {
    const w = document.getElementById("f").contentWindow, d = w.document;
    const svg = d.getElementById("diagram");
    r.ready = d.body.dataset.ready;
    r.lanes = svg.querySelectorAll(".lane").length;
    r.marks = svg.querySelectorAll(".m").length;
    r.arrows = svg.querySelectorAll(".a").length;
    r.races = svg.querySelectorAll(".m.race").length;
    r.titlesLeft = svg.querySelectorAll(".m > title, .a > title").length;
    const tip = d.getElementById("tip");
    const mark = svg.querySelector(".m.k-receive");
    mark.dispatchEvent(new w.MouseEvent("mouseover", { bubbles: true, clientX: 100, clientY: 100 }));
    r.hoverShown = w.getComputedStyle(tip).display;
    r.hoverText = tip.textContent;
    r.markTip = mark.dataset.tip;
    svg.dispatchEvent(new w.MouseEvent("mouseleave"));
    r.hoverHidden = w.getComputedStyle(tip).display;
    const other = svg.querySelector(".m.k-create");
    other.focus();
    r.focusText = tip.textContent;
    r.focusTip = other.dataset.tip;

    const send = svg.querySelector(".m.k-message");
    send.dispatchEvent(new w.MouseEvent("click", { bubbles: true }));
    r.msgSelected = svg.querySelectorAll(".hl").length;
    r.msgArrows = svg.querySelectorAll(".a.hl").length;
    r.msgInfo = d.getElementById("selection").textContent;
    r.msgDim = w.getComputedStyle(svg.querySelector(".m:not(.hl)")).opacity;
    other.dispatchEvent(new w.MouseEvent("click", { bubbles: true }));
    r.roomSelected = svg.querySelectorAll(".hl").length;
    r.roomInfo = d.getElementById("selection").textContent;
    d.dispatchEvent(new w.KeyboardEvent("keydown", { key: "Escape" }));
    r.cleared = svg.querySelectorAll(".hl").length;

    const kind = d.querySelector('[data-kind="c-message"]');
    kind.click();
    r.messagesHidden = w.getComputedStyle(svg.querySelector(".m.c-message")).display;
    r.createsShown = w.getComputedStyle(svg.querySelector(".m.c-create")).display;
    kind.click();
    const lane = d.querySelector('[data-lane="2"]');
    lane.click();
    r.laneHidden = w.getComputedStyle(svg.querySelector('.m[data-u="2"]')).display;
    r.arrowToLaneHidden = w.getComputedStyle(svg.querySelector('.a[data-to="2"]')).display;
    r.otherLaneShown = w.getComputedStyle(svg.querySelector('.m[data-u="3"]')).display;
    lane.click();
    d.getElementById("racesonly").click();
    r.racesOnly = svg.classList.contains("races-only");
    d.getElementById("racesonly").click();

    const before = +svg.getAttribute("width"), x0 = +mark.getAttribute("x");
    r.axisBefore = svg.querySelectorAll("#axis text").length;
    d.getElementById("zoomin").click();
    d.getElementById("zoomin").click();
    r.zoomWidth = +svg.getAttribute("width") / before;
    r.zoomX = (+mark.getAttribute("x") - +svg.dataset.left) / (x0 - +svg.dataset.left);
    r.zoomLabel = d.getElementById("zoomlevel").textContent;
    r.axisAfter = svg.querySelectorAll("#axis text").length;
    r.axisLast = svg.querySelector("#axis text:last-of-type").textContent;
    d.getElementById("zoomfit").click();
    r.fitWidth = +svg.getAttribute("width");

    const race = d.querySelector("#races button");
    race.click();
    r.raceSelected = svg.querySelectorAll(".hl").length;
    r.raceInfo = d.getElementById("selection").textContent;
    r.charts = d.querySelectorAll(".chart").length;
    r.summary = d.getElementById("summary").textContent;
  } catch (e) {
    r.error = String(e && e.stack || e);
  }
  document.getElementById("result").textContent = JSON.stringify(r);
});
</script></body></html>
`

// browserResult is what the harness saw.
type browserResult struct {
	Ready                                   string
	Lanes, Marks, Arrows, Races, TitlesLeft int
	HoverShown, HoverText, MarkTip          string
	HoverHidden, FocusText, FocusTip        string
	MsgSelected, MsgArrows                  int
	MsgInfo, MsgDim                         string
	RoomSelected                            int
	RoomInfo                                string
	Cleared                                 int
	MessagesHidden, CreatesShown            string
	LaneHidden, ArrowToLaneHidden           string
	OtherLaneShown                          string
	RacesOnly                               bool
	ZoomWidth, ZoomX                        float64
	ZoomLabel                               string
	AxisBefore, AxisAfter                   int
	AxisLast                                string
	FitWidth                                float64
	RaceSelected                            int
	RaceInfo                                string
	Charts                                  int
	Summary                                 string
	Error                                   string
}

// chromium runs headless Chromium with the flags a closed machine needs,
// and returns its stdout and stderr.
func chromium(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("no chromium on PATH: make browser-test installs it")
	}
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--enable-logging=stderr", "--v=0"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var out, errs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errs
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, errs.String())
	}
	return out.String(), errs.String()
}

// consoleLines are the console messages in Chromium's log.
var consoleLines = regexp.MustCompile(`(?m)^.*:CONSOLE[:(].*$`)

func TestBrowser(t *testing.T) {
	dir := t.TempDir()
	page := filepath.Join(dir, "run.html")
	out := runArgs(t, "-fast", "-users", "6", "-duration", "60s", "-delay", "3s", "-seed", "2", "-html", page)
	if err := os.WriteFile(filepath.Join(dir, "check.html"), []byte(harness), 0o644); err != nil {
		t.Fatal(err)
	}
	dom, log := chromium(t, "--allow-file-access-from-files", "--virtual-time-budget=10000", "--window-size=1400,1000",
		"--dump-dom", "file://"+filepath.Join(dir, "check.html"))
	for _, line := range consoleLines.FindAllString(log, -1) {
		t.Errorf("console: %s", line)
	}
	m := regexp.MustCompile(`(?s)<pre id="result">(.*?)</pre>`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("no result in the harness:\n%s", dom)
	}
	var r browserResult
	if err := json.Unmarshal([]byte(html.UnescapeString(m[1])), &r); err != nil {
		t.Fatalf("%v: %s", err, m[1])
	}
	if r.Error != "" {
		t.Fatalf("the harness failed: %s", r.Error)
	}
	t.Logf("%+v", r)
	checks := []struct {
		what string
		ok   bool
	}{
		{"the page's script ran to its end", r.Ready == "true"},
		{"six lanes", r.Lanes == 6},
		{"marks, arrows and races drawn", r.Marks > 100 && r.Arrows > 100 && r.Races > 0},
		{"titles became tips", r.TitlesLeft == 0 && r.MarkTip != ""},
		{"hover shows the mark's log line", r.HoverShown == "block" && r.HoverText == r.MarkTip && strings.Contains(r.HoverText, "I received")},
		{"leaving hides the tip", r.HoverHidden == "none"},
		{"focus shows the log line", r.FocusText == r.FocusTip && r.FocusText != ""},
		{"a click on a message highlights its send, deliveries and arrows", r.MsgSelected >= 3 && r.MsgArrows >= 1 && strings.HasPrefix(r.MsgInfo, "message ")},
		{"everything else is dimmed", r.MsgDim != "1"},
		{"a click on a create highlights its room", r.RoomSelected > r.MsgArrows && strings.HasPrefix(r.RoomInfo, "chat ")},
		{"Escape clears", r.Cleared == 0},
		{"a kind can be hidden", r.MessagesHidden == "none" && r.CreatesShown != "none"},
		{"a lane can be hidden, with its arrows", r.LaneHidden == "none" && r.ArrowToLaneHidden == "none" && r.OtherLaneShown != "none"},
		{"races only", r.RacesOnly},
		{"zoom stretches time", r.ZoomWidth > 2 && r.ZoomX > 2.2 && r.ZoomX < 2.3 && r.ZoomLabel == "225%"},
		{"the time axis is drawn anew for the zoom", r.AxisAfter > r.AxisBefore && strings.HasSuffix(r.AxisLast, "s")},
		{"fit fits", r.FitWidth <= 1400},
		{"the race list selects", r.RaceSelected > 0 && r.RaceInfo != ""},
		{"charts", r.Charts >= 2},
		{"the summary", strings.Contains(out, strings.TrimPrefix(r.Summary, "summary\n")) && strings.Contains(r.Summary, "verdict     converged")},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("in the browser: %s: no", c.what)
		}
	}
	shot := os.Getenv("CHATSIM_SCREENSHOT")
	if shot == "" {
		shot = "page.png"
	}
	if abs, err := filepath.Abs(shot); err == nil {
		shot = abs
	}
	_, log = chromium(t, "--window-size=1400,1000", "--hide-scrollbars", "--screenshot="+shot, "file://"+page)
	for _, line := range consoleLines.FindAllString(log, -1) {
		t.Errorf("console: %s", line)
	}
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 10000 {
		t.Errorf("no screenshot at %s: %v", shot, err)
	}
}

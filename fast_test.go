package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
	"weak"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// runArgs runs the program as main would and returns its stdout.
func runArgs(t *testing.T, args ...string) string {
	t.Helper()
	var out, errs bytes.Buffer
	if code := run(args, &out, &errs); code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, errs.String())
	}
	return out.String()
}

// goldenRuns are small fast runs, with injected delay, whose whole output
// is checked in under testdata/.
var goldenRuns = []struct {
	file string
	args []string
}{
	{"fast.golden", []string{"-fast", "-users", "5", "-duration", "60s", "-seed", "7", "-delay", "3s"}},
	{"fast.jsonl.golden", []string{"-fast", "-json", "-users", "5", "-duration", "60s", "-seed", "7", "-delay", "3s"}},
}

// A fast run is a function of its flags and seed: it matches the output
// checked in under testdata/ byte for byte. go test -run Golden -update
// rewrites the files after a deliberate change.
func TestGolden(t *testing.T) {
	for _, g := range goldenRuns {
		got := runArgs(t, g.args...)
		path := filepath.Join("testdata", g.file)
		if *update {
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go test -run Golden -update writes it)", err)
		}
		if got != string(want) {
			t.Errorf("%v differs from %s:\n%s", g.args, path, firstDiff(string(want), got))
		}
	}
}

func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := range min(len(w), len(g)) {
		if w[i] != g[i] {
			return fmt.Sprintf("line %d\nwant %s\ngot  %s", i+1, w[i], g[i])
		}
	}
	return fmt.Sprintf("want %d lines, got %d", len(w), len(g))
}

// The same flags and seed give the same bytes whatever the scheduler does:
// with one processor or several, and run after run.
func TestFastIsDeterministic(t *testing.T) {
	args := []string{"-fast", "-users", "12", "-duration", "120s", "-seed", "11", "-delay", "4s", "-chance", "0.6"}
	jsonArgs := append([]string{"-json"}, args...)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	var texts, jsons []string
	for _, procs := range []int{1, 2, 4, 1} {
		runtime.GOMAXPROCS(procs)
		texts = append(texts, runArgs(t, args...))
		jsons = append(jsons, runArgs(t, jsonArgs...))
	}
	for i := 1; i < len(texts); i++ {
		if texts[i] != texts[0] {
			t.Errorf("text run %d differs: %s", i, firstDiff(texts[0], texts[i]))
		}
		if jsons[i] != jsons[0] {
			t.Errorf("json run %d differs: %s", i, firstDiff(jsons[0], jsons[i]))
		}
	}
	// A different seed is a different run.
	if other := runArgs(t, append(args, "-seed", "12")...); other == texts[0] {
		t.Error("seeds 11 and 12 gave the same output")
	}
}

// Over 200 seeds of fast runs with injected delay, every run converges
// with exact message accounting and nothing held back.
func TestSeedSweep(t *testing.T) {
	var dups, late int64
	for seed := uint64(1); seed <= 200; seed++ {
		cfg := Config{
			Users: 3 + int(seed%10), Seed: seed, Tick: time.Second, Chance: 0.5, Quiet: true, Fast: true,
			Duration: 80 * time.Second, Delay: time.Duration(1+seed%6) * time.Second,
		}
		rep, _ := simulate(t, context.Background(), cfg)
		if !rep.Converged || rep.Messages.Deliveries != rep.Messages.Expected || rep.Messages.Held != 0 {
			t.Fatalf("seed %d: %v %+v", seed, rep.Problems, rep.Messages)
		}
		dups += rep.Rooms.Duplicates
		late += rep.Messages.Late
	}
	if dups == 0 || late == 0 {
		t.Errorf("the sweep did not exercise the races: %d duplicates, %d late", dups, late)
	}
}

// In lockstep the stable epoch the views are told is exact, and it must
// be: told one tick early, some runs reclaim a tombstone before an event it
// outlived arrives, and the verdict catches it. Tombstones live exactly as
// long as they must: 2Δ ticks after their close is applied.
func TestFastEarlyStableBreaks(t *testing.T) {
	for seed := uint64(1); seed <= 100; seed++ {
		cfg := Config{Users: 3 + int(seed%6), Seed: seed, Tick: time.Second, Chance: 0.7, Quiet: true, Fast: true,
			Duration: 80 * time.Second, Delay: time.Duration(seed%4) * time.Second}
		var out bytes.Buffer
		s := newSim(cfg, &out, &out)
		s.stableSkew = 1
		if r := s.run(context.Background()); !r.Converged {
			t.Logf("seed %d broke with a stable epoch one tick early: %v", seed, r.Problems)
			return
		}
	}
	t.Fatal("no run broke with a stable epoch one tick early")
}

// Fast mode reclaims what it keeps: after a long run, once everything is
// stable, every view keeps only its live rooms.
func TestFastStateStaysBounded(t *testing.T) {
	cfg := Config{Users: 20, Seed: 5, Tick: time.Second, Chance: 0.3, Quiet: true, Fast: true, Duration: 3000 * time.Second, Delay: 5 * time.Second}
	var out, errs bytes.Buffer
	s := newSim(cfg, &out, &errs)
	rep := s.run(context.Background())
	requireConverged(t, rep)
	for _, u := range s.users {
		v := u.view
		settle(v)
		if v.Entries() != v.LiveCount() || len(v.owned) != 0 || v.tombs.len() != 0 || v.gone.len() != 0 {
			t.Errorf("%s keeps %d entries for %d live rooms, %d own records, %d tombstones",
				uidName(v.Self()), v.Entries(), v.LiveCount(), len(v.owned), v.tombs.len())
		}
		if c := cap(v.tombs.wait.items) + cap(v.tombs.settle.items); c > 1024 {
			t.Errorf("%s: tombstone queues grew to %d", uidName(v.Self()), c)
		}
	}
}

// -stats writes progress lines to stderr, never to stdout.
func TestStatsGoToStderr(t *testing.T) {
	var out, errs bytes.Buffer
	if code := run([]string{"-fast", "-json", "-users", "8", "-duration", "60s", "-stats", "10s", "-seed", "3"}, &out, &errs); code != 0 {
		t.Fatalf("exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(errs.String()), "\n")
	if len(lines) != 6 {
		t.Fatalf("%d stats lines, want 6:\n%s", len(lines), errs.String())
	}
	re := regexp.MustCompile(`^chatsim: 00:01:00 tick 60, live rooms [0-9.]+, deliveries \d+ \(\d+/s\), memory [0-9.]+ [KMG]iB$`)
	if !re.MatchString(lines[5]) {
		t.Errorf("stats line %q", lines[5])
	}
	if strings.Contains(out.String(), "memory") {
		t.Error("stats reached stdout")
	}
	// In real time too, under a fake clock.
	synctest.Test(t, func(t *testing.T) {
		var out, errs bytes.Buffer
		s := newSim(Config{Users: 4, Seed: 1, Tick: time.Second, Chance: 0.3, Quiet: true, Duration: 35 * time.Second, Stats: 10 * time.Second}, &out, &errs)
		s.run(context.Background())
		if n := strings.Count(errs.String(), "\n"); n != 3 {
			t.Errorf("real time: %d stats lines in 35s every 10s:\n%s", n, errs.String())
		}
	})
}

// jsonSchema lists, for each kind, the fields it must have; any other
// field it may have is in jsonOptional.
var jsonSchema = map[string][]string{
	"start":          {"kind", "t", "seed", "users", "mode", "tick", "chance"},
	"online":         {"t", "user", "kind", "peer"},
	"create":         {"t", "user", "kind", "room", "members", "by"},
	"create_failed":  {"t", "user", "kind", "reason"},
	"join":           {"t", "user", "kind", "room", "members", "by"},
	"see":            {"t", "user", "kind", "room", "members", "by"},
	"merge":          {"t", "user", "kind", "room", "dropped_room", "by"},
	"message":        {"t", "user", "kind", "room", "by", "msg", "text"},
	"message_failed": {"t", "user", "kind", "reason"},
	"receive":        {"t", "user", "kind", "room", "by", "msg", "text", "late"},
	"close":          {"t", "user", "kind", "room", "by"},
	"close_failed":   {"t", "user", "kind", "reason"},
	"close_seen":     {"t", "user", "kind", "room", "by"},
	"stale":          {"t", "user", "kind", "room", "by", "event", "reason"},
	"final":          {"kind", "user", "rooms"},
	"summary": {"kind", "seed", "users", "online", "mode", "tick", "chance", "stopped", "run_time", "ticks", "ticks_served",
		"ticks_skipped", "actions", "traffic", "rooms", "messages", "live_rooms", "deliveries_per_tick", "converged"},
}

var jsonOptional = map[string][]string{
	"start":         {"delay"},
	"create_failed": {"room", "members"},
	"receive":       {"held"},
	"summary":       {"delay", "latency", "problems"},
}

var (
	uidRE  = regexp.MustCompile(`^user_[1-9][0-9]*$`)
	roomRE = regexp.MustCompile(`^[1-9][0-9]*\.[1-9][0-9]*$`)
)

// checkJSONLines checks every line of a -json run against the schema and
// against each other: each user's records in time order, the final views
// after every record and in agreement, the summary last and consistent.
func checkJSONLines(t *testing.T, out string) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	var kinds []string
	lastT := map[string]float64{}
	receives := 0
	var finals [][]string
	var summary map[string]any
	for n := 1; sc.Scan(); n++ {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("line %d is not JSON: %v: %s", n, err, sc.Text())
		}
		kind, _ := rec["kind"].(string)
		required, ok := jsonSchema[kind]
		if !ok {
			t.Fatalf("line %d: unknown kind %q", n, kind)
		}
		for _, f := range required {
			if _, ok := rec[f]; !ok {
				t.Errorf("line %d (%s) lacks %q: %s", n, kind, f, sc.Text())
			}
		}
		for f, v := range rec {
			if !slices.Contains(required, f) && !slices.Contains(jsonOptional[kind], f) {
				t.Errorf("line %d (%s) has unexpected field %q", n, kind, f)
			}
			checkField(t, n, f, v)
		}
		if summary != nil {
			t.Errorf("line %d after the summary", n)
		}
		switch kind {
		case "final":
			var rooms []string
			for _, r := range rec["rooms"].([]any) {
				rooms = append(rooms, r.(string))
			}
			finals = append(finals, rooms)
		case "summary":
			summary = rec
		case "start":
			if n != 1 {
				t.Errorf("start on line %d", n)
			}
		default:
			if len(finals) > 0 {
				t.Errorf("line %d (%s) after the final views", n, kind)
			}
			u, tt := rec["user"].(string), rec["t"].(float64)
			if tt < lastT[u] {
				t.Errorf("line %d: %s went back in time from %v to %v", n, u, lastT[u], tt)
			}
			lastT[u] = tt
			if kind == "receive" {
				receives++
			}
		}
		kinds = append(kinds, kind)
	}
	if summary == nil {
		t.Fatal("no summary")
	}
	users := int(summary["users"].(float64))
	if len(finals) != users {
		t.Errorf("%d final lines for %d users", len(finals), users)
	}
	for i, f := range finals {
		if !slices.Equal(f, finals[0]) {
			t.Errorf("final view of user %d differs: %v vs %v", i+1, f, finals[0])
		}
	}
	msgs := summary["messages"].(map[string]any)
	if int(msgs["deliveries"].(float64)) != receives {
		t.Errorf("summary says %v deliveries, the log has %d receives", msgs["deliveries"], receives)
	}
	if summary["converged"] != true {
		t.Errorf("not converged: %v", summary["problems"])
	}
	for _, k := range []string{"online", "create", "join", "see", "message", "receive", "close", "close_seen"} {
		if !slices.Contains(kinds, k) {
			t.Errorf("the run has no %q record", k)
		}
	}
}

// checkField checks one field's type and form.
func checkField(t *testing.T, line int, f string, v any) {
	t.Helper()
	bad := func() { t.Errorf("line %d: %s = %#v", line, f, v) }
	switch f {
	case "user", "by", "peer":
		if s, ok := v.(string); !ok || !uidRE.MatchString(s) {
			bad()
		}
	case "room", "dropped_room", "msg":
		if s, ok := v.(string); !ok || !roomRE.MatchString(s) {
			bad()
		}
	case "members":
		a, ok := v.([]any)
		if !ok || len(a) < 2 {
			bad()
			return
		}
		for _, m := range a {
			if s, ok := m.(string); !ok || !uidRE.MatchString(s) {
				bad()
			}
		}
	case "t":
		if x, ok := v.(float64); !ok || x < 0 {
			bad()
		}
	case "late", "held", "converged":
		if _, ok := v.(bool); !ok {
			bad()
		}
	case "reason", "text", "kind", "event":
		if s, ok := v.(string); !ok || s == "" {
			bad()
		}
	}
}

// Every line of a -json run, fast and real time, matches the schema.
func TestJSONSchema(t *testing.T) {
	checkJSONLines(t, runArgs(t, "-fast", "-json", "-users", "6", "-duration", "200s", "-seed", "4", "-delay", "4s", "-chance", "0.5"))
	synctest.Test(t, func(t *testing.T) {
		var out, errs bytes.Buffer
		cfg := Config{Users: 5, Seed: 9, Tick: time.Second, Chance: 0.5, Duration: 3 * time.Minute, Delay: 3 * time.Second, JSON: true}
		if code := execute(context.Background(), cfg, &out, &errs); code != 0 {
			t.Fatalf("exit %d: %s", code, errs.String())
		}
		checkJSONLines(t, out.String())
		if !strings.Contains(out.String(), `"latency":{"p50_ns":`) {
			t.Error("real-time summary without latency")
		}
	})
}

// A bucket's order is the canonical one however long the run: deliveries
// sent on ticks 2^23-1 and 2^23, due on one tick, come out in send order,
// then by sender.
func TestBucketOrderOnLongRuns(t *testing.T) {
	const tick = time.Second
	s := &Sim{cfg: Config{Tick: tick}, delayTicks: 3}
	u := &User{sim: s, buckets: make([][]pending, s.delayTicks+2)}
	due := time.Duration(1<<23+2) * tick
	late := &Event{From: 1, Sent: time.Duration(1<<23) * tick}
	early := &Event{From: 2, Sent: time.Duration(1<<23-1) * tick}
	sameTick := &Event{From: 1, Sent: early.Sent}
	for _, ev := range []*Event{late, early, sameTick} {
		u.bucket(Delivery{ev, due})
	}
	got := new(scratch).sort(u.buckets[(1<<23+2)%len(u.buckets)])
	if want := []*Event{sameTick, early, late}; !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
}

// A fast run keeps no phase it has finished: the first is garbage once the
// users have moved past it, however long the run.
func TestFastKeepsNoOldPhases(t *testing.T) {
	var out bytes.Buffer
	s := newSim(Config{Users: 2, Seed: 1, Tick: time.Second, Chance: 0.3, Quiet: true, Fast: true, Duration: 1000 * time.Second}, &out, &out)
	first := weak.Make(s.phase)
	requireConverged(t, s.run(context.Background()))
	runtime.GC()
	if first.Value() != nil {
		t.Error("the first phase is still reachable after the run")
	}
}

// Simulated times show hours past 24, in the log and in -stats, and a
// fast run without -duration stops before simulated time could overflow.
func TestLongSimulatedTimes(t *testing.T) {
	if got := string(appendElapsed(nil, 49*time.Hour+22*time.Minute+26*time.Second+7*time.Microsecond)); got != "49:22:26.000007" {
		t.Errorf("appendElapsed = %q", got)
	}
	if got := clockString(100 * time.Hour); got != "100:00:00" {
		t.Errorf("clockString = %q", got)
	}
	out := runArgs(t, "-fast", "-users", "2", "-tick", "24h", "-seed", "1")
	if !strings.Contains(out, "simulated time limit reached") || !strings.Contains(out, "[876000:00:00.000000 user_") {
		t.Errorf("a fast run without -duration did not stop at the limit:\n%.300s", out[len(out)-min(len(out), 1200):])
	}
}

// The sparklines include the ticks that drain what the last actions sent.
func TestSparklinesIncludeDrain(t *testing.T) {
	rep, _ := simulate(t, context.Background(), Config{Users: 30, Seed: 2, Tick: time.Second, Chance: 1, Quiet: true, Fast: true, Duration: 2 * time.Second})
	if rep.Messages.Deliveries == 0 || rep.Deliveries.Max == 0 {
		t.Errorf("%d deliveries, but the sparkline's max is %v", rep.Messages.Deliveries, rep.Deliveries.Max)
	}
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"
	"weak"
)

// The same flags and seed give the same bytes whatever the scheduler does:
// with one processor or several, and run after run.
func TestFastIsDeterministic(t *testing.T) {
	args := []string{"-fast", "-users", "12", "-duration", "120s", "-seed", "11", "-delay", "4s", "-chance", "0.6"}
	jsonArgs := append([]string{"-json"}, args...)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	text, js := runArgs(t, args...), runArgs(t, jsonArgs...) // the reference
	for i, procs := range []int{1, 2, 4, 1} {
		t.Run(fmt.Sprintf("run=%d,procs=%d", i, procs), func(t *testing.T) {
			runtime.GOMAXPROCS(procs)
			gotText, gotJSON := runArgs(t, args...), runArgs(t, jsonArgs...)
			if gotText != text {
				t.Errorf("text differs from the first run: %s", firstDiff(text, gotText))
			}
			if gotJSON != js {
				t.Errorf("json differs from the first run: %s", firstDiff(js, gotJSON))
			}
		})
	}
	// A different seed is a different run.
	if other := runArgs(t, append(args, "-seed", "12")...); other == text {
		t.Error("seeds 11 and 12 gave the same output")
	}
}

// Over 200 seeds of fast runs with injected delay, every run converges
// with exact message accounting and nothing held back.
func TestSeedSweep(t *testing.T) {
	var dups, late int64
	ran := 0
	for seed := uint64(1); seed <= 200; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			cfg := Config{
				Users: 3 + int(seed%10), Seed: seed, Tick: time.Second, Chance: 0.5, Quiet: true, Fast: true,
				Duration: 80 * time.Second, Delay: time.Duration(1+seed%6) * time.Second,
			}
			rep, _ := simulate(t, context.Background(), cfg)
			if !rep.Converged || rep.Messages.Deliveries != rep.Messages.Expected || rep.Messages.Held != 0 {
				t.Fatalf("%v %+v", rep.Problems, rep.Messages)
			}
			dups += rep.Rooms.Duplicates
			late += rep.Messages.Late
			ran++
		})
	}
	if ran < 200 {
		return // one case was asked for: the sweep's totals do not apply
	}
	if dups == 0 || late == 0 {
		t.Errorf("the sweep did not exercise the races: %d duplicates, %d late", dups, late)
	}
}

// Fast mode reclaims what it keeps: after a long run, once everything is
// stable, every view keeps only its live rooms.
func TestFastStateStaysBounded(t *testing.T) {
	cfg := Config{Users: 20, Seed: 5, Tick: time.Second, Chance: 0.3, Quiet: true, Fast: true, Duration: 3000 * time.Second, Delay: 5 * time.Second}
	var out, errs bytes.Buffer
	s := newSim(cfg, &out, &errs)
	rep, _ := s.run(context.Background())
	requireConverged(t, rep)
	for _, u := range s.users {
		v := u.peer.view
		reclaimAll(v)
		if v.entries() != v.LiveCount() || len(v.owned) != 0 || v.tombs.len() != 0 || v.replacedOwn.len() != 0 {
			t.Errorf("%s keeps %d entries for %d live rooms, %d own records, %d tombstones, %d replaced own rooms",
				uidName(v.Self()), v.entries(), v.LiveCount(), len(v.owned), v.tombs.len(), v.replacedOwn.len())
		}
		if c := cap(v.tombs.tombs.items); c > 1024 {
			t.Errorf("%s: tombstone queues grew to %d", uidName(v.Self()), c)
		}
	}
}

// -stats writes progress lines to stderr, never to stdout.
func TestStatsGoToStderr(t *testing.T) {
	t.Run("fast", func(t *testing.T) {
		var out, errs bytes.Buffer
		if code := run([]string{"-fast", "-json", "-users", "8", "-duration", "60s", "-stats", "10s", "-seed", "3"}, &out, &errs); code != 0 {
			t.Fatalf("exit %d", code)
		}
		lines := strings.Split(strings.TrimSpace(errs.String()), "\n")
		if len(lines) != 6 {
			t.Fatalf("%d stats lines, want 6:\n%s", len(lines), errs.String())
		}
		re := regexp.MustCompile(`^chatsim: 00:01:00 tick 60, live rooms [0-9.]+, deliveries \d+ \(\d+/s\), tombstones \d+, memory [0-9.]+ [KMG]iB$`)
		if !re.MatchString(lines[5]) {
			t.Errorf("stats line %q", lines[5])
		}
		if strings.Contains(out.String(), "memory") {
			t.Error("stats reached stdout")
		}
	})
	t.Run("real time", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var out, errs bytes.Buffer
			s := newSim(Config{Users: 4, Seed: 1, Tick: time.Second, Chance: 0.3, Quiet: true, Duration: 35 * time.Second, Stats: 10 * time.Second}, &out, &errs)
			s.run(context.Background())
			if n := strings.Count(errs.String(), "\n"); n != 3 {
				t.Errorf("%d stats lines in 35s every 10s:\n%s", n, errs.String())
			}
		})
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
	"offline":        {"t", "user", "kind"},
	"back":           {"t", "user", "kind", "away"},
	"state":          {"t", "user", "kind", "by", "rooms"},
	"catch_up":       {"t", "user", "kind", "by", "rooms"},
	"split":          {"t", "kind", "sides"},
	"heal":           {"t", "kind"},
	"clog":           {"t", "kind", "by", "clogged", "lasts"},
	"unclog":         {"t", "kind", "by", "clogged", "lasts"},
	"final":          {"kind", "user", "rooms"},
	"summary": {"kind", "seed", "users", "online", "mode", "tick", "chance", "stopped", "run_time", "ticks", "ticks_served",
		"ticks_skipped", "actions", "traffic", "rooms", "messages", "stability", "live_rooms", "deliveries_per_tick", "converged"},
}

var jsonOptional = map[string][]string{
	"start":         {"delay", "loss", "dup", "partition", "offline", "clog", "join", "follow"},
	"split":         {"one_way"},
	"clog":          {"peer"},
	"unclog":        {"peer"},
	"online":        {"peer_to"},
	"create_failed": {"room", "members"},
	"receive":       {"held"},
	"summary":       {"delay", "loss", "dup", "partition", "offline", "clog", "join", "latency", "network", "faults", "problems", "drain_time", "drain_ticks"},
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
		default: // user lines, and the network's (no user)
			if len(finals) > 0 {
				t.Errorf("line %d (%s) after the final views", n, kind)
			}
			u, _ := rec["user"].(string) // "" for the network
			tt := rec["t"].(float64)
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
	case "user", "by", "peer", "peer_to":
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
	case "t", "away":
		if x, ok := v.(float64); !ok || x < 0 {
			bad()
		}
	case "lasts":
		if x, ok := v.(float64); !ok || x <= 0 {
			bad()
		}
	case "clogged":
		if s, ok := v.(string); !ok || s != "out" && s != "in" && s != "pair" {
			bad()
		}
	case "sides":
		a, ok := v.([]any)
		if !ok || len(a) != 2 {
			bad()
			return
		}
		for _, side := range a {
			users, ok := side.([]any)
			if !ok || len(users) == 0 {
				bad()
				continue
			}
			for _, u := range users {
				checkField(t, line, "user", u)
			}
		}
	case "rooms": // on final and state lines; the summary's is an object
		if a, ok := v.([]any); ok {
			for _, r := range a {
				checkField(t, line, "room", r)
			}
		}
	case "late", "held", "converged", "one_way":
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
	t.Run("fast", func(t *testing.T) {
		checkJSONLines(t, runArgs(t, "-fast", "-json", "-users", "6", "-duration", "200s", "-seed", "4", "-delay", "4s", "-chance", "0.5"))
	})
	t.Run("faults", func(t *testing.T) {
		out := runArgs(t, "-fast", "-json", "-users", "8", "-duration", "120s", "-seed", "4", "-delay", "2s", "-chance", "0.5",
			"-loss", "0.2", "-dup", "0.1", "-partition", "10s", "-offline", "10s", "-clog", "10s", "-join", "2")
		checkJSONLines(t, out)
		for _, k := range []string{`"kind":"split"`, `"one_way":true`, `"kind":"heal"`, `"kind":"clog"`, `"kind":"unclog"`, `"kind":"offline"`, `"kind":"back"`, `"kind":"state"`, `"network":{"transmissions":`, `"faults":{"splits":`} {
			if !strings.Contains(out, k) {
				t.Errorf("the run has no %s", k)
			}
		}
	})
	t.Run("real time", func(t *testing.T) {
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
	})
}

// A fast run keeps no round it has finished: the first is garbage once the
// users have moved past it, however long the run.
func TestFastKeepsNoOldRounds(t *testing.T) {
	var out bytes.Buffer
	s := newSim(Config{Users: 2, Seed: 1, Tick: time.Second, Chance: 0.3, Quiet: true, Fast: true, Duration: 1000 * time.Second}, &out, &out)
	first := weak.Make(s.first)
	rep, _ := s.run(context.Background())
	requireConverged(t, rep)
	runtime.GC()
	if first.Value() != nil {
		t.Error("the first round is still reachable after the run")
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

// The sparklines include the ticks that drain what the last actions sent:
// every message delivery is in a sample, and the samples after the last
// action hold some.
func TestSparklinesIncludeDrain(t *testing.T) {
	const actionTicks = 3
	s := newSim(Config{Users: 30, Seed: 2, Tick: time.Second, Chance: 1, Quiet: true, Fast: true,
		Duration: actionTicks * time.Second, Delay: 2 * time.Second}, io.Discard, io.Discard)
	rep, _ := s.run(context.Background())
	if s.delivers.per != 1 {
		t.Fatalf("%d samples per bucket: the run is too long for this test", s.delivers.per)
	}
	var sampled, drained float64
	for i, x := range s.delivers.sum {
		sampled += x
		if i >= actionTicks {
			drained += x
		}
	}
	if rep.Messages.Deliveries == 0 || sampled != float64(rep.Messages.Deliveries) || drained == 0 {
		t.Errorf("%d deliveries, %v sampled, %v of them in the drain", rep.Messages.Deliveries, sampled, drained)
	}
}

// In lockstep a user's loop starts once all its start-up news is in its
// UserChannel, which holds exactly that much: startNews must count what
// startUsers sends each user, or start-up would block on a full channel.
func TestStartNewsCountsWhatStartUsersSends(t *testing.T) {
	for _, online := range []int32{2, 3, 6, 255, 256, 257, 511, 512, 513, 1000, 4099, 100000, 1000000} {
		batch := max(1, online/256)
		got := make([]int, online+2)
		var announced int32
		for k := int32(1); k <= online; k++ {
			if k > 1 {
				got[k]++
			}
			if k-announced >= batch || k == online {
				for old := int32(1); old < k; old++ {
					got[old]++
				}
				announced = k
			}
		}
		for k := int32(1); k <= online+1; k++ {
			if want := startNews(k, online, batch); got[k] != want {
				t.Fatalf("%d online: user %d gets %d messages of news, startNews says %d", online, k, got[k], want)
			}
		}
	}
}

// A cast filed for the tick the users are reading would race with its
// readers and land in the wrong tick: the log refuses it.
func TestCastLogRefusesTheTickBeingRead(t *testing.T) {
	c := &castLog{reading: 7}
	c.file(cast{}, 8)
	defer func() {
		if recover() == nil {
			t.Error("a cast was filed for the tick being read")
		}
	}()
	c.file(cast{}, 7)
}

// The summary says how many ticks a fast run's drain took: in a run this
// short the sparklines have a column for each tick, the action ticks and
// the drain's.
func TestFastDrainTicks(t *testing.T) {
	for _, join := range []int{0, 3} {
		cfg := Config{Users: 12, Seed: 9, Tick: time.Second, Chance: 0.3, Fast: true, Quiet: true, Duration: 20 * time.Second, Join: join}
		rep, _ := simulate(t, context.Background(), cfg)
		var out strings.Builder
		if err := rep.writeText(&out); err != nil {
			t.Fatal(err)
		}
		if rep.Ticks != 20 || rep.DrainTicks < 1 {
			t.Fatalf("join %d: %d ticks, then %d to drain", join, rep.Ticks, rep.DrainTicks)
		}
		if n := utf8.RuneCountInString(rep.Deliveries.Line); int64(n) != rep.Ticks+rep.DrainTicks {
			t.Errorf("join %d: %d columns, for %d ticks and %d to drain", join, n, rep.Ticks, rep.DrainTicks)
		}
		if want := fmt.Sprintf(", then %s to drain\n", plural(rep.DrainTicks, "tick")); !strings.Contains(out.String(), want) {
			t.Errorf("join %d: no %q in\n%s", join, want, out.String())
		}
	}
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// logLine is one JSON line of a run, as an independent reader sees it: only
// the fields the log's own promises are about.
type logLine struct {
	T           float64         `json:"t"`
	User        string          `json:"user"`
	Kind        string          `json:"kind"`
	Room        string          `json:"room"`
	DroppedRoom string          `json:"dropped_room"`
	Members     []string        `json:"members"`
	By          string          `json:"by"`
	Msg         string          `json:"msg"`
	Late        bool            `json:"late"`
	Held        bool            `json:"held"`
	Rooms       json.RawMessage `json:"rooms"` // a list, except in the summary
	Lost        [][2]string     `json:"lost"`  // crash: [message, member] deliveries lost with it
}

// rooms is the list of room ids a state or final line names.
func (l *logLine) rooms() []string {
	var r []string
	json.Unmarshal(l.Rooms, &r)
	return r
}

// checkLogOrder reads the JSON log of a whole run and checks, line by line
// and without the program's help, that no user's log tells an effect before
// its cause:
//   - between a user's `offline` and its `back` it applies nothing and does
//     nothing: no receive, join, see, merge, close_seen, stale, state or
//     action;
//   - a message is received into a room the user has heard of (created,
//     seen, joined, closed, merged, ignored, or named in a `state` or
//     `catch_up` line),
//     unless it is marked late: a held message too, once the line that
//     made its room known has come;
//   - a message is marked held only if its room was unknown to the user
//     before the moment it was released;
//   - every message reaches every other member of its room (as its creator's
//     `create` line lists them) at most once, and exactly once once the run
//     has drained;
//   - with crashes, by the rule for crashes: between a user's `crash` and
//     its `restart` it logs nothing, and after it knows only what it
//     hears anew; each incarnation of a member takes a message at most
//     once, and some incarnation takes it unless a `crash` line lists it
//     as lost;
//   - the final views agree.
//
// It returns what it found wrong, at most a few lines of each kind.
func checkLogOrder(out string) []string {
	var problems []string
	seen := map[string]int{}
	report := func(kind, format string, args ...any) {
		if seen[kind]++; seen[kind] <= 3 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	type userState struct {
		away, down bool
		inc        int                // incarnations so far, from 0
		heard      map[string]float64 // room id -> when first heard of
	}
	users := map[string]*userState{}
	user := func(name string) *userState {
		u := users[name]
		if u == nil {
			u = &userState{heard: map[string]float64{}}
			users[name] = u
		}
		return u
	}
	members := map[string][]string{}   // room -> members, from its create
	sentTo := map[string]string{}      // msg -> room
	sender := map[string]string{}      // msg -> sender
	got := map[string]map[string]int{} // msg -> recipient -> deliveries
	once := map[[3]string]bool{}       // msg, recipient, incarnation -> taken
	lost := map[[2]string]bool{}       // msg, member: lost by the rule for crashes
	var finals [][]string
	drained := false
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<24)
	for n := 1; sc.Scan(); n++ {
		var l logLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			report("json", "line %d is not JSON: %v", n, err)
			continue
		}
		switch {
		case l.Kind == "final":
			finals = append(finals, l.rooms())
			continue
		case l.Kind == "summary":
			drained = true
			continue
		case l.User == "": // the start line, and the network's
			continue
		}
		u := user(l.User)
		hear := func(rooms ...string) {
			for _, r := range rooms {
				if _, ok := u.heard[r]; r != "" && !ok {
					u.heard[r] = l.T
				}
			}
		}
		switch l.Kind {
		case "offline":
			if u.away {
				report("twice", "line %d: %s goes offline twice", n, l.User)
			}
			u.away = true
			continue
		case "back":
			if !u.away {
				report("twice", "line %d: %s is back without having gone offline", n, l.User)
			}
			u.away = false
			continue
		case "online":
			continue
		case "crash":
			if u.down {
				report("twice", "line %d: %s crashes while down", n, l.User)
			}
			// Whether it knew it was offline dies with it.
			u.down, u.away, u.heard = true, false, map[string]float64{}
			for _, d := range l.Lost {
				lost[d] = true
			}
			continue
		case "restart":
			if !u.down {
				report("twice", "line %d: %s restarts without having crashed", n, l.User)
			}
			u.down = false
			u.inc++
			continue
		}
		if u.away || u.down {
			report("away", "line %d: %s logs %s at %v while offline", n, l.User, l.Kind, l.T)
		}
		switch l.Kind {
		case "create":
			members[l.Room] = l.Members
			hear(l.Room)
		case "join", "see", "close", "close_seen", "stale":
			hear(l.Room)
		case "merge":
			hear(l.Room, l.DroppedRoom)
		case "state", "catch_up":
			hear(l.rooms()...)
		case "message":
			sentTo[l.Msg], sender[l.Msg] = l.Room, l.User
		case "receive":
			at, known := u.heard[l.Room]
			switch {
			case l.Held && known && at < l.T:
				report("held", "line %d: %s receives %s held, but had heard of room %s at %v, before %v", n, l.User, l.Msg, l.Room, at, l.T)
			case !l.Late && !known:
				report("unknown", "line %d: %s receives %s into room %s, which it has not heard of, and not late", n, l.User, l.Msg, l.Room)
			}
			if got[l.Msg] == nil {
				got[l.Msg] = map[string]int{}
			}
			got[l.Msg][l.User]++
			if k := [3]string{l.Msg, l.User, fmt.Sprint(u.inc)}; once[k] {
				report("dup", "line %d: %s receives %s a second time in one incarnation", n, l.User, l.Msg)
			} else {
				once[k] = true
			}
			if ms, ok := members[l.Room]; ok && !slices.Contains(ms, l.User) {
				report("member", "line %d: %s receives %s but is not a member of room %s", n, l.User, l.Msg, l.Room)
			}
		}
	}
	if !drained {
		return append(problems, "the log has no summary")
	}
	for msg, room := range sentTo {
		ms, ok := members[room]
		if !ok {
			continue
		}
		for _, m := range ms {
			switch n := got[msg][m]; {
			case m == sender[msg] || lost[[2]string{msg, m}]:
			case n == 0:
				report("lost", "message %s to room %s never reached %s", msg, room, m)
			case n > 1 && users[m].inc == 0:
				report("lost", "message %s to room %s reached %s %d times", msg, room, m, n)
			}
		}
	}
	for i, f := range finals {
		if strings.Join(f, " ") != strings.Join(finals[0], " ") {
			report("final", "final view %d differs from the first: %v, %v", i+1, f, finals[0])
		}
	}
	return problems
}

// requireOrdered fails t with what checkLogOrder finds wrong in out.
func requireOrdered(t *testing.T, out string) {
	t.Helper()
	for _, p := range checkLogOrder(out) {
		t.Error(p)
	}
}

// The log's own promises hold in lockstep, with every fault: the runs in
// which late joiners once logged the messages their state released before
// the state itself, and a sweep of seeds, user counts and fault mixes.
func TestLogOrderFast(t *testing.T) {
	runs := [][]string{
		{"-users", "25", "-duration", "500s", "-delay", "5s", "-partition", "60s", "-offline", "40s", "-join", "8", "-seed", "6174"},
		{"-users", "8", "-duration", "90s", "-delay", "2s", "-loss", "0.2", "-dup", "0.1", "-partition", "15s", "-offline", "15s", "-join", "2", "-seed", "12"},
	}
	for seed := uint64(1); seed <= 30; seed++ {
		c := faultConfig(seed)
		runs = append(runs, []string{"-users", fmt.Sprint(c.Users), "-duration", "60s", "-seed", fmt.Sprint(seed),
			"-delay", c.Delay.String(), "-loss", fmt.Sprint(c.Loss), "-dup", fmt.Sprint(c.Dup),
			"-partition", c.Partition.String(), "-offline", c.Offline.String(), "-clog", c.Clog.String(), "-join", fmt.Sprint(c.Join), "-chance", "0.5"})
	}
	for seed := uint64(1); seed <= 12; seed++ {
		c := crashConfig(seed)
		runs = append(runs, []string{"-users", fmt.Sprint(c.Users), "-duration", "120s", "-seed", fmt.Sprint(seed),
			"-delay", c.Delay.String(), "-loss", fmt.Sprint(c.Loss), "-dup", fmt.Sprint(c.Dup), "-partition", c.Partition.String(),
			"-offline", c.Offline.String(), "-clog", c.Clog.String(), "-crash", c.Crash.String(), "-join", fmt.Sprint(c.Join), "-chance", "0.5"})
	}
	for _, args := range runs {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			requireOrdered(t, runArgs(t, append(args, "-fast", "-json")...))
		})
	}
}

// The same in real time, under a fake clock: short ticks, where a user's
// own tick and the network's view of whether it is online disagree most
// often, several seeds, and runs stopped as by Ctrl-C in the middle of
// splits and outages.
func TestLogOrderRealTime(t *testing.T) {
	type run struct {
		cfg  Config
		stop time.Duration // cancel after this long, as Ctrl-C would; 0 to run the duration
	}
	var runs []run
	for seed := uint64(1); seed <= 3; seed++ {
		runs = append(runs,
			run{cfg: Config{Users: 30, Seed: seed, Tick: 20 * time.Millisecond, Chance: 0.3, Offline: 200 * time.Millisecond, Duration: 3 * time.Second}},
			run{cfg: Config{Users: 20, Seed: seed, Tick: 20 * time.Millisecond, Chance: 0.3, Delay: 40 * time.Millisecond, Loss: 0.3, Dup: 0.2,
				Partition: 300 * time.Millisecond, Offline: 200 * time.Millisecond, Clog: 100 * time.Millisecond, Join: 6, Duration: time.Hour}, stop: 3 * time.Second},
			run{cfg: Config{Users: 20, Seed: seed, Tick: 20 * time.Millisecond, Chance: 0.3, Delay: 40 * time.Millisecond, Loss: 0.2, Dup: 0.1,
				Partition: 300 * time.Millisecond, Offline: 200 * time.Millisecond, Clog: 100 * time.Millisecond, Crash: 200 * time.Millisecond, Join: 4, Duration: time.Hour}, stop: 3 * time.Second})
	}
	for _, r := range runs {
		r.cfg.JSON = true
		t.Run(fmt.Sprintf("users=%d,seed=%d,stop=%v", r.cfg.Users, r.cfg.Seed, r.stop), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				if r.stop > 0 {
					go func() {
						time.Sleep(r.stop)
						cancel()
					}()
				}
				var out bytes.Buffer
				rep, err := newSim(r.cfg, &out, io.Discard).run(ctx)
				if err != nil {
					t.Fatal(err)
				}
				requireConverged(t, rep)
				rep.writeJSON(&out)
				requireOrdered(t, out.String())
			})
		})
	}
}

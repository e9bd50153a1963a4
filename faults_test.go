package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// faultConfig is a small fast run of seed with every fault on, -delay
// included, each in a range that the seed picks.
func faultConfig(seed uint64) Config {
	users := 4 + int(seed%9)
	return Config{
		Users: users, Seed: seed, Tick: time.Second, Chance: 0.5, Quiet: true, Fast: true,
		Duration:  60 * time.Second,
		Delay:     time.Duration(seed%4) * time.Second,
		Loss:      float64(seed%5) / 10,
		Dup:       float64(seed%3) / 10,
		Partition: time.Duration(2+seed%9) * time.Second,
		Offline:   time.Duration(2+seed%7) * time.Second,
		Clog:      time.Duration(seed%5) * time.Second,
		Join:      1 + int(seed)%(users-2),
	}
}

// crashConfig is faultConfig with crashes too, of users down for up to a
// few ticks, and enough users online from the start that a crash leaves
// two up.
func crashConfig(seed uint64) Config {
	c := faultConfig(seed)
	c.Users += 2
	c.Join = min(c.Join, c.Users-3)
	c.Crash = time.Duration(1+seed%12) * time.Second
	return c
}

// Over 120 seeds of fast runs with every fault on and users that crash,
// forget everything and restart, every run converges by the rule for
// crashes (crash.go): the same live rooms everywhere, and every message
// taken by each member once, but for the deliveries the rule loses and
// owes again, which the verdict counts exactly. The crashes, and what the
// rule loses and owes again, must have happened.
func TestCrashSweep(t *testing.T) {
	var crashes, lost, again int64
	var medians []int64
	ran := 0
	for seed := uint64(1); seed <= 120; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rep, _ := simulate(t, context.Background(), crashConfig(seed))
			requireConverged(t, rep)
			c := rep.Faults.Crash
			if c == nil {
				t.Fatal("no crash figures")
			}
			if c.Crashes > 0 {
				medians = append(medians, c.ToRoomsMedian)
			}
			crashes += c.Crashes
			lost += c.Lost
			again += c.Redelivered
			ran++
		})
	}
	if ran < 120 {
		return
	}
	if crashes == 0 || lost == 0 || again == 0 {
		t.Errorf("crashes not exercised: %d crashes, %d deliveries lost, %d owed again", crashes, lost, again)
	}
	if m := median(medians); m > 5 {
		t.Errorf("restarted users had the rooms after %d ticks in the median run, want at most 5", m)
	}
}

// The same in real time, under a fake clock, over fewer seeds: the run
// pauses every user to crash one (Sim.stopTheWorld), and the ledger holds
// the run to the rule as exactly as between lockstep's rounds. Half the
// runs are stopped as by Ctrl-C, in the middle of crashes.
func TestCrashSweepRealTime(t *testing.T) {
	var crashes, lost, again int64
	ran := 0
	for seed := uint64(1); seed <= 24; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := crashConfig(seed)
				c.Fast, c.Tick = false, 20*time.Millisecond
				for _, d := range []*time.Duration{&c.Delay, &c.Partition, &c.Offline, &c.Clog, &c.Crash, &c.Duration} {
					*d /= 50 // the same in ticks
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				if seed%2 == 0 {
					c.Duration = time.Hour
					go func() {
						time.Sleep(time.Duration(seed) * 100 * time.Millisecond)
						cancel()
					}()
				}
				rep, _ := simulate(t, ctx, c)
				requireConverged(t, rep)
				crashes += rep.Faults.Crash.Crashes
				lost += rep.Faults.Crash.Lost
				again += rep.Faults.Crash.Redelivered
				ran++
			})
		})
	}
	if ran == 24 && (crashes == 0 || lost == 0 || again == 0) {
		t.Errorf("crashes not exercised: %d crashes, %d deliveries lost, %d owed again", crashes, lost, again)
	}
	t.Logf("%d crashes, %d deliveries lost, %d owed again", crashes, lost, again)
}

// Over 200 seeds of fast runs with every fault on, the drain heals and
// brings everyone back, and every run converges: the same live rooms
// everywhere, no two with one group, no ghosts, every message to every
// other member of its room exactly once, nothing held back. The faults
// must have happened, or this proves nothing.
func TestFaultSweep(t *testing.T) {
	var tally FaultFigures
	var net NetFigures
	ran := 0
	for seed := uint64(1); seed <= 200; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			cfg := faultConfig(seed)
			rep, _ := simulate(t, context.Background(), cfg)
			requireConverged(t, rep)
			if rep.Network == nil || rep.Faults == nil {
				t.Fatal("no network or faults figures")
			}
			if rep.Faults.LateJoiners != int64(cfg.Join) || rep.Online != cfg.Users {
				t.Errorf("%d of %d late joiners came, %d users online", rep.Faults.LateJoiners, cfg.Join, rep.Online)
			}
			net.Lost += rep.Network.Lost
			net.Duplicated += rep.Network.Duplicated
			net.Retransmitted += rep.Network.Retransmitted
			tally.Splits += rep.Faults.Splits
			tally.Outages += rep.Faults.Outages
			tally.Clogs += rep.Faults.Clogs
			tally.OneWay += rep.Faults.OneWay
			net.Clogged += rep.Network.Clogged
			tally.RoomsLearned += rep.Faults.RoomsLearned
			ran++
		})
	}
	if ran < 200 {
		return // one case was asked for: the totals do not apply
	}
	if net.Lost == 0 || net.Duplicated == 0 || net.Retransmitted == 0 || net.Clogged == 0 || tally.Splits == 0 || tally.OneWay == 0 ||
		tally.Outages == 0 || tally.Clogs == 0 || tally.RoomsLearned == 0 {
		t.Errorf("faults not exercised: %+v %+v", net, tally)
	}
}

// The same flags and seed give the same bytes with every fault on, with one
// processor or several.
func TestFaultsAreDeterministic(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	args := []string{"-fast", "-json", "-users", "12", "-duration", "90s", "-seed", "5", "-delay", "2s",
		"-loss", "0.3", "-dup", "0.2", "-partition", "8s", "-offline", "8s", "-clog", "8s", "-crash", "8s", "-join", "3"}
	want := runArgs(t, args...)
	for _, procs := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("procs=%d", procs), func(t *testing.T) {
			runtime.GOMAXPROCS(procs)
			if got := runArgs(t, args...); got != want {
				t.Errorf("differs: %s", firstDiff(want, got))
			}
		})
	}
}

// In real time, under a fake clock, users survive every fault too: they
// go offline and come back, the network splits and heals, late joiners
// learn the rooms, and the drain, with the clock still ticking, delivers
// everything. The log says so in the first person.
func TestRealTimeFaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{Users: 8, Seed: 5, Tick: time.Second, Chance: 0.5, Duration: 5 * time.Minute, Delay: 2 * time.Second,
			Loss: 0.2, Dup: 0.1, Partition: 20 * time.Second, Offline: 20 * time.Second, Clog: 20 * time.Second, Join: 2}
		rep, out := simulate(t, context.Background(), cfg)
		requireConverged(t, rep)
		if rep.Faults.Splits == 0 || rep.Faults.Outages == 0 || rep.Faults.Clogs == 0 || rep.Faults.LateJoiners != 2 || rep.Network.Retransmitted == 0 || rep.Network.Clogged == 0 {
			t.Errorf("faults %+v, network %+v", rep.Faults, rep.Network)
		}
		for _, want := range []string{" network] the network split", " network] the network healed", " are clogged for ", " are clear again after ", "] I went offline",
			"] I am back after ", "] I came online late and learned ", "] user_8 is online"} {
			if !strings.Contains(out, want) {
				t.Errorf("the log has no %q", want)
			}
		}
	})
}

// A run stopped by Ctrl-C in the middle of a split and an outage, before
// the late joiners came: the drain heals, brings everyone in, and the run
// converges.
func TestInterruptHealsFaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			time.Sleep(3 * time.Second)
			cancel()
		}()
		cfg := Config{Users: 10, Seed: 2, Tick: time.Second, Chance: 0.6, Duration: time.Hour, Loss: 0.3,
			Partition: time.Hour, Offline: time.Hour, Clog: time.Hour, Join: 4}
		rep, _ := simulate(t, ctx, cfg)
		requireConverged(t, rep)
		if rep.Stopped != "interrupted" || rep.Faults.LateJoiners != 4 || rep.Online != 10 {
			t.Errorf("stopped %q, %d late joiners, %d online", rep.Stopped, rep.Faults.LateJoiners, rep.Online)
		}
	})
}

// Forty late joiners, most of them let in at once at the stop: news of
// them never blocks the run (synctest reports a deadlock as a failure).
func TestManyJoinersAtOnce(t *testing.T) {
	for _, fast := range []bool{true, false} {
		t.Run(fmt.Sprintf("fast=%v", fast), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := Config{Users: 50, Seed: 1, Tick: time.Second, Chance: 0.3, Quiet: true, Fast: fast, Duration: 4 * time.Second, Join: 40}
				rep, _ := simulate(t, context.Background(), cfg)
				requireConverged(t, rep)
				if rep.Faults.LateJoiners != 40 {
					t.Errorf("%d late joiners came", rep.Faults.LateJoiners)
				}
			})
		})
	}
}

// When a real-time run with faults stops, it says what the drain has to
// do, and only that: without loss there are no retransmissions.
func TestStopSaysWhatTheDrainDoes(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Dup: 0.2}, "still in flight, then the summary"},
		{Config{Clog: 2 * time.Second}, "still in flight (what clogs held), then"},
		{Config{Loss: 0.2, Join: 2}, "still in flight (retransmissions, late joiners' rooms), then"},
		{Config{Crash: 2 * time.Second}, "still in flight (retransmissions, crashed users' restarts), then"},
	} {
		t.Run(c.want, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := c.cfg
				cfg.Users, cfg.Seed, cfg.Tick, cfg.Chance, cfg.Duration, cfg.Quiet = 6, 1, time.Second, 0.5, 5*time.Second, true
				var errs bytes.Buffer
				rep, err := newSim(cfg, io.Discard, &errs).run(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				requireConverged(t, rep)
				if !strings.Contains(errs.String(), "duration reached: stopping; the faults end and users deliver what is "+c.want) {
					t.Errorf("stderr:\n%s", errs.String())
				}
			})
		})
	}
}

// A long drain in real time says on stderr that it is still at work, every
// ten seconds, so that nobody takes it for a hang.
func TestLongDrainSaysSo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{Users: 8, Seed: 3, Tick: time.Second, Chance: 0.5, Duration: 30 * time.Second, Quiet: true,
			Loss: 0.5, Dup: 0.5, Partition: 20 * time.Second, Offline: 20 * time.Second, Join: 3}
		var out, errs bytes.Buffer
		rep, err := newSim(cfg, &out, &errs).run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		requireConverged(t, rep)
		if rep.Drain < 10 {
			t.Fatalf("the drain took only %.1fs: too short to say anything", rep.Drain)
		}
		lines := strings.Count(errs.String(), "chatsim: still draining after ")
		if want := int(rep.Drain / 10); lines != want {
			t.Errorf("%d progress lines in a %.1fs drain, want %d:\n%s", lines, rep.Drain, want, errs.String())
		}
	})
}

// The summary's rooms learned are the late joiners' alone: the live rooms
// each had right after its first state, as its log says. A restarted
// user's state is not a late joiner's.
func TestRoomsLearnedAreTheJoiners(t *testing.T) {
	restarts := 0
	for seed := uint64(1); seed <= 4; seed++ {
		cfg := Config{Users: 12, Seed: seed, Tick: time.Second, Chance: 0.3, Fast: true, JSON: true, Duration: 20 * time.Second, Join: 3, Crash: 5 * time.Second}
		rep, out := simulate(t, context.Background(), cfg)
		requireConverged(t, rep)
		var learned int64
		for line := range strings.Lines(out) {
			var r struct {
				Kind  string   `json:"kind"`
				Rooms []string `json:"rooms"`
				Inc   uint32   `json:"incarnation"`
			}
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("seed %d: %q: %v", seed, line, err)
			}
			switch {
			case r.Kind != "state":
			case r.Inc > 0:
				restarts++
			default:
				learned += int64(len(r.Rooms))
			}
		}
		if rep.Faults.RoomsLearned != learned {
			t.Errorf("seed %d: the summary says the late joiners learned %d live rooms, their logs %d", seed, rep.Faults.RoomsLearned, learned)
		}
	}
	if restarts == 0 {
		t.Error("no restarted user took a state: the test shows nothing")
	}
}

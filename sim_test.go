package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// simulate runs a whole simulation to its end and returns the report and
// what it wrote.
func simulate(t testing.TB, ctx context.Context, cfg Config) (*Report, string) {
	t.Helper()
	var out, errs bytes.Buffer
	rep, err := newSim(cfg, &out, &errs).run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return rep, out.String()
}

// newSimInbox is newSim with inboxes of the given capacity, smaller than a
// run would pick, so that sends find them full.
func newSimInbox(cfg Config, inbox int) *Sim {
	s := newSim(cfg, io.Discard, io.Discard)
	c := netConfigOf(cfg)
	c.inbox = inbox
	s.net = newNetwork(c)
	return s
}

func requireConverged(t testing.TB, rep *Report) {
	t.Helper()
	if !rep.Converged {
		t.Fatalf("not converged: %v", rep.Problems)
	}
	if rep.Messages.Held != 0 || rep.Messages.Deliveries != rep.Messages.Expected {
		t.Fatalf("messages: %+v", rep.Messages)
	}
}

// Six users for ten simulated minutes, in real-time mode under a fake
// clock: the run takes milliseconds, every user acts at the rate it should
// whatever traffic it receives, the views converge and every goroutine the
// run started exits (synctest.Test fails otherwise).
func TestRealTimeUnderFakeClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{Users: 6, Seed: 42, Tick: time.Second, Chance: 0.3, Duration: 10 * time.Minute}
		start := time.Now()
		rep, out := simulate(t, context.Background(), cfg)
		requireConverged(t, rep)
		if took := time.Since(start); took != 10*time.Minute {
			t.Errorf("simulated run took %v, want 10m", took)
		}
		// Each user ticks every second from a random phase: 600 ticks.
		if rep.Skipped != 0 || rep.Served < 6*599 || rep.Served > 6*600 {
			t.Errorf("ticks served %d, skipped %d; want about 3600 and 0", rep.Served, rep.Skipped)
		}
		// Acting is Binomial(ticks, 0.3): within five standard deviations.
		n := float64(rep.Served)
		sd := math.Sqrt(n * 0.3 * 0.7)
		if got := float64(rep.Actions.Total); math.Abs(got-0.3*n) > 5*sd {
			t.Errorf("acted %v times in %v ticks; want 0.3 within ±%.0f", got, n, 5*sd)
		}
		// Each action kind has equal odds.
		for _, k := range []int64{rep.Actions.Create.Tried, rep.Actions.Message.Tried, rep.Actions.Close.Tried} {
			third := float64(rep.Actions.Total) / 3
			if math.Abs(float64(k)-third) > 5*math.Sqrt(third) {
				t.Errorf("action kinds %+v are not about a third each", rep.Actions)
			}
		}
		if rep.Rooms.Created == 0 || rep.Messages.Deliveries == 0 {
			t.Errorf("nothing happened: %+v", rep)
		}
		if !strings.Contains(out, "] I created chat ") || !strings.Contains(out, "] I received \"") {
			t.Errorf("log lacks creates or receipts:\n%.2000s", out)
		}
		if rep.Latency == nil || rep.Latency.Max != 0 {
			t.Errorf("latency under a fake clock = %+v, want all zero", rep.Latency)
		}
	})
}

// The network's books balance after a run: every delivery admitted has
// been given back, drain included.
func TestNetworkAccountsForEveryDelivery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out bytes.Buffer
		s := newSim(Config{Users: 12, Seed: 8, Tick: time.Second, Chance: 0.6, Duration: 2 * time.Minute, Delay: 5 * time.Second, Quiet: true}, &out, &out)
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			time.Sleep(90 * time.Second) // stop with deliveries held back by the delay
			cancel()
		}()
		rep, _ := s.run(ctx)
		requireConverged(t, rep)
		if n := s.net.fl.inflight.Load(); n != 0 {
			t.Errorf("%d deliveries still counted in flight", n)
		}
	})
}

// Channels of one slot and every user acting on every tick: sends find
// full channels all the time, and users sending to each other must not
// deadlock (synctest.Test reports a deadlock as a failure).
func TestFullChannelsDoNotDeadlock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{Users: 40, Seed: 7, Tick: time.Second, Chance: 1, Duration: time.Minute, Quiet: true}
		rep, err := newSimInbox(cfg, 1).run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		requireConverged(t, rep)
		if rep.Actions.Total < 40*50 {
			t.Errorf("only %d actions", rep.Actions.Total)
		}
	})
}

// Under far more load than the network carries, users skip ticks instead
// of piling up events; the run still converges.
func TestOverloadSkipsTicks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{Users: 50, Seed: 3, Tick: time.Millisecond, Chance: 1, Duration: 300 * time.Millisecond, Quiet: true, Delay: 50 * time.Millisecond}
		rep, _ := simulate(t, context.Background(), cfg)
		requireConverged(t, rep)
		if rep.Skipped == 0 {
			t.Errorf("no ticks skipped at %d served", rep.Served)
		}
	})
}

// A run stopped before every user is online stops cleanly.
func TestStopDuringStartup(t *testing.T) {
	for _, fast := range []bool{false, true} {
		t.Run(fmt.Sprintf("fast=%v", fast), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				rep, _ := simulate(t, ctx, Config{Users: 50, Seed: 1, Tick: time.Second, Chance: 0.3, Fast: fast, JSON: true})
				requireConverged(t, rep)
				if rep.Actions.Total != 0 || rep.Stopped != "interrupted" || rep.Online != 0 {
					t.Errorf("%d actions, stopped %q, %d online", rep.Actions.Total, rep.Stopped, rep.Online)
				}
				var out bytes.Buffer
				rep.writeText(&out)
				if !strings.Contains(out.String(), "users       50 (0 came online before the stop)") {
					t.Errorf("summary does not say who came online:\n%s", out.String())
				}
				if err := rep.writeJSON(io.Discard); err != nil {
					t.Errorf("JSON summary: %v", err)
				}
			})
		})
	}
}

// Cancelling a real-time run stops it: users stop acting, what is in flight
// is delivered, and the views converge.
func TestInterruptDrains(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			time.Sleep(90 * time.Second)
			cancel()
		}()
		rep, _ := simulate(t, ctx, Config{Users: 8, Seed: 5, Tick: time.Second, Chance: 0.5, Delay: 3 * time.Second, Quiet: true})
		requireConverged(t, rep)
		if rep.Stopped != "interrupted" || rep.RunTime < 89 || rep.RunTime > 91 {
			t.Errorf("stopped %q after %vs", rep.Stopped, rep.RunTime)
		}
	})
}

// After a run in real time every goroutine it started has exited, outside
// a synctest bubble too.
func TestNoGoroutinesLeft(t *testing.T) {
	before := runtime.NumGoroutine()
	rep, _ := simulate(t, context.Background(), Config{Users: 30, Seed: 2, Tick: 5 * time.Millisecond, Chance: 0.5, Duration: 200 * time.Millisecond, Quiet: true})
	requireConverged(t, rep)
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after the run, %d before", n, before)
	}
}

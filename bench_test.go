package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkDelivery measures deliveries per second: one op is one event
// applied by one recipient. channels is the floor, N goroutines
// broadcasting pointers to each other through buffered channels and doing
// nothing else; chatsim is the quiet fast simulation of N users. Start-up
// is not timed. ns/op, B/op and allocs/op are per delivery, exactly.
func BenchmarkDelivery(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("users=%d/channels", n), func(b *testing.B) { measure(b, func() int64 { return broadcast(n, b.N) }) })
		b.Run(fmt.Sprintf("users=%d/chatsim", n), func(b *testing.B) { benchChatsim(b, n) })
	}
}

var benchSizes = []int{100, 1000, 10000}

// measure times work, which returns how many deliveries it made, and
// reports per-delivery figures.
func measure(b *testing.B, work func() int64) {
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	start := time.Now()
	n := work()
	took := time.Since(start)
	b.StopTimer()
	runtime.ReadMemStats(&after)
	report(b, n, took, after.Mallocs-before.Mallocs, after.TotalAlloc-before.TotalAlloc)
}

func report(b *testing.B, n int64, took time.Duration, allocs, bytes uint64) {
	b.ReportMetric(float64(took.Nanoseconds())/float64(n), "ns/op")
	b.ReportMetric(float64(n)/took.Seconds(), "deliveries/s")
	b.ReportMetric(float64(allocs)/float64(n), "allocs/op")
	b.ReportMetric(float64(bytes)/float64(n), "B/op")
}

// broadcast is the baseline: n goroutines send total pointers in all,
// each to the others in turn, through buffered channels of the capacity
// chatsim uses. A sender whose channel is full takes from its own channel
// meanwhile, as chatsim's users do, so it cannot deadlock.
func broadcast(n, total int) int64 {
	chans := make([]chan *int, n)
	for i := range chans {
		chans[i] = make(chan *int, inboxCapacity(n))
	}
	// Sender i sends count(i) messages, the k-th to (i+1+k%(n-1)) % n.
	count := func(i int) int { return total/n + btoi(i < total%n) }
	expect := make([]int, n)
	for i := range n {
		c := count(i)
		for j := range n {
			if j != i {
				off := (j - i - 1 + n) % n
				expect[j] += c/(n-1) + btoi(off < c%(n-1))
			}
		}
	}
	var wg sync.WaitGroup
	x := new(int)
	for i := range n {
		wg.Go(func() {
			own, got := chans[i], 0
			for k := range count(i) {
				ch := chans[(i+1+k%(n-1))%n]
				select {
				case ch <- x:
					continue
				default:
				}
				for sent := false; !sent; {
					select {
					case ch <- x:
						sent = true
					case <-own:
						got++
					}
				}
			}
			for ; got < expect[i]; got++ {
				<-own
			}
		})
	}
	wg.Wait()
	return int64(total)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// warmTicks are run before timing, so that views have grown past their
// first rooms and the measure is of a running simulation.
const warmTicks = 5

// benchChatsim runs the quiet fast simulation of n users, warms it up,
// then times it until it has made b.N more deliveries, and drains it: it
// drives the lockstep one step at a time, as Sim.runFast does, and stops it as
// Ctrl-C would.
func benchChatsim(b *testing.B, n int) {
	b.ReportAllocs()
	s := newSim(Config{Users: n, Seed: 1, Tick: time.Second, Chance: 0.3, Quiet: true, Fast: true}, io.Discard, io.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.begin(ctx)
	l := s.newLockstep(ctx, s.first)
	s.first = nil
	for range warmTicks {
		l.step()
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	from := s.applied()
	b.ResetTimer()
	start := time.Now()
	for s.applied()-from < int64(b.N) {
		if !l.step() {
			b.Fatal("the run ended before the deliveries asked for")
		}
	}
	took := time.Since(start)
	b.StopTimer()
	runtime.ReadMemStats(&after)
	applied := s.applied() - from
	cancel()
	for l.step() {
	}
	if r, _ := s.end(); !r.Converged {
		b.Fatal(r.Problems)
	}
	report(b, applied, took, after.Mallocs-before.Mallocs, after.TotalAlloc-before.TotalAlloc)
}

// applied counts deliveries applied so far, between lockstep steps.
func (s *Sim) applied() int64 {
	var n int64
	for _, p := range s.net.ports {
		n += p.applied
	}
	return n
}

// BenchmarkRealTime measures the CPU a real-time run takes per second of
// wall time, once its users are online: chatsim, and a baseline of the same
// goroutines with the same tick and the same fan-out (a create or a close
// to every other user, a message to a random group) sending pointers over
// channels and doing nothing else. One op is one second of running: run it
// with -benchtime 10x for ten seconds each.
func BenchmarkRealTime(b *testing.B) {
	const users, tick, chance = 1000, time.Second, 0.3
	b.Run(fmt.Sprintf("users=%d/baseline", users), func(b *testing.B) {
		cpuPerSecond(b, func(ctx context.Context) { tickingBaseline(ctx, users, tick, chance) })
	})
	b.Run(fmt.Sprintf("users=%d/chatsim", users), func(b *testing.B) {
		cpuPerSecond(b, func(ctx context.Context) {
			s := newSim(Config{Users: users, Seed: 1, Tick: tick, Chance: chance, Quiet: true}, io.Discard, io.Discard)
			if r, _ := s.run(ctx); !r.Converged {
				b.Error(r.Problems)
			}
		})
	})
}

// realTimeWarmUp is how long a real-time run goes before it is measured:
// every user online and ticking, views past their first rooms.
const realTimeWarmUp = 3 * time.Second

// cpuPerSecond starts run, lets it warm up, and reports the process's CPU
// time (user and system) per second over b.N seconds, then stops it.
func cpuPerSecond(b *testing.B, run func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	var done sync.WaitGroup
	done.Go(func() { run(ctx) })
	time.Sleep(realTimeWarmUp)
	cpu0, wall0 := cpuTime(), time.Now()
	time.Sleep(time.Duration(b.N) * time.Second)
	cpu, wall := cpuTime()-cpu0, time.Since(wall0)
	cancel()
	done.Wait()
	b.ReportMetric(cpu.Seconds()/wall.Seconds(), "cpu/s")
	b.ReportMetric(0, "ns/op")
}

// cpuTime is the CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// tickingBaseline runs n goroutines until ctx ends. Each ticks every tick
// from a random phase, and on a tick acts with chance: a third of the time
// it sends a pointer to every other goroutine (a create), a third to a
// random group of 2 to n members (a message: to the others in it), a third
// to every other again (a close). A sender whose recipient's channel is
// full takes from its own meanwhile, as chatsim's users do.
func tickingBaseline(ctx context.Context, n int, tick time.Duration, chance float64) {
	chans := make([]chan *int, n)
	for i := range chans {
		chans[i] = make(chan *int, inboxCapacity(n))
	}
	x := new(int)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(1, uint64(i)))
			own := chans[i]
			send := func(to int) {
				select {
				case chans[to] <- x:
					return
				default:
				}
				for {
					select {
					case chans[to] <- x:
						return
					case <-own:
					}
				}
			}
			timer := time.NewTimer(time.Duration(rng.Int64N(int64(tick))))
			defer timer.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-own:
				case <-timer.C:
					timer.Reset(tick)
					if rng.Float64() >= chance {
						continue
					}
					others := n - 1
					if rng.IntN(3) == 1 {
						others = 1 + rng.IntN(n-1) // a group of 2 to n, self included
					}
					from := rng.IntN(n)
					for k := range others {
						if to := (from + k) % n; to != i {
							send(to)
						} else {
							send((from + others) % n)
						}
					}
				}
			}
		})
	}
	wg.Wait()
}

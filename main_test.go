package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// TestMain runs the tests, then removes the binary the end-to-end tests
// built, if they did.
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// runArgs runs the program as main would and returns its stdout.
func runArgs(t *testing.T, args ...string) string {
	t.Helper()
	var out, errs bytes.Buffer
	if code := run(args, &out, &errs); code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, errs.String())
	}
	return out.String()
}

// badInputs are command lines that must be refused with a one-line error
// that names the flag and what it allows, then the usage, and status 2.
var badInputs = []struct {
	args []string
	want string // in the first line of stderr
}{
	{[]string{"-users", "1"}, `-users: must be a whole number from 2 to 1000000`},
	{[]string{"-users", "-3"}, `-users: must be a whole number from 2 to 1000000`},
	{[]string{"-users", "x"}, `-users: must be a whole number from 2 to 1000000`},
	{[]string{"-users", "1000001"}, `-users: must be a whole number from 2 to 1000000`},
	{[]string{"-chance", "1.5"}, `-chance: must be a number from 0 to 1`},
	{[]string{"-chance", "-0.1"}, `-chance: must be a number from 0 to 1`},
	{[]string{"-chance", "NaN"}, `-chance: must be a number from 0 to 1`},
	{[]string{"-tick", "0"}, `-tick: must be a duration from 100µs to 24h, like 500ms or 2s`},
	{[]string{"-tick", "-1s"}, `-tick: must be a duration from 100µs to 24h`},
	{[]string{"-tick", "25h"}, `-tick: must be a duration from 100µs to 24h`},
	{[]string{"-delay", "2562047h"}, `-delay: must be a duration from 0 to 24h`},
	{[]string{"-duration", "3000000h"}, `-duration: must be a duration from 0 (until Ctrl-C) to 876000h`},
	{[]string{"-quiet=maybe"}, `-quiet: must be true or false`},
	{[]string{"-fast", "-tick", "1ms", "-delay", "1h"}, `-delay 1h0m0s is 3600000 ticks of 1ms: with -fast it must be at most 1000 ticks`},
	{[]string{"-duration", "-5s"}, `-duration: must be a duration from 0 (until Ctrl-C) to 876000h, like 30s or 5m`},
	{[]string{"-delay", "soon"}, `-delay: must be a duration from 0 to 24h`},
	{[]string{"-stats", "-1s"}, `-stats: must be a duration from 0 (none) to 876000h`},
	{[]string{"-seed", "x"}, `-seed: must be a whole number from 0 to`},
	{[]string{"-bogus"}, `flag provided but not defined: -bogus`},
	{[]string{"-users", "6", "extra"}, `unexpected argument "extra": chatsim takes only flags`},
	{[]string{"-users"}, `flag needs an argument: -users`},
	{[]string{"-loss", "1"}, `-loss: must be a number from 0 to 0.9`},
	{[]string{"-loss", "-0.1"}, `-loss: must be a number from 0 to 0.9`},
	{[]string{"-dup", "2"}, `-dup: must be a number from 0 to 0.9`},
	{[]string{"-partition", "-1s"}, `-partition: must be a duration from 0 (none) to 24h`},
	{[]string{"-offline", "soon"}, `-offline: must be a duration from 0 (none) to 24h`},
	{[]string{"-clog", "soon"}, `-clog: must be a duration from 0 (none) to 24h`},
	{[]string{"-clog", "-1s"}, `-clog: must be a duration from 0 (none) to 24h`},
	{[]string{"-clog", "25h"}, `-clog: must be a duration from 0 (none) to 24h`},
	{[]string{"-join", "5", "-users", "6"}, `-join 5 with -users 6 leaves fewer than 2 users online at the start: -join must be from 0 to 4`},
	{[]string{"-join", "-1"}, `-join: must be a whole number from 0 to 999998`},
	{[]string{"-crash", "soon"}, `-crash: must be a duration from 0 (none) to 24h`},
	{[]string{"-crash", "25h"}, `-crash: must be a duration from 0 (none) to 24h`},
	{[]string{"-crash", "10s", "-users", "2"}, `-crash with -users 2 and -join 0: a crash must leave two users up, so at least 3 must be online from the start`},
	{[]string{"-fast", "-crash", "10s", "-users", "5", "-join", "3"}, `-crash with -users 5 and -join 3: a crash must leave two users up`},
	{[]string{"-shiviz", "run.log", "-users", "65"}, `-shiviz gives every event a vector clock with an entry per user: it takes at most 64 users, not 65`},
	{[]string{"-html", "run.html", "-html-window", "20s"}, `-html-window: must be FROM:TO with durations from 0 to 876000h and FROM before TO, like 20s:40s, 30s: or :1m`},
	{[]string{"-html", "run.html", "-html-window", "40s:20s"}, `-html-window: must be FROM:TO`},
	{[]string{"-html", "run.html", "-html-window", "soon:1m"}, `-html-window: must be FROM:TO`},
	{[]string{"-html", "run.html", "-html-window", "-1s:"}, `-html-window: must be FROM:TO`},
	{[]string{"-html-window", "20s:40s"}, `-html-window picks what -html and -shiviz draw: give one of them too`},
	{[]string{"-html-window", ":"}, `-html-window picks what -html and -shiviz draw: give one of them too`},
	{[]string{"-html", "run.out", "-shiviz", "./run.out"}, `-html and -shiviz both name run.out: give each its own file`},
	{[]string{"-color", "sometimes"}, `-color: must be auto, always or never`},
	{[]string{"-follow", "bob"}, `-follow: must be users like user_3 (from user_1), repeated or in a comma list like user_1,user_4`},
	{[]string{"-follow", "user_0"}, `-follow: must be users like user_3`},
	{[]string{"-follow", "user_9", "-users", "6"}, `-follow user_9: there are 6 users, user_1 to user_6`},
	{[]string{"-maxmem", "lots"}, `-maxmem: must be a size like 2GiB, 512MiB or 1.5G, or 0 for no limit`},
	{[]string{"-maxmem", "1MiB", "-users", "1000"}, `-maxmem 1 MiB is less than the 19.3 MiB that 1000 users need to start: give at least -maxmem 20MiB`},
	{[]string{"-fast", "-maxmem", "100MiB", "-users", "3000"}, `-maxmem 100 MiB is less than the 234.0 MiB that 3000 users need to start: give at least -maxmem 234MiB`},
}

func TestBadInput(t *testing.T) {
	for _, tc := range badInputs {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errs bytes.Buffer
			code := run(tc.args, &out, &errs)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			first, rest, _ := strings.Cut(errs.String(), "\n")
			if !strings.HasPrefix(first, "chatsim: ") || !strings.Contains(first, tc.want) {
				t.Errorf("first line %q, want it to contain %q", first, tc.want)
			}
			if !strings.Contains(rest, "Usage: chatsim [flags]") {
				t.Error("no usage after the error")
			}
			if out.Len() != 0 {
				t.Errorf("wrote to stdout: %q", out.String())
			}
		})
	}
}

func TestHelp(t *testing.T) {
	for _, arg := range []string{"-h", "-help", "--help"} {
		t.Run(arg, func(t *testing.T) {
			var out, errs bytes.Buffer
			if code := run([]string{arg}, &out, &errs); code != 0 {
				t.Errorf("exit %d", code)
			}
			for _, want := range []string{"Usage: chatsim [flags]", "Examples:", "-users N", "-seed S", "-fast", "-quiet"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("usage lacks %q", want)
				}
			}
		})
	}
}

func TestParseDefaults(t *testing.T) {
	cfg, _, err := parseArgs(nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Users != 4 || cfg.Chance != 0.3 || cfg.Tick.String() != "1s" || cfg.Duration != 0 || cfg.Seed != 0 || cfg.Quiet {
		t.Errorf("defaults = %+v", cfg)
	}
}

// A short run through run, as main calls it: the seed is printed at the
// start and in the summary, and the verdict is given.
func TestRunPrintsSeedAndSummary(t *testing.T) {
	var out, errs bytes.Buffer
	code := run([]string{"-fast", "-users", "6", "-duration", "30s", "-seed", "99"}, &out, &errs)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	s := out.String()
	if !strings.HasPrefix(s, "chatsim: 6 users, seed 99, fast, tick 1s, chance 0.3, for 30s\n") {
		t.Errorf("start line: %.100q", s)
	}
	for _, want := range []string{"\nsummary\n", "seed        99 (repeat the run with -seed 99)", "verdict     converged"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestRunPicksSeed(t *testing.T) {
	var out, errs bytes.Buffer
	if code := run([]string{"-fast", "-quiet", "-duration", "5s"}, &out, &errs); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if strings.Contains(out.String(), "seed 0,") {
		t.Errorf("seed 0 was not replaced: %s", out.String())
	}
}

// Profiles and traces are written where asked; a path that cannot be
// written is refused with status 1.
func TestProfiles(t *testing.T) {
	dir := t.TempDir()
	t.Run("written", func(t *testing.T) {
		cpu, mem, tr := filepath.Join(dir, "cpu.out"), filepath.Join(dir, "mem.out"), filepath.Join(dir, "trace.out")
		var out, errs bytes.Buffer
		code := run([]string{"-fast", "-quiet", "-users", "20", "-duration", "20s", "-cpuprofile", cpu, "-memprofile", mem, "-trace", tr}, &out, &errs)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs.String())
		}
		for _, f := range []string{cpu, mem, tr} {
			if st, err := os.Stat(f); err != nil || st.Size() == 0 {
				t.Errorf("%s: %v", f, err)
			}
		}
		// The trace has a task for each action, and every delivery logged
		// to the task of the action that sent it.
		if testing.Short() {
			return
		}
		parsed, err := exec.Command("go", "tool", "trace", "-d=parsed", tr).CombinedOutput()
		if err != nil {
			t.Fatalf("go tool trace: %v", err)
		}
		tasks := strings.Count(string(parsed), `TaskBegin`)
		sends := strings.Count(string(parsed), `Category="send"`)
		deliveries := regexp.MustCompile(`Log Time=\d+ Task=[1-9]\d* Category="deliver"`).FindAll(parsed, -1)
		if tasks == 0 || sends != tasks || len(deliveries) < tasks {
			t.Errorf("trace has %d tasks, %d sends, %d deliveries in tasks", tasks, sends, len(deliveries))
		}
	})
	t.Run("bad cpuprofile", func(t *testing.T) {
		var out, errs bytes.Buffer
		code := run([]string{"-fast", "-quiet", "-cpuprofile", filepath.Join(dir, "no", "such", "dir")}, &out, &errs)
		if code != 1 || !strings.Contains(errs.String(), "-cpuprofile:") {
			t.Errorf("exit %d, %q", code, errs.String())
		}
	})
	t.Run("bad memprofile", func(t *testing.T) {
		// A heap profile's path is tried before the run, not after it.
		var out, errs bytes.Buffer
		code := run([]string{"-fast", "-quiet", "-memprofile", filepath.Join(dir, "no", "such", "dir")}, &out, &errs)
		if code != 1 || !strings.HasPrefix(errs.String(), "chatsim: -memprofile: ") || out.Len() != 0 {
			t.Errorf("exit %d, stderr %q, stdout %.80q", code, errs.String(), out.String())
		}
	})
	t.Run("bad trace", func(t *testing.T) {
		// When the trace cannot start, the CPU profile started before it is
		// stopped, and no heap profile is written for a run that never ran.
		var out, errs bytes.Buffer
		mem := filepath.Join(dir, "mem2.out")
		code := run([]string{"-fast", "-quiet", "-cpuprofile", filepath.Join(dir, "cpu2.out"), "-memprofile", mem, "-trace", filepath.Join(dir, "no", "such", "dir")}, &out, &errs)
		if code != 1 || !strings.Contains(errs.String(), "-trace:") {
			t.Errorf("exit %d, %q", code, errs.String())
		}
		if _, err := os.Stat(mem); err == nil {
			t.Error("a heap profile was written for a run that did not start")
		}
		if err := pprof.StartCPUProfile(io.Discard); err != nil {
			t.Errorf("the CPU profile was left running: %v", err)
		} else {
			pprof.StopCPUProfile()
		}
	})
}

// brokenWriter fails after n writes with err.
type brokenWriter struct {
	n   int
	err error
}

func (w *brokenWriter) Write(p []byte) (int, error) {
	if w.n <= 0 {
		return 0, w.err
	}
	w.n--
	return len(p), nil
}

// When the reader goes away the run ends quietly: no panic, nothing on
// stderr. Any other write error ends it too, with one line and status 1.
func TestBrokenOutput(t *testing.T) {
	for _, fast := range []string{"-fast", "-fast=false"} {
		t.Run(fast+" reader gone", func(t *testing.T) {
			var errs bytes.Buffer
			code := run([]string{fast, "-users", "30", "-tick", "1ms"}, &brokenWriter{1, syscall.EPIPE}, &errs)
			if code != 0 || errs.Len() != 0 {
				t.Errorf("exit %d, stderr %q", code, errs.String())
			}
		})
		t.Run(fast+" disk full", func(t *testing.T) {
			var errs bytes.Buffer
			code := run([]string{fast, "-users", "30", "-tick", "1ms"}, &brokenWriter{1, syscall.ENOSPC}, &errs)
			if code != 1 || errs.String() != "chatsim: writing the output: no space left on device\n" {
				t.Errorf("exit %d, stderr %q", code, errs.String())
			}
		})
	}
}

// A fast run shorter than a tick still runs a tick and stops; durations
// round up to whole ticks.
func TestFastDurationRoundsUp(t *testing.T) {
	for _, tc := range []struct{ duration, run string }{
		{"500ms", "1s, 1 tick"},
		{"2500ms", "3s, 3 ticks"},
	} {
		t.Run(tc.duration, func(t *testing.T) {
			out := runArgs(t, "-fast", "-quiet", "-duration", tc.duration)
			// The drain follows when anything was in flight at the stop.
			if want := "  run         " + tc.run + ", duration reached"; !strings.Contains(out, want+"\n") && !strings.Contains(out, want+", then 1 tick to drain\n") {
				t.Errorf("want %q in\n%s", want, out)
			}
		})
	}
}

// A second signal ends the process at once with status 130.
func TestSecondSignalExits(t *testing.T) {
	exited := make(chan int, 1)
	cancelled := make(chan struct{})
	stop := onSignals(func() { close(cancelled) }, func(code int) { exited <- code })
	defer stop()
	p, _ := os.FindProcess(os.Getpid())
	p.Signal(os.Interrupt)
	<-cancelled
	// Until it exits: a signal too soon after the first is the same stop.
	stopped := make(chan struct{})
	var sender sync.WaitGroup
	sender.Go(func() {
		for {
			p.Signal(os.Interrupt)
			select {
			case <-stopped:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	code := <-exited
	close(stopped)
	sender.Wait()
	if code != 130 {
		t.Errorf("second interrupt: exit %d, want 130", code)
	}
}

// One stop signalled twice within sameSignal (timeout -s INT signals the
// process and its group) is one stop; a second Ctrl-C after it exits.
func TestSignalTwiceAtOnceIsOneStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sigs, done := make(chan os.Signal, 2), make(chan struct{})
		cancelled, exited := 0, 0
		go watchSignals(sigs, done, func() { cancelled++ }, func(int) { exited++ })
		sigs <- os.Interrupt
		time.Sleep(time.Millisecond)
		sigs <- os.Interrupt
		synctest.Wait()
		if cancelled != 1 || exited != 0 {
			t.Fatalf("two signals 1 ms apart: cancelled %d, exited %d; want one stop", cancelled, exited)
		}
		time.Sleep(sameSignal)
		sigs <- os.Interrupt
		synctest.Wait()
		if exited != 1 {
			t.Fatalf("a second Ctrl-C %v later: exited %d times", sameSignal, exited)
		}
		close(done)
	})
}

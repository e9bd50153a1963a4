package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Colour is on only when asked for, or on a terminal without NO_COLOR.
func TestColorDecision(t *testing.T) {
	for _, tc := range []struct {
		mode     string
		terminal bool
		noColor  string
		want     bool
	}{
		{"auto", true, "", true},
		{"auto", true, "1", false},
		{"auto", true, "0", false}, // any value but empty: no-color.org
		{"auto", false, "", false},
		{"always", false, "", true},
		{"always", false, "1", true},
		{"never", true, "", false},
		{"never", false, "", false},
	} {
		if got := colorOutput(tc.mode, tc.terminal, tc.noColor); got != tc.want {
			t.Errorf("-color %s, terminal %v, NO_COLOR=%q: colour %v, want %v", tc.mode, tc.terminal, tc.noColor, got, tc.want)
		}
	}
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) || isTerminal(&bytes.Buffer{}) {
		t.Error("a file or a buffer taken for a terminal")
	}
}

var escapes = regexp.MustCompile("\x1b\\[[0-9;]*m")

// In colour the log says the same words: without its escape codes it is
// the plain log, byte for byte. Each user has its own colour wherever its
// name appears, and the races and failures have theirs.
func TestColorLog(t *testing.T) {
	args := append([]string{"-dup", "0.1"}, faultArgs...)
	plain := runArgs(t, args...)
	colored := runArgs(t, append(args, "-color", "always")...)
	if strip := escapes.ReplaceAllString(colored, ""); strip != plain {
		t.Fatalf("the coloured log differs from the plain one:\n%s", firstDiff(plain, strip))
	}
	if strings.Contains(plain, "\x1b") || strings.Contains(runArgs(t, append(args, "-color", "never")...), "\x1b") {
		t.Error("escape codes without colour")
	}
	for name, style := range map[string]string{"merge": styleMerge, "held": styleHeld, "late": styleLate, "stale": styleStale,
		"failed": styleFailed, "away": styleAway, "network": styleNet, "verdict": styleGood} {
		if !strings.Contains(colored, style) {
			t.Errorf("no %s in its colour", name)
		}
	}
	for _, line := range strings.Split(colored, "\n") {
		for _, m := range regexp.MustCompile("(\x1b\\[[0-9;]*m)user_([0-9]+)").FindAllStringSubmatch(line, -1) {
			u := 0
			for _, c := range m[2] {
				u = u*10 + int(c-'0')
			}
			if m[1] != userColors[(u-1)%len(userColors)] {
				t.Fatalf("user_%d in %q, not its own colour: %q", u, m[1], line)
			}
		}
	}
	seen := map[string]bool{}
	for _, c := range userColors {
		if seen[c] {
			t.Errorf("colour %q twice", c)
		}
		seen[c] = true
	}
	// JSON is never coloured; nor is the page.
	if out := runArgs(t, append(args, "-json", "-color", "always")...); strings.Contains(out, "\x1b") {
		t.Error("escape codes in JSON")
	}
}

// -follow keeps exactly the lines of the users followed, and the
// network's, and changes nothing else.
func TestFollow(t *testing.T) {
	all := runArgs(t, faultArgs...)
	for _, follow := range [][]string{{"-follow", "user_3"}, {"-follow", "user_1,user_4"}, {"-follow", "user_2", "-follow", "5"}} {
		t.Run(strings.Join(follow, " "), func(t *testing.T) {
			got := runArgs(t, append(append([]string{}, faultArgs...), follow...)...)
			users := map[string]bool{}
			for _, f := range follow[1:] {
				if f != "-follow" {
					for _, u := range strings.Split(f, ",") {
						users["user_"+strings.TrimPrefix(u, "user_")] = true
					}
				}
			}
			var want strings.Builder
			start, rest, _ := strings.Cut(all, "\n")
			gotStart, got, _ := strings.Cut(got, "\n")
			if !strings.HasPrefix(gotStart, strings.TrimSuffix(start, ", for 1m0s")+", showing the lines of user_") {
				t.Errorf("the start line does not say whose lines it shows: %q", gotStart)
			}
			for line := range strings.Lines(rest) {
				m := regexp.MustCompile(`^\[[0-9:.]+ (\S+)\] `).FindStringSubmatch(line)
				if m == nil || m[1] == "network" || users[m[1]] {
					want.WriteString(line)
				}
			}
			if got != want.String() {
				t.Errorf("-follow %v:\n%s", follow, firstDiff(want.String(), got))
			}
		})
	}
	t.Run("json", func(t *testing.T) {
		out := runArgs(t, append(append([]string{}, faultArgs...), "-json", "-follow", "user_2")...)
		n := 0
		for line := range strings.Lines(out) {
			var r struct{ Kind, User string }
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatal(err)
			}
			switch {
			case r.Kind == "final" || r.Kind == "summary" || r.Kind == "start":
			case r.User == "user_2":
				n++
			case r.User != "" || !slices.Contains([]string{"split", "heal", "clog", "unclog"}, r.Kind):
				t.Errorf("a line of another user: %s", line)
			}
		}
		if n == 0 {
			t.Error("no lines of user_2")
		}
	})
}

// maxHeap samples the heap every millisecond until stop is closed, and
// returns the most it saw.
func maxHeap(stop <-chan struct{}) uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak uint64
	for {
		metrics.Read(s)
		peak = max(peak, s[0].Value.Uint64())
		select {
		case <-stop:
			return peak
		case <-time.After(time.Millisecond):
		}
	}
}

// A fast run with no end and a small -maxmem stops by itself before its
// heap passes the limit, drains, converges, says why in its summary and in
// one line on stderr, and gives the garbage collector its limit back.
func TestMaxMem(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"fast", []string{"-fast", "-quiet", "-users", "2000", "-seed", "1", "-maxmem", "160MiB"}},
		{"real time", []string{"-quiet", "-users", "1000", "-tick", "20ms", "-seed", "1", "-maxmem", "40MiB"}},
		// Enough to start, not to act: it stops before its first tick,
		// and says what would let it act.
		{"no tick", []string{"-fast", "-quiet", "-users", "2000", "-seed", "1", "-maxmem", sizeFlag(roundUp(startNeed(Config{Users: 2000, Fast: true, Quiet: true})))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runtime.GC() // the heap holds this run alone
			var out, errs bytes.Buffer
			stop := make(chan struct{})
			var peak uint64
			var sampler sync.WaitGroup
			sampler.Go(func() { peak = maxHeap(stop) })
			code := run(tc.args, &out, &errs)
			close(stop)
			sampler.Wait()
			limit, _ := parseSize(tc.args[len(tc.args)-1])
			if code != 0 || !strings.Contains(out.String(), "verdict     converged") {
				t.Fatalf("exit %d: %s%s", code, out.String(), errs.String())
			}
			if !regexp.MustCompile(`run .*, memory limit [0-9]+ MiB reached at tick [0-9]+(, then .* to drain)?\n`).MatchString(out.String()) {
				t.Errorf("the summary does not say the limit stopped the run:\n%s", out.String())
			}
			if lines := strings.Split(strings.TrimSpace(errs.String()), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "memory limit") {
				t.Errorf("stderr: %q, want one line on the limit", errs.String())
			}
			if noTick := regexp.MustCompile(`reached at tick 1(, then .* to drain)?\n`).MatchString(out.String()); noTick != (tc.name == "no tick") ||
				noTick && !regexp.MustCompile(`no tick fits in it: -maxmem [0-9]+MiB would let the users act once`).MatchString(errs.String()) {
				t.Errorf("stopped before the first tick: %v; stderr %q", noTick, errs.String())
			}
			if peak > limit {
				t.Errorf("the heap reached %s, past the limit %s", sizeString(peak), sizeString(limit))
			}
			t.Logf("peak heap %s of %s", sizeString(peak), sizeString(limit))
			if got := debug.SetMemoryLimit(-1); got != before {
				t.Errorf("the collector's limit is %d after the run, was %d", got, before)
			}
		})
	}
}

func TestSizes(t *testing.T) {
	for in, want := range map[string]uint64{
		"2GiB": 2 << 30, "512MiB": 512 << 20, "1.5G": 3 << 29, "3000000000": 3e9, "2GB": 2e9, "64 MiB": 64 << 20, "0": 0, "10K": 10 << 10,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "lots", "-1GiB", "2XB", "1e30GiB", "NaN"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) took it", in)
		}
	}
	for b, want := range map[uint64]string{2 << 30: "2 GiB", 3 << 29: "1.5 GiB", 600 << 20: "600 MiB", 1000: "1000 B"} {
		if got := sizeString(b); got != want {
			t.Errorf("sizeString(%d) = %q, want %q", b, got, want)
		}
	}
}

// The default limit is a share of the machine's memory; one too small to
// start is refused, with the figure needed, whether given or not.
func TestMemoryDefault(t *testing.T) {
	c := Config{Users: 1000, Chance: 0.3, Tick: time.Second}
	if err := checkMemory(&c, false, 8<<30); err != nil || c.MaxMem != 6<<30 {
		t.Errorf("default on 8 GiB: %s, %v; want 6 GiB", sizeString(c.MaxMem), err)
	}
	c = Config{Users: 1000, Chance: 0.3, Tick: time.Second}
	if err := checkMemory(&c, false, 0); err != nil || c.MaxMem != 0 {
		t.Errorf("default with the memory unknown: %d, %v; want no limit", c.MaxMem, err)
	}
	c = Config{Users: 100000, Chance: 0.3, Tick: time.Second}
	err := checkMemory(&c, false, 1<<30)
	if err == nil || !strings.Contains(err.Error(), "-maxmem defaults to three quarters of this machine's 1 GiB") || !strings.Contains(err.Error(), "give at least -maxmem ") {
		t.Errorf("100000 users on 1 GiB: %v", err)
	}
	c = Config{Users: 1000, Chance: 0.3, Tick: time.Second, Loss: 0.1}
	need := startNeed(c)
	if c.MaxMem = need - 1; checkMemory(&c, true, 0) == nil {
		t.Error("a limit below what the run needs to start was taken")
	}
	if c.MaxMem = need; checkMemory(&c, true, 0) != nil {
		t.Error("a limit of what the run needs to start was refused")
	}
	if runNeed(c) <= need {
		t.Error("acting needs no more than starting")
	}
	if startNeed(c) != startNeed(Config{Users: 1000}) {
		t.Error("faults cost memory before anything is sent: links are made when there is something to carry")
	}
	// A real-time run looks at its heap every memCheck: with short ticks it
	// must leave room for several ticks of creates.
	fast, real := c, c
	fast.Fast, real.Tick = true, 10*time.Millisecond
	fast.Quiet, real.Quiet = true, true
	if runNeed(real) <= runNeed(fast) {
		t.Error("a real-time run of short ticks needs no more room than a fast one")
	}
}

// A run large enough for the views' tables to dominate its heap runs the
// collector at GOGC 25, unless GOGC is set; the setting is put back after.
func TestGCPercent(t *testing.T) {
	big := Config{Users: 10000, Fast: true, Quiet: true, Chance: 0.3, Tick: time.Second}
	small := big
	small.Users = 1000
	if pct, ok := gcPercent(big); !ok || pct != 25 {
		t.Errorf("10,000 users: GOGC %d, %v; want 25", pct, ok)
	}
	if pct, ok := gcPercent(small); ok {
		t.Errorf("1000 users: GOGC %d; want Go's default", pct)
	}
	t.Setenv("GOGC", "100")
	if pct, ok := gcPercent(big); ok {
		t.Errorf("GOGC set: GOGC %d; want the environment's", pct)
	}
	os.Unsetenv("GOGC")
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	var out bytes.Buffer
	if code := run([]string{"-fast", "-quiet", "-users", "3500", "-duration", "1s", "-seed", "1"}, &out, io.Discard); code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC is %d after the run, was 100", got)
	}
}

// Command chatsim simulates a multi-user chat with no central server. Every
// user is a goroutine with its own view of who is online and of every live
// room; users create rooms, send messages and close rooms only by sending
// events to each other. Run it with -h for the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// maxUsers is the most users a run may have: where this design ends on a
// machine of 24 GiB, since every user knows every live room and is a
// goroutine of its own (README.md, Performance, has the figures).
const maxUsers = 1000000

// Every uid must fit in a packed stamp's uidBits: this fails to compile if
// maxUsers grows past it.
const _ = uint(1<<uidBits - 1 - maxUsers)

// run is the whole program: it parses args, runs the simulation and prints
// the summary, and returns the exit status: 0 when the run converged, 1 when
// it did not (a bug), 2 on bad usage.
func run(args []string, stdout, stderr io.Writer) int {
	cfg, fs, err := parseArgs(args)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(stdout, fs, true)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "chatsim: %v\n", err)
		printUsage(stderr, fs, false)
		return 2
	}
	if cfg.Seed == 0 {
		cfg.Seed = rand.Uint64N(1e9) + 1
	}
	cfg.Color = !cfg.JSON && colorOutput(colorMode(fs), isTerminal(stdout) && os.Getenv("TERM") != "dumb", os.Getenv("NO_COLOR"))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopSignals := onSignals(cancel, os.Exit)
	defer stopSignals()
	return execute(ctx, cfg, stdout, stderr)
}

// execute runs a parsed configuration until ctx ends or the run stops by
// itself, and prints the log and the summary.
func execute(ctx context.Context, cfg Config, stdout, stderr io.Writer) int {
	stopProfiles, err := startProfiles(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "chatsim: %v\n", err)
		return 1
	}
	if cfg.MaxMem > 0 {
		// The collector works harder as the heap nears the limit, before
		// the run has to stop for it.
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(int64(min(cfg.MaxMem, math.MaxInt64))))
	}
	if pct, ok := gcPercent(cfg); ok {
		defer debug.SetGCPercent(debug.SetGCPercent(pct))
	}
	files, err := createFiles(cfg)
	if err != nil {
		stopProfiles()
		fmt.Fprintf(stderr, "chatsim: %v\n", err)
		return 2
	}
	s := newSim(cfg, stdout, stderr)
	s.out.Write(startLine(cfg))
	rep, err := s.run(ctx)
	profileErr := stopProfiles()
	if profileErr != nil {
		fmt.Fprintf(stderr, "chatsim: %v\n", profileErr)
	}
	fileErr := files.write(cfg, rep, s.recording, s.rend)
	if fileErr != nil {
		fmt.Fprintf(stderr, "chatsim: %v\n", fileErr)
	}
	rep.color = cfg.Color
	if err == nil && cfg.JSON {
		err = rep.writeJSON(stdout)
	} else if err == nil {
		err = rep.writeText(stdout)
	}
	switch {
	case errors.Is(err, syscall.EPIPE):
		// The reader went away: nothing to say. (On a terminal's or a
		// shell's pipe the process ends by SIGPIPE before this, as Unix
		// tools do in `chatsim | head`.)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "chatsim: writing the output: %v\n", err)
		return 1
	case !rep.Converged, profileErr != nil, fileErr != nil:
		return 1
	}
	return 0
}

// onSignals cancels the run on the first SIGINT or SIGTERM and ends the
// process at once through exit, with 130, on the second. It returns a
// function that stops listening.
func onSignals(cancel func(), exit func(int)) (stop func()) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go watchSignals(sigs, done, cancel, exit)
	return func() {
		signal.Stop(sigs)
		close(done)
	}
}

// sameSignal is how soon after the first a signal is taken as the same
// one: `timeout -s INT` signals the process and then its process group,
// and a terminal may do the same, so one stop can arrive twice within a
// few milliseconds. A person's second Ctrl-C comes later than this.
const sameSignal = 300 * time.Millisecond

// watchSignals cancels on the first signal and exits with 130 on a second
// that comes sameSignal or more after it, until done.
func watchSignals(sigs <-chan os.Signal, done <-chan struct{}, cancel func(), exit func(int)) {
	select {
	case <-sigs:
		cancel()
	case <-done:
		return
	}
	first := time.Now()
	for {
		select {
		case <-sigs:
			if time.Since(first) >= sameSignal {
				exit(130)
				return
			}
		case <-done:
			return
		}
	}
}

func startLine(cfg Config) []byte {
	st := settingsOf(cfg)
	if cfg.JSON {
		var follow []string
		for _, u := range cfg.Follow {
			follow = append(follow, uidName(u))
		}
		return appendJSONLine(nil, struct {
			Kind string  `json:"kind"`
			T    float64 `json:"t"`
			Settings
			Follow []string `json:"follow,omitempty"`
		}{"start", 0, st, follow})
	}
	line := fmt.Sprintf("chatsim: %d users, seed %d, %s, tick %s, chance %g", st.Users, st.Seed, st.Mode, st.Tick, st.Chance) + st.delayText() + st.faultText()
	if len(cfg.Follow) > 0 {
		line += ", showing the lines of " + (&followValue{&cfg.Follow}).String() + " only"
	}
	if cfg.Duration > 0 {
		line += ", for " + cfg.Duration.String()
	} else {
		line += ", until Ctrl-C"
	}
	return []byte(line + "\n")
}

// parseArgs reads the flags. Every flag checks its own range, so an error
// names the flag and what it allows.
func parseArgs(args []string) (Config, *flag.FlagSet, error) {
	cfg := Config{Users: 4, Tick: time.Second, Chance: 0.3}
	fs := flag.NewFlagSet("chatsim", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Var(&intValue{&cfg.Users, 2, maxUsers}, "users", "simulate `N` users, from 2 to 1000000")
	fs.Var(&seedValue{&cfg.Seed}, "seed", "seed `S` for every random choice; 0 picks one (the seed in use is printed, to repeat a run)")
	fs.Var(&durValue{&cfg.Duration, 0, maxSimTime, "from 0 (until Ctrl-C) to 876000h, like 30s or 5m"}, "duration", "stop by itself after `D`, at most 876000h (simulated with -fast, in whole ticks); 0 runs until Ctrl-C")
	fs.Var(&durValue{&cfg.Tick, minTick, maxTick, "from 100µs to 24h, like 500ms or 2s"}, "tick", "how often each user rolls for an action, `D` from 100µs to 24h")
	fs.Var(&chanceValue{p: &cfg.Chance}, "chance", "chance `P` from 0 to 1 that a user acts on a tick")
	fs.Var(&boolValue{&cfg.Quiet}, "quiet", "no per-event log: only the start line and the summary")
	fs.Var(&boolValue{&cfg.JSON}, "json", "log and summary as JSON Lines instead of text")
	fs.Var(&boolValue{&cfg.Fast}, "fast", "virtual time in lockstep: as fast as the CPU allows, and the same seed gives the same output")
	fs.Var(&durValue{&cfg.Delay, 0, maxTick, "from 0 to 24h, like 2s"}, "delay", "hold each delivery back a random time up to `D`, at most 24h (with -fast, whole ticks, at most 1000)")
	fs.Var(&durValue{&cfg.Stats, 0, maxSimTime, "from 0 (none) to 876000h, like 10s"}, "stats", "write a progress line to stderr every `D` (simulated with -fast)")
	fs.Var(&chanceValue{&cfg.Loss, maxFault}, "loss", "lose each transmission with chance `P`, from 0 to 0.9")
	fs.Var(&chanceValue{&cfg.Dup, maxFault}, "dup", "deliver each transmission twice with chance `P`, from 0 to 0.9")
	fs.Var(&durValue{&cfg.Partition, 0, maxTick, "from 0 (none) to 24h, like 10s"}, "partition", "split the network now and then (half the splits one way: one side reaches the other, nothing comes back), each split and each healed period lasting up to `D` (at most 24h)")
	fs.Var(&durValue{&cfg.Offline, 0, maxTick, "from 0 (none) to 24h, like 10s"}, "offline", "take users offline now and then (about one in ten at a time), each for up to `D` (at most 24h)")
	fs.Var(&durValue{&cfg.Clog, 0, maxTick, "from 0 (none) to 24h, like 10s"}, "clog", "clog a user's sends, what is sent to it, or its sends to one other now and then (about one user in twenty at a time), each for up to `D` (at most 24h): what a clog holds waits, and is not lost")
	fs.Var(&durValue{&cfg.Crash, 0, maxTick, "from 0 (none) to 24h, like 30s"}, "crash", "crash users now and then (about one in twenty at a time; never fewer than two up), each down for up to `D` (at most 24h); a crashed user forgets everything and restarts as a new incarnation that learns the rooms from its peers")
	fs.Var(&intValue{&cfg.Join, 0, maxUsers - 2}, "join", "`N` users come online late, in the first half of the run, and learn the rooms from a peer (at least 2 users stay online from the start)")
	fs.Var(&choiceValue{"auto", []string{"auto", "always", "never"}}, "color", "colour the log and summary: `WHEN` auto (on a terminal, unless NO_COLOR is set), always or never; JSON never")
	fs.Var(&followValue{&cfg.Follow}, "follow", "show only the lines of `user_N` (repeat it, or a comma list), and the network's; the summary covers everyone")
	var memGiven bool
	fs.Var(&sizeValue{&cfg.MaxMem, &memGiven}, "maxmem", fmt.Sprintf("stop, drain and sum up before the heap passes `SIZE`, like 2GiB; 0 for no limit (default three quarters of this machine's memory, %s)", sizeString(uint64(float64(machineMemory())*defaultMemShare))))
	fs.StringVar(&cfg.HTML, "html", "", "after the run, write a page that shows it (a space-time diagram, the summary, charts) to `file`")
	fs.StringVar(&cfg.ShiViz, "shiviz", "", fmt.Sprintf("after the run, write its log with vector clocks for ShiViz to `file` (at most %d users)", maxShiVizUsers))
	fs.Var(&windowValue{p: &cfg.Window}, "html-window", "draw only the stretch `FROM:TO` of the run, like 20s:40s, in -html and -shiviz (either end may be left out)")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile to `file`")
	fs.StringVar(&cfg.MemProfile, "memprofile", "", "write a heap profile to `file` at the end")
	fs.StringVar(&cfg.Trace, "trace", "", "write an execution trace to `file` (go tool trace)")
	if err := fs.Parse(args); err != nil {
		return cfg, fs, err
	}
	if fs.NArg() > 0 {
		return cfg, fs, fmt.Errorf("unexpected argument %q: chatsim takes only flags", fs.Arg(0))
	}
	if ticks := wholeTicks(cfg.Delay, cfg.Tick); cfg.Fast && ticks > maxDelayTicks {
		return cfg, fs, fmt.Errorf("-delay %v is %d ticks of %v: with -fast it must be at most %d ticks", cfg.Delay, ticks, cfg.Tick, maxDelayTicks)
	}
	for _, u := range cfg.Follow {
		if int(u) > cfg.Users {
			return cfg, fs, fmt.Errorf("-follow %s: there are %d users, user_1 to user_%d", uidName(u), cfg.Users, cfg.Users)
		}
	}
	if err := checkMemory(&cfg, memGiven, machineMemory()); err != nil {
		return cfg, fs, err
	}
	if cfg.ShiViz != "" && cfg.Users > maxShiVizUsers {
		return cfg, fs, fmt.Errorf("-shiviz gives every event a vector clock with an entry per user: it takes at most %d users, not %d", maxShiVizUsers, cfg.Users)
	}
	if cfg.HTML != "" && filepath.Clean(cfg.HTML) == filepath.Clean(cfg.ShiViz) {
		return cfg, fs, fmt.Errorf("-html and -shiviz both name %s: give each its own file", cfg.HTML)
	}
	if fs.Lookup("html-window").Value.String() != "" && cfg.HTML == "" && cfg.ShiViz == "" {
		return cfg, fs, errors.New("-html-window picks what -html and -shiviz draw: give one of them too")
	}
	if cfg.Join > cfg.Users-2 {
		return cfg, fs, fmt.Errorf("-join %d with -users %d leaves fewer than 2 users online at the start: -join must be from 0 to %d", cfg.Join, cfg.Users, cfg.Users-2)
	}
	if cfg.Crash > 0 && cfg.Users-cfg.Join < 3 {
		return cfg, fs, fmt.Errorf("-crash with -users %d and -join %d: a crash must leave two users up, so at least 3 must be online from the start", cfg.Users, cfg.Join)
	}
	return cfg, fs, nil
}

const usageIntro = `chatsim simulates a chat with no server. Every user is a goroutine with its
own view of who is online and of every live room; users create rooms, send
messages and close rooms only by telling each other. Ctrl-C stops the run,
delivers what is in flight and prints a summary; a second Ctrl-C quits at once.

`

const usageHead = `Usage: chatsim [flags]

Examples:
  chatsim -users 6                          watch six users, until Ctrl-C
  chatsim -users 6 -duration 30s -seed 42   stop by itself after 30s
  chatsim -fast -users 5 -duration 60s -seed 7 -delay 3s
                                            virtual time: replays byte for byte
  chatsim -quiet -users 1000 -tick 10ms -duration 10s
  chatsim -users 6 -loss 0.2 -partition 10s -offline 10s -clog 10s -join 2
                                            faults and churn, survived by protocol
  chatsim -fast -users 8 -duration 120s -crash 10s -loss 0.1 -seed 3
                                            users crash, forget, and recover
  chatsim -fast -json -duration 60s -delay 3s -seed 7 | jq -c 'select(.kind == "merge")'
  chatsim -fast -users 6 -duration 60s -delay 3s -seed 7 -html run.html
                                            the run as a page: open run.html

Flags:
`

// printUsage prints the usage; the intro only when it was asked for.
func printUsage(w io.Writer, fs *flag.FlagSet, intro bool) {
	if intro {
		fmt.Fprint(w, usageIntro)
	}
	fmt.Fprint(w, usageHead)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// boolValue is a bool flag whose error says what it takes.
type boolValue struct{ p *bool }

func (v *boolValue) IsBoolFlag() bool { return true }

func (v *boolValue) String() string {
	if v.p == nil {
		return "false"
	}
	return strconv.FormatBool(*v.p)
}

func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("must be true or false, or the flag alone for true")
	}
	*v.p = b
	return nil
}

// intValue is an int flag confined to [lo, hi].
type intValue struct {
	p      *int
	lo, hi int
}

func (v *intValue) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.Itoa(*v.p)
}

func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < v.lo || n > v.hi {
		return fmt.Errorf("must be a whole number from %d to %d", v.lo, v.hi)
	}
	*v.p = n
	return nil
}

// seedValue is a uint64 flag.
type seedValue struct{ p *uint64 }

func (v *seedValue) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.FormatUint(*v.p, 10)
}

func (v *seedValue) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return errors.New("must be a whole number from 0 to 18446744073709551615 (0 picks one)")
	}
	*v.p = n
	return nil
}

// chanceValue is a probability flag, from 0 to max (1 when max is 0).
type chanceValue struct {
	p   *float64
	max float64
}

// maxFault is the most a loss or duplication chance may be: beyond it a
// run would spend itself on retransmissions.
const maxFault = 0.9

func (v *chanceValue) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.FormatFloat(*v.p, 'g', -1, 64)
}

func (v *chanceValue) Set(s string) error {
	hi := v.max
	if hi == 0 {
		hi = 1
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || !(f >= 0 && f <= hi) {
		return fmt.Errorf("must be a number from 0 to %g, like 0.3", hi)
	}
	*v.p = f
	return nil
}

// Limits of the duration flags: ticks long enough for a clock to serve and
// short enough, with any delay, for simulation times to stay far from
// overflow; and a delay of at most maxDelayTicks in fast mode, where each
// user keeps a bucket per tick of delay.
const (
	minTick       = 100 * time.Microsecond
	maxTick       = 24 * time.Hour
	maxDelayTicks = 1000
	maxSimTime    = 100 * 365 * 24 * time.Hour // a century: far from time.Duration's 292 years
)

// durValue is a duration flag within [min, max]; allowed says so to people.
type durValue struct {
	p        *time.Duration
	min, max time.Duration
	allowed  string
}

func (v *durValue) String() string {
	if v.p == nil {
		return "0s"
	}
	return v.p.String()
}

func (v *durValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil || d < v.min || d > v.max {
		return errors.New("must be a duration " + v.allowed)
	}
	*v.p = d
	return nil
}

// choiceValue is a flag that takes one of a few words.
type choiceValue struct {
	v       string
	allowed []string
}

func (c *choiceValue) String() string {
	if c == nil {
		return ""
	}
	return c.v
}

func (c *choiceValue) Set(s string) error {
	if !slices.Contains(c.allowed, s) {
		return fmt.Errorf("must be %s or %s", strings.Join(c.allowed[:len(c.allowed)-1], ", "), c.allowed[len(c.allowed)-1])
	}
	c.v = s
	return nil
}

// colorMode is the -color word parsed in fs.
func colorMode(fs *flag.FlagSet) string { return fs.Lookup("color").Value.String() }

// colorOutput decides whether the log is coloured: -color always or never
// decide; auto colours a terminal only (not TERM=dumb), and only when
// NO_COLOR is unset or empty (no-color.org), as git and ls do.
func colorOutput(mode string, terminal bool, noColor string) bool {
	switch mode {
	case "always":
		return true
	case "never":
		return false
	}
	return terminal && noColor == ""
}

// isTerminal reports whether w is a terminal, not a pipe or a file.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// followValue is the -follow flag: users by name (user_3) or number,
// repeated or in a comma list.
type followValue struct{ p *[]int32 }

func (v *followValue) String() string {
	if v.p == nil {
		return ""
	}
	names := make([]string, len(*v.p))
	for i, u := range *v.p {
		names[i] = uidName(u)
	}
	return strings.Join(names, ", ")
}

func (v *followValue) Set(s string) error {
	for part := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(part), "user_"))
		if err != nil || n < 1 || n > maxUsers {
			return errors.New("must be users like user_3 (from user_1), repeated or in a comma list like user_1,user_4")
		}
		if !slices.Contains(*v.p, int32(n)) {
			*v.p = append(*v.p, int32(n))
		}
	}
	return nil
}

// windowValue is a stretch of a run, FROM:TO, either end optional.
type windowValue struct {
	p     *timeWindow
	given bool
}

func (v *windowValue) String() string {
	if v.p == nil || !v.given {
		return ""
	}
	s := v.p.From.String() + ":"
	if v.p.To > 0 {
		s += v.p.To.String()
	}
	return s
}

func (v *windowValue) Set(s string) error {
	bad := errors.New("must be FROM:TO with durations from 0 to 876000h and FROM before TO, like 20s:40s, 30s: or :1m")
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return bad
	}
	var w timeWindow
	for _, end := range []struct {
		text string
		p    *time.Duration
	}{{a, &w.From}, {b, &w.To}} {
		if end.text == "" {
			continue
		}
		d, err := time.ParseDuration(end.text)
		if err != nil || d < 0 || d > maxSimTime {
			return bad
		}
		*end.p = d
	}
	if w.To > 0 && w.To <= w.From {
		return bad
	}
	*v.p, v.given = w, true
	return nil
}

// startProfiles starts what -cpuprofile and -trace ask for and returns the
// function that finishes them and writes -memprofile. If one cannot start,
// what did start is stopped, and no heap profile is written.
func startProfiles(cfg Config) (stop func() error, err error) {
	var closers []func() error
	finish := func() error {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i]())
		}
		return errors.Join(errs...)
	}
	start := func(name, path string, begin func(io.Writer) error, end func()) error {
		if path == "" {
			return nil
		}
		f, err := os.Create(path)
		if err == nil {
			if err = begin(f); err != nil {
				f.Close()
			}
		}
		if err != nil {
			finish()
			return fmt.Errorf("%s: %w", name, err)
		}
		closers = append(closers, func() error { end(); return f.Close() })
		return nil
	}
	if err := start("-cpuprofile", cfg.CPUProfile, pprof.StartCPUProfile, pprof.StopCPUProfile); err != nil {
		return nil, err
	}
	if err := start("-trace", cfg.Trace, trace.Start, trace.Stop); err != nil {
		return nil, err
	}
	// The heap profile is written at the end, but its file is made now, so
	// that a bad path is refused before the run rather than after it.
	var heap *os.File
	if cfg.MemProfile != "" {
		if heap, err = os.Create(cfg.MemProfile); err != nil {
			finish()
			return nil, fmt.Errorf("-memprofile: %w", err)
		}
	}
	return func() error {
		err := finish()
		if heap != nil {
			err = errors.Join(err, writeHeapProfile(heap))
		}
		return err
	}, nil
}

func writeHeapProfile(f *os.File) error {
	runtime.GC()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("-memprofile: %w", err)
	}
	return f.Close()
}

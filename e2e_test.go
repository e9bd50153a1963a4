package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The end-to-end tests build the binary and run it as a user would.

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

func builtBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "chatsim-e2e")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "chatsim")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = errors.New(string(out))
		}
	})
	if binErr != nil {
		t.Fatalf("go build: %v", binErr)
	}
	return binPath
}

// e2eLimit is how long a binary may take to exit before a test gives up
// on it, and stopLimit how long a stop may take: both far above what they
// take, so that a loaded machine does not make them flake.
const (
	e2eLimit  = 60 * time.Second
	stopLimit = 5 * time.Second
)

// wait waits for cmd to exit, killing it after limit.
func wait(t *testing.T, cmd *exec.Cmd, limit time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%v still running after %v", cmd.Args, limit)
		return nil
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func TestE2EBadInput(t *testing.T) {
	bin := builtBinary(t)
	for _, tc := range badInputs {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errs bytes.Buffer
			cmd := exec.Command(bin, tc.args...)
			cmd.Stdout, cmd.Stderr = &out, &errs
			if code := exitCode(cmd.Run()); code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			first, _, _ := strings.Cut(errs.String(), "\n")
			if !strings.Contains(first, tc.want) {
				t.Errorf("first line %q, want %q", first, tc.want)
			}
			if strings.Contains(errs.String(), "panic") || strings.Contains(errs.String(), "goroutine ") {
				t.Errorf("%s", errs.String())
			}
		})
	}
}

// A short run stops by itself and prints the summary.
func TestE2EDuration(t *testing.T) {
	bin := builtBinary(t)
	var out, errs bytes.Buffer
	cmd := exec.Command(bin, "-users", "6", "-duration", "1500ms", "-tick", "100ms")
	cmd.Stdout, cmd.Stderr = &out, &errs
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if code := exitCode(wait(t, cmd, e2eLimit)); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	if took := time.Since(start); took > 10*stopLimit {
		t.Errorf("a 1.5s run took %v", took)
	}
	s := out.String()
	for _, want := range []string{"chatsim: 6 users, seed ", "] user_2 is online", "\nsummary\n", "duration reached", "verdict     converged"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if errs.Len() != 0 {
		t.Errorf("stderr: %s", errs.String())
	}
}

// startReading starts the binary and returns a reader of its stdout, after
// its first line has come out.
func startReading(t *testing.T, args ...string) (*exec.Cmd, *bufio.Reader, *bytes.Buffer) {
	cmd, r, _, errs := startPipe(t, args...)
	return cmd, r, errs
}

// startPipe is startReading that also returns the read end of the pipe.
func startPipe(t *testing.T, args ...string) (*exec.Cmd, *bufio.Reader, io.Closer, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(builtBinary(t), args...)
	var errs bytes.Buffer
	cmd.Stderr = &errs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(stdout)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatalf("first line: %v", err)
	}
	return cmd, r, stdout, &errs
}

// Ctrl-C stops the users, delivers what is in flight, prints the summary
// and exits 0, promptly.
func TestE2EInterrupt(t *testing.T) {
	cmd, r, errs := startReading(t, "-users", "6", "-tick", "50ms")
	waitForAction(t, r)
	interrupt(t, cmd, r, errs)
}

// Ctrl-C during start-up, with crashes and outages due every few ticks:
// the faults only end, so no user is crashed before every user started,
// and the run converges.
func TestE2EInterruptDuringStartUp(t *testing.T) {
	cmd, r, errs := startReading(t, "-users", "5000", "-tick", "100us", "-crash", "1ms", "-offline", "1ms", "-quiet")
	interrupt(t, cmd, r, errs)
}

// waitForAction reads the log until a user has acted.
func waitForAction(t *testing.T, r *bufio.Reader) {
	t.Helper()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("run ended early: %v", err)
		}
		if strings.Contains(line, "] I ") {
			return
		}
	}
}

// interrupt sends Ctrl-C and checks that the run stops promptly (within
// stopLimit, loose for a loaded machine: it takes a fraction of a second),
// exits 0 and prints a converged summary.
func interrupt(t *testing.T, cmd *exec.Cmd, r io.Reader, errs *bytes.Buffer) {
	t.Helper()
	cmd.Process.Signal(os.Interrupt)
	sent := time.Now()
	rest, _ := io.ReadAll(r)
	if code := exitCode(wait(t, cmd, e2eLimit)); code != 0 {
		t.Fatalf("exit %d after Ctrl-C: %s", code, errs.String())
	}
	if took := time.Since(sent); took > stopLimit {
		t.Errorf("stopping took %v", took)
	}
	for _, want := range []string{"\nsummary\n", "interrupted", "verdict     converged"} {
		if !strings.Contains(string(rest), want) {
			t.Errorf("output after Ctrl-C lacks %q:\n%s", want, rest)
		}
	}
}

// SIGTERM stops the run the same way.
func TestE2ETerminate(t *testing.T) {
	cmd, r, errs := startReading(t, "-users", "6", "-tick", "50ms", "-quiet")
	cmd.Process.Signal(syscall.SIGTERM)
	rest, _ := io.ReadAll(r)
	if code := exitCode(wait(t, cmd, e2eLimit)); code != 0 {
		t.Fatalf("exit %d after SIGTERM: %s", code, errs.String())
	}
	if !strings.Contains(string(rest), "verdict     converged") {
		t.Errorf("no verdict after SIGTERM:\n%s", rest)
	}
}

// A second Ctrl-C quits at once with status 130, even when the first could
// not finish (here, because nobody reads the output any more).
func TestE2ESecondInterrupt(t *testing.T) {
	cmd, _, errs := startReading(t, "-users", "200", "-tick", "1ms")
	// Stop reading: the pipe fills and the run blocks on its output. Two
	// signals sent back to back may merge into one pending signal, so keep
	// interrupting until the process is gone.
	exited := make(chan struct{})
	defer close(exited)
	go func() {
		tk := time.NewTicker(50 * time.Millisecond)
		defer tk.Stop()
		for {
			cmd.Process.Signal(os.Interrupt)
			select {
			case <-exited:
				return
			case <-tk.C:
			}
		}
	}()
	if code := exitCode(wait(t, cmd, e2eLimit)); code != 130 {
		t.Fatalf("exit %d after two interrupts, want 130: %s", code, errs.String())
	}
}

// `chatsim | head -3`: when the reader goes away the run ends quietly.
func TestE2EClosedPipe(t *testing.T) {
	cmd, r, stdout, errs := startPipe(t, "-users", "6", "-tick", "20ms")
	for range 2 {
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	stdout.Close()
	err := wait(t, cmd, e2eLimit)
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGPIPE) {
		t.Errorf("after the reader left: %v", err)
	}
	if errs.Len() != 0 {
		t.Errorf("stderr after the reader left: %q", errs.String())
	}
}

// Through a real shell pipeline, as the README shows it.
func TestE2EHead(t *testing.T) {
	bin := builtBinary(t)
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	var out, errs bytes.Buffer
	cmd := exec.Command(sh, "-c", bin+" -users 6 -tick 20ms | head -3")
	cmd.Stdout, cmd.Stderr = &out, &errs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, cmd, e2eLimit); err != nil {
		t.Fatalf("pipeline: %v: %s", err, errs.String())
	}
	if n := strings.Count(out.String(), "\n"); n != 3 {
		t.Errorf("%d lines, want 3:\n%s", n, out.String())
	}
	if errs.Len() != 0 {
		t.Errorf("stderr: %q", errs.String())
	}
}

// Ctrl-C stops a fast run too: the users drain in lockstep and the summary
// comes out.
func TestE2EInterruptFast(t *testing.T) {
	cmd, r, errs := startReading(t, "-fast", "-quiet", "-users", "50")
	interrupt(t, cmd, r, errs)
}

// A full disk is an error: one line on stderr and status 1.
func TestE2EFullDisk(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skip("no /dev/full")
	}
	defer full.Close()
	var errs bytes.Buffer
	cmd := exec.Command(builtBinary(t), "-fast", "-users", "6", "-duration", "10s")
	cmd.Stdout, cmd.Stderr = full, &errs
	if code := exitCode(cmd.Run()); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if e := errs.String(); !strings.HasPrefix(e, "chatsim: writing the output: ") || !strings.HasSuffix(e, "no space left on device\n") || strings.Count(e, "\n") != 1 {
		t.Errorf("stderr %q", errs.String())
	}
}

// A run stopped by Ctrl-C still writes its page and its ShiViz log, with
// the summary the run printed.
func TestE2EInterruptWritesPage(t *testing.T) {
	dir := t.TempDir()
	page, log := filepath.Join(dir, "run.html"), filepath.Join(dir, "run.shiviz")
	cmd, r, errs := startReading(t, "-users", "4", "-tick", "50ms", "-html", page, "-shiviz", log)
	waitForAction(t, r)
	interrupt(t, cmd, r, errs)
	p, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(p), "interrupted") || !strings.Contains(string(p), `class="verdict ok"`) {
		t.Error("the page lacks the summary of the interrupted run")
	}
	l, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	checkShiViz(t, string(l))
}

// The binary in real time with every fault, stopped by Ctrl-C in the
// middle of outages, splits and crashes: the JSON log it prints, start to summary,
// tells no effect before its cause (see checkLogOrder), and stderr says
// why the stop takes a while.
func TestE2ELogOrderAfterInterrupt(t *testing.T) {
	cmd, r, _, errs := startPipe(t, "-json", "-users", "30", "-tick", "20ms", "-delay", "40ms", "-loss", "0.3", "-dup", "0.2",
		"-partition", "300ms", "-offline", "200ms", "-crash", "200ms", "-join", "6")
	var log strings.Builder
	for outages, crashes := 0, 0; outages < 40 || crashes < 5; {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("run ended early: %v", err)
		}
		log.WriteString(line)
		switch {
		case strings.Contains(line, `"kind":"offline"`):
			outages++
		case strings.Contains(line, `"kind":"crash"`):
			crashes++
		}
	}
	cmd.Process.Signal(os.Interrupt)
	rest, _ := io.ReadAll(r)
	log.Write(rest)
	if code := exitCode(wait(t, cmd, e2eLimit)); code != 0 {
		t.Fatalf("exit %d after Ctrl-C: %s", code, errs.String())
	}
	requireOrdered(t, log.String())
	// With faults the drain takes a while, and the user is told why.
	if want := "chatsim: interrupted: stopping; the faults end and users deliver what is still in flight"; !strings.HasPrefix(errs.String(), want) {
		t.Errorf("stderr %q, want it to start %q", errs.String(), want)
	}
}

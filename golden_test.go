package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// goldenRuns are small fast runs, with injected faults, whose whole output
// is checked in under testdata/.
var goldenRuns = []struct {
	file string
	args []string
}{
	{"fast.golden", []string{"-fast", "-users", "5", "-duration", "60s", "-seed", "7", "-delay", "3s"}},
	{"fast.jsonl.golden", []string{"-fast", "-json", "-users", "5", "-duration", "60s", "-seed", "7", "-delay", "3s"}},
	{"faults.golden", faultArgs},
	{"faults.jsonl.golden", append([]string{"-json"}, faultArgs...)},
	{"plain.jsonl.golden", []string{"-fast", "-json", "-users", "7", "-duration", "40s", "-seed", "5"}},
	{"crash.golden", []string{"-fast", "-users", "6", "-duration", "40s", "-seed", "2", "-crash", "3s", "-clog", "5s", "-partition", "10s", "-loss", "0.1"}},
}

// faultArgs is a small fast run with every fault.
var faultArgs = []string{"-fast", "-users", "6", "-duration", "60s", "-seed", "3", "-delay", "2s",
	"-loss", "0.2", "-dup", "0.1", "-partition", "10s", "-offline", "10s", "-clog", "10s", "-join", "2"}

// A fast run is a function of its flags and seed: it matches the output
// checked in under testdata/ byte for byte. go test -run Golden -update
// rewrites the files after a deliberate change.
func TestGolden(t *testing.T) {
	for _, g := range goldenRuns {
		t.Run(g.file, func(t *testing.T) { matchGolden(t, g.file, runArgs(t, g.args...), fmt.Sprint(g.args)) })
	}
}

// matchGolden checks got against testdata/file, or rewrites the file with
// -update; what names what got is.
func matchGolden(t *testing.T, file, got, what string) {
	t.Helper()
	path := filepath.Join("testdata", file)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run Golden -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s:\n%s", what, path, firstDiff(string(want), got))
	}
}

// firstDiff describes the first line where two outputs differ.
func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := range min(len(w), len(g)) {
		if w[i] != g[i] {
			return fmt.Sprintf("line %d\nwant %s\ngot  %s", i+1, w[i], g[i])
		}
	}
	return fmt.Sprintf("want %d lines, got %d", len(w), len(g))
}

// docSamples are the samples of output the docs quote from a golden run:
// the code block after intro in doc, every line of which is a line of
// golden, but for lines cut short with "...". They go stale when the
// output changes; this says where.
var docSamples = []struct{ doc, intro, golden string }{
	{"README.md", "Each line is one user's view of one thing", "fast.golden"},
	{"README.md", "When the run ends, the summary:", "fast.golden"},
	{"docs/faults.md", "### What the log and the summary say", "faults.golden"},
	{"docs/faults.md", "faults the summary has these lines", "faults.golden"},
	{"docs/log.md", "with every figure of the\ntext summary.", "fast.jsonl.golden"},
	{"docs/log.md", "when there are late joiners (lines from the", "faults.jsonl.golden"},
}

// The docs quote the golden runs as they are.
func TestDocSamples(t *testing.T) {
	for _, d := range docSamples {
		doc, err := os.ReadFile(d.doc)
		if err != nil {
			t.Fatal(err)
		}
		golden, err := os.ReadFile(filepath.Join("testdata", d.golden))
		if err != nil {
			t.Fatal(err)
		}
		lines := make(map[string]bool)
		for l := range strings.Lines(string(golden)) {
			lines[strings.TrimSuffix(l, "\n")] = true
		}
		_, after, ok := strings.Cut(string(doc), d.intro)
		if !ok {
			t.Errorf("%s: no %q", d.doc, d.intro)
			continue
		}
		_, block, _ := strings.Cut(after, "```\n")
		block, _, _ = strings.Cut(block, "```")
		if strings.TrimSpace(block) == "" {
			t.Errorf("%s: no sample after %q", d.doc, d.intro)
		}
		for l := range strings.Lines(block) {
			if l = strings.TrimSuffix(l, "\n"); l != "" && !lines[l] && !strings.Contains(l, "...") {
				t.Errorf("%s quotes a line that testdata/%s lacks:\n%s", d.doc, d.golden, l)
			}
		}
	}
}

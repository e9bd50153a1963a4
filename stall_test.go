package main

import (
	"context"
	"io"
	"testing"
	"time"
)

// stallWriter is a reader that stops reading for a while, like a paused
// terminal or a pager: writes block from after until after+stall.
type stallWriter struct {
	start        time.Time
	after, stall time.Duration
}

func (w *stallWriter) Write(p []byte) (int, error) {
	if since := time.Since(w.start); since > w.after && since < w.after+w.stall {
		time.Sleep(w.after + w.stall - since)
	}
	return len(p), nil
}

// A stalled output blocks every user that logs while the clock goes on. No
// closed room may be reclaimed while an event about it is still on its way,
// however long the stall: the run still converges. (With reclaiming by a
// time allowance, as once, this run lost a message.)
func TestOutputStallKeepsConvergence(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for seconds of real time")
	}
	cfg := Config{Users: 30, Seed: 3, Tick: 5 * time.Millisecond, Chance: 0.3, Delay: 200 * time.Millisecond, Duration: 8 * time.Second}
	w := &stallWriter{start: time.Now(), after: 0, stall: 4 * time.Second}
	rep, _ := newSim(cfg, w, io.Discard).run(context.Background())
	requireConverged(t, rep)
}

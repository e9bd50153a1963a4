package main

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// reportWorld is users that send and apply counted events and make
// reports, and one observer that takes their reports in any order, with
// gaps, as links let them through. The truth is what actually happened:
// the least epoch with a send not yet applied, or in which a user may
// still send. The observer's stable epoch must never pass it, and once
// every report has settled and every user has moved on, must reach it.
type reportWorld struct {
	rng      *rand.Rand
	obs      *stability
	users    []*stability // users[i] makes user i's reports
	epochs   []uint64     // each user's epoch
	inFlight []uint64     // the epochs of sends not yet applied
	queued   [][]*progress
	tick     uint64
}

func newReportWorld(seed uint64, n int) *reportWorld {
	w := &reportWorld{rng: rand.New(rand.NewPCG(seed, 9)), obs: newStability(n, true), epochs: make([]uint64, n), queued: make([][]*progress, n)}
	for range n {
		w.users = append(w.users, newStability(n, false))
	}
	return w
}

func (w *reportWorld) truth() uint64 {
	t := slices.Min(w.epochs)
	for _, e := range w.inFlight {
		t = min(t, e)
	}
	return t
}

// step does one random thing.
func (w *reportWorld) step(t *testing.T) {
	i := w.rng.IntN(len(w.users))
	switch w.rng.IntN(5) {
	case 0: // send a few
		k := 1 + w.rng.IntN(3)
		w.users[i].count(w.epochs[i], int64(k), true)
		for range k {
			w.inFlight = append(w.inFlight, w.epochs[i])
		}
	case 1: // apply one in flight
		if len(w.inFlight) > 0 {
			j := w.rng.IntN(len(w.inFlight))
			w.users[i].count(w.inFlight[j], 1, false)
			w.inFlight = slices.Delete(w.inFlight, j, j+1)
		}
	case 2: // move on
		w.epochs[i] += uint64(1 + w.rng.IntN(2))
	case 3: // report
		if r := w.users[i].report(w.epochs[i], arrivalNote{}); r != nil {
			w.queued[i] = append(w.queued[i], r)
		}
	case 4: // a report reaches the observer, in any order
		if q := w.queued[i]; len(q) > 0 {
			j := w.rng.IntN(len(q))
			w.obs.take(q[j])
			w.queued[i] = slices.Delete(q, j, j+1)
		}
	}
	w.tick++
	w.obs.settle(w.tick)
	if truth := w.truth(); w.obs.stable > truth {
		t.Fatalf("stable %d passed the truth %d: epochs %v in flight %v base %d positions %v balance %v", w.obs.stable, truth, w.epochs, w.inFlight, w.obs.base, w.obs.positions, w.obs.balance)
	}
}

// Over random histories of sends, applies and reports arriving in any
// order, the stable epoch a user learns is never early, and once every
// report is in it is exact.
func TestStabilityNeverEarly(t *testing.T) {
	for seed := range uint64(300) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			w := newReportWorld(seed, 2+int(seed%5))
			for range 400 {
				w.step(t)
			}
			// Everything lands, every user moves on and reports.
			for len(w.inFlight) > 0 {
				w.users[0].count(w.inFlight[0], 1, false)
				w.inFlight = w.inFlight[1:]
			}
			for i := range w.users {
				w.epochs[i] = slices.Max(w.epochs) + 1
				w.queued[i] = append(w.queued[i], w.users[i].report(w.epochs[i], arrivalNote{}))
				for _, r := range w.queued[i] {
					w.obs.take(r)
				}
			}
			w.obs.settle(w.tick + 1)
			if w.obs.stable != w.truth() {
				t.Errorf("with every report in, stable %d, truth %d", w.obs.stable, w.truth())
			}
		})
	}
}

// What one user knows of stability it tells the others, and a user that
// counts nothing itself, a late joiner, learns it that way; the horizon
// that goes with it only grows.
func TestStabilityHeard(t *testing.T) {
	s := newStability(3, false)
	s.heard(5, 3, 7, 10)
	s.heard(4, 4, 9, 11) // an older word: the horizon is still a horizon for 5
	if s.stable != 5 || s.horizon != 9 {
		t.Errorf("stable %d, horizon %d; want 5 and 9", s.stable, s.horizon)
	}
	if w, h := s.reclaim(); w != 4 || h != 9 {
		t.Errorf("reclaim %d, %d; want the greatest point told, 4, and 9", w, h)
	}
}

// A late joiner holds reclaiming at its hello until its view is complete
// and everything it sent until then is stable.
func TestStabilityLateFloor(t *testing.T) {
	s := newStability(3, true)
	s.heard(10, 0, 12, 20)
	s.noteArrival(3, arrivalNote{Hello: 8})
	if w, _ := s.reclaim(); w != 8 {
		t.Fatalf("reclaim %d while the joiner's view is incomplete, want 8", w)
	}
	s.noteArrival(3, arrivalNote{Hello: 8, Done: 15})
	s.heard(15, 0, 16, 21)
	if w, _ := s.reclaim(); w != 8 {
		t.Fatalf("reclaim %d before the joiner's sends until done are stable, want 8", w)
	}
	s.heard(16, 0, 17, 22)
	if w, _ := s.reclaim(); w != 16 || len(s.guards) != 0 {
		t.Errorf("reclaim %d, floor %v once done is stable", w, s.guards)
	}
}

// A peer learns only from what reaches it: the step machine's inputs are
// a transmission addressed to it, its own tick and whether it is offline,
// what the run lets it do, who was there at the start, and an action
// asked of it; its port tells it only whether the network takes an
// action's sends now. Nothing counted across users can reach it.
func TestPeerKnowsOnlyItsOwn(t *testing.T) {
	allowed := map[string]string{
		"Kind": "which input", "Now": "its own clock", "D": "a transmission addressed to it",
		"Tick": "its own tick", "Due": "transmissions addressed to it", "Act": "what the run lets it do",
		"Away": "whether it has a connection", "Last": "who was there at the start", "Proposal": "an action asked of it",
	}
	in := reflect.TypeFor[Input]()
	for i := range in.NumField() {
		if f := in.Field(i); allowed[f.Name] == "" {
			t.Errorf("Input.%s is no input a user could have of its own", f.Name)
		}
	}
	pt := reflect.TypeFor[port]()
	for i := range pt.NumMethod() {
		m := pt.Method(i)
		if m.Type.NumOut() > 0 && (m.Name != "admit" || m.Type.NumOut() != 1 || m.Type.Out(0).Kind() != reflect.Bool) {
			t.Errorf("port.%s tells the peer something: %v", m.Name, m.Type)
		}
	}
}

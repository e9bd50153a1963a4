package main

import (
	"math/rand/v2"
	"testing"
)

// The spill table agrees with a Go map through any mix of puts and
// deletes, keeps its load between an eighth and three-quarters, and never
// leaves a key where a probe from its home cannot reach it. Small key
// spaces and tables make probe runs wrap around the end and deletes shift
// them.
func TestSpillTableMatchesMap(t *testing.T) {
	wrapped := 0 // entries that live before their home: their probe run wrapped around the end
	for seed := range uint64(60) {
		rng := rand.New(rand.NewPCG(seed, 1))
		var tab spillTable
		want := map[groupID]uint32{}
		space := 4 + rng.IntN(400)
		for range 20000 {
			k := groupID(1 + rng.IntN(space))
			switch rng.IntN(5) {
			case 0, 1:
				w := 1 + rng.Uint32N(1<<31)
				tab.put(k, w)
				want[k] = w
			case 2, 3:
				tab.delete(k)
				delete(want, k)
			default:
				if w := tab.get(k); w != want[k] {
					t.Fatalf("seed %d: get(%d) = %d; want %d", seed, k, w, want[k])
				}
			}
			if tab.len() != len(want) {
				t.Fatalf("seed %d: len %d, want %d", seed, tab.len(), len(want))
			}
			if size := len(tab.entries); 4*tab.len() > 3*size || size > minSpill && 8*tab.len() < size {
				t.Fatalf("seed %d: %d entries in a table of %d", seed, tab.len(), size)
			}
		}
		n := 0
		for k, w := range tab.all() {
			n++
			if ww, ok := want[k]; !ok || w != ww {
				t.Fatalf("seed %d: all yields %d: %d, want %d, %v", seed, k, w, ww, ok)
			}
			if got := tab.get(k); got != w {
				t.Fatalf("seed %d: key %d unreachable from its home", seed, k)
			}
		}
		if n != len(want) {
			t.Fatalf("seed %d: all yields %d keys, want %d", seed, n, len(want))
		}
		for i, e := range tab.entries {
			if e.key != 0 && i < tab.home(e.key) {
				wrapped++
			}
		}
	}
	if wrapped == 0 {
		t.Error("no probe run wrapped around the end of its table")
	}
	t.Logf("%d entries wrapped around at the end of their seeds", wrapped)
}

// The slot table agrees with a Go map whatever order ids come and go in,
// keeps every spilled id below its window, and, as a view's groups do,
// when ids come mostly in order and most groups go within a while, keeps
// its window near what it holds: the long-lived few spill, and the window
// slides on.
func TestSlotTableMatchesMap(t *testing.T) {
	spilled := 0
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 2))
		var tab slotTable
		want := map[groupID]uint32{}
		var live []groupID // in the order they came
		next := groupID(1)
		sliding := seed%2 == 0
		for step := range 30000 {
			var id groupID
			switch {
			case sliding && rng.IntN(2) == 0:
				id, next = next+groupID(rng.IntN(3)), next+1 // new groups, a little out of order
			case sliding && len(live) > 0:
				i := 0
				if rng.IntN(50) > 0 { // mostly the old go first; a few live long
					i = min(len(live)-1, rng.IntN(8))
				} else {
					i = rng.IntN(len(live))
				}
				id = live[i]
				live = append(live[:i], live[i+1:]...)
				tab.delete(id)
				delete(want, id)
				id = 0
			default:
				id = groupID(1 + rng.IntN(300))
			}
			if id != 0 {
				if rng.IntN(4) == 0 && !sliding {
					tab.delete(id)
					delete(want, id)
				} else {
					w := 1 + rng.Uint32N(1<<31)
					if _, ok := want[id]; !ok {
						live = append(live, id)
					}
					tab.put(id, w)
					want[id] = w
				}
			}
			if tab.len() != len(want) {
				t.Fatalf("seed %d step %d: len %d, want %d", seed, step, tab.len(), len(want))
			}
			if sliding && len(tab.pages)*pageWords > 4*len(want)+8*pageWords {
				t.Fatalf("seed %d step %d: a window of %d pages for %d groups", seed, step, len(tab.pages), len(want))
			}
		}
		for id, w := range want {
			if got := tab.get(id); got != w {
				t.Fatalf("seed %d: get(%d) = %d, want %d", seed, id, got, w)
			}
		}
		n := 0
		for id, w := range tab.all() {
			n++
			if want[id] != w {
				t.Fatalf("seed %d: all yields %d: %d, want %d", seed, id, w, want[id])
			}
		}
		if n != len(want) {
			t.Fatalf("seed %d: all yields %d ids, want %d", seed, n, len(want))
		}
		for p, pg := range tab.pages {
			if pg == nil {
				if p == 0 || p == len(tab.pages)-1 {
					t.Fatalf("seed %d: the window keeps an empty page at its end", seed)
				}
				continue
			}
			n := 0
			for _, w := range pg.words {
				if w != 0 {
					n++
				}
			}
			if n == 0 || n != int(pg.n) {
				t.Fatalf("seed %d: page %d holds %d words and says %d", seed, p, n, pg.n)
			}
		}
		for id := range tab.spill.all() {
			if id >= tab.lo {
				t.Fatalf("seed %d: id %d spilled at or above the window's start %d", seed, id, tab.lo)
			}
		}
		spilled += tab.spill.len()
	}
	if spilled == 0 {
		t.Error("no long-lived group ever spilled out of a window")
	}
}

// Looking a group up, storing it and deleting it allocate nothing once the
// table has grown, in the window and in spill alike.
func TestSlotTableAllocs(t *testing.T) {
	var tab slotTable
	for id := range groupID(1000) {
		tab.put(id+1, uint32(id)+1)
	}
	for id := range groupID(900) {
		if id+1 != 3 {
			tab.delete(id + 1) // the front empties, and the window is cut: 3 spills
		}
	}
	if tab.spill.get(3) == 0 {
		t.Fatalf("3 not spilled: the window starts at %d", tab.lo)
	}
	for id := range groupID(100) {
		tab.put(2000+id, 1)
	}
	allocs := testing.AllocsPerRun(100, func() {
		for _, id := range []groupID{2050, 3} {
			tab.delete(id)
			tab.put(id, 7)
			if tab.get(id) != 7 {
				t.Fatal(id, "missing")
			}
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per delete, put and get", allocs)
	}
}

package main

import (
	"math/rand/v2"
	"testing"
)

// The table agrees with a Go map through any mix of puts and deletes,
// keeps its load between an eighth and three-quarters, and never leaves a
// key where a probe from its home cannot reach it. Small key spaces and
// tables make probe runs wrap around the end and deletes shift them.
func TestSlotTableMatchesMap(t *testing.T) {
	wrapped := 0 // entries that live before their home: their probe run wrapped around the end
	for seed := range uint64(60) {
		rng := rand.New(rand.NewPCG(seed, 1))
		var tab slotTable
		want := map[groupKey]uint64{}
		space := 4 + rng.IntN(400)
		for range 20000 {
			k := groupKey(1 + rng.Uint64N(uint64(space)))
			switch seed % 3 {
			case 1:
				k = groupKey(max(1, rng.Uint64()%uint64(space)<<54)) // keys crowded at few homes
			case 2:
				k = groupKey(^uint64(0) - rng.Uint64()%uint64(space)<<57) // homes at the end: runs wrap around
			}
			switch rng.IntN(5) {
			case 0, 1:
				w := rng.Uint64()
				tab.put(k, w)
				want[k] = w
			case 2, 3:
				tab.delete(k)
				delete(want, k)
			default:
				w, ok := tab.get(k)
				if ww, wok := want[k]; ok != wok || w != ww {
					t.Fatalf("seed %d: get(%d) = %d, %v; want %d, %v", seed, k, w, ok, ww, wok)
				}
			}
			if tab.len() != len(want) {
				t.Fatalf("seed %d: len %d, want %d", seed, tab.len(), len(want))
			}
			if size := len(tab.entries); 4*tab.len() > 3*size || size > minTable && 8*tab.len() < size {
				t.Fatalf("seed %d: %d entries in a table of %d", seed, tab.len(), size)
			}
		}
		n := 0
		for k, w := range tab.all() {
			n++
			if ww, ok := want[k]; !ok || w != ww {
				t.Fatalf("seed %d: all yields %d: %d, want %d, %v", seed, k, w, ww, ok)
			}
			if got, ok := tab.get(k); !ok || got != w {
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

// Looking a group up, storing it and deleting it allocate nothing once the
// table has grown.
func TestSlotTableAllocs(t *testing.T) {
	var tab slotTable
	for k := range groupKey(1000) {
		tab.put(k+1, uint64(k))
	}
	allocs := testing.AllocsPerRun(100, func() {
		tab.delete(7)
		tab.put(7, 7)
		if _, ok := tab.get(7); !ok {
			t.Fatal("7 missing")
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per delete, put and get", allocs)
	}
}

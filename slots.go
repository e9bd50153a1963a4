package main

import (
	"iter"
	"math/bits"
)

// slotTable is a view's table of words by group key: open addressing with
// linear probing over one slice of 16-byte entries, with no pointers, so
// the garbage collector never scans it. A view keeps an entry for every
// live room and every closed one not yet reclaimed, and every event it
// applies looks one up: at 10,000 users that is tens of millions of
// entries, which cost about 55 bytes each in a Go map of 16-byte
// fingerprints to 16-byte slots (with control bytes and the slack of
// doubling), and cost here about 26 with a lookup mostly in one cache line.
//
// Keys are fingerprints, uniform over 64 bits, so a key's home is its value
// scaled to the table's length, which need not be a power of two: the
// table grows by half once it is three-quarters full, and stays from half
// to three-quarters full while it grows. Key 0 marks an empty entry
// (Group.seal never makes it). A delete moves the rest of its probe run
// back, so there are no tombstones and probes stay short under any churn;
// a table that falls under an eighth full shrinks to half full, so that
// its memory follows the rooms.
type slotTable struct {
	entries []tableEntry
	n       int
}

// tableEntry is one key and its word; key 0 is empty.
type tableEntry struct {
	key  groupKey
	word uint64
}

// minTable is the length of a table's first slice.
const minTable = 8

func (t *slotTable) len() int { return t.n }

// home is where k's probe starts.
func (t *slotTable) home(k groupKey) int {
	hi, _ := bits.Mul64(uint64(k), uint64(len(t.entries)))
	return int(hi)
}

// get returns k's word, if k is in the table.
func (t *slotTable) get(k groupKey) (uint64, bool) {
	if t.n == 0 {
		return 0, false
	}
	for i := t.home(k); ; {
		e := &t.entries[i]
		if e.key == k {
			return e.word, true
		}
		if e.key == 0 {
			return 0, false
		}
		if i++; i == len(t.entries) {
			i = 0
		}
	}
}

// put sets k's word, adding k if it is not in the table.
func (t *slotTable) put(k groupKey, w uint64) {
	if 4*(t.n+1) > 3*len(t.entries) {
		t.resize(max(minTable, len(t.entries)*3/2))
	}
	for i := t.home(k); ; {
		e := &t.entries[i]
		if e.key == k {
			e.word = w
			return
		}
		if e.key == 0 {
			*e = tableEntry{k, w}
			t.n++
			return
		}
		if i++; i == len(t.entries) {
			i = 0
		}
	}
}

// delete removes k, if it is in the table.
func (t *slotTable) delete(k groupKey) {
	if t.n == 0 {
		return
	}
	size := len(t.entries)
	i := t.home(k)
	for t.entries[i].key != k {
		if t.entries[i].key == 0 {
			return
		}
		if i++; i == size {
			i = 0
		}
	}
	// i is a hole now. Each later entry of the run moves into it unless
	// its home lies cyclically in (i, j]: then a probe from its home would
	// not pass the hole to reach it.
	for j := i; ; {
		if j++; j == size {
			j = 0
		}
		e := t.entries[j]
		if e.key == 0 {
			break
		}
		h := t.home(e.key)
		if i < j && (h <= i || h > j) || j < i && h <= i && h > j {
			t.entries[i] = e
			i = j
		}
	}
	t.entries[i] = tableEntry{}
	t.n--
	if 8*t.n < size && size > minTable {
		t.resize(max(minTable, 2*t.n))
	}
}

// resize moves the entries into a fresh slice of the given length.
func (t *slotTable) resize(size int) {
	old := t.entries
	t.entries = make([]tableEntry, size)
	for _, e := range old {
		if e.key == 0 {
			continue
		}
		i := t.home(e.key)
		for t.entries[i].key != 0 {
			if i++; i == size {
				i = 0
			}
		}
		t.entries[i] = e
	}
}

// all yields every key and its word, in no particular order. The table
// must not change meanwhile.
func (t *slotTable) all() iter.Seq2[groupKey, uint64] {
	return func(yield func(groupKey, uint64) bool) {
		for _, e := range t.entries {
			if e.key != 0 && !yield(e.key, e.word) {
				return
			}
		}
	}
}

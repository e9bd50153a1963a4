package main

import (
	"iter"
	"math/bits"
)

// slotTable is a view's table of words by group id (see groupNames): a
// dense window of words, indexed by id from lo, for the groups of recent
// ids, and a hash table, spill, for the few of older ids still kept. Ids
// are handed out in the order groups are first created, and every create
// reaches every user, so a view knows nearly every group of its window: a
// (user, group) pair costs 8 bytes there, where a hash table of keys costs
// about 26 (16-byte entries, half to three-quarters full), and a lookup is
// one load. Nothing in it is a pointer, so the garbage collector never
// scans it.
//
// A word of 0 is no entry: the view never stores one that says more than
// a missing one would (see View.store). As the old groups of the window
// are reclaimed, its front empties; once the window is less than half
// full, a front part of it that is at most an eighth full is cut off, and
// what it still held moves to spill. So the window holds about what it
// spans, and spill holds the long-lived rooms it left behind.
type slotTable struct {
	lo      groupID  // dense[i] is the word of group lo+i
	dense   []uint64 // 0 where the view keeps nothing
	inDense int      // words of dense that are not 0
	cuts    int      // deletes from dense before the next look for a cut
	spill   spillTable
}

// minWindow is the least window worth cutting.
const minWindow = 64

func (t *slotTable) len() int { return t.inDense + t.spill.len() }

// get returns the word of group id, or 0 if the table has none.
func (t *slotTable) get(id groupID) uint64 {
	if id >= t.lo {
		if i := int(id - t.lo); i < len(t.dense) {
			return t.dense[i]
		}
		return 0
	}
	return t.spill.get(id)
}

// put sets the word of group id; a word of 0 deletes it.
func (t *slotTable) put(id groupID, w uint64) {
	if w == 0 {
		t.delete(id)
		return
	}
	if len(t.dense) == 0 && id > t.lo {
		t.lo = id // an empty window starts at the next group it gets; spill keeps the ids below lo
	}
	if id < t.lo {
		t.spill.put(id, w)
		return
	}
	i := int(id - t.lo)
	if i >= len(t.dense) {
		n := len(t.dense)
		if i >= cap(t.dense) {
			grown := make([]uint64, i+1, max(16, i+1+i/4)) // by a quarter: a window is most of a view
			copy(grown, t.dense)
			t.dense = grown
		} else {
			t.dense = t.dense[:i+1]
			clear(t.dense[n:])
		}
	}
	if t.dense[i] == 0 {
		t.inDense++
	}
	t.dense[i] = w
}

// delete removes the word of group id, if the table has one.
func (t *slotTable) delete(id groupID) {
	if id < t.lo {
		t.spill.delete(id)
		return
	}
	i := int(id - t.lo)
	if i >= len(t.dense) || t.dense[i] == 0 {
		return
	}
	t.dense[i] = 0
	t.inDense--
	for len(t.dense) > 0 && t.dense[len(t.dense)-1] == 0 {
		t.dense = t.dense[:len(t.dense)-1]
	}
	if t.cuts--; t.cuts <= 0 && 2*t.inDense < len(t.dense) && len(t.dense) >= minWindow {
		t.cut()
	}
}

// cut moves the window's start past the longest front part of it that is
// at most an eighth full, if that is a quarter of the window or more,
// moving what the part held to spill. A cut costs a pass over the window,
// so the next look comes after an eighth of it has been deleted: the
// passes cost O(1) a delete.
func (t *slotTable) cut() {
	t.cuts = len(t.dense) / 8
	c, held := 0, 0
	for i, w := range t.dense {
		if w != 0 {
			held++
		}
		if 8*held <= i+1 {
			c = i + 1
		}
	}
	if c < len(t.dense)/4 {
		return
	}
	for i, w := range t.dense[:c] {
		if w != 0 {
			t.spill.put(t.lo+groupID(i), w)
			t.inDense--
		}
	}
	n := copy(t.dense, t.dense[c:])
	t.dense, t.lo = t.dense[:n], t.lo+groupID(c)
	if 4*n < cap(t.dense) {
		t.dense = append([]uint64(nil), t.dense...) // let go of a window that has shrunk
	} else {
		clear(t.dense[n:cap(t.dense)])
	}
	if n == 0 {
		t.dense = nil
	}
}

// all yields every group id and its word, in no particular order. The
// table must not change meanwhile.
func (t *slotTable) all() iter.Seq2[groupID, uint64] {
	return func(yield func(groupID, uint64) bool) {
		for i, w := range t.dense {
			if w != 0 && !yield(t.lo+groupID(i), w) {
				return
			}
		}
		for id, w := range t.spill.all() {
			if !yield(id, w) {
				return
			}
		}
	}
}

// spillTable is the part of a slotTable outside its window: open
// addressing with linear probing over one slice of 16-byte entries, with
// no pointers.
//
// A key's home is its hash scaled to the table's length, which need not
// be a power of two: the table grows by half once it is three-quarters
// full, and stays from half to three-quarters full while it grows. Key 0
// marks an empty entry (ids start at 1). A delete moves the rest of its
// probe run back, so there are no tombstones and probes stay short under
// any churn; a table that falls under an eighth full shrinks to half full,
// so that its memory follows what it holds.
type spillTable struct {
	entries []spillEntry
	n       int
}

// spillEntry is one key and its word; key 0 is empty.
type spillEntry struct {
	key  groupID
	word uint64
}

// minSpill is the length of a spill table's first slice.
const minSpill = 8

func (t *spillTable) len() int { return t.n }

// home is where k's probe starts: ids are consecutive, so they are
// scattered by a Fibonacci hash first.
func (t *spillTable) home(k groupID) int {
	hi, _ := bits.Mul64(uint64(k)*0x9e3779b97f4a7c15, uint64(len(t.entries)))
	return int(hi)
}

// get returns k's word, or 0 if k is not in the table.
func (t *spillTable) get(k groupID) uint64 {
	if t.n == 0 {
		return 0
	}
	for i := t.home(k); ; {
		e := &t.entries[i]
		if e.key == k {
			return e.word
		}
		if e.key == 0 {
			return 0
		}
		if i++; i == len(t.entries) {
			i = 0
		}
	}
}

// put sets k's word, adding k if it is not in the table.
func (t *spillTable) put(k groupID, w uint64) {
	if 4*(t.n+1) > 3*len(t.entries) {
		t.resize(max(minSpill, len(t.entries)*3/2))
	}
	for i := t.home(k); ; {
		e := &t.entries[i]
		if e.key == k {
			e.word = w
			return
		}
		if e.key == 0 {
			*e = spillEntry{k, w}
			t.n++
			return
		}
		if i++; i == len(t.entries) {
			i = 0
		}
	}
}

// delete removes k, if it is in the table.
func (t *spillTable) delete(k groupID) {
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
	t.entries[i] = spillEntry{}
	t.n--
	if 8*t.n < size && size > minSpill {
		t.resize(max(minSpill, 2*t.n))
	}
}

// resize moves the entries into a fresh slice of the given length.
func (t *spillTable) resize(size int) {
	old := t.entries
	t.entries = make([]spillEntry, size)
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
func (t *spillTable) all() iter.Seq2[groupID, uint64] {
	return func(yield func(groupID, uint64) bool) {
		for _, e := range t.entries {
			if e.key != 0 && !yield(e.key, e.word) {
				return
			}
		}
	}
}

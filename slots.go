package main

import (
	"iter"
	"math/bits"
)

// slotTable is a view's table of words by group id (see groupNames): a
// window of words indexed by id from lo, in pages of pageWords, for the
// groups of recent ids, and a hash table, spill, for the few of older ids
// still kept. Ids are handed out in the order groups are first created,
// and every create reaches every user, so a view knows nearly every group
// of its window: a (user, group) pair costs a 4-byte word there (see
// View.decode), where a hash table of keys costs about 13 (8-byte
// entries, half to three-quarters full), and a lookup is two loads.
// Nothing in a page is a pointer, so the garbage collector never scans
// the words. The window grows a page at a
// time, so growing copies nothing (a slice grown by a quarter at a time
// copied each word four times over), and a page is let go as soon as it
// holds nothing.
//
// A word of 0 is no entry: the view never stores one that says more than
// a missing one would (see View.store). As the old groups of the window
// are reclaimed, its front empties; once the window's pages are less than
// half full, a front part of them at most an eighth full is cut off, and
// what it still held moves to spill. So the window holds about what it
// spans, and spill holds the long-lived rooms it left behind. Every id in
// spill is below lo.
type slotTable struct {
	lo      groupID       // the first id of pages[0]: a multiple of pageWords
	pages   []*windowPage // nil where a page holds nothing
	inPages int           // words of the pages that are not 0
	cuts    int           // deletes from pages before the next look for a cut
	spill   spillTable
}

// windowPage is pageWords consecutive ids' words, and how many are not 0.
type windowPage struct {
	words [pageWords]uint32
	n     int32
}

// pageWords is the length of a page: 63 words and the page's count fill
// 256 bytes, an allocation size class, where 64 would take 288.
const pageWords = 63

func (t *slotTable) len() int { return t.inPages + t.spill.len() }

// at returns the page and place of id, which is at or past lo; a nil page
// when the window has none there.
func (t *slotTable) at(id groupID) (*windowPage, int, int) {
	i := int(id - t.lo)
	p := i / pageWords
	if p >= len(t.pages) {
		return nil, p, i % pageWords
	}
	return t.pages[p], p, i % pageWords
}

// get returns the word of group id, or 0 if the table has none.
func (t *slotTable) get(id groupID) uint32 {
	if id < t.lo {
		return t.spill.get(id)
	}
	if pg, _, k := t.at(id); pg != nil {
		return pg.words[k]
	}
	return 0
}

// put sets the word of group id; a word of 0 deletes it.
func (t *slotTable) put(id groupID, w uint32) {
	if w == 0 {
		t.delete(id)
		return
	}
	if len(t.pages) == 0 && id > t.lo {
		t.lo = id - id%pageWords // an empty window starts at the next group it gets
	}
	if id < t.lo {
		t.spill.put(id, w)
		return
	}
	pg, p, k := t.at(id)
	if pg == nil {
		for p >= len(t.pages) {
			t.pages = append(t.pages, nil)
		}
		pg = new(windowPage)
		t.pages[p] = pg
	}
	if pg.words[k] == 0 {
		pg.n++
		t.inPages++
	}
	pg.words[k] = w
}

// delete removes the word of group id, if the table has one.
func (t *slotTable) delete(id groupID) {
	if id < t.lo {
		t.spill.delete(id)
		return
	}
	pg, p, k := t.at(id)
	if pg == nil || pg.words[k] == 0 {
		return
	}
	pg.words[k] = 0
	pg.n--
	t.inPages--
	if pg.n == 0 {
		t.pages[p] = nil
		t.trim()
	}
	if t.cuts--; t.cuts <= 0 && 2*t.inPages < len(t.pages)*pageWords && len(t.pages) >= 4 {
		t.cut()
	}
}

// trim lets go of the empty pages at either end of the window.
func (t *slotTable) trim() {
	for len(t.pages) > 0 && t.pages[len(t.pages)-1] == nil {
		t.pages = t.pages[:len(t.pages)-1]
	}
	for len(t.pages) > 0 && t.pages[0] == nil {
		t.pages = t.pages[1:]
		t.lo += pageWords
	}
	if len(t.pages) == 0 {
		t.pages = nil
	}
}

// cut moves the window's start past the longest front part of its pages
// that is at most an eighth full, if that is a quarter of them or more,
// moving what the part held to spill. A cut costs a pass over the pages,
// so the next look comes after deletes of an eighth of the window's
// words: the passes cost O(1) a delete.
func (t *slotTable) cut() {
	t.cuts = len(t.pages) * pageWords / 8
	c, held := 0, 0
	for p, pg := range t.pages {
		if pg != nil {
			held += int(pg.n)
		}
		if 8*held <= (p+1)*pageWords {
			c = p + 1
		}
	}
	if c < len(t.pages)/4 {
		return
	}
	for p, pg := range t.pages[:c] {
		if pg == nil {
			continue
		}
		for k, w := range pg.words {
			if w != 0 {
				t.spill.put(t.lo+groupID(p*pageWords+k), w)
			}
		}
		t.inPages -= int(pg.n)
		t.pages[p] = nil
	}
	t.pages, t.lo = t.pages[c:], t.lo+groupID(c*pageWords)
	t.trim()
}

// all yields every group id and its word, in no particular order. The
// table must not change meanwhile.
func (t *slotTable) all() iter.Seq2[groupID, uint32] {
	return func(yield func(groupID, uint32) bool) {
		for p, pg := range t.pages {
			if pg == nil {
				continue
			}
			for k, w := range pg.words {
				if w != 0 && !yield(t.lo+groupID(p*pageWords+k), w) {
					return
				}
			}
		}
		for id, w := range t.spill.all() {
			if !yield(id, w) {
				return
			}
		}
	}
}

// spillTable is the part of a slotTable outside its window: 8-byte
// entries with no pointers.
type spillTable = hashTable[groupID, uint32]

// hashTable is a table of values by key, for keys that start at 1 (group
// ids, uids): open addressing with linear probing over one slice of
// entries. A view's spill table and a peer's links use it: it is faster
// than a Go map for small keys, and its memory follows what it holds.
//
// A key's home is its hash scaled to the table's length, which need not
// be a power of two: the table grows by half once it is three-quarters
// full, and stays from half to three-quarters full while it grows. Key 0
// marks an empty entry (ids start at 1). A delete moves the rest of its
// probe run back, so there are no tombstones and probes stay short under
// any churn; a table that falls under an eighth full shrinks to half full,
// so that its memory follows what it holds.
type hashTable[K interface{ ~int32 | ~uint32 }, V comparable] struct {
	entries []hashEntry[K, V]
	n       int
}

// hashEntry is one key and its value; key 0 is empty.
type hashEntry[K interface{ ~int32 | ~uint32 }, V comparable] struct {
	key K
	val V
}

// minSpill is the length of a hash table's first slice.
const minSpill = 8

func (t *hashTable[K, V]) len() int { return t.n }

// home is where k's probe starts: ids are consecutive, so they are
// scattered by a Fibonacci hash first.
func (t *hashTable[K, V]) home(k K) int {
	hi, _ := bits.Mul64(uint64(k)*0x9e3779b97f4a7c15, uint64(len(t.entries)))
	return int(hi)
}

// get returns k's value, or the zero value if k is not in the table.
func (t *hashTable[K, V]) get(k K) V {
	var none V
	if t.n == 0 {
		return none
	}
	for i := t.home(k); ; {
		e := &t.entries[i]
		if e.key == k {
			return e.val
		}
		if e.key == 0 {
			return none
		}
		if i++; i == len(t.entries) {
			i = 0
		}
	}
}

// put sets k's value, adding k if it is not in the table.
func (t *hashTable[K, V]) put(k K, w V) {
	if 4*(t.n+1) > 3*len(t.entries) {
		t.resize(max(minSpill, len(t.entries)*3/2))
	}
	for i := t.home(k); ; {
		e := &t.entries[i]
		if e.key == k {
			e.val = w
			return
		}
		if e.key == 0 {
			*e = hashEntry[K, V]{k, w}
			t.n++
			return
		}
		if i++; i == len(t.entries) {
			i = 0
		}
	}
}

// delete removes k, if it is in the table.
func (t *hashTable[K, V]) delete(k K) {
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
	t.entries[i] = hashEntry[K, V]{}
	t.n--
	if 8*t.n < size && size > minSpill {
		t.resize(max(minSpill, 2*t.n))
	}
}

// resize moves the entries into a fresh slice of the given length.
func (t *hashTable[K, V]) resize(size int) {
	old := t.entries
	t.entries = make([]hashEntry[K, V], size)
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

// all yields every key and its value, in no particular order. The table
// must not change meanwhile.
func (t *hashTable[K, V]) all() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		for _, e := range t.entries {
			if e.key != 0 && !yield(e.key, e.val) {
				return
			}
		}
	}
}

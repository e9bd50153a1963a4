package main

import "sync"

// groupNames is the run's naming table of groups: a dense id for each
// group key, handed out in the order groups are first created, so that a
// view can keep what it knows of each group in a dense window of words
// (see slotTable) instead of a hash table of keys. It is append-only and
// written only by a creator, before it sends the create: it holds no more
// than the create itself carries, so a view that looks up the id of a
// group it was sent learns nothing it was not told. It is not a room
// store: each view keeps its own state of each group, in its own memory.
// An id is the same in every view of a run, but which group gets which id
// may depend on the order users run in, so nothing printed may depend on
// an id.
//
// It is also the run's stampBook: for each id, the stamp of the create
// that named it, in chunks of stampChunk that never move, so that views
// read them without a lock while creators name more.
type groupNames struct {
	mu     sync.Mutex
	ids    map[groupKey]groupID
	stamps [1 << 32 / stampChunk]*[stampChunk]uint64
}

// stampChunk is how many ids' stamps a chunk of the book holds: 512 KiB.
const stampChunk = 1 << 16

func newGroupNames() *groupNames { return &groupNames{ids: make(map[groupKey]groupID)} }

// name gives g the id of its key, a new one if the key has none, and
// returns g; nil stays nil. first is the packed stamp of the create that
// names g (0 if none), which the book keeps for a new id.
func (n *groupNames) name(g *Group, first uint64) *Group {
	if g == nil {
		return nil
	}
	n.mu.Lock()
	id, ok := n.ids[g.key]
	if !ok {
		id = groupID(len(n.ids) + 1)
		if id == 0 {
			panic("chatsim: more than 2^32-1 groups in one run")
		}
		n.ids[g.key] = id
		c := n.stamps[id/stampChunk]
		if c == nil {
			c = new([stampChunk]uint64)
			n.stamps[id/stampChunk] = c
		}
		c[id%stampChunk] = first
	}
	n.mu.Unlock()
	g.id = id
	return g
}

// stampOf returns the stamp the book holds for id, 0 if none (a group
// this table did not name has none). It reads without a
// lock: whoever asks about id learned it from a create or a snapshot
// sent after the id was named, and name wrote the stamp before that.
func (n *groupNames) stampOf(id groupID) uint64 {
	if c := n.stamps[id/stampChunk]; c != nil {
		return c[id%stampChunk]
	}
	return 0
}

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
type groupNames struct {
	mu  sync.Mutex
	ids map[groupKey]groupID
}

func newGroupNames() *groupNames { return &groupNames{ids: make(map[groupKey]groupID)} }

// name gives g the id of its key, a new one if the key has none, and
// returns g; nil stays nil.
func (n *groupNames) name(g *Group) *Group {
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
	}
	n.mu.Unlock()
	g.id = id
	return g
}

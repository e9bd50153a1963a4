package main

import (
	"slices"
	"time"
)

// View is one user's knowledge of the chat and the rules by which it
// changes: a pure state machine. An event or an action goes in; the view
// changes, an outgoing event may come back, and log records are appended to
// out. There are no channels, clocks or random numbers inside: the caller
// passes the time and makes every random choice, so a test can drive a View
// step by step and a run can be replayed.
//
// # How rooms converge
//
// The key of a room is its member set (a Group): there is at most one live
// room per group. For each group the view keeps the greatest state it has
// seen, ordered by (stamp, closed):
//
//	create(s) < close(s) < create(s') < close(s')   for every s < s'
//
// Applying an event takes the maximum, which is commutative, associative and
// idempotent, so every user that has received the same events is in the
// same state whatever order they came in. From that order:
//   - two creates of one group that raced: the greater stamp wins in every
//     view, and the lesser is a resolved concurrent duplicate;
//   - a create that arrives after its own close is stale: no ghost room;
//   - a late close of an older incarnation cannot end a newer one.
//
// A message carries the stamp of the incarnation it was sent to. A view
// holds it back until it knows that incarnation (created, closed or
// replaced), then delivers it exactly once, marked late if that incarnation
// is no longer live.
//
// # Reclaiming closed rooms
//
// Nothing about an incarnation s can arrive later than 2Δ after this view
// applied the close of the incarnation s* >= s that ended it, where Δ bounds
// the time from sending an event to applying it:
//   - a create of a lesser s was sent before its creator learned of s* (or it
//     would have seen the group live, or taken a greater stamp), so before
//     t0+Δ, where t0 is when s* was created; it arrives before t0+2Δ, and the
//     close of s* was applied here after t0;
//   - a close of, or a message to, s* was sent before its sender learned of
//     the first close of s*, which was sent no later than this view applied
//     it, at r; so it was sent before r+Δ and arrives before r+2Δ;
//   - a close of, or a message to, a lesser s was sent before its sender
//     learned of s*: before t0+Δ, arriving before t0+2Δ.
//
// So a closed entry is reclaimed grace > 2Δ after it was closed here (see
// graceFor). Forgetting it cannot resurrect an old incarnation: anything
// about one is already here, and every new create takes a Lamport stamp
// greater than any its creator has seen. The same bound reclaims the record
// of an own room that a concurrent duplicate replaced.
type View struct {
	self  int32
	n     int   // users in the run: the width of a member set
	upTo  int32 // knows user_1..user_upTo and itself; users come online in uid order
	clock uint64
	grace time.Duration
	log   bool // whether to append records to out

	rooms map[uint64]*entry   // by Group.hash; equal hashes chain through entry.next
	mine  []*entry            // live rooms self is a member of; entry.mine indexes it
	live  int                 // live rooms in this view
	tombs queue[tomb]         // closed entries in reclaim order (now+grace only grows)
	owned map[Stamp]owned     // own rooms not yet known to be closed
	gone  queue[tomb]         // own rooms replaced by a duplicate, in reclaim order
	free  []*entry            // reclaimed entries, reused so steady state allocates nothing
	held  map[*entry][]*Event // messages to incarnations newer than the entry's, in arrival order
	nHeld int                 // messages held back

	out []Record
	Counts
}

// Counts are a view's tallies. The run's summary is their sum over users,
// which does not depend on the order users finish in.
type Counts struct {
	Creates, CreateFailed   int64 // create actions; failures are counted in both
	Messages, MessageFailed int64
	Closes, CloseFailed     int64

	Created    int64 // rooms this user created
	Closed     int64 // own rooms that some user closed
	Duplicates int64 // own rooms a concurrent duplicate replaced
	OwnLive    int64 // own rooms live at the end

	Expected   int64 // deliveries owed by own messages: the other members of each room
	Deliveries int64 // messages delivered to this user
	Late       int64 // of those, into an incarnation no longer live here
	NonMember  int64 // deliveries to a user outside the group: always 0
	Merges     int64 // concurrent duplicates resolved in this view
	Stale      int64 // outdated events ignored
}

// add adds o to c.
func (c *Counts) add(o *Counts) {
	c.Creates += o.Creates
	c.CreateFailed += o.CreateFailed
	c.Messages += o.Messages
	c.MessageFailed += o.MessageFailed
	c.Closes += o.Closes
	c.CloseFailed += o.CloseFailed
	c.Created += o.Created
	c.Closed += o.Closed
	c.Duplicates += o.Duplicates
	c.OwnLive += o.OwnLive
	c.Expected += o.Expected
	c.Deliveries += o.Deliveries
	c.Late += o.Late
	c.NonMember += o.NonMember
	c.Merges += o.Merges
	c.Stale += o.Stale
}

// entry is what a view knows about one group. It is kept small, since a
// view holds one for every live room and every recent tombstone, and
// applying an event touches one: held-back messages, which are rare, live in
// View.held instead.
type entry struct {
	group   *Group
	stamp   Stamp // greatest incarnation seen; zero while only held messages are known
	closed  bool
	member  bool   // self is in group
	chained bool   // not first among the entries with this hash
	holds   bool   // View.held has messages for it
	mine    int32  // index in View.mine, or -1
	next    *entry // next entry whose group has the same hash
}

func (e *entry) live() bool { return !e.stamp.IsZero() && !e.closed }

// tomb schedules a closed entry, or the record of a replaced own room, for
// reclaiming at time at. A closed entry's tomb is void if the entry has
// moved on since (a newer create), which stamp detects.
type tomb struct {
	e     *entry
	stamp Stamp
	at    time.Duration
}

// owned follows a room this user created until its fate is known: closed
// (counted at once), replaced by a concurrent duplicate (counted grace after
// the replacement, once no close of it can still arrive) or live at the end.
type owned struct {
	group    *Group
	replaced bool // waiting in View.gone
}

// NewView returns the view of user self in a run of n users. Closed rooms
// are forgotten grace after they close here.
func NewView(self int32, n int, grace time.Duration, log bool) *View {
	v := &View{
		self:  self,
		n:     n,
		grace: grace,
		log:   log,
		rooms: make(map[uint64]*entry),
		owned: make(map[Stamp]owned),
		held:  make(map[*entry][]*Event),
	}
	v.fold()
	return v
}

// Self is the view's own uid.
func (v *View) Self() int32 { return v.self }

// Known is the number of users the view knows, itself included.
func (v *View) Known() int32 { return max(v.upTo, v.self) }

// RoomCount is the number of live rooms self is a member of.
func (v *View) RoomCount() int { return len(v.mine) }

// LiveCount is the number of live rooms in the view.
func (v *View) LiveCount() int { return v.live }

// HeldCount is the number of messages held back.
func (v *View) HeldCount() int { return v.nHeld }

// Clock is the view's Lamport clock.
func (v *View) Clock() uint64 { return v.clock }

// Learn records that users first..last are online. Users come online in uid
// order, so the users a view knows are always user_1..user_upTo (and
// itself): one integer instead of a set.
func (v *View) Learn(first, last int32, now time.Duration) {
	for u := max(first, v.upTo+1); u <= last; u++ {
		if u == v.self {
			continue
		}
		v.upTo = u
		v.fold()
		v.record(Record{T: now, Kind: KindOnline, Peer: u})
	}
}

// fold keeps upTo contiguous: once the view knows everyone before itself,
// it counts itself too.
func (v *View) fold() {
	if v.upTo+1 == v.self {
		v.upTo = v.self
	}
}

// Apply takes one event from another user.
func (v *View) Apply(ev *Event, now time.Duration) {
	v.clock = max(v.clock, ev.Clock)
	if ev.Kind == MessageEvent {
		v.applyMessage(ev, now)
		return
	}
	v.applyRoom(ev, now)
}

// Create makes a room for g, or fails if a room for exactly g is live in
// this view or g is nil (no one else is known). It returns the event to send
// to every known user, or nil.
func (v *View) Create(g *Group, now time.Duration) *Event {
	v.Creates++
	if g == nil {
		v.CreateFailed++
		v.record(Record{T: now, Kind: KindCreateFailed, Reason: "I know no one else yet"})
		return nil
	}
	if e := v.lookup(g); e != nil && e.live() {
		v.CreateFailed++
		v.record(Record{T: now, Kind: KindCreateFailed, Room: e.stamp, Group: g, Reason: "a live chat already has this group"})
		return nil
	}
	ev := v.newEvent(CreateEvent, g)
	ev.Room, ev.Sent = ev.ID(), now
	v.Created++
	v.owned[ev.Room] = owned{group: g}
	v.transition(v.find(g), ev, now)
	return ev
}

// Send sends a message to the i-th room self is a member of (i is taken
// modulo their number). It returns the event to send to every other member,
// or nil if self is in no room.
func (v *View) Send(i int, now time.Duration) *Event {
	v.Messages++
	if len(v.mine) == 0 {
		v.MessageFailed++
		v.record(Record{T: now, Kind: KindMessageFailed, Reason: "I am in no chat"})
		return nil
	}
	e := v.mine[i%len(v.mine)]
	ev := v.newEvent(MessageEvent, e.group)
	ev.Room, ev.Sent = e.stamp, now
	v.Expected += int64(e.group.Size() - 1)
	v.record(Record{T: now, Kind: KindMessage, Room: e.stamp, Msg: ev.ID(), By: v.self})
	return ev
}

// Close closes the i-th room self is a member of (modulo their number). It
// returns the event to send to every known user, or nil if self is in no
// room.
func (v *View) Close(i int, now time.Duration) *Event {
	v.Closes++
	if len(v.mine) == 0 {
		v.CloseFailed++
		v.record(Record{T: now, Kind: KindCloseFailed, Reason: "I am in no chat"})
		return nil
	}
	e := v.mine[i%len(v.mine)]
	ev := v.newEvent(CloseEvent, e.group)
	ev.Room, ev.Sent = e.stamp, now
	v.closeOwn(ev.Room)
	v.transition(e, ev, now)
	return ev
}

func (v *View) newEvent(k EventKind, g *Group) *Event {
	v.clock++
	return &Event{Kind: k, From: v.self, Clock: v.clock, Group: g}
}

// applyRoom applies a create or close from another user.
func (v *View) applyRoom(ev *Event, now time.Duration) {
	if ev.Kind == CloseEvent {
		v.closeOwn(ev.Room)
	}
	e := v.find(ev.Group)
	if newer(e, ev) {
		v.transition(e, ev, now)
		return
	}
	r := Record{T: now, Room: ev.Room, By: ev.From}
	if ev.Kind == CreateEvent && e.live() && ev.Room.Less(e.stamp) {
		// A concurrent duplicate that loses to the room this view keeps.
		v.Merges++
		r.Kind, r.Room, r.Dropped = KindMerge, e.stamp, ev.Room
		v.record(r)
		return
	}
	v.Stale++
	r.Kind, r.Of, r.Reason = KindStale, ev.Kind, staleReason(ev, e)
	v.record(r)
}

// newer reports whether ev moves e forward in the (stamp, closed) order.
func newer(e *entry, ev *Event) bool {
	closing := ev.Kind == CloseEvent
	return e.stamp.Less(ev.Room) || e.stamp == ev.Room && closing && !e.closed
}

func staleReason(ev *Event, e *entry) string {
	switch {
	case ev.Kind == CreateEvent && ev.Room == e.stamp:
		return "its close came first"
	case ev.Kind == CreateEvent:
		return "a later chat with this group is known"
	case ev.Room == e.stamp:
		return "already closed"
	default:
		return "a later chat with this group is known"
	}
}

// transition moves e to the state named by ev, which newer has approved
// (or which self has just made), and logs what that means to this user.
func (v *View) transition(e *entry, ev *Event, now time.Duration) {
	prev, wasLive := e.stamp, e.live()
	closing := ev.Kind == CloseEvent
	e.stamp, e.closed = ev.Room, closing
	own := ev.From == v.self
	if wasLive && prev != ev.Room {
		// Two incarnations of one group were live at once somewhere: the
		// greater stamp wins in every view.
		v.Merges++
		v.record(Record{T: now, Kind: KindMerge, Room: ev.Room, Dropped: prev, By: ev.From})
		if prev.UID == v.self {
			v.replaceOwn(prev, now)
		}
	}
	switch {
	case !closing && !wasLive:
		v.live++
		if e.member {
			e.mine = int32(len(v.mine))
			v.mine = append(v.mine, e)
		}
		r := Record{T: now, Kind: KindSee, Room: ev.Room, By: ev.From, Group: e.group}
		if own {
			r.Kind = KindCreate
		} else if e.member {
			r.Kind = KindJoin
		}
		v.record(r)
	case closing:
		if wasLive {
			v.live--
			if e.mine >= 0 {
				v.leave(e)
			}
		}
		kind := KindCloseSeen
		if own {
			kind = KindClose
		}
		v.record(Record{T: now, Kind: kind, Room: ev.Room, By: ev.From})
		v.tombs.push(tomb{e, e.stamp, now + v.grace})
	}
	v.release(e, now)
}

// leave removes e from mine in O(1), moving the last room into its place.
func (v *View) leave(e *entry) {
	last := v.mine[len(v.mine)-1]
	v.mine[e.mine], last.mine = last, e.mine
	v.mine[len(v.mine)-1] = nil
	v.mine = v.mine[:len(v.mine)-1]
	e.mine = -1
}

// applyMessage delivers a message, or holds it back until its incarnation
// is known here.
func (v *View) applyMessage(ev *Event, now time.Duration) {
	e := v.find(ev.Group)
	if e.stamp.Less(ev.Room) {
		v.held[e] = append(v.held[e], ev)
		e.holds = true
		v.nHeld++
		return
	}
	v.deliver(ev, e, false, now)
}

// release delivers the held messages of e whose incarnation is now known.
func (v *View) release(e *entry, now time.Duration) {
	if !e.holds {
		return
	}
	held := v.held[e]
	kept := held[:0]
	for _, m := range held {
		if e.stamp.Less(m.Room) {
			kept = append(kept, m)
			continue
		}
		v.nHeld--
		v.deliver(m, e, true, now)
	}
	clear(held[len(kept):])
	if len(kept) == 0 {
		delete(v.held, e)
		e.holds = false
	} else {
		v.held[e] = kept
	}
}

func (v *View) deliver(m *Event, e *entry, held bool, now time.Duration) {
	late := m.Room != e.stamp || e.closed
	v.Deliveries++
	if late {
		v.Late++
	}
	if !m.Group.Has(v.self) {
		v.NonMember++
	}
	v.record(Record{T: now, Kind: KindReceive, Room: m.Room, By: m.From, Msg: m.ID(), Late: late, Held: held})
}

// closeOwn counts the first close of a room this user created.
func (v *View) closeOwn(s Stamp) {
	if s.UID != v.self {
		return
	}
	if _, ok := v.owned[s]; ok {
		delete(v.owned, s)
		v.Closed++
	}
}

// replaceOwn notes that a concurrent duplicate replaced an own room.
func (v *View) replaceOwn(s Stamp, now time.Duration) {
	if o, ok := v.owned[s]; ok && !o.replaced {
		o.replaced = true
		v.owned[s] = o
		v.gone.push(tomb{stamp: s, at: now + v.grace})
	}
}

// Expire reclaims what can no longer matter at time now: closed entries and
// records of replaced own rooms older than the grace period.
func (v *View) Expire(now time.Duration) {
	for v.tombs.len() > 0 && v.tombs.front().at <= now {
		t := v.tombs.pop()
		// Void if a newer create revived the entry, or if messages to a
		// newer incarnation are waiting in it.
		if t.e.stamp == t.stamp && t.e.closed && !t.e.holds {
			v.remove(t.e)
		}
	}
	for v.gone.len() > 0 && v.gone.front().at <= now {
		// A close of it, had there been one, would have come by now.
		if s := v.gone.pop().stamp; v.owned[s].replaced {
			delete(v.owned, s)
			v.Duplicates++
		}
	}
}

// queue is a FIFO that reuses its memory: items are taken from the front,
// and the rest is moved down once half the slice is spent, so a steady flow
// allocates nothing.
type queue[T any] struct {
	items []T
	head  int
}

func (q *queue[T]) len() int  { return len(q.items) - q.head }
func (q *queue[T]) front() *T { return &q.items[q.head] }
func (q *queue[T]) push(x T)  { q.items = append(q.items, x) }

func (q *queue[T]) pop() T {
	var zero T
	x := q.items[q.head]
	q.items[q.head] = zero
	if q.head++; q.head >= len(q.items)/2 {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	return x
}

// Finish settles the fate of own rooms once every event has been applied:
// those live here are live at the end; the rest were replaced.
func (v *View) Finish() {
	for s, o := range v.owned {
		if e := v.lookup(o.group); e != nil && e.stamp == s && !e.closed {
			v.OwnLive++
		} else {
			v.Duplicates++
		}
		delete(v.owned, s)
	}
}

// Room is a live room as a view reports it.
type Room struct {
	Stamp Stamp
	Group *Group
}

// Rooms returns the live rooms in this view, in stamp order.
func (v *View) Rooms() []Room {
	out := make([]Room, 0, v.live)
	for _, e := range v.rooms {
		for ; e != nil; e = e.next {
			if e.live() {
				out = append(out, Room{e.stamp, e.group})
			}
		}
	}
	slices.SortFunc(out, func(a, b Room) int {
		if a.Stamp.Less(b.Stamp) {
			return -1
		}
		if b.Stamp.Less(a.Stamp) {
			return 1
		}
		return 0
	})
	return out
}

// Entries is the number of groups the view keeps state for, live or not:
// what Expire keeps bounded.
func (v *View) Entries() int {
	n := 0
	for _, e := range v.rooms {
		for ; e != nil; e = e.next {
			n++
		}
	}
	return n
}

// lookup returns the entry for g, or nil.
func (v *View) lookup(g *Group) *entry {
	for e := v.rooms[g.hash]; e != nil; e = e.next {
		if e.group.Equal(g) {
			return e
		}
	}
	return nil
}

// find returns the entry for g, making an empty one if there is none.
func (v *View) find(g *Group) *entry {
	head := v.rooms[g.hash]
	for e := head; e != nil; e = e.next {
		if e.group.Equal(g) {
			return e
		}
	}
	var e *entry
	if n := len(v.free); n > 0 {
		e, v.free = v.free[n-1], v.free[:n-1]
	} else {
		e = new(entry)
	}
	*e = entry{group: g, member: g.Has(v.self), mine: -1}
	if head != nil {
		// A hash collision, rare: chain behind the first entry.
		e.chained, e.next, head.next = true, head.next, e
		return e
	}
	v.rooms[g.hash] = e
	return e
}

// remove unlinks a dead entry and keeps it for reuse.
func (v *View) remove(e *entry) {
	h := e.group.hash
	switch {
	case !e.chained && e.next == nil:
		delete(v.rooms, h)
	case !e.chained:
		e.next.chained = false
		v.rooms[h] = e.next
	default:
		p := v.rooms[h]
		for p.next != e {
			p = p.next
		}
		p.next = e.next
	}
	*e = entry{}
	v.free = append(v.free, e)
}

func (v *View) record(r Record) {
	if v.log {
		r.User = v.self
		v.out = append(v.out, r)
	}
}

// Records returns the records appended since the last Reset.
func (v *View) Records() []Record { return v.out }

// ResetRecords empties the record buffer, keeping its memory.
func (v *View) ResetRecords() {
	clear(v.out)
	v.out = v.out[:0]
}

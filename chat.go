package main

import (
	"cmp"
	"iter"
	"math"
	"slices"
	"time"
)

// View is one user's knowledge of the chat and the rules by which it
// changes: a pure state machine. An event or an action goes in; the view
// changes, an outgoing event may come back, and log records wait in
// Records. There are no channels, clocks or random numbers inside: the
// caller passes the time and makes every random choice, so a test can drive
// a View step by step and a run can be replayed.
//
// Invariants (docs/design.md has the argument):
//   - for each group the view keeps the greatest state it has seen,
//     ordered create(s) < close(s) < create(s') for every s < s', and
//     applying a create or a close takes the maximum: any delivery order
//     ends in the same state;
//   - a message is delivered exactly once, when the view knows the
//     incarnation it was sent to (created, closed or replaced), marked late
//     if that incarnation is no longer live; until then it is held;
//   - a closed group's slot (its tombstone) is forgotten only in two
//     phases of stability: once the stable epoch has passed e1, the view's
//     epoch when it applied the close, and then e2, the horizon noted then.
//     The record of an own room that a concurrent duplicate replaced is
//     counted the same way, from the epoch of the event that replaced it.
type View struct {
	self  int32
	upTo  int32 // knows user_1..user_upTo and itself; users come online in uid order
	clock uint64
	epoch uint64 // the current epoch, as the caller last said
	log   bool   // whether to keep log records
	inc   uint32 // the user's incarnation, after a restart: see restart.go

	rooms       slotTable             // what the view knows of each group: see lookup
	book        stampBook             // the run's: one stamp of each group; nil for a view alone
	stamps      map[groupID]uint64    // the stamps of slots the book does not hold: see decode
	joined      []*Group              // live rooms self is a member of; slot.joinedAt indexes it
	live        int                   // live rooms in this view
	tombs       reclaimQueue[int16]   // closed groups waiting to be reclaimed: see voidTomb and tombIDs
	tombIDs     idDeltas              // how tombs name their groups
	void        map[groupID]int32     // tombs in tombs for a state the group has left since
	spent       map[groupID]struct{}  // closed groups whose tomb has passed, kept for held messages
	owned       map[Stamp]owned       // own rooms not yet known to be closed
	replacedOwn *reclaimQueue[uint64] // packed stamps of own rooms a duplicate replaced, waiting to be counted; nil until one is
	held        map[groupID][]*Event  // messages to incarnations newer than the slot's, in arrival order
	nHeld       int                   // messages held back
	alive       []Room                // own rooms live at the end, set by Finish

	records []Record   // log records not yet taken, while log is on
	stab    *stability // counts what the view applies, for its user's reports; nil for a view alone
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

	Expected   int64  // deliveries owed by own messages: the other members of each room
	OwedSum    uint64 // sum of deliveryHash(message, member) over what Expected counts
	GotSum     uint64 // sum of deliveryHash(message, self) over what Deliveries counts
	Deliveries int64  // messages delivered to this user
	Late       int64  // of those, into an incarnation no longer live here
	NonMember  int64  // deliveries to a user outside the group: always 0
	Merges     int64  // concurrent duplicates resolved in this view
	Stale      int64  // outdated events ignored
	StateRooms int64  // live rooms right after a late joiner's first state transfer
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
	c.OwedSum += o.OwedSum
	c.GotSum += o.GotSum
	c.Deliveries += o.Deliveries
	c.Late += o.Late
	c.NonMember += o.NonMember
	c.Merges += o.Merges
	c.Stale += o.Stale
	c.StateRooms += o.StateRooms
}

// stampBook is the run's record of one stamp for each group id, that of
// the create that named it, written by its creator as it named the group
// (see groupNames) and never changed: it holds nothing a create did not
// carry. A view's word names the stamp the book holds in two bits where
// the stamp itself would take 59, so a (user, room) pair costs 4 bytes,
// not 8.
type stampBook interface {
	stampOf(id groupID) uint64 // 0 if none is written yet
}

// slot is what a view knows about one group. A view keeps one for every
// live room and every recent tombstone, and every event applied touches
// one, so in the view's table it is one 32-bit word, by the group's id:
// the flags in the low flagBits bits, and above them where the stamp is,
// most often the run's stampBook, since most groups have one incarnation,
// and for a listed room its joinedAt too (see decode and store).
// Held-back messages, which are rare, wait in View.held.
type slot struct {
	packed   uint64 // packed stamp of the greatest incarnation seen; 0 while only held messages are known
	joinedAt int32  // index in View.joined, when listed
	flags    uint8
}

// The flags of a slot.
const (
	closed   uint8 = 1 << iota
	member         // self is in the group
	listed         // in View.joined: live and a member
	holds          // View.held has messages for the group
	viaState       // learned from a state transfer, its create not yet seen: membership unknown

	flagBits = iota // how many flags there are
)

// lookup returns what the view knows of group id, if anything.
func (v *View) lookup(id groupID) (slot, bool) {
	w := v.rooms.get(id)
	if w == 0 {
		return slot{}, false
	}
	return v.decode(id, w), true
}

// A slot's word is 32 bits: the flags in the low flagBits, and above them
// where its stamp is: none (no stamp yet), in the run's stampBook, or
// aside, in View.stamps; for a listed room, which always has a stamp,
// joinedAt and one bit, set if the stamp is aside.
const (
	stampNone = iota
	stampBooked
	stampAside
)

// decode unpacks group id's word of the view's table.
func (v *View) decode(id groupID, w uint32) slot {
	s := slot{flags: uint8(w & (1<<flagBits - 1))}
	if s.is(listed) {
		s.joinedAt = int32(w >> flagBits >> 1)
	}
	switch stampPlace(w) {
	case stampBooked:
		s.packed = v.book.stampOf(id)
	case stampAside:
		s.packed = v.stamps[id]
	}
	return s
}

// stampPlace returns where the stamp of word w is: stampNone, stampBooked
// or stampAside.
func stampPlace(w uint32) uint32 {
	if w&uint32(listed) != 0 {
		return stampBooked + w>>flagBits&1
	}
	return w >> flagBits
}

// maxJoined is how many live rooms a user can be in: joinedAt and its bit
// fill the 27 bits above the flags.
const maxJoined = 1 << (32 - flagBits - 1)

// aside reports whether word w keeps its stamp in View.stamps.
func aside(w uint32) bool { return stampPlace(w) == stampAside }

// store keeps s as what the view knows of group id. A slot that stores
// as 0 (no stamp, no flags) is dropped: it says no more than no slot,
// since only a group self is not in makes a slot without flags.
func (v *View) store(id groupID, s slot) {
	var place uint32 = stampAside
	switch {
	case s.packed == 0:
		place = stampNone // only an unlisted slot: a listed room has its stamp
	case v.book != nil && v.book.stampOf(id) == s.packed:
		place = stampBooked
	}
	x := place
	if s.is(listed) {
		x = uint32(s.joinedAt)<<1 | (place - stampBooked)
	}
	w := x<<flagBits | uint32(s.flags)
	// Most views keep no stamp aside: only then is the old word read.
	if len(v.stamps) > 0 && place != stampAside && aside(v.rooms.get(id)) {
		delete(v.stamps, id)
	}
	if place == stampAside {
		if v.stamps == nil {
			v.stamps = make(map[groupID]uint64)
		}
		v.stamps[id] = s.packed
	}
	v.rooms.put(id, w)
}

// forget drops what the view knows of group id.
func (v *View) forget(id groupID) {
	if len(v.stamps) > 0 && aside(v.rooms.get(id)) {
		delete(v.stamps, id)
	}
	v.rooms.delete(id)
}

// slots yields every group the view knows of, with its slot. The view must
// not change meanwhile.
func (v *View) slots() iter.Seq2[groupID, slot] {
	return func(yield func(groupID, slot) bool) {
		for k, w := range v.rooms.all() {
			if !yield(k, v.decode(k, w)) {
				return
			}
		}
	}
}

func (s slot) is(f uint8) bool { return s.flags&f != 0 }
func (s slot) live() bool      { return s.packed != 0 && !s.is(closed) }
func (s slot) stamp() Stamp    { return unpack(s.packed) }

// voidTomb notes that group id leaves the closed state whose tomb was
// pushed when it closed. A tomb names only the group (see idDeltas), not
// the stamp it was pushed for (a large view keeps thousands of tombs), so
// which of a group's tombs is its current one follows from counting: a
// closed slot has exactly one tomb of its own waiting, the last of its
// group's, unless that one has already passed while messages to a newer
// incarnation were held (spent); every earlier tomb of the group is void,
// counted in v.void, and passes doing nothing.
func (v *View) voidTomb(id groupID) {
	if _, ok := v.spent[id]; ok {
		delete(v.spent, id)
		return
	}
	if v.void == nil {
		v.void = make(map[groupID]int32)
	}
	v.void[id]++
}

// owned follows a room this user created until its fate is known: closed
// (counted at once), replaced by a concurrent duplicate (counted once no
// close of it can still arrive) or live at the end.
type owned struct {
	group    *Group
	replaced bool // waiting in View.replacedOwn
}

// NewView returns the view of user self; log says whether to keep log
// records.
func NewView(self int32, log bool) *View {
	v := &View{
		self:  self,
		log:   log,
		owned: make(map[Stamp]owned),
		held:  make(map[groupID][]*Event),
	}
	v.includeSelf()
	return v
}

// Self is the view's own uid.
func (v *View) Self() int32 { return v.self }

// Known is the number of users the view knows, itself included.
func (v *View) Known() int32 { return max(v.upTo, v.self) }

// RoomCount is the number of live rooms self is a member of.
func (v *View) RoomCount() int { return len(v.joined) }

// LiveCount is the number of live rooms in the view.
func (v *View) LiveCount() int { return v.live }

// HeldCount is the number of messages held back.
func (v *View) HeldCount() int { return v.nHeld }

// Learn records that users up to last are online. Users come online in uid
// order, so the users a view knows are always user_1..user_upTo (and
// itself): one integer instead of a set, and news of a user tells of
// every user before it. The news is one record, for the range of users
// it taught the view: a run of n users starts with about as many records
// per user as batches of news, not n. It keeps its Record out of Peer.Step
// (see ignore).
//
//go:noinline
func (v *View) Learn(last int32, now time.Duration) {
	from := v.upTo + 1 // never self: includeSelf has passed it
	if last < from {
		return
	}
	v.upTo = last
	v.includeSelf()
	v.record(Record{T: now, Kind: KindOnline, Peer: from, PeerTo: last})
}

// includeSelf keeps upTo contiguous: once the view knows everyone before itself,
// it counts itself too.
func (v *View) includeSelf() {
	if v.upTo+1 == v.self {
		v.upTo = v.self
	}
}

// Apply takes one event from another user. The view's epoch rises to the
// event's: it only grows, and the tombs it stamps stay in order.
func (v *View) Apply(ev *Event, now time.Duration) {
	v.clock = max(v.clock, ev.Clock)
	v.SetEpoch(ev.Epoch)
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
	s := v.slot(g)
	if s.live() {
		v.CreateFailed++
		v.record(Record{T: now, Kind: KindCreateFailed, Room: s.stamp(), Group: g, Reason: "a live chat already has this group"})
		return nil
	}
	ev := v.newEvent(CreateEvent, g)
	ev.Room, ev.Sent = ev.ID(), now
	v.Created++
	v.owned[ev.Room] = owned{group: g}
	v.transition(s, ev, now)
	return ev
}

// Send sends a message to the i-th room self is a member of (i is taken
// modulo their number). It returns the event to send to every other member,
// or nil if self is in no room.
func (v *View) Send(i int, now time.Duration) *Event {
	v.Messages++
	g, ok := v.memberRoom(i, KindMessageFailed, &v.MessageFailed, now)
	if !ok {
		return nil
	}
	s, _ := v.lookup(g.id)
	ev := v.newEvent(MessageEvent, g)
	ev.Room, ev.Sent = s.stamp(), now
	v.Expected += int64(g.Size() - 1)
	id := ev.ID()
	for r := range g.All() {
		if r != v.self {
			v.OwedSum += deliveryHash(id, r)
		}
	}
	v.record(Record{T: now, Kind: KindMessage, Room: ev.Room, Msg: ev.ID(), By: v.self})
	return ev
}

// Close closes the i-th room self is a member of (modulo their number). It
// returns the event to send to every known user, or nil if self is in no
// room.
func (v *View) Close(i int, now time.Duration) *Event {
	v.Closes++
	g, ok := v.memberRoom(i, KindCloseFailed, &v.CloseFailed, now)
	if !ok {
		return nil
	}
	s, _ := v.lookup(g.id)
	ev := v.newEvent(CloseEvent, g)
	ev.Room, ev.Sent = s.stamp(), now
	v.closeOwn(ev.Room)
	v.transition(s, ev, now)
	return ev
}

// RoomIndex is where room s is among the live rooms self is a member of,
// for Send and Close; -1 if self is in no such room.
func (v *View) RoomIndex(s Stamp) int {
	for i, g := range v.joined {
		if r, _ := v.lookup(g.id); r.packed == s.pack() {
			return i
		}
	}
	return -1
}

// memberRoom returns the i-th live room self is a member of (modulo their
// number), or counts and logs the action as failed and returns nil when
// self is in no room.
func (v *View) memberRoom(i int, failure RecordKind, failed *int64, now time.Duration) (*Group, bool) {
	if len(v.joined) == 0 {
		*failed++
		v.record(Record{T: now, Kind: failure, Reason: "I am in no chat"})
		return nil, false
	}
	return v.joined[i%len(v.joined)], true
}

func (v *View) newEvent(k EventKind, g *Group) *Event {
	v.clock++
	return &Event{Kind: k, From: v.self, Clock: v.clock, Group: g, Epoch: v.epoch}
}

// NextStamp is the stamp the view's next event will carry, which names
// the room if that event is a create.
func (v *View) NextStamp() Stamp { return Stamp{v.clock + 1, v.self} }

// SetEpoch raises the epoch the view's next events are sent in: its
// user's tick, and the epoch of every event it applies, so that the
// epoch never goes down along causality (see stability).
func (v *View) SetEpoch(e uint64) { v.epoch = max(v.epoch, e) }

// slot returns what the view knows of g: its slot, or an empty one (packed 0)
// that is not yet stored.
func (v *View) slot(g *Group) slot {
	if s, ok := v.lookup(g.id); ok {
		return s
	}
	s := slot{}
	if g.Has(v.self) {
		s.flags = member
	}
	return s
}

// applyRoom applies a create or close from another user.
func (v *View) applyRoom(ev *Event, now time.Duration) {
	if v.stab != nil {
		v.stab.count(ev.Epoch, 1, false)
	}
	if ev.Kind == CloseEvent {
		v.closeOwn(ev.Room)
	}
	s := v.slot(ev.Group)
	if s.is(viaState) && ev.Kind == CreateEvent && ev.Room.pack() == s.packed {
		v.adopt(s, ev, now)
		return
	}
	if ev.Kind == CreateEvent && ev.Room.pack() == s.packed && !s.is(closed) {
		// Known already, members and all: only a restarted user, which
		// learned it from a member's state, gets a create it knows.
		return
	}
	if newer(s, ev) {
		v.transition(s, ev, now)
		return
	}
	v.ignore(s, ev, now)
}

// ignore counts and logs a create or close that does not move its group's
// slot s forward. It and the other record makers of the apply path keep
// their Record apart from the functions that call them: a Record is
// about 230 bytes of stack frame wherever one is built, and every user's
// goroutine runs the apply path, so the fewer bytes its deepest chain
// takes, the smaller the stack a million of them keep.
func (v *View) ignore(s slot, ev *Event, now time.Duration) {
	r := Record{T: now, Room: ev.Room, By: ev.From}
	if ev.Kind == CreateEvent && s.live() && ev.Room.pack() < s.packed {
		// A concurrent duplicate that loses to the room this view keeps.
		v.Merges++
		r.Kind, r.Room, r.Dropped, r.EventKind = KindMerge, s.stamp(), ev.Room, CreateEvent
		v.record(r)
		return
	}
	v.Stale++
	r.Kind, r.EventKind, r.Reason = KindStale, ev.Kind, staleReason(ev, s)
	v.record(r)
}

// newer reports whether ev moves s forward in the (stamp, closed) order.
func newer(s slot, ev *Event) bool {
	st := ev.Room.pack()
	return s.packed < st || s.packed == st && ev.Kind == CloseEvent && !s.is(closed)
}

func staleReason(ev *Event, s slot) string {
	switch {
	case ev.Kind == CreateEvent && ev.Room.pack() == s.packed:
		return "its close came first"
	case ev.Kind == CreateEvent:
		return "a later chat with this group is known"
	case ev.Room.pack() == s.packed:
		return "already closed"
	default:
		return "a later chat with this group is known"
	}
}

// transition moves the group of ev from state s to the state ev names,
// which newer has approved (or which self has just made), stores it and
// logs what that means to this user.
func (v *View) transition(s slot, ev *Event, now time.Duration) {
	g := ev.Group
	prev, wasLive := s.stamp(), s.live()
	closing := ev.Kind == CloseEvent
	if s.is(closed) {
		v.voidTomb(g.id)
	}
	s.packed = ev.Room.pack()
	if s.is(viaState) && g.Has(v.self) {
		s.flags |= member // a slot made from a snapshot learns its members here
	}
	s.flags &^= closed | viaState
	if closing {
		s.flags |= closed
	}
	if wasLive && prev != ev.Room {
		// Two incarnations of one group were live at once somewhere: the
		// greater stamp wins in every view.
		v.replaced(prev, ev, now)
	}
	switch {
	case !closing && !wasLive:
		v.live++
		if s.is(member) {
			v.list(&s, g)
		}
		if v.log {
			v.logOpen(ev, s.is(member), now)
		}
	case closing:
		if wasLive {
			v.live--
			if s.is(listed) {
				v.unlist(&s)
			}
		}
		if v.log {
			v.logClose(ev, now)
		}
		v.tombs.push(v.tombIDs.encode(g.id), v.epoch)
	case s.is(member) && !s.is(listed):
		// A newer create replaced a room learned from a state transfer,
		// whose members were unknown: now they are.
		v.list(&s, g)
	}
	v.store(g.id, s)
	if s.is(holds) {
		v.releaseHeld(g.id, now)
	}
}

// replaced counts and logs that ev's incarnation replaced prev, live here
// until now: a merge of concurrent duplicates (see ignore for why it is
// apart).
func (v *View) replaced(prev Stamp, ev *Event, now time.Duration) {
	v.Merges++
	v.record(Record{T: now, Kind: KindMerge, Room: ev.Room, Dropped: prev, By: ev.From, EventKind: ev.Kind, Won: true})
	if prev.UID == v.self {
		v.replaceOwn(prev)
	}
}

// logOpen logs the create ev of a room now live here (see ignore for why
// it is apart).
//
//go:noinline
func (v *View) logOpen(ev *Event, isMember bool, now time.Duration) {
	r := Record{T: now, Kind: KindSee, Room: ev.Room, By: ev.From, Group: ev.Group}
	if ev.From == v.self {
		r.Kind = KindCreate
	} else if isMember {
		r.Kind = KindJoin
	}
	v.record(r)
}

// logClose logs the close ev (see ignore for why it is apart).
//
//go:noinline
func (v *View) logClose(ev *Event, now time.Duration) {
	kind := KindCloseSeen
	if ev.From == v.self {
		kind = KindClose
	}
	v.record(Record{T: now, Kind: kind, Room: ev.Room, By: ev.From})
}

// unlist removes s from joined in O(1), moving the last room into its
// place.
func (v *View) unlist(s *slot) {
	last := len(v.joined) - 1
	if int(s.joinedAt) != last {
		moved := v.joined[last].id
		m, _ := v.lookup(moved)
		m.joinedAt = s.joinedAt
		v.store(moved, m)
		v.joined[s.joinedAt] = v.joined[last]
	}
	v.joined[last] = nil
	v.joined = v.joined[:last]
	s.flags &^= listed
}

// applyMessage delivers a message, or holds it back until its incarnation
// is known here.
func (v *View) applyMessage(ev *Event, now time.Duration) {
	s := v.slot(ev.Group)
	if st := ev.Room.pack(); s.packed < st {
		v.held[ev.Group.id] = append(v.held[ev.Group.id], ev)
		s.flags |= holds
		v.store(ev.Group.id, s)
		v.nHeld++
		return
	}
	v.deliver(ev, s, false, now)
}

// releaseHeld delivers the held messages of a group whose incarnation is now
// known.
func (v *View) releaseHeld(id groupID, now time.Duration) {
	s, _ := v.lookup(id)
	v.unhold(id, func(m *Event) bool {
		if s.packed < m.Room.pack() {
			return false
		}
		v.deliver(m, s, true, now)
		return true
	})
}

// unhold lets go of the messages held back for group id that free takes,
// in the order they were held, and keeps the rest.
func (v *View) unhold(id groupID, free func(*Event) bool) {
	held := v.held[id]
	kept := held[:0]
	for _, m := range held {
		if free(m) {
			v.nHeld--
		} else {
			kept = append(kept, m)
		}
	}
	clear(held[len(kept):])
	if len(kept) > 0 {
		v.held[id] = kept
		return
	}
	delete(v.held, id)
	s, _ := v.lookup(id)
	s.flags &^= holds
	v.store(id, s)
}

func (v *View) deliver(m *Event, s slot, held bool, now time.Duration) {
	if v.stab != nil {
		v.stab.count(m.Epoch, 1, false)
	}
	late := m.Room.pack() != s.packed || s.is(closed)
	v.Deliveries++
	v.GotSum += deliveryHash(m.ID(), v.self)
	if late {
		v.Late++
	}
	if !m.Group.Has(v.self) {
		v.NonMember++
	}
	v.record(Record{T: now, Kind: KindReceive, Room: m.Room, By: m.From, Msg: m.ID(), Late: late, Held: held})
}

// deliveryHash hashes a delivery, a message and its recipient, for the checksum
// that tells the verdict whether every message reached exactly the members
// it was owed to: the sums over two sets of pairs differ unless the sets
// are the same, but for a chance of about 2^-64.
func deliveryHash(msg Stamp, to int32) uint64 {
	x := msg.pack()*0x9e3779b97f4a7c15 ^ uint64(to)*0xc2b2ae3d27d4eb4f
	x ^= x >> 31
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 29
	x *= 0x94d049bb133111eb
	return x ^ x>>32
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

// replaceOwn notes that an own room s was replaced by a concurrent
// duplicate.
func (v *View) replaceOwn(s Stamp) {
	if o, ok := v.owned[s]; ok && !o.replaced {
		o.replaced = true
		v.owned[s] = o
		if v.replacedOwn == nil {
			v.replacedOwn = new(reclaimQueue[uint64]) // rare: 88 bytes a view saved
		}
		v.replacedOwn.push(s.pack(), v.epoch)
	}
}

// RoomState is what a view knows of one group, as a state transfer
// carries it: the group's id, the greatest incarnation seen and whether it is
// closed. It holds no member set: a view keeps none for rooms it is not in.
type RoomState struct {
	ID     groupID
	Packed uint64
	Closed bool
	Group  *Group // the members, if the sender is one of them; nil otherwise
}

// Snapshot returns every group the view knows an incarnation of, live or
// closed and not yet reclaimed, in stamp order.
func (v *View) Snapshot() []RoomState {
	out := make([]RoomState, 0, v.rooms.len())
	for k, s := range v.slots() {
		if s.packed != 0 {
			rs := RoomState{ID: k, Packed: s.packed, Closed: s.is(closed)}
			if s.is(listed) {
				rs.Group = v.joined[s.joinedAt]
			}
			out = append(out, rs)
		}
	}
	slices.SortFunc(out, func(a, b RoomState) int { return cmp.Compare(a.Packed, b.Packed) })
	return out
}

// ApplyState merges a peer's snapshot, ev.State, into the view: each group
// takes the greater of the two states, as if the events that made the
// peer's had settled, so a snapshot merged with events in any order
// converges. A room learned only this way keeps its membership unknown
// until its create arrives (adopt); a late joiner is in no room created
// before the others knew it, and gets the create of every room that has it.
// first says this is a late joiner's first state, which it logs as the
// rooms it learned; a later one it logs only if it changed something.
func (v *View) ApplyState(ev *Event, now time.Duration, first bool) {
	v.clock = max(v.clock, ev.Clock)
	v.SetEpoch(ev.Epoch)
	var release []groupID
	var adopt []RoomState
	changed := 0
	for _, rs := range ev.State {
		v.clock = max(v.clock, unpack(rs.Packed).Clock)
		s, _ := v.lookup(rs.ID)
		if s.packed > rs.Packed || s.packed == rs.Packed && (s.is(closed) || !rs.Closed) {
			continue // not newer
		}
		changed++
		if s.is(listed) {
			v.unlist(&s)
		}
		if s.live() {
			v.live--
			if s.packed != rs.Packed {
				v.Merges++
				if prev := s.stamp(); prev.UID == v.self {
					v.replaceOwn(prev)
				}
			}
		}
		if s.packed != rs.Packed {
			s.flags |= viaState
		}
		if s.is(closed) {
			v.voidTomb(rs.ID)
		}
		s.packed = rs.Packed
		s.flags &^= closed
		if rs.Closed {
			s.flags |= closed
			v.closeOwn(unpack(rs.Packed))
			v.tombs.push(v.tombIDs.encode(rs.ID), v.epoch)
		} else {
			v.live++ // a newer incarnation: listed once its create comes (adopt)
		}
		v.store(rs.ID, s)
		if s.is(holds) {
			release = append(release, rs.ID)
		}
		if v.inc > 0 && rs.Group != nil && !rs.Closed {
			adopt = append(adopt, rs)
		}
	}
	switch {
	case first:
		if v.inc == 0 { // a late joiner's first state; a restarted user's is not one
			v.StateRooms += int64(v.live)
		}
		v.record(Record{T: now, Kind: KindState, By: ev.From, Rooms: v.Rooms(), Inc: v.inc})
	case changed > 0:
		v.record(Record{T: now, Kind: KindCatchUp, By: ev.From, Rooms: v.Rooms()})
	}
	// A restarted user was in rooms whose creates it will not get
	// again: a member's word tells it their members.
	for _, rs := range adopt {
		if s, _ := v.lookup(rs.ID); s.is(viaState) && s.packed == rs.Packed {
			v.adopt(s, &Event{Kind: CreateEvent, From: unpack(rs.Packed).UID, Room: unpack(rs.Packed), Group: rs.Group}, now)
		}
	}
	// The state comes first in the log, then what it released: a message
	// held for a room is received once the room is known.
	for _, k := range release {
		v.releaseHeld(k, now)
	}
}

// TakeRelayed takes a create or close of one of this user's earlier
// selves that peer from relays after a restart (see restart.go): as an
// entry of from's snapshot, and for a room still live, with its members,
// as the create itself would bring them.
func (v *View) TakeRelayed(ev *Event, from int32, now time.Duration) {
	rs := RoomState{ID: ev.Group.id, Packed: ev.Room.pack(), Closed: ev.Kind == CloseEvent}
	v.ApplyState(&Event{Kind: StateEvent, From: from, Clock: ev.Clock, Epoch: ev.Epoch, State: []RoomState{rs}}, now, false)
	if s, ok := v.lookup(rs.ID); ok && s.is(viaState) && !rs.Closed && s.packed == rs.Packed {
		v.adopt(s, ev, now)
	}
}

// ReleaseBelow delivers, late, every message held back whose epoch is
// below w, the stable epoch: its room's create was sent no later, and so
// was applied by every user that did not crash since. A view that still
// lacks it after a crash has lost it with the crash (the room was closed
// and forgotten, or died with its creator's crash: see restart.go), and
// may get it again only from a restarted creator's rooms, counted in a
// later epoch; the message is delivered once either way.
func (v *View) ReleaseBelow(w uint64, now time.Duration) {
	if v.nHeld == 0 {
		return
	}
	var due []*Event
	for id := range v.held {
		v.unhold(id, func(m *Event) bool {
			if m.Epoch >= w {
				return false
			}
			due = append(due, m)
			return true
		})
	}
	slices.SortFunc(due, func(a, b *Event) int { return cmp.Compare(a.ID().pack(), b.ID().pack()) }) // held in a map: the same order every run
	for _, m := range due {
		s, _ := v.lookup(m.Group.id)
		v.deliver(m, s, true, now)
	}
}

// StateOf is the view's state of group g: the stamp of the incarnation it
// knows, 0 for none, and whether that is closed.
func (v *View) StateOf(g *Group) (packed uint64, isClosed bool) {
	s, _ := v.lookup(g.id)
	return s.packed, s.is(closed)
}

// adopt takes the create of a room the view learned from a state
// transfer: now its members are known.
func (v *View) adopt(s slot, ev *Event, now time.Duration) {
	s.flags &^= viaState
	if ev.Group.Has(v.self) {
		s.flags |= member
		if s.live() {
			v.list(&s, ev.Group)
			v.record(Record{T: now, Kind: KindJoin, Room: ev.Room, By: ev.From, Group: ev.Group})
		}
	}
	v.store(ev.Group.id, s)
}

// list adds the live room s of group g to joined.
func (v *View) list(s *slot, g *Group) {
	if len(v.joined) >= maxJoined {
		panic("chatsim: a user in more than 2^26 live rooms")
	}
	s.joinedAt = int32(len(v.joined))
	s.flags |= listed
	v.joined = append(roomFor(v.joined), g)
}

// Expire reclaims what can no longer matter, now that every delivery sent
// in an epoch below stable has been applied, and no user sent anything
// later than horizon before it had applied all of those: closed groups, and
// records of replaced own rooms.
func (v *View) Expire(stable, horizon uint64) {
	v.tombs.expire(stable, horizon, func(d int16) {
		id := v.tombIDs.decode(d)
		if n := v.void[id]; n > 0 {
			if n == 1 {
				delete(v.void, id)
			} else {
				v.void[id] = n - 1
			}
			return
		}
		// The group is still in the closed state this tomb was pushed
		// for. Messages to a newer incarnation waiting for it keep it.
		if s, _ := v.lookup(id); s.is(holds) {
			if v.spent == nil {
				v.spent = make(map[groupID]struct{})
			}
			v.spent[id] = struct{}{}
			return
		}
		v.forget(id)
	})
	if v.replacedOwn == nil {
		return
	}
	v.replacedOwn.expire(stable, horizon, func(packed uint64) {
		// A close of it, had there been one, has come by now.
		if s := unpack(packed); v.owned[s].replaced {
			delete(v.owned, s)
			v.Duplicates++
		}
	})
}

// idDeltas names the groups of a FIFO of tombs in 2 bytes each, not 4:
// each tomb holds its id's difference from the tomb before, which the
// queue gives back in the same order. Groups closed one after another
// were mostly created within a few thousand creates of each other; an id
// too far from the one before is kept whole in far, in order, and its
// tomb says so with farDelta.
type idDeltas struct {
	in, out groupID        // the last id encoded, and the last decoded
	far     queue[groupID] // ids too far from the one before, in order
}

// farDelta marks a tomb whose id is in far.
const farDelta = math.MinInt16

// encode returns the tomb for id, the next in the queue.
func (c *idDeltas) encode(id groupID) int16 {
	d := int64(id) - int64(c.in)
	c.in = id
	if d <= farDelta || d > math.MaxInt16 {
		c.far.push(id)
		return farDelta
	}
	return int16(d)
}

// decode returns the id of tomb d, the next out of the queue.
func (c *idDeltas) decode(d int16) groupID {
	if d == farDelta {
		c.out = c.far.pop()
	} else {
		c.out = groupID(int64(c.out) + int64(d))
	}
	return c.out
}

// reclaimQueue holds tombs through the two phases of View's argument: each
// waits until the stable epoch passes the epoch e it was pushed in (every
// user has applied the close), is stamped with the horizon then, and waits
// until the stable epoch passes that too (everything sent before the close
// was known everywhere has been applied). Tombs pass both phases in the
// order they came, since epochs and horizons only grow, so they wait in
// one queue, those in the second phase first; and since many share an
// epoch (every close applied in one lockstep tick does), the epochs are
// kept apart as runs: a tomb costs only what names it.
type reclaimQueue[T any] struct {
	tombs                  queue[T]
	untilClosed, untilSent queue[epochRun] // the runs of tombs in each phase, in order
}

// epochRun is n consecutive tombs that wait for the stable epoch to pass e.
type epochRun struct {
	e uint64
	n int
}

// len is how many tombs wait: none in a nil queue.
func (q *reclaimQueue[T]) len() int {
	if q == nil {
		return 0
	}
	return q.tombs.len()
}

// push adds a tomb for a close applied in epoch e.
func (q *reclaimQueue[T]) push(t T, e uint64) {
	q.tombs.push(t)
	addRun(&q.untilClosed, e, 1)
}

// addRun adds n tombs waiting for e to the runs of a phase.
func addRun(runs *queue[epochRun], e uint64, n int) {
	if k := len(runs.items) - 1; k >= runs.head && runs.items[k].e == e {
		runs.items[k].n += n
		return
	}
	runs.push(epochRun{e, n})
}

// expire moves on what stable allows, calling done for each tomb that has
// passed both phases.
func (q *reclaimQueue[T]) expire(stable, horizon uint64, done func(T)) {
	for q.untilClosed.len() > 0 && q.untilClosed.front().e < stable {
		addRun(&q.untilSent, horizon, q.untilClosed.pop().n)
	}
	for q.untilSent.len() > 0 && q.untilSent.front().e < stable {
		for range q.untilSent.pop().n {
			done(q.tombs.pop())
		}
	}
}

// queue is a FIFO that reuses its memory: items are taken from the
// front, and once the slice is full the rest is moved down before it
// grows, if an eighth of it or more has been taken. So a queue that slides
// along, as a view's tombs do, needs room for at most 8/7 of what it holds
// (and a quarter more when it must grow: see roomFor), not for all it has
// held since it last moved down; and a steady flow allocates nothing.
type queue[T any] struct {
	items []T
	head  int
}

func (q *queue[T]) len() int  { return len(q.items) - q.head }
func (q *queue[T]) front() *T { return &q.items[q.head] }

func (q *queue[T]) push(x T) {
	if len(q.items) == cap(q.items) {
		if q.head > 0 && q.head >= len(q.items)/8 {
			n := copy(q.items, q.items[q.head:])
			clear(q.items[n:])
			q.items, q.head = q.items[:n], 0
		} else {
			q.items = roomFor(q.items)
		}
	}
	q.items = append(q.items, x)
}

// roomFor returns s, or a copy of it with room for a quarter more when it
// is full and not small. append would give a slice of a few hundred
// elements room for nearly twice as many, and a view's lists (its tombs,
// the rooms it is in) settle at about what they hold at their most: at
// 100,000 users, a quarter more instead of double is a tenth of the heap.
func roomFor[T any](s []T) []T {
	if len(s) < cap(s) || cap(s) < 64 {
		return s
	}
	return append(make([]T, 0, cap(s)+cap(s)/4), s...)
}

func (q *queue[T]) pop() T {
	var zero T
	x := q.items[q.head]
	q.items[q.head] = zero
	if q.head++; q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	return x
}

// Finish decides the fate of own rooms once every event has been applied:
// those live here are live at the end; the rest were replaced.
func (v *View) Finish() {
	for s, o := range v.owned {
		if r, _ := v.lookup(o.group.id); r.packed == s.pack() && r.live() {
			v.OwnLive++
			v.alive = append(v.alive, Room{s, o.group})
		} else {
			v.Duplicates++
		}
		delete(v.owned, s)
	}
}

// Room is a live room: its incarnation, and its group where known.
type Room struct {
	Stamp Stamp
	Group *Group
}

// Rooms returns the stamps of the live rooms in this view, in order.
func (v *View) Rooms() []Stamp {
	l := roomLister{make([]uint64, 0, v.live), make([]Stamp, 0, v.live)}
	return l.list(v)
}

// roomLister lists views' live rooms in memory it reuses: the verdict
// lists every view's, and at 100,000 users a new list for each was the
// largest heap of the run.
type roomLister struct {
	packed []uint64
	out    []Stamp
}

// list returns the stamps of the live rooms in v, in order, valid until
// the next list.
func (l *roomLister) list(v *View) []Stamp {
	l.packed = l.packed[:0]
	for _, s := range v.slots() {
		if s.live() {
			l.packed = append(l.packed, s.packed)
		}
	}
	slices.Sort(l.packed)
	l.out = l.out[:0]
	for _, st := range l.packed {
		l.out = append(l.out, unpack(st))
	}
	return l.out
}

// Own returns the rooms this user created that are live at the end, with
// their groups, once Finish has run.
func (v *View) Own() []Room { return v.alive }

func (v *View) record(r Record) {
	if v.log {
		r.User = v.self
		v.records = append(v.records, r)
	}
}

// KeepRecords says whether the view keeps log records from now on.
func (v *View) KeepRecords(on bool) { v.log = on }

// Records returns the records appended since the last Reset.
func (v *View) Records() []Record { return v.records }

// ResetRecords empties the record buffer, keeping its memory.
// A buffer grown past keptRecords (by the start-up news of a large run,
// say) is let go, so that a view does not hold its largest batch forever.
func (v *View) ResetRecords() {
	if cap(v.records) > keptRecords {
		v.records = nil
		return
	}
	clear(v.records)
	v.records = v.records[:0]
}

// keptRecords is the most records a buffer keeps room for between batches.
const keptRecords = 1024

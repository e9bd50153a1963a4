package main

import (
	"encoding/binary"
	"hash/maphash"
	"iter"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"
)

// Stamp is a Lamport timestamp: the sender's clock and uid. Every event a
// user sends takes a fresh clock value, so a stamp names exactly one event
// in a run, and stamps are totally ordered (clock first, then uid) the same
// way by every user without asking anyone.
type Stamp struct {
	Clock uint64
	UID   int32
}

// Less orders stamps by clock, then uid.
func (s Stamp) Less(t Stamp) bool {
	return s.Clock < t.Clock || s.Clock == t.Clock && s.UID < t.UID
}

// pack packs a stamp into one word whose integer order is the stamp order:
// the clock in the high 44 bits, the uid (below 2^20, as -users allows) in
// the low 20, so clocks must stay below 2^44: a clock advances at most
// once per event sent anywhere, and 2^44 events is five years at 100,000
// events a second, beyond any run.
func (s Stamp) pack() uint64 { return s.Clock<<uidBits | uint64(s.UID) }

// unpack is the inverse of pack.
func unpack(w uint64) Stamp { return Stamp{w >> uidBits, int32(w & (1<<uidBits - 1))} }

const uidBits = 20

// IsZero reports whether s is the zero stamp, which precedes every real one.
func (s Stamp) IsZero() bool { return s == Stamp{} }

// String renders a stamp as "clock.uid", the id of a room or a message.
func (s Stamp) String() string { return string(s.append(nil)) }

func (s Stamp) append(b []byte) []byte {
	b = strconv.AppendUint(b, s.Clock, 10)
	b = append(b, '.')
	return strconv.AppendInt(b, int64(s.UID), 10)
}

// Group is an immutable set of members: the key of a room. One Group value
// is shared by the events that name it, so a room costs one member set, not
// one per user. Bit u of bits is set when user_u is a member; the
// fingerprint is computed once, when the group is made.
type Group struct {
	bits []uint64
	size int
	key  groupKey
	id   groupID // its name in the run's groupNames, given before any view sees it
}

// groupKey is a group's 64-bit fingerprint, the key under which the run
// names the group (see groupNames). The run trusts it as the group's
// identity, the way git trusts object ids: two different groups share one
// only with a chance of 2^-64 per pair, so for a run that makes ten million
// groups (a week at 10,000 users), a chance of about 10^-5 that any two
// of them do, and then the two share one name. It is never 0.
type groupKey uint64

// groupID names a group in views' tables: see namer. Ids start at 1.
type groupID uint32

// namer gives each group its id before any view sees it: the run's
// groupNames. A creator names the group of a create before it sends it.
type namer interface {
	name(g *Group, first uint64) *Group // first: the packed stamp of the create that names it
	stampBook
}

// words is the bitset length that holds uids 1..n.
func words(n int) int { return (n + 64) / 64 }

func (g *Group) add(u int32) { g.bits[u/64] |= 1 << (u % 64) }

// seal computes the size and fingerprint once the members are set. The
// fingerprint is a seeded maphash sum of the member bits; it only keys
// tables, so nothing printed depends on its seed.
func (g *Group) seal() {
	var h maphash.Hash
	h.SetSeed(keySeed)
	var buf [8]byte
	size := 0
	for _, w := range g.bits {
		size += bits.OnesCount64(w)
		binary.LittleEndian.PutUint64(buf[:], w)
		h.Write(buf[:])
	}
	g.size, g.key = size, groupKey(max(h.Sum64(), 1))
}

var keySeed = maphash.MakeSeed()

// Has reports whether user u is a member.
func (g *Group) Has(u int32) bool {
	i := int(u / 64)
	return i < len(g.bits) && g.bits[i]&(1<<(u%64)) != 0
}

// Size is the number of members.
func (g *Group) Size() int { return g.size }

// Equal reports whether g and h have the same members.
func (g *Group) Equal(h *Group) bool {
	if g == h {
		return true
	}
	if g.key != h.key || g.size != h.size || len(g.bits) != len(h.bits) {
		return false
	}
	for i, w := range g.bits {
		if h.bits[i] != w {
			return false
		}
	}
	return true
}

// Compare orders groups by their member bits, for sorting: 0 when they
// have the same members.
func (g *Group) Compare(h *Group) int { return slices.Compare(g.bits, h.bits) }

// All yields the members' uids in ascending order, without allocating: the
// one walk over a member bitset that fan-outs, logs and checksums share.
func (g *Group) All() iter.Seq[int32] {
	return func(yield func(int32) bool) {
		for i, w := range g.bits {
			for ; w != 0; w &= w - 1 {
				if !yield(int32(i*64 + bits.TrailingZeros64(w))) {
					return
				}
			}
		}
	}
}

// Members returns the uids in ascending order.
func (g *Group) Members() []int32 { return slices.AppendSeq(make([]int32, 0, g.size), g.All()) }

// pickGroup picks a random group of the known users user_1..user_known, self
// included, of a size uniform from 2 to all of them; nil if self knows no
// one else. It uses Floyd's sampling: O(size) work and no scratch memory.
func pickGroup(rng *rand.Rand, n int, self, known int32) *Group {
	if known < 2 {
		return nil
	}
	size := 2 + rng.IntN(int(known)-1)
	g := &Group{bits: make([]uint64, words(n))}
	g.add(self)
	others := int(known) - 1
	uid := func(i int) int32 { // the i-th known user other than self
		if u := int32(i) + 1; u < self {
			return u
		}
		return int32(i) + 2
	}
	for j := others - (size - 1); j < others; j++ {
		t := uid(rng.IntN(j + 1))
		if g.Has(t) {
			t = uid(j)
		}
		g.add(t)
	}
	g.seal()
	return g
}

// EventKind says what an Event does to a room.
type EventKind uint8

// The three room events; a late joiner's hello and the state transfer it
// asks for; what users tell each other of stability, up and down the
// report tree; and the links' acknowledgements.
const (
	CreateEvent EventKind = iota + 1
	MessageEvent
	CloseEvent
	HelloEvent        // a late joiner tells everyone before it that it is online
	StateRequestEvent // a late joiner asks a peer for its rooms
	StateEvent        // the peer's rooms, in Event.State
	ReportEvent       // a report alone, to the sender's parent: see stability
	NewsEvent         // what the sender knows of stability, to its children
	AckEvent          // Delivery.Ack acknowledges the reverse link
	GapEvent          // an acknowledgement that also reports a gap: see links
	RestartEvent      // a restarted user tells a peer its new incarnation
	WelcomeEvent      // a peer has fenced the restarted user's earlier self: see Peer.welcome
	RoomsEvent        // a restarted user's rooms, once its view is complete, to everyone: see Peer.greet
	EndEvent          // an acknowledgement that offers to end the session in Delivery.Base: see links
	EndAckEvent       // the offer of an EndEvent taken
)

func (k EventKind) String() string {
	switch k {
	case CreateEvent:
		return "create"
	case MessageEvent:
		return "message"
	case CloseEvent:
		return "close"
	case HelloEvent:
		return "hello"
	case StateRequestEvent:
		return "state request"
	case StateEvent:
		return "state"
	case ReportEvent:
		return "report"
	case NewsEvent:
		return "news"
	case AckEvent, GapEvent, EndEvent, EndAckEvent:
		return "ack"
	case RestartEvent:
		return "restart"
	case WelcomeEvent:
		return "welcome"
	case RoomsEvent:
		return "rooms"
	}
	return "marker"
}

// Event is one event as its sender made it (a room event, or what a late
// joiner, the report tree or the links send). It is immutable once sent:
// one Event is shared by every recipient, so an action allocates one event
// however many users it reaches.
//
// Room names the incarnation the event is about: for a create it is the
// event's own stamp; a close carries the stamp of the incarnation it closes;
// a message carries the stamp of the incarnation it was sent to.
type Event struct {
	Kind  EventKind
	From  int32
	Clock uint64 // the sender's Lamport clock when it sent the event
	Room  Stamp
	Group *Group
	Sent  time.Duration // simulation time of sending, since the start
	Epoch uint64        // the sender's epoch: see stability
	Inc   uint32        // with faults: the sender's incarnation (see links)
	Known int32         // StateEvent: the sender knows user_1..user_Known online

	// What every transmission tells of stability: what its sender knew;
	// and, for the sender's parent in the report tree, a report.
	Word   stableWord
	Report *progress

	State  []RoomState // StateEvent, WelcomeEvent, RoomsEvent: every group the sender knows of
	Covers uint64      // StateEvent: the sender's view has every create and close sent below it; 0 when it does not know
	Relay  []*Event    // WelcomeEvent: creates and closes of the restarted user's earlier selves, not known stable; RoomsEvent: the creates of those still live
	Whom   uint32      // WelcomeEvent: the incarnation welcomed (links may carry it to a later one: see links.renew)
}

// ID is the event's own stamp: a message id or, for a create, a room id.
func (e *Event) ID() Stamp { return Stamp{e.Clock, e.From} }

// Delivery is what travels on an EventChannel: one transmission of an
// event to one recipient, and the simulation time at which it may be
// applied. Due is later than Event.Sent only under an injected delay (or
// by one tick in fast mode), or for a retransmission.
//
// With faults on, the links between users number what they carry: Seq is
// the transmission's sequence number on its link (0 for an
// acknowledgement; for a gap report, the first number that settled past
// the gap), Base the first number of the sender's session it belongs to,
// and Ack acknowledges the reverse link: every number below it has
// settled. To is the receiver's incarnation the link was with when it was
// sent (see links).
type Delivery struct {
	Event              *Event
	Due                time.Duration
	Seq, Ack, To, Base uint32
}

// forever is a time later than any delivery is due.
const forever = time.Duration(1<<63 - 1)

// Online tells a user, at the start of a run, that users up to Last are
// online.
type Online struct {
	Last int32
}

// uidName renders a uid the way the log shows it.
func uidName(u int32) string { return string(appendUID(nil, u)) }

func appendUID(b []byte, u int32) []byte {
	return strconv.AppendInt(append(b, "user_"...), int64(u), 10)
}

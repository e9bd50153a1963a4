package main

import "time"

// RecordKind is what a log record tells. How each kind reads in the log, in
// JSON and on the page is in one table, recordKinds (kinds.go): the core only
// makes records.
type RecordKind uint8

// The kinds of log records; their names are the JSON "kind" values.
const (
	KindOnline RecordKind = iota + 1
	KindCreate
	KindCreateFailed
	KindJoin
	KindSee
	KindMerge
	KindMessage
	KindMessageFailed
	KindReceive
	KindClose
	KindCloseFailed
	KindCloseSeen
	KindStale
	KindOffline // the user went offline
	KindBack    // the user is back
	KindState   // a late joiner learned the rooms from a peer
	KindSplit   // the network split: a network line, with no user
	KindHeal    // the network healed: a network line
	KindCatchUp // a late joiner learned from a peer what it had missed
	KindClog    // a user's traffic is clogged: a network line; By is the user
	KindUnclog  // the clog cleared: a network line
	KindCrash   // the user crashed: it forgets everything
	KindRestart // the user restarted, as a new incarnation

	numKinds = iota + 1 // one past the last kind
)

// Record is one line of the log, from the perspective of User, or of the
// network when User is 0. Fields that do not apply to a kind are zero.
type Record struct {
	T         time.Duration // simulation time since the start
	User      int32
	Kind      RecordKind
	Room      Stamp     // the incarnation concerned (for a merge, the one kept)
	Dropped   Stamp     // merge: the incarnation dropped
	Group     *Group    // members, where a room is announced
	By        int32     // who caused it: creator, sender or closer
	Peer      int32     // online: the first user that came online
	PeerTo    int32     // online: the last user that came online at once, or 0 for Peer alone
	Msg       Stamp     // message id
	EventKind EventKind // stale: the kind of event ignored; merge: of the event applied
	Won       bool      // merge: the event applied named the room kept, not the one dropped
	Late      bool      // receive: the incarnation is no longer live in this view
	Held      bool      // receive: the message waited for its room to be known
	Reason    string
	Away      time.Duration // back: how long the user was away
	Rooms     []Stamp       // state, catch_up: the live rooms right after the transfer; crash: those it forgot
	Sides     [][]int32     // split: the users on each side; a bridge is on both
	OneWay    bool          // split: only the first side reaches the other
	ClogDir   clogDir       // clog, unclog: which of By's traffic (Peer: to whom, for a pair)
	Lasts     time.Duration // clog: how long it will last; unclog: how long it lasted
	Lost      int32         // crash: the messages it held back
	Losses    []msgTo       // crash: the deliveries the rule for crashes loses with it (see crash.go)
	Inc       uint32        // restart, and a restarted user's state: its incarnation
}

// msgTo is one delivery: a message to a member.
type msgTo struct {
	Msg Stamp
	To  int32
}

// clogDir is which of a user's traffic a clog holds.
type clogDir uint8

const (
	clogOut  clogDir = iota // everything the user sends
	clogIn                  // everything sent to the user
	clogPair                // what the user sends to one other user
)

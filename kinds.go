package main

import (
	"slices"
	"strconv"
)

// kindSpec is everything the outputs know of one kind of record: its JSON
// name, how its line reads, how the page marks it, which race it shows,
// and which event it tells of sending or applying, by which the page and
// the ShiViz log link a delivery to its sending. Adding a kind is a row in
// recordKinds and, where its line needs fields of its own, a case in
// jsonRecord.
type kindSpec struct {
	name string
	// text appends the line's words, after "[time user] ".
	text func(r *renderer, b []byte, rec *Record) []byte
	// class and shape are the page's mark: its colour classes and its
	// form. mark, when set, decides them from the record instead.
	class, shape string
	mark         func(rec *Record) (class, shape string)
	// race names the race the record shows, if any.
	race func(rec *Record) string
	// sends is the event the record tells of sending, if any.
	sends EventKind
	// applied is the event the record tells of applying, if any.
	applied func(rec *Record) (eventKey, bool)
}

// recordKinds is the table of record kinds, by kind.
var recordKinds = [numKinds]kindSpec{
	KindOnline: {name: "online", text: onlineText},
	KindCreate: {name: "create", class: "c-create send", shape: "send", sends: CreateEvent,
		text: func(r *renderer, b []byte, rec *Record) []byte {
			b = appendChat(append(b, "I created "...), rec.Room)
			return r.members(append(b, " with "...), rec.Group)
		}},
	KindCreateFailed: {name: "create_failed", class: "c-create failed", shape: "failed", text: createFailedText},
	KindJoin: {name: "join", class: "c-create", shape: "dot", applied: appliedCreate,
		text: func(r *renderer, b []byte, rec *Record) []byte {
			return roomAnnounced(r, append(b, "I joined "...), rec)
		}},
	KindSee: {name: "see", class: "c-create", shape: "dot", applied: appliedCreate,
		text: func(r *renderer, b []byte, rec *Record) []byte {
			return roomAnnounced(r, append(b, "I see a new "...), rec)
		}},
	KindMerge: {name: "merge", text: mergeText, race: func(*Record) string { return "merge" },
		mark: func(rec *Record) (string, string) { return kindClass(rec.EventKind) + " race", "diamond" },
		applied: func(rec *Record) (eventKey, bool) {
			if rec.Won {
				return eventKey{rec.EventKind, rec.Room, rec.By}, true
			}
			return eventKey{CreateEvent, rec.Dropped, rec.By}, true
		}},
	KindMessage: {name: "message", class: "c-message send", shape: "send", sends: MessageEvent,
		text: func(r *renderer, b []byte, rec *Record) []byte {
			b = appendQuoted(append(b, "I sent "...), rec.Msg)
			return appendChat(append(b, " to "...), rec.Room)
		}},
	KindMessageFailed: {name: "message_failed", class: "c-message failed", shape: "failed",
		text: func(r *renderer, b []byte, rec *Record) []byte {
			return failed(r, b, "I wanted to send a message, but ", rec)
		}},
	KindReceive: {name: "receive", text: receiveText, race: receiveRace, mark: receiveMark,
		applied: func(rec *Record) (eventKey, bool) { return eventKey{MessageEvent, rec.Msg, rec.By}, true }},
	KindClose: {name: "close", class: "c-close send", shape: "close", sends: CloseEvent,
		text: func(r *renderer, b []byte, rec *Record) []byte {
			return appendChat(append(b, "I closed "...), rec.Room)
		}},
	KindCloseFailed: {name: "close_failed", class: "c-close failed", shape: "failed",
		text: func(r *renderer, b []byte, rec *Record) []byte {
			return failed(r, b, "I wanted to close a chat, but ", rec)
		}},
	KindCloseSeen: {name: "close_seen", class: "c-close", shape: "dot",
		applied: func(rec *Record) (eventKey, bool) { return eventKey{CloseEvent, rec.Room, rec.By}, true },
		text: func(r *renderer, b []byte, rec *Record) []byte {
			return appendChat(append(r.uid(b, rec.By), " closed "...), rec.Room)
		}},
	KindStale: {name: "stale", text: staleText,
		race:    func(rec *Record) string { return "outdated " + rec.EventKind.String() + " ignored" },
		mark:    func(rec *Record) (string, string) { return kindClass(rec.EventKind) + " race", "cross" },
		applied: func(rec *Record) (eventKey, bool) { return eventKey{rec.EventKind, rec.Room, rec.By}, true }},
	KindOffline: {name: "offline", text: func(r *renderer, b []byte, _ *Record) []byte { return r.styled(b, styleAway, "I went offline") }},
	KindBack: {name: "back", text: func(r *renderer, b []byte, rec *Record) []byte {
		b = r.start(b, styleAway)
		b = append(b, "I am back after "...)
		b = append(b, fmtDur(rec.Away)...)
		b = append(b, " away, catching up"...)
		return r.end(b)
	}},
	KindState: {name: "state", class: "c-other", shape: "star", text: stateText},
	KindSplit: {name: "split", text: splitText},
	KindHeal:  {name: "heal", text: func(r *renderer, b []byte, _ *Record) []byte { return r.styled(b, styleNet, "the network healed") }},
	KindClog: {name: "clog", text: func(r *renderer, b []byte, rec *Record) []byte {
		b = r.start(b, styleNet)
		b = appendClogged(r, b, rec)
		b = append(b, " clogged for "...)
		return r.end(append(b, fmtDur(rec.Lasts)...))
	}},
	KindUnclog: {name: "unclog", text: func(r *renderer, b []byte, rec *Record) []byte {
		b = r.start(b, styleNet)
		b = appendClogged(r, b, rec)
		b = append(b, " clear again after "...)
		return r.end(append(b, fmtDur(rec.Lasts)...))
	}},
	KindCrash: {name: "crash", class: "c-other", shape: "cross", text: func(r *renderer, b []byte, rec *Record) []byte {
		b = r.start(b, styleAway)
		b = liveChats(append(b, "I crashed, forgetting "...), len(rec.Rooms))
		b = append(b, " and "...)
		b = strconv.AppendInt(b, int64(rec.Lost), 10)
		b = append(b, " held messages"...)
		return r.end(b)
	}},
	KindRestart: {name: "restart", class: "c-other", shape: "star", text: func(r *renderer, b []byte, rec *Record) []byte {
		b = r.start(b, styleAway)
		b = strconv.AppendUint(append(b, "I restarted as incarnation "...), uint64(rec.Inc), 10)
		return r.end(append(b, ", remembering nothing: telling everyone"...))
	}},
	KindCatchUp: {name: "catch_up", class: "c-other", shape: "star", text: func(r *renderer, b []byte, rec *Record) []byte {
		b = r.uid(append(b, "I caught up with "...), rec.By)
		return liveChats(append(b, ": "...), len(rec.Rooms))
	}},
}

func (k RecordKind) String() string { return recordKinds[k].name }

// onlineRange expands a record of users coming online into the records
// the log shows: one for each user, or, for more than maxShown at once,
// one for the range. The user the record belongs to is not in its range.
func onlineRange(rec *Record, yield func(*Record)) {
	if rec.Kind != KindOnline || rec.PeerTo == 0 {
		yield(rec)
		return
	}
	n := rec.PeerTo - rec.Peer + 1
	if rec.User >= rec.Peer && rec.User <= rec.PeerTo {
		n--
	}
	if n > maxShown {
		yield(rec)
		return
	}
	one := *rec
	one.PeerTo = 0
	for u := rec.Peer; u <= rec.PeerTo; u++ {
		if u != rec.User {
			one.Peer = u
			yield(&one)
		}
	}
}

func onlineText(r *renderer, b []byte, rec *Record) []byte {
	b = r.uid(b, rec.Peer)
	if rec.PeerTo == 0 {
		return append(b, " is online"...)
	}
	b = r.uid(append(b, " to "...), rec.PeerTo)
	return append(b, " are online"...)
}

func createFailedText(r *renderer, b []byte, rec *Record) []byte {
	if rec.Group == nil {
		return failed(r, b, "I wanted to create a chat, but ", rec)
	}
	b = r.styled(b, styleFailed, "I wanted to create a chat with ")
	b = r.members(b, rec.Group)
	b = r.start(b, styleFailed)
	b = appendChat(append(b, ", but "...), rec.Room)
	b = append(b, " already has that group"...)
	return r.end(b)
}

// failed renders an action that failed, with its reason.
func failed(r *renderer, b []byte, what string, rec *Record) []byte {
	b = r.start(b, styleFailed)
	b = append(b, what...)
	b = append(b, rec.Reason...)
	return r.end(b)
}

// roomAnnounced renders a room a user has learned of: who created it, and
// its members.
func roomAnnounced(r *renderer, b []byte, rec *Record) []byte {
	b = appendChat(b, rec.Room)
	b = r.uid(append(b, ", created by "...), rec.By)
	return r.members(append(b, ", with "...), rec.Group)
}

func mergeText(r *renderer, b []byte, rec *Record) []byte {
	b = r.start(b, styleMerge)
	b = appendChat(b, rec.Dropped)
	b = appendChat(append(b, " and "...), rec.Room)
	b = append(b, " have the same group: I keep "...)
	b = rec.Room.append(b)
	b = append(b, ", the greater stamp, and drop "...)
	b = rec.Dropped.append(b)
	return r.end(b)
}

func receiveText(r *renderer, b []byte, rec *Record) []byte {
	b = appendQuoted(append(b, "I received "...), rec.Msg)
	b = r.uid(append(b, " from "...), rec.By)
	b = appendChat(append(b, " in "...), rec.Room)
	if rec.Held {
		b = r.styled(b, styleHeld, ", held back until I knew the chat")
	}
	if rec.Late {
		b = r.styled(b, styleLate, " (late: the chat is no longer live)")
	}
	return b
}

func receiveRace(rec *Record) string {
	switch {
	case rec.Held && rec.Late:
		return "held back, then late"
	case rec.Held:
		return "held back"
	case rec.Late:
		return "late delivery"
	}
	return ""
}

func receiveMark(rec *Record) (string, string) {
	switch {
	case rec.Held:
		return "c-message race held", "held"
	case rec.Late:
		return "c-message race late", "ring"
	}
	return "c-message", "dot"
}

func staleText(r *renderer, b []byte, rec *Record) []byte {
	b = r.styled(b, styleStale, "I ignored ")
	b = r.uid(b, rec.By)
	b = r.start(b, styleStale)
	b = append(b, "'s outdated "...)
	b = append(b, rec.EventKind.String()...)
	b = appendChat(append(b, " of "...), rec.Room)
	b = append(b, ": "...)
	b = append(b, rec.Reason...)
	return r.end(b)
}

func stateText(r *renderer, b []byte, rec *Record) []byte {
	if rec.Inc > 0 {
		b = liveChats(append(b, "I restarted and learned "...), len(rec.Rooms))
		return r.uid(append(b, " from "...), rec.By)
	}
	b = liveChats(append(b, "I came online late and learned "...), len(rec.Rooms))
	return r.uid(append(b, " from "...), rec.By)
}

// liveChats says how many live chats there are.
func liveChats(b []byte, n int) []byte {
	b = strconv.AppendInt(b, int64(n), 10)
	if n == 1 {
		return append(b, " live chat"...)
	}
	return append(b, " live chats"...)
}

func splitText(r *renderer, b []byte, rec *Record) []byte {
	users := func(b []byte, side []int32) []byte {
		for j, u := range side {
			if j > 0 {
				b = append(b, ", "...)
			}
			b = r.uid(b, u)
		}
		return b
	}
	if rec.OneWay {
		// A bridge is on both sides: it reaches and hears everyone, so it
		// is named apart from the cut.
		first, second, bridge := oneSide(rec.Sides[0], rec.Sides[1]), oneSide(rec.Sides[1], rec.Sides[0]), bridgeOf(rec.Sides)
		b = r.styled(b, styleNet, "the network split one way:")
		b = users(append(b, " sends from "...), first)
		b = users(append(b, " reach "...), second)
		b = append(b, ", but nothing they send comes back"...)
		if len(bridge) > 0 {
			b = users(append(b, "; "...), bridge)
			b = append(b, " reaches and hears both sides"...)
		}
		return b
	}
	b = r.styled(b, styleNet, "the network split:")
	b = append(b, ' ')
	for i, side := range rec.Sides {
		if i > 0 {
			b = append(b, " | "...)
		}
		b = users(b, side)
	}
	return b
}

// oneSide is the users of side that are not on other too.
func oneSide(side, other []int32) []int32 {
	var out []int32
	for _, u := range side {
		if !slices.Contains(other, u) {
			out = append(out, u)
		}
	}
	return out
}

// bridgeOf is the users on both sides of a split.
func bridgeOf(sides [][]int32) []int32 {
	var out []int32
	for _, u := range sides[0] {
		if slices.Contains(sides[1], u) {
			out = append(out, u)
		}
	}
	return out
}

// appendClogged names the traffic a clog holds, with its verb.
func appendClogged(r *renderer, b []byte, rec *Record) []byte {
	switch rec.ClogDir {
	case clogOut:
		b = r.uid(append(b, "the sends of "...), rec.By)
		return append(b, " are"...)
	case clogIn:
		b = r.uid(append(b, "the sends to "...), rec.By)
		return append(b, " are"...)
	default:
		b = r.uid(append(b, "the sends of "...), rec.By)
		b = r.uid(append(b, " to "...), rec.Peer)
		return append(b, " are"...)
	}
}

// String names a clog's direction in JSON.
func (d clogDir) String() string {
	switch d {
	case clogOut:
		return "out"
	case clogIn:
		return "in"
	}
	return "pair"
}

// kindClass is the page's colour class of an event kind.
func kindClass(k EventKind) string {
	switch k {
	case CreateEvent:
		return "c-create"
	case CloseEvent:
		return "c-close"
	case MessageEvent:
		return "c-message"
	}
	return "c-other"
}

// markStyle is a record's classes and the shape of its page mark.
func markStyle(r *Record) (class, shape string) {
	spec := &recordKinds[r.Kind]
	class, shape = spec.class, spec.shape
	if spec.mark != nil {
		class, shape = spec.mark(r)
	}
	if class == "" {
		class, shape = "c-other", "tick"
	}
	return "m k-" + spec.name + " " + class, shape
}

// raceOf names the race a record shows, if it shows one.
func raceOf(r *Record) string {
	if race := recordKinds[r.Kind].race; race != nil {
		return race(r)
	}
	return ""
}

// arrowClass is the classes of a delivery's arrow, from the record of its
// applying.
func arrowClass(r *Record) string {
	k, _ := appliedKey(r)
	c := "a " + kindClass(k.kind)
	switch {
	case r.Kind == KindMerge:
		c += " race merge"
	case r.Kind == KindStale:
		c += " race stale"
	case r.Held:
		c += " race held"
	case r.Late:
		c += " race late"
	}
	return c
}

// eventKey names one event a user sent: the create or the close of an
// incarnation, or a message. Two users may close one incarnation, so a
// close is named by its closer too.
type eventKey struct {
	kind  EventKind
	stamp Stamp
	from  int32
}

// sentKey is the event a record tells of sending, if any.
func sentKey(r *Record) (eventKey, bool) {
	switch k := recordKinds[r.Kind].sends; k {
	case 0:
		return eventKey{}, false
	case MessageEvent:
		return eventKey{k, r.Msg, r.User}, true
	default:
		return eventKey{k, r.Room, r.User}, true
	}
}

// appliedKey is the event a record tells of applying, if any.
func appliedKey(r *Record) (eventKey, bool) {
	if applied := recordKinds[r.Kind].applied; applied != nil {
		return applied(r)
	}
	return eventKey{}, false
}

func appliedCreate(rec *Record) (eventKey, bool) {
	return eventKey{CreateEvent, rec.Room, rec.By}, true
}

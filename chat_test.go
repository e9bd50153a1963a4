package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// world drives Views directly, with the test choosing the delivery order:
// the in-memory network of the pure tests.
type world struct {
	t     testing.TB
	n     int
	views []*View // views[i] is user_{i+1}
	now   time.Duration
}

func newWorld(t testing.TB, n int) *world {
	w := &world{t: t, n: n}
	for u := int32(1); u <= int32(n); u++ {
		v := NewView(u, true)
		v.Learn(int32(n), 0)
		v.ResetRecords()
		w.views = append(w.views, v)
	}
	return w
}

// newGroup returns a group of the given uids, named in testNames; n is
// the number of users.
func newGroup(n int, uids ...int32) *Group {
	g := &Group{bits: make([]uint64, words(n))}
	for _, u := range uids {
		g.add(u)
	}
	g.seal()
	return testNames.name(g, 0)
}

// testNames names the groups of tests that drive views without a run:
// one table for them all, as a run has one for its users.
var testNames = newGroupNames()

func (w *world) v(u int32) *View { return w.views[u-1] }

func (w *world) group(uids ...int32) *Group { return newGroup(w.n, uids...) }

// recipients are the users an event goes to, every user knowing all
// the others.
func (w *world) recipients(ev *Event) []int32 {
	return slices.Collect(recipients(ev, ev.From, int32(w.n)))
}

// deliver applies ev at user u and returns the records it produced.
func (w *world) deliver(u int32, ev *Event) []Record {
	w.t.Helper()
	if ev == nil {
		w.t.Fatal("deliver: nil event")
	}
	v := w.v(u)
	v.ResetRecords()
	v.Apply(ev, w.now)
	return slices.Clone(v.Records())
}

// all delivers ev to every recipient.
func (w *world) all(ev *Event) {
	for _, u := range w.recipients(ev) {
		w.deliver(u, ev)
	}
}

func kinds(recs []Record) []RecordKind {
	var out []RecordKind
	for _, r := range recs {
		out = append(out, r.Kind)
	}
	return out
}

func liveStamps(v *View) []Stamp {
	if out := v.Rooms(); len(out) > 0 {
		return out
	}
	return nil
}

func TestCreateJoinSee(t *testing.T) {
	w := newWorld(t, 3)
	ev := w.v(1).Create(w.group(1, 2), 0)
	if got := kinds(w.v(1).Records()); !slices.Equal(got, []RecordKind{KindCreate}) {
		t.Fatalf("creator records = %v", got)
	}
	if got := kinds(w.deliver(2, ev)); !slices.Equal(got, []RecordKind{KindJoin}) {
		t.Errorf("member records = %v, want join", got)
	}
	if got := kinds(w.deliver(3, ev)); !slices.Equal(got, []RecordKind{KindSee}) {
		t.Errorf("non-member records = %v, want see", got)
	}
	for _, v := range w.views {
		if v.LiveCount() != 1 {
			t.Errorf("%s sees %d live rooms, want 1 (every user knows every room)", uidName(v.Self()), v.LiveCount())
		}
	}
	if w.v(3).RoomCount() != 0 || w.v(2).RoomCount() != 1 {
		t.Errorf("membership: user_2 in %d, user_3 in %d rooms", w.v(2).RoomCount(), w.v(3).RoomCount())
	}
}

func TestCreateFailsWhenGroupLive(t *testing.T) {
	w := newWorld(t, 3)
	w.all(w.v(1).Create(w.group(1, 2), 0))
	w.v(2).ResetRecords()
	if ev := w.v(2).Create(w.group(1, 2), 0); ev != nil {
		t.Fatal("second create of a live group succeeded")
	}
	if w.v(2).CreateFailed != 1 || w.v(2).Records()[0].Kind != KindCreateFailed {
		t.Errorf("failure not counted or logged: %+v", w.v(2).Records())
	}
	// A different group is fine.
	if w.v(2).Create(w.group(2, 3), 0) == nil {
		t.Error("create of another group failed")
	}
}

func TestActionsFailWithoutRooms(t *testing.T) {
	v := NewView(1, true)
	if v.Create(nil, 0) != nil || v.Send(0, 0) != nil || v.Close(0, 0) != nil {
		t.Fatal("an action without a group or a room succeeded")
	}
	want := []RecordKind{KindCreateFailed, KindMessageFailed, KindCloseFailed}
	if got := kinds(v.Records()); !slices.Equal(got, want) {
		t.Errorf("records = %v, want %v", got, want)
	}
	if v.CreateFailed != 1 || v.MessageFailed != 1 || v.CloseFailed != 1 {
		t.Errorf("counts = %+v", v.Counts)
	}
}

// Two users create the same group before either hears of the other: every
// user ends with the same single room, the one with the greater stamp,
// whatever order the creates arrive in.
func TestDuplicateCreateConverges(t *testing.T) {
	for _, order := range [][2]int{{0, 1}, {1, 0}} {
		t.Run(fmt.Sprintf("order=%d,%d", order[0], order[1]), func(t *testing.T) { duplicateCreate(t, order) })
	}
}

func duplicateCreate(t *testing.T, order [2]int) {
	w := newWorld(t, 3)
	a := w.v(1).Create(w.group(1, 2, 3), 0)
	b := w.v(2).Create(w.group(1, 2, 3), 0)
	winner := b.Room
	if winner.Less(a.Room) {
		winner = a.Room
	}
	w.deliver(1, b)
	w.deliver(2, a)
	evs := []*Event{a, b}
	w.deliver(3, evs[order[0]])
	recs := w.deliver(3, evs[order[1]])
	if got := kinds(recs); !slices.Equal(got, []RecordKind{KindMerge}) {
		t.Errorf("second create gave %v, want merge", got)
	}
	for _, v := range w.views {
		if got := liveStamps(v); !slices.Equal(got, []Stamp{winner}) {
			t.Errorf("%s has %v live, want [%v]", uidName(v.Self()), got, winner)
		}
		if v.RoomCount() != 1 {
			t.Errorf("%s is in %d rooms, want 1", uidName(v.Self()), v.RoomCount())
		}
	}
	// The loser's creator counts a resolved duplicate once no close of
	// it can still arrive.
	for _, v := range w.views {
		reclaimAll(v)
		v.Finish()
	}
	var dups, live int64
	for _, v := range w.views {
		dups += v.Duplicates
		live += v.OwnLive
	}
	if dups != 1 || live != 1 {
		t.Errorf("duplicates %d, live %d; want 1 and 1", dups, live)
	}
}

// A close that overtakes its create leaves a tombstone; the create, when
// it comes, is stale: no ghost room.
func TestCloseBeforeCreate(t *testing.T) {
	w := newWorld(t, 3)
	create := w.v(1).Create(w.group(1, 2, 3), 0)
	w.deliver(2, create)
	closing := w.v(2).Close(0, 0)
	if got := kinds(w.deliver(3, closing)); !slices.Equal(got, []RecordKind{KindCloseSeen}) {
		t.Errorf("close first: %v", got)
	}
	recs := w.deliver(3, create)
	if got := kinds(recs); !slices.Equal(got, []RecordKind{KindStale}) {
		t.Errorf("create after its close: %v, want stale", got)
	}
	if recs[0].Reason != "its close came first" || recs[0].EventKind != CreateEvent {
		t.Errorf("stale record = %+v", recs[0])
	}
	w.deliver(1, closing)
	for _, v := range w.views {
		if v.LiveCount() != 0 || v.RoomCount() != 0 {
			t.Errorf("%s: ghost room: %v", uidName(v.Self()), liveStamps(v))
		}
	}
	if w.v(1).Closed != 1 {
		t.Errorf("creator counted %d closed, want 1", w.v(1).Closed)
	}
}

// A message that overtakes the create of its room is held back, then
// delivered once when the create arrives.
func TestMessageBeforeCreate(t *testing.T) {
	w := newWorld(t, 3)
	create := w.v(1).Create(w.group(1, 2, 3), 0)
	msg := w.v(1).Send(0, 0)
	if got := w.deliver(3, msg); len(got) != 0 {
		t.Errorf("held message logged %v", kinds(got))
	}
	if w.v(3).HeldCount() != 1 || w.v(3).Deliveries != 0 {
		t.Fatalf("held %d, delivered %d; want 1, 0", w.v(3).HeldCount(), w.v(3).Deliveries)
	}
	recs := w.deliver(3, create)
	if got := kinds(recs); !slices.Equal(got, []RecordKind{KindJoin, KindReceive}) {
		t.Fatalf("create after message: %v", got)
	}
	if r := recs[1]; !r.Held || r.Late || r.Msg != msg.ID() || r.By != 1 {
		t.Errorf("receive = %+v", r)
	}
	if w.v(3).HeldCount() != 0 || w.v(3).Deliveries != 1 {
		t.Errorf("held %d, delivered %d; want 0, 1", w.v(3).HeldCount(), w.v(3).Deliveries)
	}
}

// A message in flight while its room closes is delivered, marked late.
func TestMessageAfterClose(t *testing.T) {
	w := newWorld(t, 3)
	create := w.v(1).Create(w.group(1, 2, 3), 0)
	w.all(create)
	msg := w.v(2).Send(0, 0)
	closing := w.v(1).Close(0, 0)
	w.deliver(3, closing)
	recs := w.deliver(3, msg)
	if len(recs) != 1 || recs[0].Kind != KindReceive || !recs[0].Late || recs[0].Held {
		t.Fatalf("message after close: %+v", recs)
	}
	if w.v(3).Late != 1 {
		t.Errorf("late = %d", w.v(3).Late)
	}
	// The closer gets it too, late; it was a member when it was sent.
	if recs := w.deliver(1, msg); !recs[0].Late {
		t.Errorf("closer's copy not late: %+v", recs[0])
	}
}

// A message held back for a room is released, late, when the room's close
// arrives before its create; the create that follows is stale.
func TestMessageHeldUntilClose(t *testing.T) {
	w := newWorld(t, 3)
	create := w.v(1).Create(w.group(1, 2, 3), 0)
	w.deliver(2, create)
	msg := w.v(2).Send(0, 0)
	closing := w.v(2).Close(0, 0)
	w.deliver(3, msg)
	recs := w.deliver(3, closing)
	if got := kinds(recs); !slices.Equal(got, []RecordKind{KindCloseSeen, KindReceive}) {
		t.Fatalf("close releases the held message: %v", got)
	}
	if !recs[1].Late || !recs[1].Held {
		t.Errorf("receive = %+v, want late and held", recs[1])
	}
	if got := kinds(w.deliver(3, create)); !slices.Equal(got, []RecordKind{KindStale}) {
		t.Errorf("create last: %v", got)
	}
}

// A late close of an older incarnation cannot end a newer one.
func TestStaleCloseOfOlderRoom(t *testing.T) {
	w := newWorld(t, 3)
	g := w.group(1, 2)
	first := w.v(1).Create(g, 0)
	w.deliver(2, first)
	closeFirst := w.v(2).Close(0, 0)
	w.deliver(1, closeFirst)
	second := w.v(1).Create(g, 0) // a new incarnation of the same group
	if second == nil || !first.Room.Less(second.Room) {
		t.Fatalf("second incarnation %v not after %v", second, first)
	}
	w.deliver(3, first)
	w.deliver(3, second)
	recs := w.deliver(3, closeFirst)
	if got := kinds(recs); !slices.Equal(got, []RecordKind{KindStale}) {
		t.Fatalf("old close: %v, want stale", got)
	}
	if got := liveStamps(w.v(3)); !slices.Equal(got, []Stamp{second.Room}) {
		t.Errorf("live = %v, want the newer room", got)
	}
}

// A message to the loser of a duplicate race is delivered, late, by users
// who already keep the winner, and exactly once by all.
func TestMessageToReplacedDuplicate(t *testing.T) {
	w := newWorld(t, 3)
	a := w.v(1).Create(w.group(1, 2, 3), 0)
	b := w.v(2).Create(w.group(1, 2, 3), 0)
	loser, winner := a, b
	if b.Room.Less(a.Room) {
		loser, winner = b, a
	}
	msg := w.v(loser.From).Send(0, 0)
	w.deliver(3, winner)
	w.deliver(3, loser)
	recs := w.deliver(3, msg)
	if len(recs) != 1 || !recs[0].Late || recs[0].Room != loser.Room {
		t.Errorf("message to the loser: %+v", recs)
	}
}

func TestLearnKnowsUsersInOrder(t *testing.T) {
	v := NewView(3, true)
	if v.Known() != 3 { // only itself so far, as uid 3
		t.Errorf("Known = %d before any news", v.Known())
	}
	v.Learn(2, 0)
	v.Learn(4, 0)
	v.Learn(5, 0)
	v.Learn(4, 0) // old news is ignored
	if v.Known() != 5 {
		t.Errorf("Known = %d, want 5", v.Known())
	}
	var peers []int32
	for i := range v.Records() {
		onlineRange(&v.Records()[i], func(r *Record) { peers = append(peers, r.Peer) })
	}
	if !slices.Equal(peers, []int32{1, 2, 4, 5}) || len(v.Records()) != 3 {
		t.Errorf("online lines for %v from %d records; want 1, 2, 4 and 5 from one record a piece of news", peers, len(v.Records()))
	}
	if NewView(1, false).Known() != 1 {
		t.Error("user_1 does not know itself")
	}
}

// Closed entries are reclaimed in two phases of stability, and not
// before: first every delivery of the epoch the close was applied in must
// be applied, then every delivery sent until that was seen. An entry that a
// newer create revived, or that holds messages for a newer incarnation, is
// kept.
func TestExpireReclaims(t *testing.T) {
	t.Run("two phases", expireInTwoPhases)
	t.Run("revived", expireRevived)
	t.Run("closed twice", expireClosedTwice)
	t.Run("held", expireHeld)
}

func expireInTwoPhases(t *testing.T) {
	w := newWorld(t, 3)
	for _, v := range w.views {
		v.SetEpoch(3) // the close below is sent in epoch 3
	}
	g := w.group(1, 2, 3)
	create := w.v(1).Create(g, 0)
	w.all(create)
	closing := w.v(1).Close(0, 0)
	w.all(closing)
	v := w.v(2)
	for _, step := range []struct {
		stable, epoch uint64
		entries       int
	}{
		{3, 5, 1}, // the close's epoch is not yet stable
		{4, 7, 1}, // it is: phase two starts, waiting for the horizon, 7
		{7, 8, 1}, // epoch 7 is not yet stable
		{8, 9, 0}, // it is: reclaimed
	} {
		v.Expire(step.stable, step.epoch)
		if v.entries() != step.entries {
			t.Fatalf("stable %d, epoch %d: %d entries, want %d", step.stable, step.epoch, v.entries(), step.entries)
		}
	}
}

// A tombstone's schedule is void once a newer create lands.
func expireRevived(t *testing.T) {
	w := newWorld(t, 3)
	g := w.group(1, 2, 3)
	v := w.v(2)
	w.all(w.v(1).Create(g, 0))
	w.all(w.v(1).Close(0, 0))
	again := w.v(1).Create(g, 0)
	w.all(again)
	bye := w.v(3).Close(0, 0)
	w.deliver(2, bye)
	if third := w.v(1).Create(g, 0); third != nil { // user_1 has not seen the close yet
		t.Fatal("create of a group live in the creator's view succeeded")
	}
	w.deliver(1, bye)
	third := w.v(1).Create(g, 0)
	w.deliver(2, third)
	reclaimAll(v)
	if got := liveStamps(v); !slices.Equal(got, []Stamp{third.Room}) {
		t.Errorf("after a void reclaim, live = %v, want %v", got, third.Room)
	}
}

// A group closed, created again and closed again has two tombs waiting,
// each 4 bytes that name only the group: the first passing must not
// reclaim the second close's tombstone, which waits its own two phases.
func expireClosedTwice(t *testing.T) {
	w := newWorld(t, 3)
	g := w.group(1, 2, 3)
	epoch := func(e uint64) {
		for _, v := range w.views {
			v.SetEpoch(e)
		}
	}
	epoch(3)
	w.all(w.v(1).Create(g, 0))
	w.all(w.v(1).Close(0, 0))
	epoch(6)
	w.all(w.v(1).Create(g, 0))
	w.all(w.v(1).Close(0, 0))
	v := w.v(2)
	for _, step := range []struct {
		stable, epoch uint64
		entries       int
	}{
		{4, 4, 1}, // the first close's epoch is stable: its tomb waits for 4
		{5, 5, 1}, // the first tomb passes, void: the group has closed again since
		{7, 7, 1}, // the second close's epoch is stable: its tomb waits for 7
		{8, 8, 0}, // it passes: reclaimed
	} {
		v.Expire(step.stable, step.epoch)
		if v.entries() != step.entries {
			t.Fatalf("stable %d, epoch %d: %d entries, want %d", step.stable, step.epoch, v.entries(), step.entries)
		}
		if err := v.invariants(); err != nil {
			t.Fatalf("stable %d: %v", step.stable, err)
		}
	}
	if len(v.void) != 0 || len(v.spent) != 0 {
		t.Errorf("bookkeeping left: %d void, %d spent", len(v.void), len(v.spent))
	}
}

// A closed entry waiting on messages to a newer room is kept.
func expireHeld(t *testing.T) {
	w2 := newWorld(t, 3)
	g := w2.group(1, 2, 3)
	first := w2.v(1).Create(g, 0)
	w2.all(first)
	end := w2.v(1).Close(0, 0)
	w2.all(end)
	next := w2.v(1).Create(g, time.Second)
	w2.deliver(2, next)
	msg := w2.v(2).Send(0, time.Second)
	w2.deliver(3, msg) // user_3 has not seen next yet
	reclaimAll(w2.v(3))
	if w2.v(3).entries() != 1 || w2.v(3).HeldCount() != 1 {
		t.Fatalf("entry with a held message reclaimed: entries %d, held %d", w2.v(3).entries(), w2.v(3).HeldCount())
	}
	w2.deliver(3, next)
	if w2.v(3).HeldCount() != 0 || w2.v(3).Deliveries != 1 {
		t.Errorf("held message not delivered after the create")
	}
	// Its tomb has passed: the close of next is the only one waiting.
	w2.deliver(3, w2.v(1).Close(0, time.Second))
	if err := w2.v(3).invariants(); err != nil {
		t.Fatal(err)
	}
	reclaimAll(w2.v(3))
	if v := w2.v(3); v.entries() != 0 || len(v.void) != 0 || len(v.spent) != 0 {
		t.Errorf("after the second close: %d entries, %d void, %d spent", v.entries(), len(v.void), len(v.spent))
	}
}

// reclaimAll tells a view that everything ever sent has been applied: it
// reclaims all it can.
func reclaimAll(v *View) { v.Expire(1<<62, 0) }

// entries is the number of groups the view keeps state for, live or not:
// what Expire keeps bounded.
func (v *View) entries() int { return v.rooms.len() }

func TestGroupPickAndHash(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := map[int]int{}
	for range 20000 {
		g := pickGroup(rng, 10, 4, 10)
		if !g.Has(4) {
			t.Fatal("group without its creator")
		}
		if g.Size() < 2 || g.Size() > 10 {
			t.Fatalf("size %d out of [2,10]", g.Size())
		}
		if got := len(g.Members()); got != g.Size() {
			t.Fatalf("members %d, size %d", got, g.Size())
		}
		sizes[g.Size()]++
	}
	// Uniform over 2..10: 9 sizes, about 2222 each.
	for s := 2; s <= 10; s++ {
		if sizes[s] < 1900 || sizes[s] > 2550 {
			t.Errorf("size %d picked %d times of 20000, want about 2222", s, sizes[s])
		}
	}
	// Only known users are picked.
	for range 1000 {
		for _, u := range pickGroup(rng, 10, 2, 3).Members() {
			if u > 3 {
				t.Fatalf("picked user_%d, who is not known", u)
			}
		}
	}
	if pickGroup(rng, 10, 1, 1) != nil {
		t.Error("a group with no one else")
	}
	a, b := newGroup(100, 3, 70, 99), newGroup(100, 99, 3, 70)
	if !a.Equal(b) || a.key != b.key {
		t.Error("equal groups differ")
	}
	if a.Equal(newGroup(100, 3, 70)) || a.Has(4) || !a.Has(70) || a.Has(1000) {
		t.Error("group membership wrong")
	}
}

// Fingerprints tell groups apart by their members alone: groups made apart
// with the same members share one, and groups one member apart do not.
func TestFingerprints(t *testing.T) {
	seen := map[groupKey]*Group{}
	for i := int32(1); i <= 200; i++ {
		for _, g := range []*Group{newGroup(200, i), newGroup(200, 1, i), newGroup(200, i, 200)} {
			if o, ok := seen[g.key]; ok && !o.Equal(g) {
				t.Fatalf("%v and %v share a fingerprint", o.Members(), g.Members())
			}
			seen[g.key] = g
		}
	}
	if a, b := newGroup(1000, 5, 999), newGroup(1000, 999, 5); a.key != b.key {
		t.Error("equal groups have different fingerprints")
	}
}

// A late joiner learns a room from a state transfer, its members unknown;
// then the create of a concurrent duplicate with a greater stamp arrives.
// The joiner is a member of the group: the room it keeps is one it is in,
// listed for its actions.
func TestStateRoomReplacedByNewerCreate(t *testing.T) {
	w := newWorld(t, 3)
	g := w.group(1, 2, 3)
	older := w.v(1).Create(g, 0)
	newer := w.v(2).Create(g, 0) // concurrent: neither knew of the other
	if !older.Room.Less(newer.Room) {
		older, newer = newer, older
	}
	joiner := NewView(3, true)
	joiner.ApplyState(&Event{Kind: StateEvent, From: 1, State: []RoomState{{ID: g.id, Packed: older.Room.pack()}}}, 0, true)
	if joiner.RoomCount() != 0 || joiner.LiveCount() != 1 {
		t.Fatalf("after the state: in %d rooms, %d live; want 0 and 1 (members unknown)", joiner.RoomCount(), joiner.LiveCount())
	}
	joiner.Apply(newer, 0)
	if err := joiner.invariants(); err != nil {
		t.Fatal(err)
	}
	if joiner.RoomCount() != 1 || joiner.Rooms()[0] != newer.Room {
		t.Errorf("after the newer create: in %d rooms, live %v; want to be in %s", joiner.RoomCount(), joiner.Rooms(), newer.Room)
	}
}

// Tombs name their groups by the difference from the tomb before, in 2
// bytes, with ids too far from the one before kept whole: whatever the
// ids and however pushes and pops interleave, the queue gives back every
// id in order, the boundaries of the 2 bytes included.
func TestTombIDs(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var c idDeltas
	var q queue[int16]
	var want []groupID
	far, last := 0, groupID(0)
	edges := []int64{math.MaxInt16, math.MinInt16 + 1, math.MinInt16, math.MaxInt16 + 1, 0}
	for i := range 200000 {
		if len(want) > 0 && rng.IntN(3) == 0 {
			if got := c.decode(q.pop()); got != want[0] {
				t.Fatalf("step %d: decoded %d, want %d", i, got, want[0])
			}
			want = want[1:]
			continue
		}
		var id groupID
		switch k := rng.IntN(10); {
		case k < 5: // near the last, as most closes are
			id = groupID(max(1, int64(last)+int64(rng.IntN(4000))-2000))
		case k < 7:
			id = groupID(1 + rng.Uint32N(math.MaxUint32))
		default:
			id = groupID(max(1, min(math.MaxUint32, int64(last)+edges[rng.IntN(len(edges))])))
		}
		d := c.encode(id)
		if d == farDelta {
			far++
		}
		q.push(d)
		want = append(want, id)
		last = id
	}
	for _, w := range want {
		if got := c.decode(q.pop()); got != w {
			t.Fatalf("draining: decoded %d, want %d", got, w)
		}
	}
	if far == 0 || c.far.len() != 0 {
		t.Errorf("%d ids kept whole, %d left over", far, c.far.len())
	}
}

// A full queue that is not small grows by a quarter, not double, and one
// that slides along keeps room for about what it holds at its most: a
// view's tombs and the rooms it is in are most of a large run's heap.
func TestQueuesGrowByAQuarter(t *testing.T) {
	var q queue[int16]
	for n := 1; n <= 20000; n++ {
		q.push(int16(n))
		if c := cap(q.items); c > max(64, (5*n+3)/4) {
			t.Fatalf("%d pushed: room for %d", n, c)
		}
	}
	rng := rand.New(rand.NewPCG(5, 6))
	var s queue[int16]
	most := 0
	for range 200000 {
		if s.len() > 0 && rng.IntN(2) == 0 {
			for range rng.IntN(min(s.len(), 40)) + 1 {
				s.pop()
			}
			continue
		}
		for range rng.IntN(min(40, 471-s.len()) + 1) {
			s.push(1)
		}
		most = max(most, s.len())
	}
	if c := cap(s.items); c > most*8/7*5/4+1 {
		t.Errorf("sliding with at most %d held: room for %d", most, c)
	}
}

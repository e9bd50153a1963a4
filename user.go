package main

import (
	"cmp"
	"container/heap"
	"context"
	"math/bits"
	"math/rand/v2"
	"runtime/trace"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// User is one simulated person: a goroutine that owns a View and changes
// the world only by sending events to other users' channels. It never reads
// another user's state.
//
// UserChannel brings news of users coming online; EventChannel brings room
// events from peers. Each user sends from its own loop, never from a
// goroutine per send, so the events of one sender reach each recipient in
// the order they were sent (unless a delay is injected on purpose).
type User struct {
	UID          int32
	UserChannel  chan Online
	EventChannel chan Delivery

	sim     *Sim
	view    *View
	rng     *rand.Rand
	backlog []Delivery // received while blocked in a send; applied next, in order
	buf     []byte     // rendered log lines not yet handed to the sink

	// Real time.
	delayed minHeap[Delivery] // deliveries whose injected delay has not passed, by due time
	lat     *hist             // send-to-apply latency

	// Fast mode.
	buckets [][]pending // by due tick, modulo len(buckets)

	// Deliveries this user sent and applied. Both change only while the
	// user works on a phase, so the coordinator can read them between
	// phases: their sums differ by what is still on its way.
	sent, applied int64

	owed                  []owing       // deliveries applied but not yet given back to the network, by epoch
	stopping              bool          // the stop marker has come
	tickAt                time.Duration // due time of a tick marker not yet run, or -1
	ticks, skipped, acted int64         // rolls, ticks not served, rolls that acted

	// Published for the sampler in real time; the owner stores, others load.
	pubDeliveries, pubLive atomic.Int64
}

func newUser(s *Sim, uid int32) *User {
	u := &User{
		UID:          uid,
		UserChannel:  make(chan Online, 16),
		EventChannel: s.dir[uid],
		sim:          s,
		view:         NewView(uid, s.cfg.Users, s.logging),
		rng:          rand.New(rand.NewPCG(s.cfg.Seed, uint64(uid))),
	}
	if s.cfg.Fast {
		u.buckets = make([][]pending, s.delayTicks+2)
	} else {
		u.lat = new(hist)
	}
	u.tickAt = -1
	u.delayed.before = func(a, b Delivery) bool { return a.Due < b.Due }
	return u
}

// roll is one tick of the user's own will: with probability chance it picks
// one of three actions with equal odds. It returns the event to send, if any.
func (u *User) roll(now time.Duration) *Event {
	u.ticks++
	if u.rng.Float64() >= u.sim.cfg.Chance {
		return nil
	}
	u.acted++
	v := u.view
	switch u.rng.IntN(3) {
	case 0:
		return v.Create(pickGroup(u.rng, u.sim.cfg.Users, u.UID, v.Known()), now)
	case 1:
		return v.Send(u.pick(v.RoomCount()), now)
	default:
		return v.Close(u.pick(v.RoomCount()), now)
	}
}

func (u *User) pick(n int) int {
	if n == 0 {
		return 0
	}
	return u.rng.IntN(n)
}

// fanOut sends ev to its recipients: every other member for a message,
// every other known user for a create or a close.
func (u *User) fanOut(ev *Event) {
	if ev == nil {
		return
	}
	if trace.IsEnabled() {
		ctx, task := trace.NewTask(context.Background(), "chatsim "+ev.Kind.String())
		defer task.End()
		trace.Logf(ctx, "send", "%s %s chat %s", uidName(u.UID), ev.Kind, ev.Room)
		ev.task = ctx
		defer trace.StartRegion(ctx, "fan-out").End()
	}
	if ev.Kind == MessageEvent {
		for i, w := range ev.Group.bits {
			for w != 0 {
				r := int32(i*64 + bits.TrailingZeros64(w))
				w &= w - 1
				if r != u.UID {
					u.send(r, ev)
				}
			}
		}
		return
	}
	for r := int32(1); r <= u.view.Known(); r++ {
		if r != u.UID {
			u.send(r, ev)
		}
	}
}

// send puts one delivery on r's channel. If the channel is full it keeps
// receiving its own channel while it waits: two users sending to each other
// with full buffers both make room for each other, so sends never deadlock,
// and no goroutine is spawned per send.
func (u *User) send(r int32, ev *Event) {
	d := Delivery{ev, u.due(ev)}
	u.sent++
	ch := u.sim.dir[r]
	select {
	case ch <- d:
		return
	default:
	}
	for {
		select {
		case ch <- d:
			return
		case in := <-u.EventChannel:
			u.stash(in)
		}
	}
}

// due is when a delivery of ev may be applied: at once in real time, on the
// next tick in fast mode, plus a random injected delay for each recipient.
func (u *User) due(ev *Event) time.Duration {
	s := u.sim
	if s.cfg.Fast {
		d := ev.Sent + s.cfg.Tick
		if s.delayTicks > 0 {
			d += time.Duration(u.rng.Int64N(s.delayTicks+1)) * s.cfg.Tick
		}
		return d
	}
	if s.cfg.Delay > 0 {
		return ev.Sent + time.Duration(u.rng.Int64N(int64(s.cfg.Delay)+1))
	}
	return ev.Sent
}

// stash keeps a delivery received while sending.
func (u *User) stash(d Delivery) {
	if u.buckets != nil {
		u.bucket(d)
		return
	}
	u.backlog = append(u.backlog, d)
}

// flushLog renders the view's new records and hands them to the sink.
func (u *User) flushLog() {
	recs := u.view.Records()
	if len(recs) == 0 {
		return
	}
	for i := range recs {
		u.buf = u.sim.rend.append(u.buf, &recs[i])
	}
	u.view.ResetRecords()
	if !u.sim.cfg.Fast {
		u.sim.out.Write(u.buf)
		u.buf = u.buf[:0]
	}
}

// runReal is the user's loop in real time. Events are applied as they
// arrive. Everything else comes down the same channel too: the clock's tick
// markers and the stop marker. So an idle user waits on a plain receive,
// or on a select of its own channel and its delay timer while deliveries
// are held back by -delay.
func (u *User) runReal() {
	s := u.sim
	defer s.done.Done()
	users := u.UserChannel // news comes only before the first tick
	wake := time.NewTimer(time.Hour)
	wake.Stop()
	defer wake.Stop()
	wakeAt := time.Duration(-1)
	for !u.stopping {
		// Wait on the user's own channel; on announcements only before
		// the first tick, and on the delay timer only while deliveries
		// are held back.
		var wakeC <-chan time.Time
		if u.delayed.Len() > 0 {
			if at := u.delayed.min().Due; at != wakeAt {
				wakeAt = at
				wake.Reset(at - s.now())
			}
			wakeC = wake.C
		}
		var d Delivery
		if users == nil && wakeC == nil {
			d = <-u.EventChannel
		} else {
			select {
			case d = <-u.EventChannel:
			case o := <-users:
				u.view.Learn(o.First, o.Last, s.now())
				continue
			case <-wakeC:
				wakeAt = -1
				u.applyDue(s.now())
				u.settle()
				continue
			}
		}
		now := s.now()
		u.handle(d, now)
		for n := len(u.EventChannel); n > 0 && !u.stopping; n-- {
			u.handle(<-u.EventChannel, now)
		}
		if u.tickAt >= 0 && users != nil {
			// The clock starts once every user is online.
			for len(users) > 0 {
				o := <-users
				u.view.Learn(o.First, o.Last, now)
			}
			users = nil
		}
		// A marker taken while blocked in a send lands in the backlog and
		// sets tickAt again: run it now, not at the next arrival.
		for u.tickAt >= 0 {
			u.tick(now)
		}
		u.settle()
	}
	u.drain()
}

// settle ends a batch of work in real time: the log lines go to the sink,
// the room of applied deliveries goes back to the network, and the gauges
// the sampler reads are brought up to date.
func (u *User) settle() {
	u.flushLog()
	u.giveBack()
	u.pubDeliveries.Store(u.view.Deliveries)
	u.pubLive.Store(int64(u.view.LiveCount()))
}

// tick rolls for an action, unless the tick is stale: a user that is behind
// by more than a tick skips it rather than add to the load. Everything sent
// to the user before the tick marker has been applied by now.
func (u *User) tick(now time.Duration) {
	at := u.tickAt
	u.tickAt = -1
	u.applyDue(now)
	u.giveBack()
	if u.stopping || now-at >= u.sim.cfg.Tick {
		u.skipped++
		return
	}
	// Reserve room for the widest fan-out before the view acts: an action
	// the view has made must be sent.
	widest := int64(u.view.Known() - 1)
	if e, ok := u.sim.enter(widest); !ok {
		u.skipped++
	} else {
		u.view.SetEpoch(e)
		sent := u.sent
		u.fanOut(u.roll(now))
		u.sim.leave(e, widest-(u.sent-sent))
		u.applyBacklog()
	}
}

func (u *User) applyBacklog() {
	for i := 0; i < len(u.backlog); i++ {
		u.handle(u.backlog[i], u.sim.now())
	}
	clear(u.backlog)
	u.backlog = u.backlog[:0]
}

// handle applies a delivery now, or keeps it until its injected delay has
// passed. A marker is noted for the loop: a tick to run after the batch
// (a second tick before the first ran is skipped), or the stop.
func (u *User) handle(d Delivery, now time.Duration) {
	switch d.Event {
	case tickMark:
		if u.tickAt >= 0 {
			u.skipped++
		}
		u.tickAt = d.Due
		return
	case stopMark:
		u.stopping = true
		return
	}
	if d.Due > now {
		u.delayed.push(d)
		return
	}
	u.apply(d, now)
}

// owing counts applied deliveries of one epoch not yet given back.
type owing struct {
	epoch uint64
	n     int64
}

// owe notes an applied delivery sent in epoch e.
func (u *User) owe(e uint64) {
	if k := len(u.owed); k > 0 && u.owed[k-1].epoch == e {
		u.owed[k-1].n++
		return
	}
	u.owed = append(u.owed, owing{e, 1})
}

// giveBack returns the room of applied deliveries to the network, once per
// batch rather than once per delivery.
func (u *User) giveBack() {
	for _, o := range u.owed {
		u.sim.leave(o.epoch, o.n)
	}
	u.owed = u.owed[:0]
}

// traceDelivery logs a delivery to the task of the action that sent it.
func (u *User) traceDelivery(ev *Event) {
	if ev.task != nil {
		trace.Log(ev.task, "deliver", uidName(u.UID))
	}
}

func (u *User) apply(d Delivery, now time.Duration) {
	u.view.Apply(d.Event, now)
	u.traceDelivery(d.Event)
	u.owe(d.Event.Epoch)
	if u.lat != nil {
		u.lat.add(now - d.Event.Sent)
	}
}

// applyDue applies the delayed deliveries that are due.
func (u *User) applyDue(now time.Duration) {
	for u.delayed.Len() > 0 && u.delayed.min().Due <= now {
		u.apply(u.delayed.pop(), now)
	}
	u.view.Expire(u.sim.stable.Load(), u.sim.epoch.Load())
}

// drain runs after the stop: the user no longer acts, but keeps applying
// what others send until every user has stopped sending; then it applies
// everything still on its way, delays or not, and settles its view.
func (u *User) drain() {
	s := u.sim
	s.quiet.Done()
	for waiting := true; waiting; u.settle() {
		select {
		case d := <-u.EventChannel:
			u.handle(d, s.now())
		case o := <-u.UserChannel:
			u.view.Learn(o.First, o.Last, s.now())
		case <-s.allQuiet:
			waiting = false
		}
	}
	// Every send has completed: what is on the channel is all there is.
	now := s.now()
	for len(u.EventChannel) > 0 {
		u.handle(<-u.EventChannel, now)
	}
	for u.delayed.Len() > 0 {
		u.apply(u.delayed.pop(), now)
	}
	u.view.Finish()
	u.settle()
}

// runFast is the user's loop in lockstep: the coordinator releases one
// phase at a time and waits until every user has finished it. On tick t a
// user applies every delivery due by t in canonical order (send time, then
// sender, then the sender's clock), then rolls its action. Nothing in a tick
// depends on the scheduler, so a run is a function of its flags and seed.
func (u *User) runFast(first *phase) {
	s := u.sim
	defer s.done.Done()
	users := u.UserChannel // news comes only before the first tick
	for p := first; ; p, users = p.next, nil {
		u.await(users)
		// Every announcement was sent before the first phase started.
		for len(u.UserChannel) > 0 {
			o := <-u.UserChannel
			u.view.Learn(o.First, o.Last, 0)
		}
		if p.final {
			u.view.Finish()
			u.flushLog()
			s.barrier.Done()
			return
		}
		// Every delivery sent on tick t is applied by tick t+Δ, where Δ is
		// one tick plus the delay, before anyone acts on it. This runs
		// before tick p's deliveries, so everything sent before p-Δ has
		// been applied: the last of it before anyone acted on tick p-1, so
		// no one sent after p-2 without having applied it.
		now := time.Duration(p.tick) * s.cfg.Tick
		u.view.SetEpoch(uint64(p.tick))
		u.view.Expire(uint64(max(0, p.tick-s.delayTicks-1+s.stableSkew)), uint64(max(0, p.tick-2)))
		b := &u.buckets[p.tick%int64(len(u.buckets))]
		sc := scratchPool.Get().(*scratch)
		for _, ev := range sc.sort(*b) {
			u.view.Apply(ev, now)
			u.traceDelivery(ev)
		}
		clear(sc.order) // hold no events while pooled
		scratchPool.Put(sc)
		u.applied += int64(len(*b))
		clear(*b)
		*b = (*b)[:0]
		if p.act {
			u.fanOut(u.roll(now))
		}
		u.flushLog()
		s.barrier.Done()
	}
}

// pending is a delivery waiting for its tick in fast mode, with its place in
// the canonical order packed into key: the send tick, then the sender. A
// user acts at most once a tick, so no two deliveries share a key, and
// sorting by key alone never dereferences an event. Every delivery in a
// bucket is due on the same tick, so the send tick is kept as how long
// before that it was sent, counted down from the longest lag: at most 1001
// values, which fit beside the sender's 17 bits and scratch.sort's 24-bit
// index however long the run.
type pending struct {
	key uint64
	ev  *Event
}

// scratch is working memory for sorting a bucket. Only a user that is
// sorting needs one, so users share a pool of them instead of each keeping
// its own: at 10,000 users that is half a gigabyte saved.
type scratch struct {
	keys  []uint64
	order []*Event
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// sort returns the events of b in canonical order. Keys and indexes are
// packed into one word and sorted as plain integers: several times faster
// than sorting structs through a comparison function.
func (sc *scratch) sort(b []pending) []*Event {
	sc.keys, sc.order = sc.keys[:0], sc.order[:0]
	if len(b) >= 1<<24 {
		slices.SortFunc(b, func(x, y pending) int { return cmp.Compare(x.key, y.key) })
		for _, d := range b {
			sc.order = append(sc.order, d.ev)
		}
		return sc.order
	}
	for i, d := range b {
		sc.keys = append(sc.keys, d.key<<24|uint64(i))
	}
	slices.Sort(sc.keys)
	for _, k := range sc.keys {
		sc.order = append(sc.order, b[k&(1<<24-1)].ev)
	}
	return sc.order
}

// await takes deliveries until the coordinator's start marker, which it
// sends down the channel behind every delivery of the last phase, and
// announcements while users is not nil. Waiting on the user's own channel,
// not on one that every user shares, keeps the users from contending for
// one lock.
func (u *User) await(users <-chan Online) {
	for {
		var d Delivery
		if users == nil {
			d = <-u.EventChannel
		} else {
			select {
			case d = <-u.EventChannel:
			case o := <-users:
				u.view.Learn(o.First, o.Last, 0)
				continue
			}
		}
		if d.Event == nil {
			return
		}
		u.bucket(d)
	}
}

// bucket files a delivery under its due tick.
func (u *User) bucket(d Delivery) {
	tick := u.sim.cfg.Tick
	due, sent := int64(d.Due/tick), int64(d.Event.Sent/tick)
	earlier := uint64(u.sim.delayTicks + 1 - (due - sent)) // 0 for the earliest sent
	b := &u.buckets[due%int64(len(u.buckets))]
	*b = append(*b, pending{earlier<<uidBits | uint64(d.Event.From), d.Event})
}

// minHeap is a min-heap of T by before, on container/heap. push and pop
// take and return T itself: heap.Push and heap.Pop pass it as an interface
// value, which would allocate for every delivery held back.
type minHeap[T any] struct {
	items  []T
	before func(a, b T) bool
}

func (h *minHeap[T]) Len() int           { return len(h.items) }
func (h *minHeap[T]) Less(i, j int) bool { return h.before(h.items[i], h.items[j]) }
func (h *minHeap[T]) Swap(i, j int)      { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *minHeap[T]) Push(x any)         { h.items = append(h.items, x.(T)) }
func (h *minHeap[T]) Pop() any           { return h.pop() }

// min is the least item; the heap must not be empty.
func (h *minHeap[T]) min() *T { return &h.items[0] }

func (h *minHeap[T]) push(x T) {
	h.items = append(h.items, x)
	heap.Fix(h, len(h.items)-1)
}

func (h *minHeap[T]) pop() T {
	var zero T
	x, n := h.items[0], len(h.items)-1
	h.items[0], h.items[n] = h.items[n], zero
	h.items = h.items[:n]
	if n > 0 {
		heap.Fix(h, 0)
	}
	return x
}

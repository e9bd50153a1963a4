package main

import (
	"cmp"
	"slices"
)

// Stability, learned from the peers: part of a peer's step machine.
//
// Epoch W is stable when every room event sent in an epoch below W has
// been applied by its recipient; a horizon H for it is an epoch such that
// no user sent anything in an epoch later than H before it had applied
// every room event below W. Views reclaim closed rooms by them (see View
// and docs/design.md). A peer's epoch is its own tick, raised to the epoch
// of anything it applies, so that what it sends after applying an event is
// never in an earlier epoch than the event.
//
// No user can count what is in flight across the network, so W is summed
// from what the users tell each other, up a tree of users fixed by uid
// (the report tree: user 1 is its root, and user u's parent is
// treeParent(u)). Each user counts the counted events (those that change
// rooms, messages, and a late joiner's hello: see counted) it sent less
// those it applied, by epoch, and has a position: the epoch it has
// reached, below which it will send nothing more. It reports to its
// parent, every few ticks while anything is unstable (see reportEvery),
// its subtree's sums: its own counts plus its children's last reports, for every epoch
// not yet known stable, and the subtree's position, the least of its own
// and its children's. At the root, epoch e is complete once the least
// position is past e (no more sends of e will be reported) and its sum,
// sent less applied, is zero (every send of e is applied: an apply is
// counted only once it happened, and each payload is applied once). W is
// the least epoch not complete. Never early; late by how long reports
// take to climb the tree.
//
// With crashes a send is settled when its acknowledgement comes back,
// not when it is applied: every count of a send then lives with its
// sender, and dies with it, and a restarted user's reports hold W while
// it comes back (see restart.go).
//
// A report is a snapshot, not a difference: each says everything its
// subtree has to say, so a later one replaces an earlier, and one lost,
// duplicated or overtaken costs nothing but the wait for the next. They
// travel outside the links, like acknowledgements, and the next round
// repeats them. A subtree's position is that of reports whose counts are
// in, never later than its true position, so W is never early; an epoch
// below a W its sender heard is left out, since the root, whose W is the
// greatest, has let go of it.
//
// The root tells its children what it knows (W, the reclaim point, the
// horizon, and want: the latest epoch it knows had a counted send, or the
// present while a late joiner is on its way in, or the epoch a late
// joiner's view became complete), and
// they tell theirs as soon as they hear it; every transmission also
// carries its sender's word, and any user's W is a fact about all. A
// user takes the greatest it hears. Once W passes want nothing is
// unstable, and users stop reporting until something is sent: a run gone
// quiet sends nothing for stability. A word lost on its way is told
// again: while W has not passed want, a parent tells its children once a
// round if one of them has not reported past want, and once W has, if one
// of them still reports.
//
// Every user of the run is counted, from the start: the membership is
// known. A user offline, cut off or not yet online holds W back while it
// lasts, the honest cost of causal stability; so does one between it and
// the root, until it is back and its next report carries its subtree's.
//
// A late joiner holds back reclaiming, for a while: see latecomerGuard.
// Its word on its way in climbs the tree with the reports.
type stability struct {
	uid    int32
	inc    uint32 // this user's incarnation: see links
	parent int32  // in the report tree; 0 at the root
	hold   bool   // a restarted user holds W where it is until every user has welcomed it: see restart.go

	// What this user knows, from the root's word or, at the root, its
	// sums: W, its horizon, the reclaim point and want.
	stable, horizon, reclaimHeard, want uint64

	own      []epochCount // this user's own counts, by epoch, from W
	ownLast  uint64       // the latest epoch of its own counted sends
	pos      uint64       // its own position, as of its last report (at the root, its last settle)
	myNote   arrivalNote  // its own word on its way in, if it came late
	kidsLo   int32        // the uid of its first child
	kids     []*progress  // each child's last report, by uid from kidsLo; nil before the first
	acc      []int64      // where sums adds up the kids' reports, kept between reports
	made     uint32       // reports made
	fresh    bool         // a child's report came since this user last reported
	kidsSaid bool         // a child's report came since this user last told its children

	guards []latecomerGuard // at the root: the late joiners it guards

	told stableWord // what this user last told its children

	lags []int64 // lags[k]: epochs known stable k ticks after they ended
}

// stableWord is what a user knows of stability and tells others: see
// stability.
type stableWord struct {
	Stable, Reclaim, Horizon, Want uint64
}

// epochCount is what a user or a subtree sent less what it applied of
// one epoch's counted events.
type epochCount struct {
	Epoch uint64
	Net   int64
}

// progress is a report to a user's parent of its subtree's progress: see
// stability.
type progress struct {
	Inc      uint32       // the reporting user's incarnation: a later one's reports replace an earlier's
	Hold     bool         // the reporting user restarted and holds W: see take
	N        uint32       // the report's number, from 1: a later one replaces an earlier
	Pos      uint64       // the subtree's position
	MaxPos   uint64       // the greatest position in the subtree: a horizon
	LastSend uint64       // the latest epoch of a counted send in the subtree
	Counts   []epochCount // by epoch, from the sender's W, none zero
	Notes    []arrivalEntry
}

// arrivalNote is a late joiner's word on its way in: the epoch of its hello,
// and once its view is complete, the epoch it was complete in.
type arrivalNote struct {
	Hello, Done uint64
}

// arrivalEntry is a late joiner's note, on its way up the tree.
type arrivalEntry struct {
	UID  int32
	Note arrivalNote
}

// latecomerGuard is a late joiner that may still send about rooms it does
// not know are closed: until its view is complete it may act on a state
// transfer that missed a close, and send to a closed incarnation or create
// below it. No view reclaims what such a send could need: reclaiming is
// held at the joiner's hello until its view is complete and everything it
// sent until then is stable. A tombstone whose second phase ends before the
// hello is safe to forget: its close was applied, and reported, by every
// user that could answer the joiner before it could answer, and every send
// it outlived was sent before anyone knew of the joiner. The root knows
// every guard before W passes 0: a joiner holds W at 0 until its first
// report, which carries its note.
type latecomerGuard struct {
	uid         int32
	hello, done uint64
}

// reportFanout is how many children a user has in the report tree: the
// tree of 100 users is two levels deep below the root, of 100,000 three.
// Wider is fewer hops and more reports for one user to take; at 64 the
// root sums 64 reports of a few epochs each, a tick's work of
// microseconds.
const reportFanout = 64

// maxReportTicks is the longest a user lets pass between its reports
// while anything is unstable, and the root between its news: see
// reportEvery.
const maxReportTicks = 5

// reportEvery is how many ticks a user lets pass between its reports, and
// the root between its news, when it takes in taken deliveries a tick (8
// times the average over about eight ticks): about two transmissions a
// round, kept near 2% of what it takes in, from 1 tick to maxReportTicks.
// So a busy run learns stability in a few ticks for almost nothing, and a
// small or quiet one waits longer rather than pay more. What a user takes
// in is its own observation, nothing counted across users.
func reportEvery(taken int64) uint64 {
	if taken <= 0 {
		return maxReportTicks
	}
	return uint64(min(max((800+taken-1)/taken, 1), maxReportTicks))
}

// treeParent is user u's parent in the report tree: 0 for the root.
func treeParent(u int32) int32 {
	if u <= 1 {
		return 0
	}
	return (u-2)/reportFanout + 1
}

// treeChildren are user u's children in the report tree among users
// users: lo to hi, inclusive; none when lo > hi.
func treeChildren(u int32, users int) (lo, hi int32) {
	lo = reportFanout*(u-1) + 2
	return lo, min(lo+reportFanout-1, int32(users))
}

func newStability(uid int32, users int) *stability {
	lo, hi := treeChildren(uid, users)
	s := &stability{uid: uid, parent: treeParent(uid), kidsLo: lo}
	if lo <= hi {
		s.kids = make([]*progress, hi-lo+1)
	}
	return s
}

func (s *stability) root() bool { return s.parent == 0 }

// holds reports whether this user's reports hold W (see take): it
// restarted, and has not yet had every welcome or a report from each of
// its children, whose counts its earlier self's last report has.
func (s *stability) holds() bool {
	return s.hold || s.inc > 0 && slices.Contains(s.kids, nil)
}

// count notes k counted events of epoch e sent (sent) or applied.
func (s *stability) count(e uint64, k int64, sent bool) {
	if sent {
		s.ownLast = max(s.ownLast, e)
	} else {
		k = -k
	}
	i := len(s.own)
	for i > 0 && s.own[i-1].Epoch > e {
		i--
	}
	if i > 0 && s.own[i-1].Epoch == e {
		s.own[i-1].Net += k
		return
	}
	s.own = slices.Insert(s.own, i, epochCount{e, k})
}

// owes reports whether this user has anything to report: counts not
// known stable, a child's report, a late joiner's word, or a position that
// W waits for.
func (s *stability) owes(note arrivalNote) bool {
	return len(s.own) > 0 || s.fresh || note != s.myNote || s.stable <= s.want
}

// report makes this user's report to its parent at epoch now, its own
// position, with note, its own word on its way in.
func (s *stability) report(now uint64, note arrivalNote) *progress {
	s.pos, s.myNote = now, note
	s.made++
	s.fresh = false
	maxPos, lastSend := s.latest()
	return &progress{Inc: s.inc, Hold: s.holds(), N: s.made, Pos: s.least(), MaxPos: maxPos, LastSend: lastSend, Counts: s.sums(), Notes: s.notes()}
}

// take takes a report from child c; one older than the last it took is
// of no more use. While a restarted child holds W, the last report of its
// earlier self stands, if this user has one: it counts what that self
// sent and no one acknowledged, and its position is before whatever the
// earlier self sent since, so W waits below all of it, as it must until
// the child has had every welcome (see restart.go), and no further back.
func (s *stability) take(c int32, r *progress) {
	k := &s.kids[c-s.kidsLo]
	if *k != nil && (r.Inc < (*k).Inc || r.Inc == (*k).Inc && r.N <= (*k).N || r.Hold && r.Inc > (*k).Inc) {
		return
	}
	*k = r
	s.fresh, s.kidsSaid = true, true
	if s.root() {
		for _, n := range r.Notes {
			s.noteArrival(n.UID, n.Note)
		}
	}
}

// sums are the subtree's counts by epoch, from W, none zero: its own and
// its children's last reports. Its own below W are let go.
//
// A user with children adds up their reports in acc, a count for each
// epoch from W to the latest any report holds, and returns just the
// epochs not zero: at 100,000 users a report of each of 64 children
// holds much the same few epochs, and concatenating, sorting and merging
// them each time it reported was a sixth of everything the run
// allocated. A span of more than maxDenseEpochs (W held back a long
// time) is merged as a leaf does.
func (s *stability) sums() []epochCount {
	i := 0
	for i < len(s.own) && s.own[i].Epoch < s.stable {
		i++
	}
	if i > 0 {
		// Moved down, not resliced: count inserts the next epochs into the
		// room this frees, where a slice that slid along would be made anew.
		s.own = s.own[:copy(s.own, s.own[i:])]
	}
	if len(s.kids) == 0 {
		return s.merged()
	}
	hi := s.stable
	if n := len(s.own); n > 0 {
		hi = max(hi, s.own[n-1].Epoch)
	}
	for _, k := range s.kids {
		if k != nil && len(k.Counts) > 0 {
			hi = max(hi, k.Counts[len(k.Counts)-1].Epoch)
		}
	}
	if hi-s.stable >= maxDenseEpochs {
		return s.merged()
	}
	acc := s.acc[:0]
	acc = append(acc, make([]int64, hi-s.stable+1)...)
	add := func(cs []epochCount) {
		for _, c := range cs {
			if c.Epoch >= s.stable {
				acc[c.Epoch-s.stable] += c.Net
			}
		}
	}
	add(s.own)
	for _, k := range s.kids {
		if k != nil {
			add(k.Counts)
		}
	}
	n := 0
	for _, v := range acc {
		if v != 0 {
			n++
		}
	}
	var out []epochCount
	if n > 0 {
		out = make([]epochCount, 0, n)
		for i, v := range acc {
			if v != 0 {
				out = append(out, epochCount{s.stable + uint64(i), v})
			}
		}
	}
	s.acc = acc
	return out
}

// maxDenseEpochs bounds the span of epochs sums adds up in place: 8 KB
// of counts at most, kept by each of the one user in 64 that has
// children.
const maxDenseEpochs = 1024

// merged is sums by sorting: the subtree's counts concatenated, sorted
// by epoch, added up by epoch, and those not zero kept.
func (s *stability) merged() []epochCount {
	all := slices.Clone(s.own)
	for _, k := range s.kids {
		if k != nil {
			all = append(all, k.Counts...)
		}
	}
	slices.SortStableFunc(all, func(a, b epochCount) int { return cmp.Compare(a.Epoch, b.Epoch) })
	out := all[:0]
	for _, c := range all {
		switch {
		case c.Epoch < s.stable:
		case len(out) > 0 && out[len(out)-1].Epoch == c.Epoch:
			out[len(out)-1].Net += c.Net
		default:
			out = append(out, c)
		}
		if len(out) > 0 && out[len(out)-1].Net == 0 {
			out = out[:len(out)-1]
		}
	}
	return out
}

// least is the subtree's position: the least of its own and its
// children's, 0 for a child not yet heard from, or while this user holds W.
func (s *stability) least() uint64 {
	if s.hold {
		return 0
	}
	p := s.pos
	for _, k := range s.kids {
		if k == nil {
			return 0
		}
		p = min(p, k.Pos)
	}
	return p
}

// latest is the greatest position in the subtree, and the latest epoch
// of a counted send in it.
func (s *stability) latest() (pos, send uint64) {
	pos, send = s.pos, s.ownLast
	for _, k := range s.kids {
		if k != nil {
			pos, send = max(pos, k.MaxPos), max(send, k.LastSend)
		}
	}
	return pos, send
}

// notes are the words of the subtree's late joiners that the root may
// still need: none long done.
func (s *stability) notes() []arrivalEntry {
	var out []arrivalEntry
	keep := func(e arrivalEntry) {
		if e.Note.Hello != 0 && (e.Note.Done == 0 || e.Note.Done >= s.stable) {
			out = append(out, e)
		}
	}
	keep(arrivalEntry{s.uid, s.myNote})
	for _, k := range s.kids {
		if k != nil {
			for _, e := range k.Notes {
				keep(e)
			}
		}
	}
	return out
}

// heard takes what another user knows of stability.
func (s *stability) heard(w stableWord, tick uint64) {
	s.reclaimHeard = max(s.reclaimHeard, w.Reclaim)
	s.want = max(s.want, w.Want)
	if w.Stable > s.stable {
		s.advance(w.Stable, max(s.horizon, w.Horizon), tick)
	} else {
		s.horizon = max(s.horizon, w.Horizon)
	}
}

// word is what this user knows of stability, as it tells others.
func (s *stability) word() stableWord {
	r, h := s.reclaim()
	return stableWord{Stable: s.stable, Reclaim: r, Horizon: h, Want: s.want}
}

// settle computes W from the sums at tick, at the root, whose own
// position is now epoch. Below the least position every send is
// reported, so W is the least epoch not below it or whose sum is not
// zero.
func (s *stability) settle(epoch, tick uint64) {
	if !s.root() {
		return
	}
	s.pos = epoch
	w := s.least()
	maxPos, lastSend := s.latest()
	if c := s.sums(); len(c) > 0 {
		w = min(w, c[0].Epoch)
	}
	if w > s.stable {
		s.advance(w, maxPos, tick)
	}
	// A late joiner still on its way in waits for W to pass epochs not
	// yet reached (see arrival): until it is done, W must keep moving.
	// Want never goes down, so that no user stops on a word that a later
	// one takes back.
	s.want = max(s.want, lastSend)
	for _, l := range s.guards {
		if l.done == 0 {
			s.want = max(s.want, epoch)
			break
		}
		s.want = max(s.want, l.done)
	}
}

// advance raises W to w, with horizon h, at tick: every epoch from the old
// W up to w is known stable now, and its lag is counted.
func (s *stability) advance(w, h uint64, tick uint64) {
	for e := s.stable; e < w; e++ {
		lag := int64(0)
		if tick > e+1 {
			lag = int64(tick - e - 1)
		}
		for int64(len(s.lags)) <= lag {
			s.lags = append(s.lags, 0)
		}
		s.lags[lag]++
	}
	s.stable, s.horizon = w, max(s.horizon, h)
	s.guards = removeDone(s.guards, w)
}

// removeDone drops the late joiners whose view is complete and whose
// sends until then are all stable.
func removeDone(guards []latecomerGuard, w uint64) []latecomerGuard {
	out := guards[:0]
	for _, l := range guards {
		if l.done == 0 || w <= l.done {
			out = append(out, l)
		}
	}
	return out
}

// noteArrival takes a late joiner's word on its way in, at the root.
func (s *stability) noteArrival(uid int32, n arrivalNote) {
	if n.Hello == 0 {
		return
	}
	for i := range s.guards {
		g := &s.guards[i]
		if g.uid != uid {
			continue
		}
		switch {
		case n.Hello > g.hello:
			// The user restarted: what its earlier self sent is
			// settled or died with it, and the new one is on its way in.
			*g = latecomerGuard{uid, n.Hello, n.Done}
		case n.Hello == g.hello:
			g.done = max(g.done, n.Done)
		}
		s.guards = removeDone(s.guards, s.stable)
		return
	}
	if n.Done != 0 && s.stable > n.Done {
		return // long done
	}
	s.guards = append(s.guards, latecomerGuard{uid, n.Hello, n.Done})
}

// reclaim is the epoch views reclaim by, and the horizon: at the root, W
// held at the hello of the oldest late joiner still guarded; elsewhere,
// the greatest point the root's word brought. Each point told is safe for
// every view, so the greatest is too.
func (s *stability) reclaim() (reclaim, horizon uint64) {
	r := s.reclaimHeard
	// A restarted root knows the late joiners to guard only from its
	// children's reports: until it has them all, it reclaims no further
	// than it heard.
	if s.root() && !s.holds() {
		w := s.stable
		for _, l := range s.guards {
			w = min(w, l.hello)
		}
		r = max(r, w)
	}
	return r, s.horizon
}

// newsOwed reports whether this user should tell its children what it
// knows, at tick: something they have not been told; that something is
// unstable while a child's last report is not past want (it may have
// stopped on an older word, and a word lost on its way must come again);
// or that nothing is unstable when one of them still reports. The root
// tells at most once a round of every ticks; any other user as soon as
// its parent has told it, so that the word goes down the tree in one
// pass, or else once a round.
func (s *stability) newsOwed(fromParent bool, tick, lastNews, every uint64) bool {
	round := tick >= lastNews+every
	switch {
	case s.word() != s.told:
		return fromParent && !s.root() || round && (s.root() || s.kidsSaid)
	case s.stable <= s.want:
		return round && s.kidBehind()
	}
	return round && s.kidsSaid
}

// kidBehind reports whether a child's last report, if any, is not past
// want: W waits for it to report again.
func (s *stability) kidBehind() bool {
	for _, k := range s.kids {
		if k == nil || k.Pos <= s.want {
			return true
		}
	}
	return false
}

package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Scenarios are interaction tests written as data, after etcd raft's:
// each file under testdata/scenarios is a story of a few peers on an
// in-memory network (testNet), told one command at a time, each followed
// by "----" and what the command made: the log lines it caused, in the
// users' own words, and the transmissions it put in flight. The races the
// protocol resolves read there as they happen. go test -run Scenarios
// -update rewrites the expected output after a deliberate change.
//
// Commands:
//
//	users N [faults] [late K]   N users (the last K come online late), with links when faulty
//	create U {A,B,...}          user U creates a room with that group
//	send U ROOM                 user U sends a message to ROOM (clock.uid), one it is in
//	close U ROOM                user U closes ROOM
//	deliver A->B [N|all]        the next transmission(s) from A to B arrive, in the order sent
//	deliver all                 everything in flight arrives, in the order sent, until nothing is left
//	drop A->B                   the next transmission from A to B is lost
//	dup A->B                    the next transmission from A to B arrives twice
//	tick [U ...]                a tick passes; users (all if none named) tend what they owe
//	wait N                      N ticks pass, every user tending what it owes, nothing delivered
//	offline U / back U          the network has user U offline, or back
//	partition A,B|C,D           the network splits in two sides; heal ends it
//	partition A,B>C,D           the same, one way: what A and B send reaches C and D, nothing comes back
//	join U                      late joiner U comes online
//	stabilize                   heal everything, then tick and deliver until nothing is in flight
//	rooms                       every user's live rooms
//
// The report tree's reports and news are not shown: they arrive at the
// next tick, or are lost to an outage or a cut (see testNet).
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "scenarios", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) { runScenario(t, file) })
	}
}

// scenarioStep is one command of a scenario and the output it expects.
type scenarioStep struct {
	comment []string // lines before the command
	cmd     string
	want    string
}

// parseScenario reads a scenario file.
func parseScenario(t *testing.T, file string) []scenarioStep {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var steps []scenarioStep
	var cur *scenarioStep
	var comment []string
	inOutput := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case inOutput && line == "":
			inOutput = false
		case inOutput:
			cur.want += line + "\n"
		case line == "----":
			if cur == nil {
				t.Fatalf("%s: output before a command", file)
			}
			inOutput = true
		case strings.HasPrefix(line, "#") || line == "":
			comment = append(comment, line)
		default:
			steps = append(steps, scenarioStep{comment: comment, cmd: line})
			cur, comment = &steps[len(steps)-1], nil
		}
	}
	return steps
}

// runScenario plays a scenario and compares, or with -update rewrites.
func runScenario(t *testing.T, file string) {
	steps := parseScenario(t, file)
	var s scenario
	var out strings.Builder
	failed := false
	for i, st := range steps {
		got, err := s.do(st.cmd)
		if err != nil {
			t.Fatalf("%s: %q: %v", file, st.cmd, err)
		}
		if got != st.want && !*update {
			t.Errorf("%s: %q:\ngot:\n%swant:\n%s", file, st.cmd, got, st.want)
			failed = true
		}
		steps[i].want = got
	}
	if !*update || failed {
		return
	}
	for i, st := range steps {
		for _, c := range st.comment {
			if c != "" || i > 0 {
				out.WriteString(c + "\n")
			}
		}
		out.WriteString(st.cmd + "\n----\n" + st.want + "\n")
	}
	if err := os.WriteFile(file, []byte(strings.TrimSuffix(out.String(), "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// scenario is the state of a scenario being played.
type scenario struct {
	tn   *testNet
	n    int
	rend renderer
	told int // transmissions already told, by id
}

// do runs one command and returns what it made.
func (s *scenario) do(cmd string) (string, error) {
	f := strings.Fields(cmd)
	if len(f) == 0 {
		return "", fmt.Errorf("empty command")
	}
	if f[0] != "users" && s.tn == nil {
		return "", fmt.Errorf("the first command must be users")
	}
	var b strings.Builder
	var err error
	switch f[0] {
	case "users":
		err = s.users(f[1:])
	case "create", "send", "close":
		err = s.propose(f)
	case "deliver", "drop", "dup":
		err = s.deliver(f)
	case "tick":
		s.tn.now += s.tn.period
		s.tn.tick++
		s.tn.deliverTree()
		us, e := s.uids(f[1:])
		if e != nil {
			return "", e
		}
		for _, u := range us {
			s.tn.tickOne(u, actNone)
		}
	case "wait":
		n, e := strconv.Atoi(strings.Join(f[1:], ""))
		if e != nil || n < 1 {
			return "", fmt.Errorf("wait takes a number of ticks")
		}
		for range n {
			s.tn.tickAll(actNone)
		}
	case "offline", "back":
		us, e := s.uids(f[1:])
		if e != nil || len(us) != 1 {
			return "", fmt.Errorf("%s takes one user", f[0])
		}
		s.tn.away[us[0]] = f[0] == "offline"
	case "partition":
		err = s.partition(f[1:])
	case "heal":
		s.tn.cut = nil
	case "join":
		us, e := s.uids(f[1:])
		if e != nil || len(us) != 1 {
			return "", fmt.Errorf("join takes one user")
		}
		s.tn.join(us[0])
	case "stabilize":
		err = s.stabilize(&b)
	case "rooms":
		s.rooms(&b)
	default:
		return "", fmt.Errorf("unknown command %q", f[0])
	}
	if err != nil {
		return "", err
	}
	return s.news() + b.String(), nil
}

func (s *scenario) users(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("users N [faults] [late K]")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 2 {
		return fmt.Errorf("users: %q is no number of users", args[0])
	}
	faulty, late := false, 0
	for i := 1; i < len(args); i++ {
		switch args[i] {
		case "faults":
			faulty = true
		case "late":
			if i++; i < len(args) {
				late, err = strconv.Atoi(args[i])
			}
			if err != nil || late < 1 || late > n-2 {
				return fmt.Errorf("late takes a number from 1 to %d", n-2)
			}
		default:
			return fmt.Errorf("users: unknown %q", args[i])
		}
	}
	s.tn, s.n = newTestNetOf(nil, n, late, 1, peerConfig{faulty: faulty || late > 0, links: faulty}), n
	s.rend = renderer{elapsed: true}
	return nil
}

// uids parses user numbers; none means every user.
func (s *scenario) uids(args []string) ([]int32, error) {
	if len(args) == 0 {
		var all []int32
		for u := int32(1); int(u) <= s.n; u++ {
			all = append(all, u)
		}
		return all, nil
	}
	var out []int32
	for _, a := range args {
		u, err := strconv.Atoi(strings.TrimPrefix(a, "user_"))
		if err != nil || u < 1 || u > s.n {
			return nil, fmt.Errorf("%q is no user of %d", a, s.n)
		}
		out = append(out, int32(u))
	}
	return out, nil
}

func (s *scenario) propose(f []string) error {
	if len(f) != 3 {
		return fmt.Errorf("%s U {members} or ROOM", f[0])
	}
	us, err := s.uids(f[1:2])
	if err != nil {
		return err
	}
	u := us[0]
	prop := Proposal{}
	switch f[0] {
	case "create":
		members, err := s.uids(strings.Split(strings.Trim(f[2], "{}"), ","))
		if err != nil {
			return err
		}
		prop = Proposal{Kind: CreateEvent, Group: newGroup(s.n, members...)}
	default:
		room, err := parseStamp(f[2])
		if err != nil {
			return err
		}
		if s.tn.p(u).view.RoomIndex(room) < 0 {
			return fmt.Errorf("user_%d is in no live room %s", u, room)
		}
		prop = Proposal{Kind: map[string]EventKind{"send": MessageEvent, "close": CloseEvent}[f[0]], Room: room}
	}
	s.tn.p(u).Step(Input{Kind: proposeInput, Now: s.tn.now, Proposal: prop}, s.tn.ports[u])
	return nil
}

func parseStamp(s string) (Stamp, error) {
	c, u, ok := strings.Cut(s, ".")
	clock, err1 := strconv.ParseUint(c, 10, 64)
	uid, err2 := strconv.Atoi(u)
	if !ok || err1 != nil || err2 != nil {
		return Stamp{}, fmt.Errorf("%q is no room: want clock.uid, like 1.2", s)
	}
	return Stamp{clock, int32(uid)}, nil
}

func (s *scenario) deliver(f []string) error {
	tn := s.tn
	if len(f) == 2 && f[1] == "all" && f[0] == "deliver" {
		for len(tn.flight) > 0 {
			tn.deliver(0)
		}
		return nil
	}
	if len(f) < 2 {
		return fmt.Errorf("%s A->B", f[0])
	}
	a, b, ok := strings.Cut(f[1], "->")
	us, err := s.uids([]string{a, b})
	if !ok || err != nil {
		return fmt.Errorf("%q is no A->B", f[1])
	}
	count := 1
	if len(f) == 3 {
		if f[2] == "all" {
			count = -1
		} else if count, err = strconv.Atoi(f[2]); err != nil {
			return fmt.Errorf("%q is no count", f[2])
		}
	}
	for done := 0; count < 0 || done < count; done++ {
		i := slices.IndexFunc(tn.flight, func(tr inTransit) bool { return tr.from == us[0] && tr.to == us[1] })
		if i < 0 {
			if count < 0 && done > 0 {
				return nil
			}
			return fmt.Errorf("nothing in flight from %s to %s", uidName(us[0]), uidName(us[1]))
		}
		switch f[0] {
		case "drop":
			tn.flight = slices.Delete(tn.flight, i, i+1)
		case "dup":
			tr := tn.flight[i]
			tn.deliver(i)
			tn.arrive(tr)
		default:
			tn.deliver(i)
		}
	}
	return nil
}

func (s *scenario) partition(args []string) error {
	arg := strings.Join(args, "")
	left, right, ok := strings.Cut(arg, "|")
	oneWay := false
	if !ok {
		left, right, ok = strings.Cut(arg, ">")
		oneWay = true
	}
	a, err1 := s.uids(strings.Split(left, ","))
	b, err2 := s.uids(strings.Split(right, ","))
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("partition A,B|C,D or A,B>C,D")
	}
	side := map[int32]int{}
	for _, u := range a {
		side[u] = 1
	}
	for _, u := range b {
		side[u] = 2
	}
	s.tn.cut = func(x, y int32) bool { return side[x] != side[y] && !(oneWay && side[x] == 1) }
	return nil
}

// stabilize heals every fault, lets every late joiner in, and runs ticks
// and deliveries until nothing is in flight and every link is quiet; then
// settles the views and says what every user has.
func (s *scenario) stabilize(b *strings.Builder) error {
	tn := s.tn
	tn.cut = nil
	for u := int32(1); int(u) <= s.n; u++ {
		if tn.away[u] && tn.p(u).stage == notYetOnline {
			tn.join(u)
		}
		tn.away[u] = false
	}
	h := &peerHistory{tn: tn}
	for range 1000 {
		for len(tn.flight) > 0 {
			tn.deliver(0)
		}
		if tn.late == 0 && h.quiet() {
			s.rooms(b)
			return nil
		}
		tn.tickAll(actNone)
	}
	return fmt.Errorf("the network did not settle")
}

// rooms says every user's live rooms.
func (s *scenario) rooms(b *strings.Builder) {
	for u := int32(1); int(u) <= s.n; u++ {
		var ids []string
		for _, r := range s.tn.p(u).view.Rooms() {
			ids = append(ids, r.String())
		}
		fmt.Fprintf(b, "%s has %s live\n", uidName(u), orNone(strings.Join(ids, ", ")))
	}
}

func orNone(s string) string {
	if s == "" {
		return "nothing"
	}
	return s
}

// news is what happened since the last command: every peer's log lines,
// in uid order, without their times, then the transmissions put in
// flight.
func (s *scenario) news() string {
	var b strings.Builder
	for _, p := range s.tn.peers[1:] {
		for _, r := range p.Records() {
			line := string(s.rend.append(nil, &r))
			for l := range strings.Lines(line) {
				_, rest, _ := strings.Cut(l, " ") // drop the time
				b.WriteString(strings.Replace(rest, "] ", ": ", 1))
			}
		}
		p.ResetRecords()
	}
	for _, tr := range s.tn.flight {
		if tr.id > s.told {
			fmt.Fprintf(&b, "  %s -> %s: %s\n", uidName(tr.from), uidName(tr.to), describe(tr))
		}
	}
	s.told = s.tn.made
	return b.String()
}

// describe says what a transmission carries.
func describe(tr inTransit) string {
	ev := tr.d.Event
	var what string
	switch ev.Kind {
	case CreateEvent, CloseEvent:
		what = ev.Kind.String() + " " + ev.Room.String()
	case MessageEvent:
		what = "message " + ev.ID().String() + " in " + ev.Room.String()
	case StateEvent:
		var rooms []string
		for _, rs := range ev.State {
			r := unpack(rs.Packed).String()
			if rs.Closed {
				r += " (closed)"
			}
			rooms = append(rooms, r)
		}
		what = "state: " + orNone(strings.Join(rooms, ", "))
	case GapEvent:
		what = fmt.Sprintf("gap report: missing %d", tr.d.Ack)
		if tr.d.Seq-1 > tr.d.Ack {
			what += fmt.Sprintf(" to %d", tr.d.Seq-1)
		}
	case EndEvent:
		what = fmt.Sprintf("offer to end the session from #%d", tr.d.Base)
	case EndAckEvent:
		what = fmt.Sprintf("the session from #%d ended", tr.d.Base)
	default:
		what = ev.Kind.String()
	}
	switch {
	case ev.Kind == GapEvent:
	case tr.d.Seq != 0 && tr.d.Ack == 0:
		what = fmt.Sprintf("#%d %s", tr.d.Seq, what)
	case tr.d.Seq != 0:
		what = fmt.Sprintf("#%d %s, acknowledging below %d", tr.d.Seq, what, tr.d.Ack)
	case tr.d.Ack != 0:
		what += fmt.Sprintf(" of everything below %d", tr.d.Ack)
	}
	if tr.k == txResend {
		what += " (resent)"
	}
	return what
}

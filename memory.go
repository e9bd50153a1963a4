package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"unsafe"
)

// The memory limit (-maxmem). Memory grows with the users times the live
// rooms, since every user knows every live room, and a fast run has no
// brake of its own: past what the machine has, the kernel would kill the
// process with no summary and no word of why. So the run watches its own
// heap and, before it would pass the limit, stops acting as on Ctrl-C,
// drains what is in flight and prints the summary with the reason. The
// garbage collector is told the limit too, so that it works harder before
// the run has to stop.

// defaultMemShare is the share of the machine's memory a run may take
// when -maxmem is not given: a quarter is left for everything else.
const defaultMemShare = 0.75

// machineMemory is the memory this process may use: the machine's, or its
// control group's if that is less; 0 if neither can be read.
func machineMemory() uint64 {
	var total uint64
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				if err == nil {
					total = kb << 10
				}
			}
		}
	}
	for _, path := range cgroupLimits() {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 && (total == 0 || n < total) {
			total = n // "max", or a v1 limit of "no limit", is no number or no less
		}
	}
	return total
}

// cgroupLimits are the files that may hold this process's control group
// memory limit: v2's memory.max for its own group and the root, v1's
// memory.limit_in_bytes.
func cgroupLimits() []string {
	paths := []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return paths
	}
	for line := range strings.Lines(string(b)) {
		// v2: "0::/path"; v1: "N:memory:/path" (or with other controllers).
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 || parts[2] == "/" {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			paths = append(paths, filepath.Join("/sys/fs/cgroup", parts[2], "memory.max"))
		case slices.Contains(strings.Split(parts[1], ","), "memory"):
			paths = append(paths, filepath.Join("/sys/fs/cgroup/memory", parts[2], "memory.limit_in_bytes"))
		}
	}
	return paths
}

// startNeed is the least memory a run needs to bring its users online:
// their inboxes, a few kilobytes each for the goroutine and its state,
// and in lockstep with a log the
// "is online" line of every user about every other, which wait for the
// end of the first phase; with a quarter more for the garbage collector
// to work in.
func startNeed(c Config) uint64 {
	n := uint64(c.Users)
	inbox := uint64(inboxCapacity(c.Users))
	if c.Fast {
		inbox = 1
	}
	need := n*inbox*uint64(unsafe.Sizeof(Delivery{})) + n*8<<10
	if c.Fast && !c.Quiet {
		need += n * min(n-1, onlineLines) * onlineBytes
	}
	return need + need/4
}

// onlineBytes is what an "is online" record and its line take, and
// onlineLines the most such lines a user logs at the start (see
// View.Learn and Sim.startUsers: news comes in at most 256 batches).
const (
	onlineBytes = 220
	onlineLines = 260
)

// runNeed is the least limit under which a run can act at all: what it
// needs to start, with the look-ahead of the memory watch on top (see
// memWatch), within stopShare of the limit. A run under it starts, and
// stops before its first tick.
func runNeed(c Config) uint64 {
	return uint64((float64(startNeed(c)) + deliveryCost(c)*lookAhead(c)) / stopShare)
}

// lookAhead is how many deliveries the creates of one stretch between two
// checks of the heap may send, at most: a tick in lockstep, memCheck in
// real time, where admission control also keeps what is in flight under
// the network's capacity, however short the tick.
func lookAhead(c Config) float64 {
	n := float64(c.Users)
	perTick := n * c.Chance / 3 * n
	if c.Fast {
		return perTick
	}
	return min(perTick*max(1, float64(memCheck)/float64(c.Tick)), 2*networkCapacity*n)
}

// deliveryCost is what a delivery applied may add to the heap:
// deliveryBytes, and in lockstep with a log, its record and its line, which
// wait for the end of the phase.
func deliveryCost(c Config) float64 {
	if c.Fast && !c.Quiet {
		return deliveryBytes + loggedBytes
	}
	return deliveryBytes
}

// gcPercent is the collector's GOGC for a run, if it should not be Go's
// default of 100: when one tick's deliveries could add more than bigTick
// to the heap in the views' tables and the deliveries (a log's records,
// which hold pointers, do not count). A run that
// large keeps most of its heap in the views' tables (see slotTable), which
// hold no pointers, so the collector marks little of it and can run four
// times as often for a few percent more CPU, sparing three quarters of the
// memory it would otherwise let the garbage take (docs/performance.md has
// the figures). GOGC in the environment still decides.
func gcPercent(c Config) (int, bool) {
	if os.Getenv("GOGC") != "" || deliveryBytes*lookAhead(c) < bigTick {
		return 0, false
	}
	return 25, true
}

// bigTick is how much one tick may add to the heap before gcPercent lowers
// GOGC: about 4000 users at the default chance.
const bigTick = 100 << 20

// loggedBytes is what a logged delivery holds until its phase is written
// out: a record of about 200 bytes and a line of about 150, or more in
// colour, with room for the buffers' growth.
const loggedBytes = 700

// checkMemory fills in the default limit and refuses one too small to
// start; total is the machine's memory (0 if unknown: no default limit).
// A limit that lets a run start but not act stops it before its first
// tick, with the summary and the figure that would let it act.
func checkMemory(c *Config, given bool, total uint64) error {
	if !given {
		c.MaxMem = uint64(float64(total) * defaultMemShare)
	}
	need := startNeed(*c)
	switch {
	case c.MaxMem == 0 || c.MaxMem >= need:
		return nil
	case given:
		return fmt.Errorf("-maxmem %s is less than the %s that %d users need to start: give at least -maxmem %s",
			sizeString(c.MaxMem), sizeString(need), c.Users, sizeFlag(roundUp(need)))
	default:
		return fmt.Errorf("-maxmem defaults to three quarters of this machine's %s, less than the %s that %d users need to start: give at least -maxmem %s, or fewer users",
			sizeString(total), sizeString(need), c.Users, sizeFlag(roundUp(need)))
	}
}

// sizeFlag is a size as -maxmem takes it, rounded up to a whole MiB, or
// a whole GiB from 10 GiB: 17MiB, 82GiB.
func sizeFlag(b uint64) string {
	if b >= 10<<30 {
		return fmt.Sprintf("%dGiB", (b+1<<30-1)>>30)
	}
	return fmt.Sprintf("%dMiB", (b+1<<20-1)>>20)
}

// roundUp rounds up to a whole MiB.
func roundUp(b uint64) uint64 { return (b + 1<<20 - 1) &^ (1<<20 - 1) }

// memWatch tells a run when its heap is about to pass the limit. Stopping
// is not free: the drain still applies everything in flight, and every
// create applied is a room in a view. So the run stops once the live heap
// the collector last marked, plus what the deliveries in flight and one
// more tick's creates would add, would pass stopShare of the limit. One
// tick of 30,000 users sends some 90 million deliveries: the watch must
// look a tick ahead, not at the heap alone.
type memWatch struct {
	limit   uint64
	perTick float64 // deliveries the creates of one stretch between checks send, at most
	cost    float64 // bytes a delivery may add, from its sending to its applying
	samples []metrics.Sample
}

// The heap may reach stopShare of the limit, with what is in flight and a
// stretch of creates ahead, before the run stops.
const stopShare = 0.85

// deliveryBytes is what a delivery may add to the heap from its sending
// to its applying: itself, waiting in an inbox or a lockstep bucket, and
// what applying it adds, appliedBytes: an estimate on the safe side.
const deliveryBytes = 64

// appliedBytes is what applying a delivery may add beyond the delivery
// itself, which was allocated when it was sent (a lockstep bucket's 8
// bytes, or a slot of an inbox made up front; the live heap the collector
// last marked may not count it yet, but the objects the watch also checks
// do, and deliveryBytes covers it for the tick ahead): a create is a room
// in a view, a 4-byte word in its window (see slotTable), up to twice
// that while the window grows, 8 bytes in the member list of a view that
// is in it, and 2 in a reclaim queue once it closes, with the queues'
// slack; a message applied adds nothing that lasts. It is kept on the
// safe side of that sum.
const appliedBytes = 40

// newMemWatch watches a run for its limit.
func newMemWatch(c Config) *memWatch {
	return &memWatch{limit: c.MaxMem, perTick: lookAhead(c), cost: deliveryCost(c), samples: []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
	}}
}

// over reports whether the run must stop now, with pending deliveries in
// flight.
func (m *memWatch) over(pending int64) bool {
	metrics.Read(m.samples)
	live, objects := sampleUint(m.samples[0]), sampleUint(m.samples[1])
	ahead := float64(live) + (m.cost-(deliveryBytes-appliedBytes))*float64(pending) + m.cost*m.perTick
	limit := float64(m.limit)
	return ahead >= stopShare*limit || float64(objects) >= 0.95*limit
}

func sampleUint(s metrics.Sample) uint64 {
	if s.Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s.Value.Uint64()
}

// sizeString shows a size in bytes as people write it: 2 GiB, 1.5 GiB,
// 600 MiB.
func sizeString(b uint64) string {
	for _, u := range []struct {
		name string
		size uint64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b >= u.size {
			v := float64(b) / float64(u.size)
			if v == math.Trunc(v) {
				return fmt.Sprintf("%d %s", uint64(v), u.name)
			}
			return fmt.Sprintf("%.1f %s", v, u.name)
		}
	}
	return fmt.Sprintf("%d B", b)
}

// parseSize reads a size such as 2GiB, 512MiB, 1.5G or 3000000000: K, M,
// G and T are powers of 1024 with or without "iB"; KB, MB, GB and TB are
// powers of 1000.
func parseSize(s string) (uint64, error) {
	units := []struct {
		suffix string
		size   float64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"B", 1},
	}
	num, mult := strings.TrimSpace(s), 1.0
	for _, u := range units {
		if rest, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(rest), u.size
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || !(f >= 0) || math.IsInf(f, 0) || f*mult >= 1<<62 || f > 0 && f*mult < 1 {
		return 0, errors.New("bad size")
	}
	return uint64(f * mult), nil
}

// sizeValue is the -maxmem flag: a size, and whether it was given.
type sizeValue struct {
	p     *uint64
	given *bool
}

func (v *sizeValue) String() string {
	if v.p == nil || *v.p == 0 {
		return ""
	}
	return sizeString(*v.p)
}

func (v *sizeValue) Set(s string) error {
	b, err := parseSize(s)
	if err != nil {
		return errors.New("must be a size like 2GiB, 512MiB or 1.5G, or 0 for no limit")
	}
	*v.p, *v.given = b, true
	return nil
}

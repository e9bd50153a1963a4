package main

import (
	"bufio"
	"io"
	"slices"
	"strconv"
)

// The ShiViz log (-shiviz) is the run's log with a vector clock on every
// line, in the form ShiViz reads: the first line is the regular expression
// that parses an event (ShiViz's own default: the event's text on one
// line, its host and clock as JSON on the next), the second is empty (one
// execution), then the events. Each user's own entry counts its log
// records, from 1; a record of applying an event merges the clock of the
// record of its sending, so ShiViz draws every delivery the log tells of,
// and its motifs and searches work on the run. Network lines have no user
// and are left out.

// shivizRegexp parses one event of the log.
const shivizRegexp = `(?<event>.*)\n(?<host>\S*) (?<clock>{.*})`

// maxShiVizUsers is the most users -shiviz takes: every line carries a
// clock with up to one entry per user, and ShiViz draws a column per host.
const maxShiVizUsers = 64

// writeShiViz writes the history as a ShiViz log; rend renders the lines.
func writeShiViz(w io.Writer, h *timeline, rend renderer) error {
	rend.json, rend.color = false, false
	bw := bufio.NewWriter(w)
	bw.WriteString(shivizRegexp + "\n\n")
	clocks := make([][]uint64, h.users+1)
	sent := make(map[int][]uint64) // the clock of each sending record
	var b []byte
	for i := range h.recs {
		r := &h.recs[i]
		if r.User <= 0 || int(r.User) > h.users {
			continue
		}
		vc := clocks[r.User]
		if vc == nil {
			vc = make([]uint64, h.users+1)
			clocks[r.User] = vc
		}
		if h.first[i] && h.sentAt[i] >= 0 {
			for u, c := range sent[h.sentAt[i]] {
				vc[u] = max(vc[u], c)
			}
		}
		vc[r.User]++
		if _, ok := sentKey(r); ok {
			sent[i] = slices.Clone(vc)
		}
		b = rend.append(b[:0], r)
		b = appendUID(b, r.User)
		b = append(b, " {"...)
		comma := false
		for u, c := range vc {
			if c == 0 {
				continue
			}
			if comma {
				b = append(b, ',')
			}
			comma = true
			b = append(appendUID(append(b, '"'), int32(u)), '"', ':')
			b = strconv.AppendUint(b, c, 10)
		}
		b = append(b, "}\n"...)
		bw.Write(b)
	}
	return bw.Flush()
}

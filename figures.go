package main

import (
	"fmt"
	"math"
	"math/bits"
	"strings"
	"time"
)

// The figures of a run and how they are written: sparklines over the run,
// the latency histogram, and counts, sizes and durations for people.

// fmtCount writes a rate with three significant digits and a k or M.
func fmtCount(x float64) string {
	switch {
	case x >= 1e6:
		return fmt.Sprintf("%.3gM", x/1e6)
	case x >= 1e3:
		return fmt.Sprintf("%.3gk", x/1e3)
	default:
		return fmt.Sprintf("%.3g", x)
	}
}

// addCounts adds src to dst, value by value, counts[k] being how many
// values are k, and returns dst, grown as need be.
func addCounts(dst, src []int64) []int64 {
	for len(dst) < len(src) {
		dst = append(dst, 0)
	}
	for k, n := range src {
		dst[k] += n
	}
	return dst
}

// plural writes a count and a noun, in the plural unless the count is 1.
func plural(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "y") {
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(noun, "y"))
	}
	if strings.HasSuffix(noun, "sh") {
		return fmt.Sprintf("%d %ses", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func fmtSeconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	default:
		return d.Round(time.Microsecond / 10).String()
	}
}

// sparkWidth is the most characters a sparkline takes.
const sparkWidth = 48

// series keeps a value sampled over a run in at most sparkWidth buckets:
// when they are full, neighbours are merged and each bucket covers twice as
// many samples. Memory stays fixed however long the run.
type series struct {
	sum []float64
	n   []int
	per int // samples per bucket
}

func newSeries(width int) series {
	return series{sum: make([]float64, 0, width), n: make([]int, 0, width), per: 1}
}

func (s *series) add(x float64) {
	if k := len(s.n); k > 0 && s.n[k-1] < s.per {
		s.sum[k-1] += x
		s.n[k-1]++
		return
	}
	if len(s.n) == cap(s.n) {
		h := len(s.n) / 2
		for i := range h {
			s.sum[i] = s.sum[2*i] + s.sum[2*i+1]
			s.n[i] = s.n[2*i] + s.n[2*i+1]
		}
		s.sum, s.n, s.per = s.sum[:h], s.n[:h], s.per*2
	}
	s.sum = append(s.sum, x)
	s.n = append(s.n, 1)
}

var sparks = []rune("▁▂▃▄▅▆▇█")

// averages are the buckets' means.
func (s *series) averages() []float64 {
	avg := make([]float64, len(s.n))
	for i := range avg {
		avg[i] = s.sum[i] / float64(s.n[i])
	}
	return avg
}

// spark draws the bucket averages from 0 to the largest.
func (s *series) spark() Spark {
	if len(s.n) == 0 {
		return Spark{Line: "(no samples)"}
	}
	avg := s.averages()
	top := 0.0
	for _, x := range avg {
		top = max(top, x)
	}
	var b strings.Builder
	for _, x := range avg {
		i := 0
		if top > 0 {
			i = int(math.Round(x / top * float64(len(sparks)-1)))
		}
		b.WriteRune(sparks[i])
	}
	return Spark{Line: b.String(), Max: top}
}

// hist is a log-linear histogram of durations: sixteen buckets per power of
// two, so a quantile is within 1/16 of the truth, in fixed memory. Each
// user keeps one with 32-bit counters (4 KiB); the report sums them into a
// histTotal, whose counters are 64-bit.
type hist struct {
	counts [histBuckets]uint32
	n      int64
	max    time.Duration
}

// histBuckets is one more than the largest histBucket of a time.Duration.
const histBuckets = 60 * 16

func histBucket(v uint64) int {
	if v < 16 {
		return int(v)
	}
	e := bits.Len64(v) - 5 // v>>e is in [16, 32)
	return (e+1)*16 + int(v>>e) - 16
}

// histUpper is the largest value in bucket i.
func histUpper(i int) time.Duration {
	if i < 16 {
		return time.Duration(i)
	}
	e := i/16 - 1
	return time.Duration((uint64(16+i%16+1) << e) - 1)
}

func (h *hist) add(d time.Duration) {
	d = max(d, 0)
	h.counts[histBucket(uint64(d))]++
	h.n++
	h.max = max(h.max, d)
}

// histTotal is the sum of users' histograms.
type histTotal struct {
	counts [histBuckets]int64
	n      int64
	max    time.Duration
}

func (t *histTotal) add(h *hist) {
	for i, c := range h.counts {
		t.counts[i] += int64(c)
	}
	t.n += h.n
	t.max = max(t.max, h.max)
}

// quantile returns the upper end of the bucket that holds the q-quantile.
func (t *histTotal) quantile(q float64) time.Duration {
	rank := int64(math.Ceil(q * float64(t.n)))
	var seen int64
	for i, c := range t.counts {
		seen += c
		if seen >= rank && c > 0 {
			return min(histUpper(i), t.max)
		}
	}
	return t.max
}

// clockString shows a time since the start as hours:minutes:seconds, the
// hours running past 24.
func clockString(d time.Duration) string {
	b := appendElapsed(nil, d)
	return string(b[:len(b)-7]) // without the microseconds
}

func bytesString(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	default:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
}

package main

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// The latency quantiles are within a sixteenth of the truth.
func TestHistQuantiles(t *testing.T) {
	var h hist
	for i := 1; i <= 10000; i++ {
		h.add(time.Duration(i) * time.Microsecond)
	}
	var tot histTotal
	tot.add(&h)
	tot.add(&hist{}) // an idle user changes nothing
	for _, q := range []float64{0.5, 0.95, 0.99} {
		t.Run(fmt.Sprintf("q=%v", q), func(t *testing.T) {
			want := time.Duration(q*10000) * time.Microsecond
			got := tot.quantile(q)
			if got < want || float64(got-want) > float64(want)/16 {
				t.Errorf("%v, want %v within 1/16 above", got, want)
			}
		})
	}
	if tot.max != 10*time.Millisecond || tot.quantile(1) != tot.max {
		t.Errorf("max %v, q1 %v", tot.max, tot.quantile(1))
	}
	if histBucket(uint64(1<<63-1)) >= histBuckets {
		t.Error("the largest duration falls outside the histogram")
	}
}

// Counts.add adds every field, so a count added later cannot be left out
// of the summary's sums.
func TestCountsAddsEveryField(t *testing.T) {
	var one, sum Counts
	v := reflect.ValueOf(&one).Elem()
	for i := range v.NumField() {
		switch f := v.Field(i); f.Kind() {
		case reflect.Int64:
			f.SetInt(1)
		case reflect.Uint64:
			f.SetUint(1)
		default:
			t.Fatalf("field %s is a %s", v.Type().Field(i).Name, f.Kind())
		}
	}
	sum.add(&one)
	sum.add(&one)
	s := reflect.ValueOf(sum)
	for i := range s.NumField() {
		if f := s.Field(i); f.Kind() == reflect.Int64 && f.Int() != 2 || f.Kind() == reflect.Uint64 && f.Uint() != 2 {
			t.Errorf("Counts.add leaves out %s", s.Type().Field(i).Name)
		}
	}
}

// A message delivered twice to one member and never to another passes the
// count, but not the checksum of who got what.
func TestCheckFindsMisdelivery(t *testing.T) {
	w := newWorld(t, 3)
	w.all(w.v(1).Create(w.group(1, 2, 3), 0))
	msg := w.v(1).Send(0, 0)
	w.deliver(2, msg)
	w.deliver(2, msg) // and never to user_3
	var tot Counts
	for _, v := range w.views {
		v.Finish()
		tot.add(&v.Counts)
	}
	if tot.Deliveries != tot.Expected {
		t.Fatalf("deliveries %d, owed %d: the counts should agree here", tot.Deliveries, tot.Expected)
	}
	want := []string{"as many deliveries as owed, but not to the members they were owed to"}
	if got := check(w.views, &tot, 0, false); !slices.Equal(got, want) {
		t.Errorf("problems = %q, want %q", got, want)
	}
}

// The verdict compares views: when they disagree it fails and says how.
func TestCheckFindsDisagreement(t *testing.T) {
	w := newWorld(t, 3)
	ev := w.v(1).Create(w.group(1, 2), 0)
	w.deliver(2, ev) // user_3 never hears of it
	msg := w.v(1).Send(0, 0)
	w.deliver(3, msg) // held by user_3, never delivered to user_2
	var tot Counts
	for _, v := range w.views {
		v.Finish()
		tot.add(&v.Counts)
	}
	r := &Report{Settings: Settings{Users: 3}}
	r.Messages.Held = int64(w.v(3).HeldCount())
	r.Problems = check(w.views, &tot, r.Messages.Held, false)
	want := []string{
		"user_1 and user_3 disagree: only the first has chat 1.1 live",
		"1 messages still held back",
		"0 deliveries, but messages were owed 1",
	}
	if !slices.Equal(r.Problems, want) {
		t.Errorf("problems = %q, want %q", r.Problems, want)
	}
	var out bytes.Buffer
	r.writeText(&out)
	if !strings.Contains(out.String(), "verdict     NOT CONVERGED\n              user_1 and user_3 disagree") {
		t.Errorf("summary:\n%s", out.String())
	}
	for _, tc := range []struct {
		a, b []Stamp
		want string
	}{
		{nil, []Stamp{{2, 1}}, "only the second has chat 2.1 live"},
		{[]Stamp{{2, 1}}, nil, "only the first has chat 2.1 live"},
		{[]Stamp{{1, 1}, {3, 1}}, []Stamp{{1, 1}, {2, 2}}, "only the second has chat 2.2 live"},
		{[]Stamp{{1, 1}}, []Stamp{{1, 1}}, ""},
	} {
		t.Run(fmt.Sprintf("diff %v %v", tc.a, tc.b), func(t *testing.T) {
			if d := diffRooms(tc.a, tc.b); d != tc.want {
				t.Errorf("diff = %q, want %q", d, tc.want)
			}
		})
	}
}

// The report is built from values alone: the users' figures add up, and
// skipped ticks count toward the ticks run in real time.
func TestBuildReportFromValues(t *testing.T) {
	c := Counts{Creates: 2, Created: 2, Closed: 1, OwnLive: 1, Messages: 3, MessageFailed: 1}
	h := new(hist)
	h.add(time.Millisecond)
	users := []userFigures{
		{Ticks: 10, Skipped: 2, Acted: 4, Sent: 7, Counts: c, Latency: h},
		{Ticks: 11, Skipped: 0, Acted: 3, Sent: 5, Counts: c, Latency: h},
	}
	t.Run("real time", func(t *testing.T) {
		run := runFacts{Online: 2, Stopped: "duration reached", RunTime: 12 * time.Second, Wall: 2 * time.Second}
		r := buildReport(Config{Users: 2, Seed: 1, Tick: time.Second, Chance: 0.3}, run, slices.Values(users), nil)
		if r.Served != 21 || r.Skipped != 2 || r.Ticks != 12 || r.Actions.Total != 7 || r.Traffic.Delivered != 12 || r.Traffic.PerSecond != 6 {
			t.Errorf("ticks %d/%d/%d, actions %d, traffic %+v", r.Served, r.Skipped, r.Ticks, r.Actions.Total, r.Traffic)
		}
		if r.Rooms.Created != 4 || r.Messages.Sent != 4 || r.Latency == nil || r.Latency.Max != time.Millisecond {
			t.Errorf("rooms %+v, messages %+v, latency %+v", r.Rooms, r.Messages, r.Latency)
		}
	})
	t.Run("fast", func(t *testing.T) {
		r := buildReport(Config{Users: 2, Fast: true}, runFacts{FastTicks: 9}, slices.Values(users), nil)
		if r.Ticks != 9 || r.Traffic.PerSecond != 0 || r.Latency != nil {
			t.Errorf("ticks %d, rate %v, latency %v", r.Ticks, r.Traffic.PerSecond, r.Latency)
		}
	})
}

// The summary says only what happened: the faults asked for, no lag before
// any epoch was known stable, the drain's time when there was one, and in
// real time the ticks that passed, though users missed some.
func TestSummarySaysOnlyWhatHappened(t *testing.T) {
	text := func(c Config, run runFacts, users []userFigures) string {
		t.Helper()
		var b bytes.Buffer
		if err := buildReport(c, run, slices.Values(users), nil).writeText(&b); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	c := Config{Users: 2, Seed: 1, Tick: time.Second, Chance: 0.3, Offline: 10 * time.Second}
	run := runFacts{Online: 2, Stopped: "duration reached", RunTime: 10 * time.Second, Wall: 13 * time.Second, Faults: &faultTally{Outages: 3, AwayTicks: 7}}
	s := text(c, run, []userFigures{{Ticks: 7}, {Ticks: 8}}) // each was offline a while
	for _, want := range []string{"faults      3 outages (7s)\n", "no epoch known stable yet;", "10s, 10 ticks, duration reached, then 3s to drain"} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
	for _, not := range []string{"split", "late joiner", "0 ticks after"} {
		if strings.Contains(s, not) {
			t.Errorf("summary says %q:\n%s", not, s)
		}
	}
	s = text(Config{Users: 2, Tick: time.Second, Fast: true}, runFacts{}, []userFigures{{Lags: []int64{0, 0, 3}}, {Lags: []int64{0, 1}}})
	if !strings.Contains(s, "epochs known stable 2 ticks after they ended (median), 2 ticks at most") || strings.Contains(s, "drain") {
		t.Errorf("stability or drain:\n%s", s)
	}
}

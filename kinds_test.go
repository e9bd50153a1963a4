package main

import (
	"slices"
	"testing"
)

// A record of users coming online reads as a line for each of them, the
// record's own user left out, or as one line for more than maxShown.
func TestOnlineRange(t *testing.T) {
	for _, tc := range []struct {
		user, from, to int32
		want           []int32 // the Peer of each line; a range line is its first
		ranged         bool
	}{
		{user: 3, from: 1, to: 2, want: []int32{1, 2}},
		{user: 3, from: 1, to: 5, want: []int32{1, 2, 4, 5}},
		{user: 1, from: 2, to: 9, want: []int32{2, 3, 4, 5, 6, 7, 8, 9}},
		{user: 5, from: 1, to: 9, want: []int32{1, 2, 3, 4, 6, 7, 8, 9}},
		{user: 1, from: 2, to: 10, want: []int32{2}, ranged: true},
		{user: 10, from: 1, to: 4, want: []int32{1, 2, 3, 4}},
		{user: 2, from: 7, to: 7, want: []int32{7}},
	} {
		var got []int32
		ranged := false
		onlineRange(&Record{User: tc.user, Kind: KindOnline, Peer: tc.from, PeerTo: tc.to}, func(r *Record) {
			got = append(got, r.Peer)
			ranged = r.PeerTo != 0
		})
		if !slices.Equal(got, tc.want) || ranged != tc.ranged {
			t.Errorf("user_%d learning %d..%d: lines for %v (range %v), want %v (range %v)", tc.user, tc.from, tc.to, got, ranged, tc.want, tc.ranged)
		}
	}
}

// Every kind has a row: a name, a line, and a page mark.
func TestEveryKindHasARow(t *testing.T) {
	r := renderer{elapsed: true}
	for k := KindOnline; k < numKinds; k++ {
		spec := recordKinds[k]
		if spec.name == "" || spec.text == nil {
			t.Errorf("kind %d has no name or no line", k)
			continue
		}
		rec := Record{Kind: k, User: 1, Peer: 2, By: 2, Room: Stamp{1, 2}, Group: newGroup(3, 1, 2), EventKind: CreateEvent}
		if line := string(r.append(nil, &rec)); len(line) < 20 {
			t.Errorf("kind %s renders as %q", spec.name, line)
		}
		if class, shape := markStyle(&rec); class == "" || shape == "" {
			t.Errorf("kind %s has no page mark", spec.name)
		}
	}
}

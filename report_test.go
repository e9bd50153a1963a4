package main

import (
	"reflect"
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
		want := time.Duration(q*10000) * time.Microsecond
		got := tot.quantile(q)
		if got < want || float64(got-want) > float64(want)/16 {
			t.Errorf("q%v = %v, want %v within 1/16 above", q, got, want)
		}
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

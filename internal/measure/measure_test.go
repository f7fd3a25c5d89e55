package measure

import (
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	var lat []time.Duration
	for i := 100; i >= 1; i-- {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	s := Summarize(lat)
	if s.N != 100 || s.P50 != 51*time.Millisecond || s.P99 != 100*time.Millisecond || s.Max != 100*time.Millisecond {
		t.Fatalf("Summarize = %+v", s)
	}
	if Percentile(nil, 0.5) != 0 || Millis(1500*time.Microsecond) != 1.5 {
		t.Fatal("edge cases")
	}
	if ProcessCPU() < 0 {
		t.Fatal("negative CPU time")
	}
}

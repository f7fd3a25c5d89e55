package enroll

import (
	"fmt"
	"testing"
	"time"
)

func TestRefusalsOneSummaryPerSourceAndWindow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := NewRefusals(WithRefusalWindow(time.Minute))
	for i := range 1600 {
		reason := "unknown"
		if i >= 20 {
			reason = "rate_limited"
		}
		r.Add("192.0.2.7:"+fmt.Sprint(40000+i), "apple_profile", reason, fmt.Sprintf("req-%d", i), t0.Add(time.Duration(i)*time.Millisecond))
	}
	r.Add("[2001:db8:1:2::1]:443", "agent", "invalid_request", "v6-a", t0.Add(time.Second))
	r.Add("[2001:db8:1:2::ff]:443", "agent", "unknown", "v6-b", t0.Add(2*time.Second))
	if n := r.Len(); n != 2 {
		t.Fatalf("%d open windows, want 2 (one IPv4 address, one IPv6 /64)", n)
	}
	if due := r.Due(t0.Add(59 * time.Second)); len(due) != 0 {
		t.Fatalf("due before the window closed: %+v", due)
	}
	due := r.Due(t0.Add(time.Minute))
	if len(due) != 1 {
		t.Fatalf("due at the first window's end: %d summaries", len(due))
	}
	s := due[0]
	if s.Source != "192.0.2.7" || s.Count != 1600 || s.Reasons["unknown"] != 20 || s.Reasons["rate_limited"] != 1580 ||
		s.Endpoints["apple_profile"] != 1600 || !s.Start.Equal(t0) || !s.End.Equal(t0.Add(time.Minute)) ||
		!s.Last.Equal(t0.Add(1599*time.Millisecond)) || s.FirstRequestID != "req-0" || s.LastRequestID != "req-1599" {
		t.Fatalf("summary %+v", s)
	}
	if got := FormatCounts(s.Reasons); got != "rate_limited=1580,unknown=20" {
		t.Errorf("FormatCounts = %q", got)
	}
	// The source's next refusal opens a new window.
	r.Add("192.0.2.7", "agent", "rate_limited", "req-next", t0.Add(61*time.Second))
	rest := r.Drain(t0.Add(62 * time.Second))
	// The IPv6 window had closed at 61s; the new IPv4 one is closed early, at the drain.
	if len(rest) != 2 || rest[0].Source != "2001:db8:1:2::/64" || rest[0].Count != 2 || !rest[0].End.Equal(t0.Add(61*time.Second)) ||
		rest[1].Source != "192.0.2.7" || rest[1].Count != 1 || !rest[1].End.Equal(t0.Add(62*time.Second)) {
		t.Fatalf("drained %+v", rest)
	}
	if r.Len() != 0 || len(r.Drain(t0.Add(time.Hour))) != 0 {
		t.Fatal("drained tally not empty")
	}
}

// A burst from more sources than the tally holds keeps memory bounded and loses no count: the
// sources that found it full are summed in one overflow summary.
func TestRefusalsBounded(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := NewRefusals(WithRefusalSources(100))
	for i := range 10000 {
		r.Add(fmt.Sprintf("10.%d.%d.%d:1", i>>16&255, i>>8&255, i&255), "agent", "unknown", "", t0)
	}
	if n := r.Len(); n != 100 {
		t.Fatalf("%d open windows, want the cap of 100", n)
	}
	sums := r.Drain(t0)
	total := 0
	for _, s := range sums {
		total += s.Count
	}
	if len(sums) != 101 || sums[100].Source != OverflowSource || sums[100].Count != 9900 || total != 10000 {
		t.Fatalf("%d summaries, overflow %+v, total %d", len(sums), sums[len(sums)-1], total)
	}
}

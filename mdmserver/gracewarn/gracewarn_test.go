package gracewarn_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/testclock"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/events"
	"github.com/halemdm/hale/mdmserver/gracewarn"
	"github.com/halemdm/hale/policies"
	"github.com/halemdm/hale/posture"
)

var t0 = time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)

type sink struct {
	mu  sync.Mutex
	evs []events.Event
}

func (s *sink) Emit(_ context.Context, evs ...events.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evs = append(s.evs, evs...)
	return nil
}

func (s *sink) codes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.evs {
		out = append(out, e.DeviceID+":"+e.ReasonCode)
	}
	return out
}

type decisions map[string]*access.Decision

func (d decisions) Decision(id string) *access.Decision { return d[id] }

func inGrace(id string, since time.Time) *access.Decision {
	return &access.Decision{DeviceID: id, Verdict: policies.Verdict{PolicyName: "p", Reasons: []policies.Reason{{Code: "os_too_old"}},
		NoncompliantSince: since, GraceUntil: since.Add(4 * time.Hour)}}
}

// waitCodes waits up to d for n events (timers fire in goroutines).
func waitCodes(t *testing.T, s *sink, n int, d time.Duration) []string {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if got := s.codes(); len(got) >= n {
			return got
		}
	}
	return s.codes()
}

func TestWarnings(t *testing.T) {
	clock := testclock.New(t0)
	out := &sink{}
	ds := decisions{}
	w := gracewarn.New(ds, out, func(context.Context, string) time.Duration { return time.Hour },
		gracewarn.WithClock(clock.Now), gracewarn.WithAfterFunc(clock.AfterFunc))
	defer w.Close()
	compliant := &access.Decision{DeviceID: "d1", Verdict: policies.Verdict{Compliant: true}}
	d := inGrace("d1", t0)
	ds["d1"] = d
	w.OnVerdict(compliant, d, t0)
	w.OnVerdict(d, inGrace("d1", t0), t0) // the same run again: no second notice
	if got := waitCodes(t, out, 2, 50*time.Millisecond); len(got) != 1 || got[0] != "d1:"+posture.EventReasonGraceStarted {
		t.Fatalf("start: %v", got)
	}
	if out.evs[0].PreviousStatus != "compliant" || !out.evs[0].GraceUntil.Equal(d.Verdict.GraceUntil) {
		t.Fatalf("start event %+v", out.evs[0])
	}
	clock.Advance(3*time.Hour - time.Second)
	if got := waitCodes(t, out, 2, 50*time.Millisecond); len(got) != 1 {
		t.Fatalf("warned early: %v", got)
	}
	clock.Advance(time.Second)
	if got := waitCodes(t, out, 2, 2*time.Second); len(got) != 2 || got[1] != "d1:"+posture.EventReasonGraceEnding {
		t.Fatalf("ending: %v", got)
	}

	// A device fixed before its warn time is not warned again.
	d2 := inGrace("d2", clock.Now())
	ds["d2"] = d2
	w.OnVerdict(nil, d2, clock.Now())
	fixed := &access.Decision{DeviceID: "d2", Verdict: policies.Verdict{Compliant: true}}
	ds["d2"] = fixed
	w.OnVerdict(d2, fixed, clock.Now())
	clock.Advance(4 * time.Hour)
	if got := waitCodes(t, out, 4, 50*time.Millisecond); len(got) != 3 {
		t.Fatalf("fixed device warned: %v", got)
	}

	// After a restart, Load arms the warning of a device still in grace.
	d3 := inGrace("d3", clock.Now())
	ds["d3"] = d3
	w2 := gracewarn.New(ds, out, func(context.Context, string) time.Duration { return time.Hour },
		gracewarn.WithClock(clock.Now), gracewarn.WithAfterFunc(clock.AfterFunc))
	defer w2.Close()
	w2.Load(context.Background(), []string{"d1", "d2", "d3", "gone"})
	clock.Advance(3 * time.Hour)
	if got := waitCodes(t, out, 4, 2*time.Second); len(got) != 4 || got[3] != "d3:"+posture.EventReasonGraceEnding {
		t.Fatalf("after restart: %v", got)
	}
}

// lockedDecisions is decisions that timers may read while the test changes them.
type lockedDecisions struct {
	mu sync.Mutex
	m  decisions
}

func (d *lockedDecisions) Decision(id string) *access.Decision {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.m[id]
}

func (d *lockedDecisions) put(x *access.Decision) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.m[x.DeviceID] = x
}

// Of two servers on one database, the one that puts a device into grace sends grace_started;
// only the leader (the background lease's holder) sends grace_ending, also for a device the
// other put into grace (Refreshed), and once the leader goes, the next one takes over (Lead).
func TestOneLeaderWarnsOfGraceEnding(t *testing.T) {
	clock := testclock.New(t0)
	out := &sink{}
	ds := &lockedDecisions{m: decisions{}}
	warner := func() *gracewarn.Warner {
		w := gracewarn.New(ds, out, func(context.Context, string) time.Duration { return time.Hour },
			gracewarn.WithClock(clock.Now), gracewarn.WithAfterFunc(clock.AfterFunc))
		t.Cleanup(w.Close)
		return w
	}
	leader, other := warner(), warner()
	other.Follow()
	d := inGrace("d1", t0)
	ds.put(d)
	other.OnVerdict(nil, d, t0)                   // the other server's commit
	leader.Refreshed(t.Context(), []string{"d1"}) // the leader follows it
	clock.Advance(3 * time.Hour)
	want := []string{"d1:" + posture.EventReasonGraceEnding, "d1:" + posture.EventReasonGraceStarted}
	// (Queued and timed warnings of two Warners commit in either order.)
	if got := waitCodes(t, out, 3, time.Second); !slices.Equal(slices.Sorted(slices.Values(got)), want) {
		t.Fatalf("warnings %v, want %v (once each)", got, want)
	}

	// The leader goes; the other leads from then on.
	d2 := inGrace("d2", clock.Now())
	ds.put(d2)
	leader.OnVerdict(nil, d2, clock.Now())
	leader.Follow()
	other.Lead(t.Context(), []string{"d1", "d2"})
	clock.Advance(3 * time.Hour)
	if got := waitCodes(t, out, 5, time.Second); len(got) != 4 || !slices.Contains(got[2:], "d2:"+posture.EventReasonGraceEnding) {
		t.Fatalf("after the leader went: %v", got)
	}
	// A device fixed through another server is disarmed by Refreshed.
	d3 := inGrace("d3", clock.Now())
	ds.put(d3)
	other.Refreshed(t.Context(), []string{"d3"})
	ds.put(&access.Decision{DeviceID: "d3", Verdict: policies.Verdict{Compliant: true}})
	other.Refreshed(t.Context(), []string{"d3"})
	clock.Advance(4 * time.Hour)
	if got := waitCodes(t, out, 5, 50*time.Millisecond); len(got) != 4 {
		t.Fatalf("a fixed device warned: %v", got)
	}
}

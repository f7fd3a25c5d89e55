package mdmserver_test

import (
	"testing"
	"time"

	"github.com/halemdm/hale/internal/testclock"
	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/posture"
)

// A device that falls out of compliance is warned at once, with the deadline, and again
// grace.warn_before before the deadline; the backend keeps its tokens through both notices.
func TestGraceWarnings(t *testing.T) {
	clock := testclock.New(time.Now().UTC())
	env := newTestEnvWith(t, []mdmserver.Option{mdmserver.WithClock(clock.Now), mdmserver.WithTimers(clock.AfterFunc)})
	it, accessTok := env.token("it"), env.token("access")
	if code := env.call("PUT", "/api/v1/policies/warn", it, []byte("encryption:\n  required: true\nreporting:\n  max_age: 4h\ngrace:\n  period: 2h\n  warn_before: 30m\n"), nil); code != 200 {
		t.Fatalf("policy: %d", code)
	}
	env.assignDefault(it, "warn")
	stream := env.stream(accessTok, `{"aud":"messaging"}`)
	backend := env.caepReceiver()
	id, agent := env.enrolledAgent()
	env.agentReport(agent, true)
	if a := env.access(accessTok, id.DeviceID); !a.Compliant {
		t.Fatalf("compliant first: %+v", a)
	}
	env.agentReport(agent, false)
	a := env.access(accessTok, id.DeviceID)
	if !a.Allow || !a.InGrace {
		t.Fatalf("in grace: %+v", a)
	}
	started := env.waitEvent(backend, accessTok, stream.StreamID, posture.EventReasonGraceStarted)
	if started.GraceUntil != a.GraceUntil.Unix() || started.PreviousStatus != "compliant" || started.CurrentStatus != "not-compliant" {
		t.Fatalf("grace_started %+v, grace until %s", started, a.GraceUntil)
	}
	clock.Advance(89 * time.Minute)
	time.Sleep(50 * time.Millisecond)
	backend.mu.Lock()
	for _, r := range backend.got {
		if r.ev.ReasonCode == posture.EventReasonGraceEnding {
			t.Fatal("grace_ending before warn_before")
		}
	}
	backend.mu.Unlock()
	clock.Advance(time.Minute)
	ending := env.waitEvent(backend, accessTok, stream.StreamID, posture.EventReasonGraceEnding)
	if ending.GraceUntil != a.GraceUntil.Unix() {
		t.Fatalf("grace_ending %+v", ending)
	}
}

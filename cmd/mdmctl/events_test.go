package main

import (
	"testing"
)

// A polled stream's events are verified against the server's keys and acknowledged: a lock
// shows as session-revoked for the device, and a second poll finds nothing left. The wrong
// audience does not verify, exits 6, and acknowledges nothing.
func TestEventsPoll(t *testing.T) {
	e := newEnv(t)
	admin, access, security := e.as(e.admin), e.as(e.token("access")), e.as(e.token("security"))
	var stream struct{ ID string }
	admin.okJSON(t, &stream, "events", "create", "--audience", "messaging")
	id := e.enrollAgent("nurse.joy", "ward7", &lockRunner{})
	e.waitDecided(t, id)
	security.ok(t, "lock", id, "--reason", "left in the cafeteria")

	var got []polledEvent
	waitFor(t, "the revocation event", func() bool {
		r := access.run(t, "events", "poll", stream.ID, "--audience", "someone-else")
		if r.code != 0 && r.code != exitVerify {
			t.Fatalf("poll: exit %d: %s", r.code, r.stderr)
		}
		return r.code == exitVerify
	})
	access.okJSON(t, &got, "events", "poll", stream.ID, "--audience", "messaging")
	revoked := false
	for _, ev := range got {
		if ev.Error != "" {
			t.Errorf("event %s: %s", ev.JTI, ev.Error)
		}
		revoked = revoked || (ev.Type == "session-revoked" && ev.Device == id)
	}
	if !revoked {
		t.Fatalf("no session-revoked event for %s: %+v", id, got)
	}
	var again []polledEvent
	access.okJSON(t, &again, "events", "poll", stream.ID, "--audience", "messaging")
	if len(again) != 0 {
		t.Fatalf("acknowledged events came back: %+v", again)
	}
	e.as(e.token("it")).fails(t, exitAuth, "events", "poll", stream.ID, "--audience", "messaging")
}

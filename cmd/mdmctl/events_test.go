package main

import (
	"testing"

	"github.com/halemdm/hale/api"
)

// A backend creates its stream with its access token; the stream's events are verified
// against the server's keys and acknowledged: a lock shows as session-revoked for the device,
// with the lock command as txn, and a second poll finds nothing left. The wrong audience does
// not verify, exits 6, and acknowledges nothing. Another access token's poll finds no stream.
func TestEventsPoll(t *testing.T) {
	e := newEnv(t)
	access, security := e.as(e.token("access")), e.as(e.token("security"))
	var stream struct {
		ID string `json:"stream_id"`
	}
	access.okJSON(t, &stream, "events", "create", "--audience", "messaging")
	id := e.enrollAgent("nurse.joy", "ward7", &lockRunner{})
	e.waitDecided(t, id)
	var lock struct {
		CommandID string `json:"command_id"`
	}
	security.okJSON(t, &lock, "lock", id, "--reason", "left in the cafeteria")

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
		if ev.Type == "session-revoked" && ev.Device == id {
			revoked = true
			if ev.TXN != lock.CommandID || lock.CommandID == "" {
				t.Errorf("session-revoked txn %q, want the lock command %q", ev.TXN, lock.CommandID)
			}
		}
	}
	if !revoked {
		t.Fatalf("no session-revoked event for %s: %+v", id, got)
	}
	var again []polledEvent
	access.okJSON(t, &again, "events", "poll", stream.ID)
	if len(again) != 0 {
		t.Fatalf("acknowledged events came back: %+v", again)
	}
	e.as(e.token("it")).fails(t, exitAuth, "events", "poll", stream.ID, "--audience", "messaging")
	e.as(e.token("access")).fails(t, exitNotFound, "events", "poll", stream.ID, "--audience", "messaging")

	// Verification echoes its state; delete removes the stream.
	access.ok(t, "events", "verify", stream.ID, "--state", "tour-check")
	var verified []polledEvent
	access.okJSON(t, &verified, "events", "poll", stream.ID)
	if len(verified) != 1 || verified[0].Type != "verification" || verified[0].State != "tour-check" || verified[0].Device != stream.ID {
		t.Fatalf("verification event: %+v", verified)
	}
	var list []api.EventStream
	e.as(e.admin).okJSON(t, &list, "events", "list")
	if len(list) != 1 || list[0].StreamID != stream.ID || deliveryMethod(list[0]) != "poll" {
		t.Fatalf("admin list: %+v", list)
	}
	access.ok(t, "events", "delete", stream.ID)
	access.fails(t, exitNotFound, "events", "poll", stream.ID)
}

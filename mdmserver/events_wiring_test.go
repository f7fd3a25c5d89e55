package mdmserver

import (
	"slices"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/policies"
	"github.com/halemdm/hale/posture"
)

// TestDecisionEvents checks which events each kind of decision change calls for.
func TestDecisionEvents(t *testing.T) {
	now := time.Now()
	decision := func(state string, compliant bool) access.Decision {
		d := access.Decision{DeviceID: "d1", State: state, ReportedAt: now, StaleAt: now.Add(time.Hour),
			Verdict: policies.Verdict{Compliant: compliant}}
		if !compliant {
			d.Verdict.Reasons = []policies.Reason{{Code: policies.CodeEncryptionOff}}
		}
		return d
	}
	for name, tc := range map[string]struct {
		old, new access.Decision
		want     []string // event type, initiator, reason code
	}{
		"locked by an admin": {decision("active", true), decision("locked", true),
			[]string{posture.EventSessionRevoked + " admin " + access.ReasonLocked}},
		"fell out of compliance": {decision("active", true), decision("active", false), []string{
			posture.EventComplianceChange + " policy " + policies.CodeEncryptionOff,
			posture.EventSessionRevoked + " policy " + policies.CodeEncryptionOff}},
		"back in compliance": {decision("active", false), decision("active", true),
			[]string{posture.EventComplianceChange + " policy "}},
		"unlocked": {decision("locked", true), decision("active", true), nil},
		"wiped after a pending wipe": {decision("wipe_pending", true), decision("wiped", true),
			[]string{posture.EventSessionRevoked + " admin " + access.ReasonWiped}},
	} {
		var got []string
		for _, ev := range decisionEvents(compliance.Change{DeviceID: "d1", Old: tc.old, New: tc.new}, now) {
			if ev.DeviceID != "d1" {
				t.Errorf("%s: event for %q", name, ev.DeviceID)
			}
			got = append(got, ev.Type+" "+ev.Initiator+" "+ev.ReasonCode)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: events %q, want %q", name, got, tc.want)
		}
	}
}

// Event stream changes are on the audit record with the outcome the API answered, and the
// stream they named.
func TestEventStreamsAudited(t *testing.T) {
	env := newTestEnv(t)
	receiver := env.token("access")
	var s struct {
		StreamID string `json:"stream_id"`
	}
	if code := env.call("POST", "/ssf/v1/stream", receiver, []byte(`{"aud":"messaging"}`), &s); code != 201 {
		t.Fatalf("create stream: %d", code)
	}
	if code := env.call("POST", "/ssf/v1/stream", receiver, []byte(`{"delivery":{"method":"carrier-pigeon"}}`), nil); code != 400 {
		t.Fatalf("invalid stream: %d", code)
	}
	if code := env.call("POST", "/ssf/v1/status", env.token("access"), []byte(`{"stream_id":"`+s.StreamID+`","status":"disabled"}`), nil); code != 404 {
		t.Fatalf("another receiver disables the stream: %d", code)
	}
	if code := env.call("DELETE", "/ssf/v1/stream?stream_id="+s.StreamID, receiver, nil, nil); code != 204 {
		t.Fatalf("delete stream: %d", code)
	}
	var audited struct {
		Entries []struct{ Action, Target, Outcome string }
	}
	var got []string
	for _, action := range []string{"event_stream.create", "event_stream.status", "event_stream.delete"} {
		env.call("GET", "/api/v1/audit?action="+action, env.admin, nil, &audited)
		for _, e := range audited.Entries {
			got = append(got, e.Action+" "+e.Target+" "+e.Outcome)
		}
	}
	want := []string{"event_stream.create " + s.StreamID + " ok", "event_stream.create  error",
		"event_stream.status " + s.StreamID + " error", "event_stream.delete " + s.StreamID + " ok"}
	if !slices.Equal(got, want) {
		t.Fatalf("audited %q, want %q", got, want)
	}
}

package mdmserver_test

import (
	"slices"
	"testing"
)

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
		env.call("GET", "/api/v1/audit?action="+action, env.Admin, nil, &audited)
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

package main

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/halemdm/hale/api"
)

// sameShape fails the test unless raw, the server's answer, decodes into v with no member v
// lacks and encodes back to the same JSON: the wire type mdmctl decodes with is the server's
// answer, member for member, not an approximation of it.
func sameShape(t *testing.T, what string, raw json.RawMessage, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v in %s", what, err, raw)
	}
	again, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var want, got any
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(again, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("%s: the server sent\n%s\nand %T encodes back as\n%s", what, raw, v, again)
	}
}

// The SSF wire types in package api are what the server sends: its configuration, a stream as
// created, read and listed, and a stream's status.
func TestSSFWireTypes(t *testing.T) {
	e := newEnv(t)
	access := e.token("access")

	var raw json.RawMessage
	e.call("GET", "/.well-known/ssf-configuration", "", nil, 200, &raw)
	sameShape(t, "the SSF configuration", raw, new(api.SSFConfiguration))

	req := api.EventStreamRequest{Audience: "messaging", Description: "wire test", EventsRequested: []string{"urn:example:unknown"}}
	e.call("POST", "/ssf/v1/stream", access, req, 201, &raw)
	var created api.EventStream
	sameShape(t, "a created stream", raw, &created)
	if created.Audience != "messaging" || created.Delivery.Method != api.DeliveryPoll || created.Description != "wire test" {
		t.Fatalf("created stream: %+v", created)
	}

	e.call("GET", "/ssf/v1/stream?stream_id="+created.StreamID, access, nil, 200, &raw)
	sameShape(t, "a stream", raw, new(api.EventStream))
	e.call("GET", "/ssf/v1/stream", e.admin, nil, 200, &raw)
	sameShape(t, "the stream list", raw, new([]api.EventStream))

	e.call("POST", "/ssf/v1/verify", access, api.EventVerifyRequest{StreamID: created.StreamID, State: "s"}, 204, nil)
	e.call("POST", "/ssf/v1/status", access, api.EventStreamStatus{StreamID: created.StreamID, Status: "paused", Reason: "wire test"}, 200, &raw)
	sameShape(t, "a status change", raw, new(api.EventStreamStatus))
	e.call("GET", "/ssf/v1/status?stream_id="+created.StreamID, access, nil, 200, &raw)
	var st api.EventStreamStatus
	sameShape(t, "a status", raw, &st)
	if st.Status != "paused" || st.Reason != "wire test" {
		t.Fatalf("status: %+v", st)
	}
}

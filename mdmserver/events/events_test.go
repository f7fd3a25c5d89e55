package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/halemdm/hale/mdmserver/events"
	"github.com/halemdm/hale/posture"
)

func TestEmitFansOutByRequestedEvents(t *testing.T) {
	f := newFixture(t)
	all := f.pollStream(t)
	revokedOnly, err := f.tr.CreateStream(context.Background(), rx, events.Config{
		Audience: "revocations", EventsRequested: []string{posture.EventSessionRevoked, "urn:example:not-hale"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(revokedOnly.EventsDelivered, []string{posture.EventSessionRevoked}) {
		t.Errorf("events_delivered = %v: unknown requested types are ignored", revokedOnly.EventsDelivered)
	}
	emit(t, f.tr, complianceEvent("dev-1"), revokedEvent("dev-1"), revokedEvent("dev-2"))
	if n := f.tr.Pending(all.StreamID); n != 3 {
		t.Errorf("stream with both types: pending %d, want 3", n)
	}
	if n := f.tr.Pending(revokedOnly.StreamID); n != 2 {
		t.Errorf("session-revoked stream: pending %d, want 2", n)
	}
	pr := decodePoll(t, poll(t, f.tr, revokedOnly.StreamID, `{"returnImmediately":true}`))
	for _, set := range pr.SETs {
		c := f.signer.verify(t, set)
		if _, ok := c.Events[posture.EventSessionRevoked]; !ok || len(c.Events) != 1 || c.Audience != "revocations" {
			t.Errorf("claims = %+v", c)
		}
		var ev posture.CAEPEvent
		_ = json.Unmarshal(c.Events[posture.EventSessionRevoked], &ev)
		if ev.PreviousStatus != "" || ev.EventTimestamp != testNow.Unix() || ev.ReasonCode != posture.ReasonWiped {
			t.Errorf("session-revoked body = %+v", ev)
		}
	}
}

func TestEmitValidatesAndIsAllOrNothing(t *testing.T) {
	f := newFixture(t)
	if err := f.tr.Emit(context.Background(), revokedEvent("dev-1")); err != nil {
		t.Fatalf("emit with no streams: %v", err)
	}
	s := f.pollStream(t)
	bad := []events.Event{
		{Type: "https://example.com/other", DeviceID: "d"},
		{Type: posture.EventSessionRevoked},
		{Type: posture.EventComplianceChange, DeviceID: "d"},
		{Type: posture.EventComplianceChange, DeviceID: "d", PreviousStatus: "compliant", CurrentStatus: "bad"},
		{Type: posture.EventSessionRevoked, DeviceID: "d", Initiator: "robot"},
	}
	for _, ev := range bad {
		if err := f.tr.Emit(context.Background(), revokedEvent("ok"), ev); !errors.Is(err, events.ErrInvalid) {
			t.Errorf("Emit(%+v) = %v, want ErrInvalid", ev, err)
		}
	}
	if n := f.tr.Pending(s.StreamID); n != 0 {
		t.Errorf("pending after refused emits = %d, want 0 (nothing committed)", n)
	}
	if err := f.tr.Emit(context.Background()); err != nil {
		t.Errorf("empty emit: %v", err)
	}
}

type failingSigner struct{}

func (failingSigner) Sign(string, any) (string, error) { return "", errors.New("hsm offline") }

func TestEmitSignFailureCommitsNothing(t *testing.T) {
	f := newFixture(t)
	s := f.pollStream(t)
	// A second transmitter on the same store, whose signer fails.
	tr, err := events.New(streams(f.db), failingSigner{}, testIssuer, testKey(t), defaultOpts(t)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Emit(context.Background(), revokedEvent("d")); err == nil || !strings.Contains(err.Error(), "hsm offline") {
		t.Fatalf("Emit = %v", err)
	}
	if n := f.tr.Pending(s.StreamID); n != 0 {
		t.Errorf("pending = %d", n)
	}
}

func TestNewRejectsMissingDependencies(t *testing.T) {
	f := newFixture(t)
	if _, err := events.New(streams(f.db), f.signer, "", testKey(t)); err == nil {
		t.Error("empty issuer accepted")
	}
	if _, err := events.New(streams(f.db), nil, testIssuer, testKey(t)); err == nil {
		t.Error("nil signer accepted")
	}
	if _, err := events.New(streams(f.db), f.signer, testIssuer, nil); err == nil {
		t.Error("nil seal key accepted")
	}
}

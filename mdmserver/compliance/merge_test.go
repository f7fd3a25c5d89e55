package compliance

import (
	"testing"
	"time"

	"github.com/halemdm/hale/policies"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func TestMergeAgent(t *testing.T) {
	at := t0.Add(time.Hour)
	old := &policies.Posture{
		Platform:      policies.PlatformMacOS,
		ReportedAt:    t0,
		SIPEnabled:    policies.Observe(true, policies.ProvenanceMDM, t0),
		DiskEncrypted: policies.Observe(true, policies.ProvenanceAgent, t0),
		Jailbroken:    policies.Observe(false, policies.ProvenanceAgent, t0),
	}
	report := &policies.Posture{
		SIPEnabled:    policies.Observe(false, policies.ProvenanceAgent, at),
		DiskEncrypted: policies.Observe(false, policies.ProvenanceAttested, at.Add(time.Hour)), // lies twice
	}
	got := mergeAgent(old, report, at)
	switch {
	case got.Platform != policies.PlatformMacOS || !got.ReportedAt.Equal(at):
		t.Fatalf("platform/reported_at = %s %s", got.Platform, got.ReportedAt)
	case got.SIPEnabled != old.SIPEnabled:
		t.Fatal("an MDM claim was replaced by an agent claim")
	case got.DiskEncrypted.Value || got.DiskEncrypted.Source != policies.ProvenanceAgent || !got.DiskEncrypted.ObservedAt.Equal(at):
		t.Fatalf("agent claim = %+v; want source agent, observed at the arrival", got.DiskEncrypted)
	case got.Jailbroken != nil:
		t.Fatal("an agent claim missing from the new report survived")
	case report.DiskEncrypted.Source != policies.ProvenanceAttested:
		t.Fatal("mergeAgent changed the report")
	}
	if len(claimFields) < 15 {
		t.Fatalf("found %d claim fields in Posture", len(claimFields))
	}
}

package revocation_test

import (
	"slices"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/revocation"
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
		for _, ev := range revocation.Events(compliance.Change{DeviceID: "d1", Old: tc.old, New: tc.new}, now) {
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

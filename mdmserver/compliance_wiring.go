package mdmserver

import (
	"context"

	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/policies"
)

// complianceStore narrows the server's store to what the policy store and the engine use.
func complianceStore(st storage.Store) compliance.Store {
	return storage.Scope(st, func(tx storage.Tx) compliance.Tx { return tx })
}

// managedData is what a selective wipe of d removes: its effective policy's managed_data for its
// platform. No policy means nothing is removed, and the agent reports that.
func (s *Server) managedData(ctx context.Context, d *inventory.Device) []string {
	p, err := s.policies.Effective(d)
	if err != nil || p == nil || p.Policy == nil {
		return nil
	}
	return p.Policy.ForAgent(policies.Platform(d.OS)).ManagedData
}

// deviceChanged re-derives a device's decision after its inventory state changed.
func (s *Server) deviceChanged(ctx context.Context, deviceID string) {
	d, err := s.inventory.Get(ctx, deviceID)
	if err != nil {
		s.log.ErrorContext(ctx, "device changed but cannot be read", "device_id", deviceID, "err", err)
		return
	}
	if _, err := s.compliance.DeviceChanged(ctx, d); err != nil {
		s.log.ErrorContext(ctx, "re-evaluating a changed device failed", "device_id", deviceID, "err", err)
	}
}

func auditEntry(actor, action, target string, details map[string]string) audit.Entry {
	return audit.Entry{Actor: actor, Action: action, Target: target, Outcome: audit.OutcomeOK, Details: details}
}

package mdmserver

import (
	"context"
	"log/slog"

	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/security"
)

// newSecurity builds the security operations on the server's services; the dispatcher, the CA
// and the compliance engine must exist.
func (s *Server) newSecurity() (*security.Service, error) {
	return security.New(security.Deps{
		Store: securityStore(s.store), Key: s.key, Devices: s.inventory, Approvals: s.approvals, Tokens: s.tokens,
		Apple: s.commands, Send: s.dispatch, Agent: s.agentQueue, Audit: s.audit, CA: s.ca, Policies: s.policies,
		Decisions: decisions{inventory: s.inventory, compliance: s.compliance, log: s.log, revokeApps: s.revokeAppInstances},
	}, security.WithLogger(s.log), security.WithTwoPersonRule(s.cfg.needsApproval, s.cfg.ApprovalTTL))
}

// decisions re-derives a device's access decision after a security operation changed its
// inventory state, marking the context with the command that caused it (causedBy) so that the
// revocation events carry the command as their txn.
type decisions struct {
	inventory  *inventory.Service
	compliance *compliance.Engine
	log        *slog.Logger
	// revokeApps revokes the messaging app instances of a device a wipe or unenroll ended.
	revokeApps func(context.Context, *inventory.Device)
}

func (d decisions) DeviceChanged(ctx context.Context, deviceID, commandID string) {
	ctx = causedBy(ctx, deviceID, commandID)
	dev, err := d.inventory.Get(ctx, deviceID)
	if err != nil {
		d.log.ErrorContext(ctx, "device changed but cannot be read", "device_id", deviceID, "err", err)
		return
	}
	if _, err := d.compliance.DeviceChanged(ctx, dev); err != nil {
		d.log.ErrorContext(ctx, "re-evaluating a changed device failed", "device_id", deviceID, "err", err)
	}
	// After the re-evaluation, whose revocation events name the instances still in force.
	if d.revokeApps != nil {
		d.revokeApps(ctx, dev)
	}
}

package applemdm

import (
	"context"
	"time"

	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
)

// auditResult puts a security command's result (and any error) on the audit record, inside
// the unit of work that stores the result (commands.WithResultTx).
func (s *Service) auditResult(ctx context.Context, tx commands.ResultTx, res *commands.Result) error {
	if !SecurityCommand(res.RequestType) && res.Status != "Error" {
		return nil
	}
	d, err := tx.Inventory().GetByEnrollmentID(ctx, res.EnrollmentID)
	if err != nil {
		return nil // not a Hale-enrolled device
	}
	e := audit.Entry{Actor: "device:" + d.ID, Role: "device", Action: "command.result", Target: d.ID, Outcome: audit.OutcomeOK,
		Details: map[string]string{"command_id": res.CommandUUID, "type": res.RequestType, "status": res.Status}}
	if res.Status == "Error" {
		e.Outcome = audit.OutcomeError
	}
	_, err = audit.Append(ctx, tx.Audit(), e)
	return err
}

// appleResult turns an Apple command result into posture (claims with provenance mdm), keeps the
// inventory's OS current, delivers the effective policy once the platform is known, and finishes
// an acknowledged wipe.
func (s *Service) appleResult(ctx context.Context, res *commands.Result) {
	d, err := s.d.Inventory.GetByEnrollmentID(ctx, res.EnrollmentID)
	if err != nil {
		return // not a Hale-enrolled device
	}
	userWipe := res.RequestType == "RemoveProfile" && d.UserEnrollment && d.Wipe != nil && d.Wipe.CommandID == res.CommandUUID
	if (res.RequestType == "EraseDevice" || userWipe) && res.Status == "Acknowledged" {
		if err := s.d.Wipes.FinishWipe(ctx, d, res.CommandUUID); err != nil {
			s.log.ErrorContext(ctx, "finishing wipe failed; it is finished at the next start", "device_id", d.ID, "err", err)
		}
		return
	}
	if res.Status != "Acknowledged" {
		return
	}
	at := res.ReceivedAt
	if di := res.DeviceInformation; di != nil {
		if os := appleOS(di.ProductName); os != "" && os != d.OS {
			updated, err := s.d.Inventory.Update(ctx, d.ID, func(cur *inventory.Device) error {
				cur.OS = os
				if di.SerialNumber != "" {
					cur.Serial = di.SerialNumber
				}
				return nil
			})
			if err != nil {
				// d, not updated: Update returns no device with its error.
				s.log.ErrorContext(ctx, "updating device OS", "device_id", d.ID, "err", err)
				return
			}
			d = updated
		}
	}
	if res.SecurityInfo == nil && res.DeviceInformation == nil && res.ProfileList == nil && res.Restrictions == nil {
		return
	}
	_, err = s.d.Compliance.IngestAppleResult(ctx, d.ID, func(p *policies.Posture) {
		applyAppleResult(p, d.OS, res, at)
	})
	if err != nil {
		s.log.ErrorContext(ctx, "ingesting Apple posture", "device_id", d.ID, "err", err)
	}
	if res.DeviceInformation != nil {
		s.deliverPolicy(ctx, d)
	}
}

// applyAppleResult maps one command result into p.
func applyAppleResult(p *policies.Posture, os string, res *commands.Result, at time.Time) {
	mdm := policies.ProvenanceMDM
	if os != "" {
		p.Platform = policies.Platform(os)
	}
	if si := res.SecurityInfo; si != nil {
		if si.PasscodePresent != nil {
			p.PasscodePresent = policies.Observe(*si.PasscodePresent, mdm, at)
		}
		compliant := si.PasscodeCompliantWithProfiles
		if compliant == nil {
			compliant = si.PasscodeCompliant
		}
		if compliant != nil {
			p.PasscodeCompliant = policies.Observe(*compliant, mdm, at)
		}
		switch {
		case si.FDEEnabled != nil: // macOS: FileVault
			p.DiskEncrypted = policies.Observe(*si.FDEEnabled, mdm, at)
		case si.HardwareEncryptionCaps != nil && si.PasscodePresent != nil:
			// iOS and iPadOS: data protection is on when the hardware supports it (caps 1 block,
			// 2 file level, 3 both) and a passcode protects the keys.
			on := *si.HardwareEncryptionCaps&3 != 0 && *si.PasscodePresent
			p.DiskEncrypted = policies.Observe(on, mdm, at)
		}
		if si.SystemIntegrityProtectionEnabled != nil {
			p.SIPEnabled = policies.Observe(*si.SystemIntegrityProtectionEnabled, mdm, at)
		}
		if si.FirewallSettings != nil {
			p.FirewallEnabled = policies.Observe(si.FirewallSettings.FirewallEnabled, mdm, at)
		}
	}
	if di := res.DeviceInformation; di != nil {
		if di.OSVersion != "" {
			p.OS = policies.Observe(policies.OSInfo{Version: di.OSVersion, Build: di.BuildVersion}, mdm, at)
		}
		if di.IsSupervised != nil {
			p.Supervised = policies.Observe(*di.IsSupervised, mdm, at)
		}
	}
	if res.ProfileList != nil || res.RequestType == "ProfileList" {
		list := make([]policies.InstalledProfile, 0, len(res.ProfileList))
		for _, pr := range res.ProfileList {
			list = append(list, policies.InstalledProfile{Identifier: pr.Identifier, UUID: pr.UUID})
		}
		p.InstalledProfiles = policies.Observe(list, mdm, at)
	}
	if res.Restrictions != nil && p.Platform != policies.PlatformMacOS && p.Declarations == nil {
		// macOS answers Restrictions with an empty dictionary: no evidence either way; on
		// declarative management the declarations' status is the evidence (package ddm).
		// Elsewhere, what the device says is in force is the evidence that a restriction holds,
		// beyond the profile that carries it being installed.
		p.Restrictions = policies.Observe(res.Restrictions, mdm, at)
	}
}

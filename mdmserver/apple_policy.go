package mdmserver

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"slices"
	"time"

	"github.com/halemdm/hale/enroll"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/policies"
)

// securityCommands are the MDM commands whose every result goes on the audit record (the
// routine posture queries' results do not, or they would flood it).
var securityCommands = map[string]bool{"DeviceLock": true, "EnableLostMode": true, "DisableLostMode": true, "EraseDevice": true, "ClearPasscode": true}

// auditAppleResult puts a security command's result (and any error) on the audit record, inside
// the unit of work that stores the result (commands.WithResultTx).
func (s *Server) auditAppleResult(ctx context.Context, tx commands.ResultTx, res *commands.Result) error {
	if !securityCommands[res.RequestType] && res.Status != "Error" {
		return nil
	}
	d, err := tx.Inventory().GetByEnrollmentID(ctx, res.EnrollmentID)
	if err != nil {
		return nil // not a Hale-enrolled device
	}
	e := auditEntry("device:"+d.ID, "command.result", d.ID, map[string]string{
		"command_id": res.CommandUUID, "type": res.RequestType, "status": res.Status})
	e.Role = "device"
	if res.Status == "Error" {
		e.Outcome = audit.OutcomeError
	}
	_, err = audit.Append(ctx, tx.Audit(), e)
	return err
}

// appleResult turns an Apple command result into posture (claims with provenance mdm), keeps the
// inventory's OS current, delivers the effective policy once the platform is known, and finishes
// an acknowledged wipe.
func (s *Server) appleResult(ctx context.Context, res *commands.Result) {
	d, err := s.inventory.GetByEnrollmentID(ctx, res.EnrollmentID)
	if err != nil {
		return // not a Hale-enrolled device
	}
	if res.RequestType == "EraseDevice" && res.Status == "Acknowledged" {
		if err := s.finishWipe(ctx, d, res.CommandUUID); err != nil {
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
			if d, err = s.inventory.Update(ctx, d.ID, func(cur *inventory.Device) error {
				cur.OS = os
				if di.SerialNumber != "" {
					cur.Serial = di.SerialNumber
				}
				return nil
			}); err != nil {
				s.log.ErrorContext(ctx, "updating device OS", "device_id", d.ID, "err", err)
				return
			}
		}
	}
	if res.SecurityInfo == nil && res.DeviceInformation == nil && res.ProfileList == nil {
		return
	}
	_, err = s.compliance.IngestAppleResult(ctx, d.ID, func(p *policies.Posture) {
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
}

// deliverPolicy sends an Apple device the profiles of its effective policy when they differ from
// what it was last sent: InstallProfile for each rendered profile, RemoveProfile for profiles no
// longer wanted, then ProfileList so the evaluation sees what is really installed.
func (s *Server) deliverPolicy(ctx context.Context, d *inventory.Device) {
	if d.Platform != inventory.PlatformApple || d.EnrollmentID == "" || d.OS == "" {
		return
	}
	sp, err := s.policies.Effective(d)
	if err != nil {
		s.log.ErrorContext(ctx, "effective policy", "device_id", d.ID, "err", err)
		return
	}
	// What the device was sent before; an unreadable record counts as nothing sent, so the
	// device is sent its policy again.
	var prev compliance.Delivery
	_ = s.store.View(ctx, func(tx storage.Tx) error {
		var err error
		prev, _, err = tx.Compliance().Delivery(ctx, d.ID)
		return err
	})
	next := compliance.Delivery{Platform: d.OS}
	var profiles []policies.Profile
	if sp != nil {
		next.Policy, next.Version = sp.Name, sp.Version
		opts := policies.RenderOptions{Organization: "Hale", Signer: profileSigner{s}}
		if ra, _, err := s.ca.SCEPRA(); err == nil {
			// FileVault recovery keys are escrowed encrypted to the RA certificate, whose
			// (sealed) key only the server holds.
			opts.EscrowCertificate, opts.EscrowLocation = ra.Raw, s.cfg.PublicURL
		}
		if profiles, err = policies.RenderApple(sp.Policy, policies.Platform(d.OS), opts); err != nil {
			s.log.ErrorContext(ctx, "rendering Apple profiles", "device_id", d.ID, "policy", sp.Name, "err", err)
			return
		}
		for _, p := range profiles {
			next.Identifiers = append(next.Identifiers, p.Identifier)
		}
	}
	if (prev.Policy == next.Policy && prev.Version == next.Version && prev.Platform == next.Platform) ||
		(len(profiles) == 0 && len(prev.Identifiers) == 0) {
		return
	}
	by := "system:policy"
	for _, p := range profiles {
		if _, err := s.dispatch.Send(ctx, d.EnrollmentID, commands.Command{RequestType: "InstallProfile",
			Fields: map[string]any{"Payload": p.Bytes}}, by); err != nil {
			s.log.ErrorContext(ctx, "queue InstallProfile", "device_id", d.ID, "profile", p.Identifier, "err", err)
			return
		}
	}
	for _, id := range prev.Identifiers {
		if !slices.Contains(next.Identifiers, id) {
			if _, err := s.dispatch.Send(ctx, d.EnrollmentID, commands.Command{RequestType: "RemoveProfile",
				Fields: map[string]any{"Identifier": id}}, by); err != nil {
				s.log.ErrorContext(ctx, "queue RemoveProfile", "device_id", d.ID, "profile", id, "err", err)
			}
		}
	}
	if _, err := s.dispatch.Send(ctx, d.EnrollmentID, commands.Command{RequestType: "ProfileList"}, by); err != nil {
		s.log.ErrorContext(ctx, "queue ProfileList", "device_id", d.ID, "err", err)
	}
	err = s.store.Update(ctx, func(tx storage.Tx) error {
		return tx.Compliance().PutDelivery(ctx, d.ID, next)
	})
	if err != nil {
		s.log.ErrorContext(ctx, "recording policy delivery", "device_id", d.ID, "err", err)
	}
}

// deliverPolicies delivers effective policies to every Apple device (after a policy or
// assignment change).
func (s *Server) deliverPolicies(ctx context.Context) {
	err := s.inventory.ForEach(ctx, func(d *inventory.Device) error {
		if d.Platform == inventory.PlatformApple && d.State != inventory.StateWiped && d.State != inventory.StateUnenrolled && d.State != inventory.StateRetired {
			s.deliverPolicy(ctx, d)
		}
		return nil
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		s.log.ErrorContext(ctx, "delivering policies", "err", err)
	}
}

// profileSigner signs configuration profiles with the server's certificate, chained to Hale's
// intermediate, as Apple devices expect of a managed profile.
type profileSigner struct{ s *Server }

func (ps profileSigner) Sign(profile []byte) ([]byte, error) {
	tlsCert, err := ps.s.serverCert.GetCertificate(nil)
	if err != nil {
		return nil, err
	}
	key, ok := tlsCert.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("server key cannot sign")
	}
	return enroll.SignProfile(profile, tlsCert.Leaf, key, []*x509.Certificate{ps.s.ca.Intermediate()})
}

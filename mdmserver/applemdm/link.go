package applemdm

import (
	"context"
	"strings"
	"time"

	"github.com/micromdm/nanomdm/mdm"
	"github.com/micromdm/nanomdm/service"
	"github.com/micromdm/plist"

	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
)

// inventoryLink wraps nanomdm's service so that an Apple device's check-ins keep its inventory
// record current: Authenticate links the nanomdm enrollment to the record the enrollment profile
// created (found by the identity certificate's subject, the device ID) before nanomdm records it,
// and marks the commands nanomdm then drops from the cleared queue; the first TokenUpdate queues
// DeviceInformation, SecurityInfo and ProfileList so Hale learns the device's posture at once,
// and delivers the policy when the Authenticate named the platform; every poll keeps last_seen.
type inventoryLink struct {
	service.CheckinAndCommandService
	s *Service
}

// Authenticate links the enrollment, lets nanomdm record it (which clears its queue), then
// cancels the commands that were in that queue.
func (l *inventoryLink) Authenticate(r *mdm.Request, m *mdm.Authenticate) error {
	d, err := l.s.linkAppleDevice(r.Context(), r, m)
	if err != nil {
		return err
	}
	if err := l.CheckinAndCommandService.Authenticate(r, m); err != nil {
		return err
	}
	ctx := r.Context()
	eid := commands.EnrollmentID(&m.Enrollment)
	cancelled, err := l.s.d.Commands.CancelOpen(ctx, eid, "the device enrolled again, which cleared its command queue", time.Now())
	if err != nil {
		l.s.log.ErrorContext(ctx, "marking cleared commands cancelled", "device_id", d.ID, "err", err)
	} else if len(cancelled) > 0 {
		l.s.log.InfoContext(ctx, "device enrolled again: its queued commands were dropped", "device_id", d.ID, "count", len(cancelled))
	}
	if _, err := l.s.d.Compliance.DeviceChanged(ctx, d); err != nil {
		l.s.log.ErrorContext(ctx, "re-evaluating an enrolled device failed", "device_id", d.ID, "err", err)
	}
	l.s.ingestAuthenticate(ctx, d, m)
	return nil
}

// TokenUpdate records the push token, then, on a device's first one, queues the posture queries
// and delivers the device's policy.
func (l *inventoryLink) TokenUpdate(r *mdm.Request, m *mdm.TokenUpdate) error {
	if err := l.CheckinAndCommandService.TokenUpdate(r, m); err != nil {
		return err
	}
	eid := commands.EnrollmentID(&m.Enrollment)
	if m.UserID != "" || m.EnrollmentUserID != "" {
		return nil // user channels carry no device posture
	}
	dev, err := l.s.d.Inventory.GetByEnrollmentID(r.Context(), eid)
	if err != nil {
		return nil // not Hale-enrolled (no inventory record): nothing to queue
	}
	l.s.touchApple(r.Context(), dev)
	if list, err := l.s.d.Commands.List(r.Context(), eid); err == nil && len(list) > 0 {
		return nil // not the first TokenUpdate
	}
	l.s.background.Add(1)
	go func() {
		defer l.s.background.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, c := range postureQueries(dev.UserEnrollment) {
			if _, err := l.s.d.Dispatch.Send(ctx, eid, c, "system:enrollment"); err != nil {
				l.s.log.Warn("queue posture query after enrollment", "device_id", dev.ID, "request_type", c.RequestType, "err", err)
			}
		}
		// The Authenticate named the platform: the policy need not wait for DeviceInformation.
		l.s.deliverPolicy(ctx, dev)
	}()
	return nil
}

// CommandAndReportResults keeps the device's last_seen current, then hands the poll on.
func (l *inventoryLink) CommandAndReportResults(r *mdm.Request, m *mdm.CommandResults) (*mdm.Command, error) {
	cmd, err := l.CheckinAndCommandService.CommandAndReportResults(r, m)
	if err == nil && m.UserID == "" && m.EnrollmentUserID == "" {
		if dev, lerr := l.s.d.Inventory.GetByEnrollmentID(r.Context(), commands.EnrollmentID(&m.Enrollment)); lerr == nil {
			l.s.touchApple(r.Context(), dev)
		}
	}
	return cmd, err
}

// touchApple moves an Apple device's last_seen to now, at most once per inventory.LastSeenResolution.
func (s *Service) touchApple(ctx context.Context, d *inventory.Device) {
	if now := time.Now(); now.Sub(d.LastSeen) >= inventory.LastSeenResolution {
		if err := s.d.Inventory.Touch(ctx, d.ID, now); err != nil {
			s.log.WarnContext(ctx, "recording last seen", "device_id", d.ID, "err", err)
		}
	}
}

// deviceInfoQueries is what a DeviceInformation command asks when the caller names no queries.
var deviceInfoQueries = []string{"UDID", "SerialNumber", "DeviceName", "Model", "ModelName", "ProductName",
	"OSVersion", "BuildVersion", "IsSupervised"}

// DeviceInformation is the DeviceInformation command asking queries, or, when there are none,
// what Hale uses (its OS and model, serial, supervision).
func DeviceInformation(queries []string) commands.Command {
	if len(queries) == 0 {
		queries = deviceInfoQueries
	}
	return commands.Command{RequestType: "DeviceInformation", Fields: map[string]any{"Queries": queries}}
}

// authenticateFacts are the optional keys of an Authenticate message Hale uses.
type authenticateFacts struct{ ProductName, OSVersion, BuildVersion string }

// linkAppleDevice finds or creates the inventory record of an authenticating Apple device and
// stores its nanomdm enrollment ID, UDID, serial, platform and identity certificate. The
// enrollmentGuard has already checked that the identity owns the enrollment.
func (s *Service) linkAppleDevice(ctx context.Context, r *mdm.Request, m *mdm.Authenticate) (*inventory.Device, error) {
	eid := commands.EnrollmentID(&m.Enrollment)
	var facts authenticateFacts
	_ = plist.Unmarshal(m.Raw, &facts) // optional keys; the Authenticate already parsed
	now := time.Now().UTC()
	id := ""
	if r.Certificate != nil && inventory.ValidID(r.Certificate.Subject.CommonName) {
		id = r.Certificate.Subject.CommonName
	}
	if id == "" {
		if d, err := s.d.Inventory.GetByEnrollmentID(ctx, eid); err == nil && !d.State.Ended() {
			id = d.ID
		}
	}
	if id == "" {
		id = inventory.NewID() // an identity from an extra device CA, enrolled outside Hale's profile flow
	}
	return s.d.Inventory.LinkEnrollment(ctx, id, eid, func(d *inventory.Device, isNew bool) error {
		if isNew {
			d.Platform, d.Owner, d.Group, d.EnrolledAt = inventory.PlatformApple, "unassigned", "default", now
		}
		d.UDID, d.LastSeen = m.UDID, now
		if m.SerialNumber != "" {
			d.Serial = m.SerialNumber
		}
		if os := appleOS(facts.ProductName); os != "" {
			d.OS = os
		}
		if r.Certificate != nil {
			d.RecordCert(r.Certificate)
		}
		return nil
	})
}

// ingestAuthenticate records the OS version an Authenticate reports as a posture claim of
// provenance mdm, as DeviceInformation's would be.
func (s *Service) ingestAuthenticate(ctx context.Context, d *inventory.Device, m *mdm.Authenticate) {
	var facts authenticateFacts
	if plist.Unmarshal(m.Raw, &facts) != nil || facts.OSVersion == "" || d.OS == "" {
		return
	}
	at := s.now().UTC()
	_, err := s.d.Compliance.IngestAppleResult(ctx, d.ID, func(p *policies.Posture) {
		p.Platform = policies.Platform(d.OS)
		p.OS = policies.Observe(policies.OSInfo{Version: facts.OSVersion, Build: facts.BuildVersion}, policies.ProvenanceMDM, at)
	})
	if err != nil {
		s.log.ErrorContext(ctx, "ingesting the Authenticate's OS version", "device_id", d.ID, "err", err)
	}
}

// appleOS is the OS (ios, ipados, macos) an Apple product name runs, or "" for one Hale does
// not know.
func appleOS(productName string) string {
	switch {
	case strings.HasPrefix(productName, "iPhone"), strings.HasPrefix(productName, "iPod"):
		return "ios"
	case strings.HasPrefix(productName, "iPad"):
		return "ipados"
	case strings.HasPrefix(productName, "Mac"), strings.HasPrefix(productName, "iMac"):
		return "macos"
	}
	return ""
}

package mdmserver

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/micromdm/nanomdm/mdm"
	"github.com/micromdm/nanomdm/service"
	"github.com/micromdm/plist"

	"github.com/halemdm/hale/certs"
	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/policies"
)

// inventoryStore narrows the server's store to the inventory's units of work.
func inventoryStore(st storage.Store) inventory.Store {
	return storage.Scope(st, func(tx storage.Tx) inventory.Tx { return tx })
}

// inventoryLink wraps nanomdm's service so that an Apple device's check-ins keep its inventory
// record current: Authenticate links the nanomdm enrollment to the record the enrollment profile
// created (found by the identity certificate's subject, the device ID) before nanomdm records it,
// and marks the commands nanomdm then drops from the cleared queue; the first TokenUpdate queues
// DeviceInformation, SecurityInfo and ProfileList so Hale learns the device's posture at once,
// and delivers the policy when the Authenticate named the platform; every poll keeps last_seen.
type inventoryLink struct {
	service.CheckinAndCommandService
	s *Server
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
	cancelled, err := l.s.commands.CancelOpen(ctx, eid, "the device enrolled again, which cleared its command queue", time.Now())
	if err != nil {
		l.s.log.ErrorContext(ctx, "marking cleared commands cancelled", "device_id", d.ID, "err", err)
	} else if len(cancelled) > 0 {
		l.s.log.InfoContext(ctx, "device enrolled again: its queued commands were dropped", "device_id", d.ID, "count", len(cancelled))
	}
	if _, err := l.s.compliance.DeviceChanged(ctx, d); err != nil {
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
	dev, err := l.s.inventory.GetByEnrollmentID(r.Context(), eid)
	if err != nil {
		return nil // not Hale-enrolled (no inventory record): nothing to queue
	}
	l.s.touchApple(r.Context(), dev)
	if list, err := l.s.commands.List(r.Context(), eid); err == nil && len(list) > 0 {
		return nil // not the first TokenUpdate
	}
	l.s.background.Add(1)
	go func() {
		defer l.s.background.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, c := range postureQueries() {
			if _, err := l.s.dispatch.Send(ctx, eid, c, "system:enrollment"); err != nil {
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
		if dev, lerr := l.s.inventory.GetByEnrollmentID(r.Context(), commands.EnrollmentID(&m.Enrollment)); lerr == nil {
			l.s.touchApple(r.Context(), dev)
		}
	}
	return cmd, err
}

// touchApple moves an Apple device's last_seen to now, at most once per lastSeenResolution.
func (s *Server) touchApple(ctx context.Context, d *inventory.Device) {
	if now := time.Now(); now.Sub(d.LastSeen) >= lastSeenResolution {
		if err := s.inventory.Touch(ctx, d.ID, now); err != nil {
			s.log.WarnContext(ctx, "recording last seen", "device_id", d.ID, "err", err)
		}
	}
}

// postureQueries are the commands that tell Hale an Apple device's posture.
func postureQueries() []commands.Command {
	return []commands.Command{
		{RequestType: "DeviceInformation", Fields: map[string]any{"Queries": deviceInfoQueries}},
		{RequestType: "SecurityInfo"},
		{RequestType: "ProfileList"},
	}
}

// authenticateFacts are the optional keys of an Authenticate message Hale uses.
type authenticateFacts struct{ ProductName, OSVersion, BuildVersion string }

// linkAppleDevice finds or creates the inventory record of an authenticating Apple device and
// stores its nanomdm enrollment ID, UDID, serial, platform and identity certificate. The
// enrollmentGuard has already checked that the identity owns the enrollment.
func (s *Server) linkAppleDevice(ctx context.Context, r *mdm.Request, m *mdm.Authenticate) (*inventory.Device, error) {
	eid := commands.EnrollmentID(&m.Enrollment)
	var facts authenticateFacts
	_ = plist.Unmarshal(m.Raw, &facts) // optional keys; the Authenticate already parsed
	now := time.Now().UTC()
	id := ""
	if r.Certificate != nil && inventory.ValidID(r.Certificate.Subject.CommonName) {
		id = r.Certificate.Subject.CommonName
	}
	if id == "" {
		if d, err := s.inventory.GetByEnrollmentID(ctx, eid); err == nil && !d.State.Ended() {
			id = d.ID
		}
	}
	if id == "" {
		id = inventory.NewID() // an identity from an extra device CA, enrolled outside Hale's profile flow
	}
	return s.inventory.LinkEnrollment(ctx, id, eid, func(d *inventory.Device, isNew bool) error {
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
func (s *Server) ingestAuthenticate(ctx context.Context, d *inventory.Device, m *mdm.Authenticate) {
	var facts authenticateFacts
	if plist.Unmarshal(m.Raw, &facts) != nil || facts.OSVersion == "" || d.OS == "" {
		return
	}
	at := s.now().UTC()
	_, err := s.compliance.IngestAppleResult(ctx, d.ID, func(p *policies.Posture) {
		p.Platform = policies.Platform(d.OS)
		p.OS = policies.Observe(policies.OSInfo{Version: facts.OSVersion, Build: facts.BuildVersion}, policies.ProvenanceMDM, at)
	})
	if err != nil {
		s.log.ErrorContext(ctx, "ingesting the Authenticate's OS version", "device_id", d.ID, "err", err)
	}
}

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

// GET /api/v1/devices?state=&group=&owner=&cursor=&limit=
func (s *Server) listDevices(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := inventory.Filter{State: inventory.State(q.Get("state")), Group: q.Get("group"), Owner: q.Get("owner")}
	if f.State != "" && !f.State.Valid() {
		problem.BadRequest(w, r, "state must be one of active, locked, lost, wiped, unenrolled, retired")
		return
	}
	limit, _ := strconv.Atoi(q.Get("limit"))
	devs, next, err := s.inventory.List(r.Context(), f, q.Get("cursor"), limit)
	if errors.Is(err, inventory.ErrBadCursor) {
		problem.BadRequest(w, r, "invalid cursor: pass next_cursor from the previous page unchanged")
		return
	} else if err != nil {
		s.internal(w, r, err)
		return
	}
	if devs == nil {
		devs = []inventory.Device{}
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"devices": devs, "next_cursor": next})
}

// GET /api/v1/devices/{id}
func (s *Server) getDevice(w http.ResponseWriter, r *http.Request) {
	d, ok := s.deviceFor(w, r)
	if !ok {
		return
	}
	// The verdict is null until the device was first evaluated, the posture until it reported.
	out := struct {
		*inventory.Device
		Verdict *policies.Verdict `json:"verdict"`
		Posture *policies.Posture `json:"posture"`
	}{Device: d}
	if v, p, ok := s.compliance.Verdict(d.ID); ok {
		out.Verdict, out.Posture = &v, p
	}
	httpjson.Write(w, http.StatusOK, out)
}

// GET /api/v1/devices/{id}/access: the access API's answer for a device, for IT, security and
// auditors; {id} may be an Apple UDID as on every /api/v1/devices route.
func (s *Server) deviceAccess(w http.ResponseWriter, r *http.Request) {
	d, ok := s.deviceFor(w, r)
	if !ok {
		return
	}
	s.index.WriteAnswer(w, d.ID)
}

// DELETE /api/v1/devices/{id}: unenroll. Every certificate of the device is revoked, so it can no
// longer talk to the server, and its state becomes unenrolled.
func (s *Server) unenrollDevice(w http.ResponseWriter, r *http.Request) {
	d, ok := s.deviceFor(w, r)
	if !ok {
		return
	}
	if err := s.revokeDeviceCerts(r.Context(), d, "cessationOfOperation"); err != nil {
		s.internal(w, r, err)
		return
	}
	d, err := s.inventory.SetState(r.Context(), d.ID, inventory.StateUnenrolled, time.Now().UTC())
	if errors.Is(err, inventory.ErrInvalidTransition) {
		problem.Error(w, r, http.StatusConflict, "invalid-state", "the device is "+string(d.State)+" and cannot be unenrolled")
		return
	} else if err != nil {
		s.internal(w, r, err)
		return
	}
	s.record(r, event{Action: "device.unenroll", Target: d.ID, Details: map[string]string{"revoked_certificates": strconv.Itoa(len(d.CertSerials))}})
	httpjson.Write(w, http.StatusOK, d)
}

// revokeDeviceCerts revokes every certificate Hale issued to d.
func (s *Server) revokeDeviceCerts(ctx context.Context, d *inventory.Device, reason string) error {
	for _, hex := range d.CertSerials {
		serial, ok := parseSerialHex(hex)
		if !ok {
			continue
		}
		// A device identity from an extra device CA is not Hale's to revoke; its CA's
		// operator must, and the device record's state refuses it here meanwhile.
		if err := s.ca.Revoke(ctx, serial, reason); err != nil && !errors.Is(err, certs.ErrUnknownCertificate) {
			return err
		}
	}
	return nil
}

// deviceFor resolves a route's {id} to its inventory record, answering errors itself
// (httpapi.DeviceFor).
func (s *Server) deviceFor(w http.ResponseWriter, r *http.Request) (*inventory.Device, bool) {
	return httpapi.DeviceFor(s.inventory, s.log, w, r)
}

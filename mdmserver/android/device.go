package android

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"

	"google.golang.org/api/androidmanagement/v1"

	"github.com/halemdm/hale/enroll"
	"github.com/halemdm/hale/mdmserver/agentcmd"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/inventory"
)

// deviceIDOf is the Hale device ID of an AMAPI device: derived from its name, so that a
// notification delivered again after a crash finds the record the first delivery made.
func deviceIDOf(name string) string {
	sum := sha256.Sum256([]byte("hale android device\x00" + name))
	return "d_" + hex.EncodeToString(sum[:8])
}

// ingestDevice takes a device resource from the bound enterprise b: a phone seen for the first
// time is enrolled under the Hale enrollment its token carried; a deleted one finishes its wipe
// or is unenrolled; any other has its posture ingested and its policy brought up to date.
func (s *Service) ingestDevice(ctx context.Context, b *Binding, d *androidmanagement.Device) error {
	if !inEnterprise(d.Name, b.Enterprise) {
		return refuse(403, "device %s is not in the bound enterprise %s", clip(d.Name), b.Enterprise)
	}
	gone := d.State == "DELETED" || d.AppliedState == "DELETED"
	id, err := s.lookup(ctx, d.Name)
	if errors.Is(err, ErrNotFound) {
		if gone {
			return nil // never known here, and gone: nothing to do
		}
		id, err = s.enrollDevice(ctx, d)
	}
	if err != nil {
		return err
	}
	hd, err := s.dep.Devices.Get(ctx, id)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.ownership[d.Name] = d.Ownership
	s.mu.Unlock()
	if gone {
		return s.deviceGone(ctx, hd)
	}
	if hd.State == inventory.StateWiped || hd.State == inventory.StateUnenrolled || hd.State == inventory.StateRetired {
		return nil // management ended here; a late report changes nothing
	}
	if _, err := s.dep.Posture.Ingest(ctx, id, postureUpdate(d, s.now())); err != nil {
		return err
	}
	if _, err := s.dep.Devices.Update(ctx, id, func(cur *inventory.Device) error {
		cur.LastSeen = s.now().UTC()
		return nil
	}); err != nil {
		s.log.WarnContext(ctx, "android: last seen not recorded", "device", id, "err", err)
	}
	if err := s.ensurePolicy(ctx, hd, d); err != nil {
		s.log.WarnContext(ctx, "android: device policy not brought up to date; the next report retries", "device", id, "err", err)
	}
	return nil
}

// lookup returns the Hale device ID of an AMAPI device name.
func (s *Service) lookup(ctx context.Context, name string) (string, error) {
	var id string
	err := s.dep.Store.View(ctx, func(tx Tx) error {
		var err error
		id, err = tx.Android().DeviceID(ctx, name)
		return err
	})
	return id, err
}

// enrollDevice makes the Hale record of a phone seen for the first time. The Hale enrollment
// token it enrolled with rides in its AMAPI enrollment token's additionalData and comes back
// as enrollmentTokenData; it is redeemed (one time, unexpired, unrevoked, for android) and the
// phone gets the enrollment's owner and group. A phone without one is refused: it was enrolled
// in the enterprise by something other than Hale.
func (s *Service) enrollDevice(ctx context.Context, d *androidmanagement.Device) (string, error) {
	id := deviceIDOf(d.Name)
	if _, err := s.dep.Devices.Get(ctx, id); err == nil {
		// Made by an earlier delivery that did not get to record the name.
		return id, s.putDevice(ctx, d.Name, id)
	} else if !errors.Is(err, inventory.ErrNotFound) {
		return "", err
	}
	token := strings.TrimSpace(d.EnrollmentTokenData)
	hd := inventory.Device{ID: id, Platform: inventory.PlatformAndroid, OS: "android", LastSeen: s.now().UTC()}
	if hw := d.HardwareInfo; hw != nil {
		hd.Serial = clip(hw.SerialNumber)
		hd.Hostname = clip(strings.TrimSpace(hw.Brand + " " + hw.Model))
	}
	// The redemption, the record, its name and its audit entry commit together: a crash leaves
	// either all of them or none (and the token unspent for the redelivery).
	var redeemErr error
	err := s.dep.Store.Update(ctx, func(tx Tx) error {
		now := s.now()
		e, err := enroll.Redeem(ctx, tx.Enrollments(), token, enroll.PlatformAndroid, id, now)
		if err != nil {
			redeemErr = err
			return err
		}
		hd.Owner, hd.Group, hd.Enrollment = e.Owner, e.Group, e.ID
		if _, err := inventory.Create(ctx, tx.Inventory(), hd, now); err != nil {
			return err
		}
		if err := tx.Android().PutDevice(ctx, d.Name, id); err != nil {
			return err
		}
		_, err = audit.Append(ctx, tx.Audit(), audit.Entry{Actor: "device:" + id, Role: "device", Action: "device.enroll", Target: id,
			Outcome: audit.OutcomeOK, Details: map[string]string{"platform": "android", "enrollment": e.ID, "amapi_device": d.Name, "ownership": d.Ownership}})
		return err
	})
	if redeemErr != nil {
		s.audit(ctx, audit.Entry{Actor: "device:" + id, Role: "device", Action: "device.enroll", Target: id,
			Outcome: audit.OutcomeDenied, Details: map[string]string{"platform": "android", "amapi_device": d.Name, "reason": redeemErr.Error()}})
		return "", refuse(403, "device %s carries no valid Hale enrollment: %v", clip(d.Name), redeemErr)
	}
	if err != nil {
		return "", err
	}
	s.dep.Posture.DeviceChanged(ctx, id)
	return id, nil
}

func (s *Service) putDevice(ctx context.Context, name, id string) error {
	return s.dep.Store.Update(ctx, func(tx Tx) error { return tx.Android().PutDevice(ctx, name, id) })
}

// deviceGone handles a phone AMAPI reports deleted: its pending wipe is done (Google wipes a
// deleted device, or removes a personal phone's work profile, when it next checks in), and a
// phone deleted without a Hale wipe is unenrolled.
func (s *Service) deviceGone(ctx context.Context, hd *inventory.Device) error {
	if hd.Wipe.Pending() {
		cmdID := hd.Wipe.CommandID
		if err := s.dep.Wipes.FinishWipe(ctx, hd, cmdID); err != nil {
			return err
		}
		_, _, err := s.dep.Commands.Complete(ctx, hd.ID, cmdID, agentcmd.Result{Status: agentcmd.ResultDone,
			Detail: "the Android Management API deleted the device"})
		if err != nil && !errors.Is(err, agentcmd.ErrNotFound) {
			return err
		}
		return nil
	}
	switch hd.State {
	case inventory.StateWiped, inventory.StateUnenrolled, inventory.StateRetired:
		return nil
	}
	if _, err := s.dep.Devices.SetState(ctx, hd.ID, inventory.StateUnenrolled, s.now()); err != nil {
		return err
	}
	s.audit(ctx, audit.Entry{Actor: "system", Action: "device.unenrolled", Target: hd.ID,
		Details: map[string]string{"platform": "android", "reason": "deleted from the Android enterprise"}})
	s.dep.Posture.DeviceChanged(ctx, hd.ID)
	return nil
}

// goneFromList handles the phones of the bound enterprise that Hale knows and a complete
// devices.list did not list: deleted at AMAPI.
func (s *Service) goneFromList(ctx context.Context, b *Binding, listed map[string]bool) error {
	var known map[string]string
	if err := s.dep.Store.View(ctx, func(tx Tx) error {
		var err error
		known, err = tx.Android().Devices(ctx)
		return err
	}); err != nil {
		return err
	}
	var failed error
	for name, id := range known {
		if listed[name] || !inEnterprise(name, b.Enterprise) {
			continue
		}
		hd, err := s.dep.Devices.Get(ctx, id)
		if err == nil {
			err = s.deviceGone(ctx, hd)
		}
		if err != nil && !errors.Is(err, inventory.ErrNotFound) {
			s.log.WarnContext(ctx, "android: a phone deleted from the enterprise was not unenrolled", "device", id, "err", err)
			failed = err
		}
	}
	return failed
}

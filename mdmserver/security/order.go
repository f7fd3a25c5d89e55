package security

import (
	"context"
	"errors"
	"maps"
	"regexp"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/enroll"
	"github.com/halemdm/hale/internal/randid"
	"github.com/halemdm/hale/mdmserver/agentcmd"
	"github.com/halemdm/hale/mdmserver/approvals"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/idempotency"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
)

// Action is a security operation ordered for a device.
type Action string

// The actions, named as in their routes and audit entries ("device.<action>").
const (
	Lock     Action = "lock"
	LostMode Action = "lost-mode"
	Wipe     Action = "wipe"
)

var (
	sixDigits   = regexp.MustCompile(`^[0-9]{6}$`)
	obliterates = map[string]bool{"": true, "Default": true, "DoNotObliterate": true, "ObliterateWithWarning": true, "Always": true}
)

// ValidPIN reports whether pin has the form of a lock or erase PIN: six digits.
func ValidPIN(pin string) bool { return sixDigits.MatchString(pin) }

// Validate checks req as the body of action, before any device is looked at. Its error is a
// Refusal of kind ErrInvalid.
func Validate(action Action, req *api.SecurityRequest) error {
	msg := ""
	switch {
	case req.Reason == "" || len(req.Reason) > 500:
		msg = "reason is required (at most 500 characters): it goes on the audit record"
	case len(req.Message) > 200 || len(req.PhoneNumber) > 40:
		msg = "message is at most 200 and phone_number at most 40 characters"
	case req.PIN != "" && !ValidPIN(req.PIN):
		msg = "pin must be 6 digits"
	case !obliterates[req.ObliterationBehavior]:
		msg = "obliteration_behavior must be Default, DoNotObliterate, ObliterateWithWarning or Always"
	case action == Wipe && req.Mode != "full" && req.Mode != "selective":
		msg = "mode must be full or selective"
	case action != Wipe && req.Mode != "":
		msg = "mode applies to wipe only"
	default:
		return nil
	}
	return refuse(ErrInvalid, msg)
}

// Order locks, puts in lost mode or wipes device deviceID for by, with req already checked by
// Validate. A wipe of a group under the two-person rule is held for a second person instead.
// With an Idempotency-Key (idem.Key not empty), a repeated order gets the first answer and does
// nothing more.
func (s *Service) Order(ctx context.Context, by Actor, deviceID string, action Action, req api.SecurityRequest, idem idempotency.Key) (api.SecurityAnswer, error) {
	// One action at a time per device on this server: it spares a second wipe or a repeated
	// Idempotency-Key the work below. It is not what makes them safe: with several servers on
	// one database, the unit of work that acts checks everything again (carryOut,
	// requestApproval), and another server's commit in between is seen there.
	defer s.serialize(deviceID)()
	d, err := s.dep.Devices.Get(ctx, deviceID)
	if err != nil {
		return api.SecurityAnswer{}, err
	}
	// A fast path: the answer already saved for the key. The unit of work that acts looks again.
	if idem.Key != "" {
		if prev, ok := s.idempotentAnswer(ctx, idem); ok {
			return prev, nil
		}
	}
	if err := s.allowed(ctx, by, d, action, &req); err != nil {
		return api.SecurityAnswer{}, err
	}
	// The two-person rule holds every wipe of a covered group, full and selective alike: a
	// selective wipe destroys the clinical data on the device just as surely.
	if action == Wipe && s.needsApproval(d.Group) {
		ans, err := s.requestApproval(ctx, by, d, &req, idem)
		ans.Effect = wipeEffect(d)
		return ans, err
	}
	return s.carryOut(ctx, by, d, action, &req, nil, "", idem)
}

// allowed refuses an action the device cannot take. A device whose management ended is refused
// on the record. Its state checks (ended, a wipe pending, an approval pending) read what was
// committed before the order's unit of work began, so they only spare work: that unit of work
// checks them again (recheck), since another server may commit in between.
func (s *Service) allowed(ctx context.Context, by Actor, d *inventory.Device, action Action, req *api.SecurityRequest) error {
	if ended(d) {
		_ = s.record(ctx, by.entry("device."+string(action), d.ID, audit.OutcomeDenied, map[string]string{"reason": "device is " + string(d.State)}))
		return refuse(ErrInvalidState, "device "+d.ID+" is "+string(d.State)+"; nothing to "+string(action))
	}
	if action == Wipe {
		if d.Wipe.Pending() {
			return refuse(ErrWipePending, "device "+d.ID+" already has a wipe on its way; see GET /api/v1/devices/"+d.ID+"/commands")
		}
		held, err := s.dep.Approvals.Pending(ctx, d.ID)
		if err != nil {
			return err
		}
		if held != nil {
			return refuse(ErrApprovalPending, "a wipe of device "+d.ID+" already awaits approval: "+held.ID)
		}
	}
	if d.Platform == inventory.PlatformAgent && action == Wipe && req.Mode == "full" {
		return refuse(ErrInvalid, "agents wipe selectively (the policy's managed_data); use mode selective")
	}
	// What Apple allows on a user enrollment (its schema's userenrollment modes): DeviceLock on
	// iOS and iPadOS but not macOS, never Lost Mode, never EraseDevice.
	if d.Platform == inventory.PlatformApple && d.UserEnrollment && action == LostMode {
		return refuse(ErrInvalid, "device "+d.ID+" is a personal device (User Enrollment): Apple allows no lost mode there; lock it, or wipe it (mode selective: "+wipeEffect(d)+")")
	}
	if d.Platform == inventory.PlatformApple && d.UserEnrollment && action == Lock && d.OS == "macos" {
		return refuse(ErrInvalid, "device "+d.ID+" is a personal Mac (User Enrollment): Apple allows no lock there; wipe it (mode selective: "+wipeEffect(d)+")")
	}
	if d.Platform == inventory.PlatformApple && action == Wipe && d.UserEnrollment && req.Mode == "full" {
		return refuse(ErrInvalid, "device "+d.ID+" is a personal device (User Enrollment) and is never erased; use mode selective: "+wipeEffect(d))
	}
	if d.Platform == inventory.PlatformApple && action == Wipe && !d.UserEnrollment && req.Mode == "selective" {
		return refuse(ErrInvalid, "Apple devices are wiped fully (EraseDevice); use mode full")
	}
	if d.Platform == inventory.PlatformAndroid {
		if s.android == nil {
			return refuse(ErrInvalidState, "Android management is not configured on this server")
		}
		return s.android.Allowed(ctx, d, action == Wipe, req.Mode)
	}
	return nil
}

// carryOut orders a device locked, lost or wiped. Order matters:
//
//  1. One transaction commits the device's new state, the wipe-pending mark, the sealed PIN and
//     the audit entry: the order is on the record exactly when it is in force.
//  2. The access decision is updated (and revocation events go out) before the command is
//     queued, so there is no moment where a device ordered wiped can still open a session.
//  3. The command is queued for the device (an MDM command with an APNs push, or an agent
//     command).
//
// extra goes into the audit entry's details; approvalID, when not empty, is the approved request
// the wipe is carried out under, whose command is recorded with the order.
//
// With an Idempotency-Key, the answer is saved in the same transaction as the order (and
// updated with the command's state once queued), so a retry after any failure gets it back.
func (s *Service) carryOut(ctx context.Context, by Actor, d *inventory.Device, action Action, req *api.SecurityRequest, extra map[string]string, approvalID string, idem idempotency.Key) (api.SecurityAnswer, error) {
	commandID := agentcmd.NewID()
	if d.Platform == inventory.PlatformApple {
		commandID = commands.NewUUID()
	}
	// macOS needs a PIN to lock or erase; one is made when none was given, kept sealed, and shown
	// to the security role only (PIN).
	pinGenerated := false
	if d.Platform == inventory.PlatformApple && d.OS == "macos" && action != LostMode && req.PIN == "" {
		req.PIN, pinGenerated = randid.Digits(6), true
	}
	details := map[string]string{"reason": req.Reason, "command_id": commandID, "platform": string(d.Platform)}
	maps.Copy(details, extra)
	if req.Mode != "" {
		details["mode"] = req.Mode
	}
	if action == Wipe && d.UserEnrollment {
		// A personal device's wipe ends its enrollment; the record says so.
		details["effect"] = "unenroll"
		details["enrollment_type"] = "user"
	}
	if req.PIN != "" {
		details["pin"] = "sealed" // never the PIN itself
		if pinGenerated {
			details["pin"] = "generated, sealed"
		}
	}
	newState := map[Action]inventory.State{Lock: inventory.StateLocked, LostMode: inventory.StateLost, Wipe: inventory.StateLocked}[action]
	var replay api.SecurityAnswer
	err := s.dep.Store.Update(ctx, func(tx Tx) error {
		now := time.Now()
		// Everything the order depends on is checked again here, on what is committed: another
		// server may have acted on the device since the checks before this unit of work.
		if err := s.recheck(ctx, tx, d.ID, action, idem, approvalID, &replay); err != nil {
			return err
		}
		_, err := inventory.Update(ctx, tx.Inventory(), d.ID, now, func(cur *inventory.Device) error {
			if err := recheckDevice(cur, action); err != nil {
				return err
			}
			if action == Wipe {
				cur.OrderWipe(commandID) // wipe_pending from this commit until the wipe is answered
			}
			// A lost device stays lost when locked; a state it cannot move to is kept.
			if (cur.State == inventory.StateLost && action == Lock) || !inventory.CanTransition(cur.State, newState) {
				return nil
			}
			cur.State, cur.StateChangedAt = newState, now.UTC()
			return nil
		})
		if err != nil {
			return err
		}
		if req.PIN != "" {
			if err := commands.PutPIN(ctx, tx.Commands(), s.dep.Key, commandID, req.PIN); err != nil {
				return err
			}
		}
		if approvalID != "" {
			// The approval names its command in the unit of work that orders it, so a second
			// server carrying out the same approval sees it carried out (recheck).
			if err := approvals.SetCommand(ctx, tx.Approvals(), approvalID, commandID); err != nil {
				return err
			}
		}
		if idem.Key != "" {
			ans := api.SecurityAnswer{CommandID: commandID, State: "queued", DeviceID: d.ID, DeviceState: answerState(action, newState)}
			if err := idempotency.Save(ctx, tx.Idempotency(), idem, ans); err != nil {
				return err
			}
		}
		_, err = audit.Append(ctx, tx.Audit(), by.entry("device."+string(action), d.ID, "", details))
		return err
	})
	if errors.Is(err, errReplay) {
		return replay, nil // the key's answer, saved by an order committed since the fast path
	}
	if err != nil {
		return api.SecurityAnswer{}, s.leftTx(ctx, by, d.ID, action, approvalID, err)
	}
	s.dep.Decisions.DeviceChanged(ctx, d.ID, commandID) // the events carry the command as txn

	ans := api.SecurityAnswer{CommandID: commandID, DeviceID: d.ID}
	if action == Wipe {
		ans.Effect = wipeEffect(d)
	}
	notQueued := func() {
		_ = s.record(ctx, by.entry("device."+string(action), d.ID, audit.OutcomeError,
			map[string]string{"command_id": commandID, "error": "the command could not be queued"}))
	}
	switch d.Platform {
	case inventory.PlatformApple:
		cmd := appleCommand(action, req)
		if action == Wipe && d.UserEnrollment {
			// A user enrollment cannot be erased: removing its enrollment profile removes the
			// managed volume with the managed apps and their data, and ends management.
			cmd = commands.Command{RequestType: "RemoveProfile", Fields: map[string]any{"Identifier": enroll.ProfileIdentifier}}
		}
		cmd.UUID = commandID
		rec, err := s.dep.Send.Send(ctx, d.EnrollmentID, cmd, by.Name)
		if err != nil {
			notQueued()
			return api.SecurityAnswer{}, err
		}
		ans.State = string(rec.State)
	case inventory.PlatformAndroid:
		c := agentcmd.Command{ID: commandID, DeviceID: d.ID, Type: agentcmd.TypeLock, Reason: req.Reason, IssuedBy: by.Name}
		switch action {
		case LostMode:
			c.Type = agentcmd.TypeLostMode
		case Wipe:
			c.Type, c.Mode = agentcmd.TypeWipe, req.Mode
		}
		cmd, err := s.dep.Agent.Enqueue(ctx, c)
		if err != nil {
			notQueued()
			return api.SecurityAnswer{}, err
		}
		// The order is on the record and in force (the device is denied) whatever Google says.
		if err := s.android.Issue(ctx, d, *cmd, req.Message, req.PhoneNumber); err != nil {
			_ = s.record(ctx, by.entry("device."+string(action), d.ID, audit.OutcomeError,
				map[string]string{"command_id": commandID, "error": err.Error()}))
			return api.SecurityAnswer{}, err
		}
		ans.State = cmd.State
		if cur, err := s.dep.Agent.Get(ctx, d.ID, commandID); err == nil {
			ans.State = cur.State
		}
	default:
		c := agentcmd.Command{ID: commandID, DeviceID: d.ID, Type: agentcmd.TypeLock, Reason: req.Reason, IssuedBy: by.Name}
		if action == Wipe {
			c.Type, c.Mode, c.ManagedData = agentcmd.TypeWipe, "selective", s.managedData(d)
		}
		cmd, err := s.dep.Agent.Enqueue(ctx, c)
		if err != nil {
			notQueued()
			return api.SecurityAnswer{}, err
		}
		ans.State = cmd.State
	}
	ans.DeviceState = answerState(action, newState)
	// A wipe is pending until answered, unless it already was (an Android wipe Google accepted).
	if cur, err := s.dep.Devices.Get(ctx, d.ID); err == nil && (action != Wipe || cur.State == inventory.StateWiped) {
		ans.DeviceState = string(cur.State)
	}
	if idem.Key != "" {
		err := s.dep.Store.Update(ctx, func(tx Tx) error { return idempotency.Save(ctx, tx.Idempotency(), idem, ans) })
		if err != nil {
			s.log.ErrorContext(ctx, "updating an idempotent answer failed; a retry gets the queued one", "err", err)
		}
	}
	return ans, nil
}

// idempotentAnswer returns the answer saved for idem, if there is one. One that cannot be read
// counts as none: the order is then carried out, and its answer saved, as new.
func (s *Service) idempotentAnswer(ctx context.Context, idem idempotency.Key) (api.SecurityAnswer, bool) {
	var ans api.SecurityAnswer
	found := false
	_ = s.dep.Store.View(ctx, func(tx Tx) error {
		var err error
		found, err = idempotency.Load(ctx, tx.Idempotency(), idem, &ans)
		return err
	})
	return ans, found
}

// managedData is what a selective wipe of d removes: its effective policy's managed_data for its
// platform. No policy means nothing is removed, and the agent reports that.
func (s *Service) managedData(d *inventory.Device) []string {
	p, err := s.dep.Policies.Effective(d)
	if err != nil || p == nil || p.Policy == nil {
		return nil
	}
	return p.Policy.ForAgent(policies.Platform(d.OS)).ManagedData
}

// appleCommand builds the MDM command for an action.
func appleCommand(action Action, req *api.SecurityRequest) commands.Command {
	switch action {
	case LostMode:
		msg := req.Message
		if msg == "" {
			msg = "This device was reported lost."
		}
		f := map[string]any{"Message": msg}
		if req.PhoneNumber != "" {
			f["PhoneNumber"] = req.PhoneNumber
		}
		return commands.Command{RequestType: "EnableLostMode", Fields: f}
	case Wipe:
		f := map[string]any{}
		if req.PIN != "" {
			f["PIN"] = req.PIN
		}
		if req.PreserveDataPlan {
			f["PreserveDataPlan"] = true
		}
		if req.DisallowProximitySetup {
			f["DisallowProximitySetup"] = true
		}
		if req.ObliterationBehavior != "" {
			f["ObliterationBehavior"] = req.ObliterationBehavior
		}
		return commands.Command{RequestType: "EraseDevice", Fields: f}
	default:
		f := map[string]any{}
		if req.Message != "" {
			f["Message"] = req.Message
		}
		if req.PhoneNumber != "" {
			f["PhoneNumber"] = req.PhoneNumber
		}
		if req.PIN != "" {
			f["PIN"] = req.PIN
		}
		return commands.Command{RequestType: "DeviceLock", Fields: f}
	}
}

// wipeEffect says what a wipe of d does, for its enrollment type.
func wipeEffect(d *inventory.Device) string {
	switch {
	case d.Platform == inventory.PlatformApple && d.UserEnrollment:
		return "removes the user enrollment: the managed volume with the managed apps, their data and the managed accounts, and the profiles and declarations; the person's own data stays; the device leaves management"
	case d.Platform == inventory.PlatformApple:
		return "erases the device: all data, and management ends"
	default:
		return "removes the policy's managed_data on the device and reports each path"
	}
}

package mdmserver

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/agentcmd"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/idempotency"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// securityRequest is the body of lock, lost-mode and wipe calls.
type securityRequest struct {
	Reason string `json:"reason"`
	// Mode is full or selective (wipe only). Agents wipe selectively; Apple devices fully.
	Mode string `json:"mode,omitempty"`
	// Message and PhoneNumber are shown on a locked or lost device's screen.
	Message     string `json:"message,omitempty"`
	PhoneNumber string `json:"phone_number,omitempty"`
	// PIN is the 6-digit Find My PIN macOS requires for DeviceLock and EraseDevice.
	PIN                    string `json:"pin,omitempty"`
	PreserveDataPlan       bool   `json:"preserve_data_plan,omitempty"`
	DisallowProximitySetup bool   `json:"disallow_proximity_setup,omitempty"`
	// ObliterationBehavior is Default, DoNotObliterate, ObliterateWithWarning or Always (macOS).
	ObliterationBehavior string `json:"obliteration_behavior,omitempty"`
}

// securityAnswer is the 202 answer: the command and the state the device is now treated as, or
// the approval a wipe awaits under the two-person rule.
type securityAnswer struct {
	CommandID  string `json:"command_id,omitempty"`
	ApprovalID string `json:"approval_id,omitempty"`
	// ExpiresAt is when a held wipe's approval request lapses.
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
	State       string    `json:"state"`
	DeviceID    string    `json:"device_id"`
	DeviceState string    `json:"device_state"`
}

var (
	sixDigits   = regexp.MustCompile(`^[0-9]{6}$`)
	obliterates = map[string]bool{"": true, "Default": true, "DoNotObliterate": true, "ObliterateWithWarning": true, "Always": true}
)

func (req *securityRequest) validate(action string) string {
	switch {
	case req.Reason == "" || len(req.Reason) > 500:
		return "reason is required (at most 500 characters): it goes on the audit record"
	case len(req.Message) > 200 || len(req.PhoneNumber) > 40:
		return "message is at most 200 and phone_number at most 40 characters"
	case req.PIN != "" && !sixDigits.MatchString(req.PIN):
		return "pin must be 6 digits"
	case !obliterates[req.ObliterationBehavior]:
		return "obliteration_behavior must be Default, DoNotObliterate, ObliterateWithWarning or Always"
	case action == "wipe" && req.Mode != "full" && req.Mode != "selective":
		return "mode must be full or selective"
	case action != "wipe" && req.Mode != "":
		return "mode applies to wipe only"
	}
	return ""
}

// POST /api/v1/devices/{id}/lock
func (s *Server) lockDevice(w http.ResponseWriter, r *http.Request) { s.securityAction(w, r, "lock") }

// POST /api/v1/devices/{id}/lost-mode
func (s *Server) lostMode(w http.ResponseWriter, r *http.Request) {
	s.securityAction(w, r, "lost-mode")
}

// POST /api/v1/devices/{id}/wipe
func (s *Server) wipeDevice(w http.ResponseWriter, r *http.Request) { s.securityAction(w, r, "wipe") }

// securityAction answers lock, lost mode and wipe requests: it checks them, holds a wipe (full or
// selective) for a second approver where the two-person rule applies, and otherwise carries it
// out.
func (s *Server) securityAction(w http.ResponseWriter, r *http.Request, action string) {
	var req securityRequest
	if !problem.DecodeJSON(w, r, 16<<10, &req) {
		return
	}
	if msg := req.validate(action); msg != "" {
		problem.BadRequest(w, r, msg)
		return
	}
	d, ok := s.deviceFor(w, r)
	if !ok {
		return
	}
	idemKey := r.Header.Get("Idempotency-Key")
	if len(idemKey) > idempotency.MaxKeyLen {
		problem.BadRequest(w, r, "Idempotency-Key is at most 128 characters")
		return
	}
	// One action at a time per device, so that one Idempotency-Key never acts twice and a second
	// wipe sees the first; the device is read again under the lock.
	defer s.serialize(d.ID)()
	d, err := s.inventory.Get(r.Context(), d.ID)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if idemKey != "" {
		if prev, ok := s.idempotentAnswer(r, idemKey); ok {
			httpjson.Write(w, http.StatusAccepted, prev)
			return
		}
	}
	if !s.actionAllowed(w, r, d, action, &req) {
		return
	}
	var ans securityAnswer
	// The two-person rule holds every wipe of a covered group, full and selective alike: a
	// selective wipe destroys the clinical data on the device just as surely.
	if action == "wipe" && s.cfg.needsApproval(d.Group) {
		ans, err = s.requestApproval(r, d, &req, idemKey)
	} else {
		ans, err = s.carryOut(r, d, action, &req, nil, idemKey)
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusAccepted, ans)
}

// serialize locks deviceID's security actions and returns the unlock. Locks are per device, so
// a slow APNs push for one device holds up no other.
func (s *Server) serialize(deviceID string) (unlock func()) {
	m, _ := s.deviceLocks.LoadOrStore(deviceID, new(sync.Mutex))
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// actionAllowed refuses, answering itself, an action the device cannot take.
func (s *Server) actionAllowed(w http.ResponseWriter, r *http.Request, d *inventory.Device, action string, req *securityRequest) bool {
	switch d.State {
	case inventory.StateWiped, inventory.StateUnenrolled, inventory.StateRetired:
		s.record(r, event{Action: "device." + action, Target: d.ID, Outcome: audit.OutcomeDenied, Details: map[string]string{"reason": "device is " + string(d.State)}})
		problem.Error(w, r, http.StatusConflict, "invalid-state", "device "+d.ID+" is "+string(d.State)+"; nothing to "+action)
		return false
	}
	if action == "wipe" {
		if d.Wipe.Pending() {
			problem.Error(w, r, http.StatusConflict, "wipe-pending", "device "+d.ID+" already has a wipe on its way; see GET /api/v1/devices/"+d.ID+"/commands")
			return false
		}
		held, err := s.approvals.Pending(r.Context(), d.ID)
		if err != nil {
			s.internal(w, r, err)
			return false
		}
		if held != nil {
			problem.Error(w, r, http.StatusConflict, "approval-pending", "a wipe of device "+d.ID+" already awaits approval: "+held.ID)
			return false
		}
	}
	if d.Platform == inventory.PlatformAgent && action == "wipe" && req.Mode == "full" {
		problem.BadRequest(w, r, "agents wipe selectively (the policy's managed_data); use mode selective")
		return false
	}
	if d.Platform == inventory.PlatformApple && action == "wipe" && req.Mode == "selective" {
		problem.BadRequest(w, r, "Apple devices are wiped fully (EraseDevice); use mode full")
		return false
	}
	return true
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
// extra goes into the audit entry's details (the approval a wipe was carried out under).
//
// With an Idempotency-Key, the answer is saved in the same transaction as the order (and
// updated with the command's state once queued), so a retry after any failure gets it back.
func (s *Server) carryOut(r *http.Request, d *inventory.Device, action string, req *securityRequest, extra map[string]string, idemKey string) (securityAnswer, error) {
	ctx := r.Context()
	commandID := agentcmd.NewID()
	if d.Platform == inventory.PlatformApple {
		commandID = commands.NewUUID()
	}
	// macOS needs a PIN to lock or erase; one is made when none was given, kept sealed, and shown
	// to the security role only (GET .../commands/{uuid}/pin).
	pinGenerated := false
	if d.Platform == inventory.PlatformApple && d.OS == "macos" && action != "lost-mode" && req.PIN == "" {
		req.PIN, pinGenerated = newPIN(), true
	}
	details := map[string]string{"reason": req.Reason, "command_id": commandID, "platform": string(d.Platform)}
	maps.Copy(details, extra)
	if req.Mode != "" {
		details["mode"] = req.Mode
	}
	if req.PIN != "" {
		details["pin"] = "sealed" // never the PIN itself
		if pinGenerated {
			details["pin"] = "generated, sealed"
		}
	}
	newState := map[string]inventory.State{"lock": inventory.StateLocked, "lost-mode": inventory.StateLost, "wipe": inventory.StateLocked}[action]
	err := s.store.Update(ctx, func(tx storage.Tx) error {
		now := time.Now()
		_, err := inventory.Update(ctx, tx.Inventory(), d.ID, now, func(cur *inventory.Device) error {
			if action == "wipe" {
				cur.OrderWipe(commandID) // wipe_pending from this commit until the wipe is answered
			}
			// A lost device stays lost when locked; a state it cannot move to is kept.
			if (cur.State == inventory.StateLost && action == "lock") || !inventory.CanTransition(cur.State, newState) {
				return nil
			}
			cur.State, cur.StateChangedAt = newState, now.UTC()
			return nil
		})
		if err != nil {
			return err
		}
		if req.PIN != "" {
			if err := commands.PutPIN(ctx, tx.Commands(), s.key, commandID, req.PIN); err != nil {
				return err
			}
		}
		if idemKey != "" {
			ans := securityAnswer{CommandID: commandID, State: "queued", DeviceID: d.ID, DeviceState: deviceStateAfter(action, newState)}
			if err := putIdempotentAnswer(tx, r, idemKey, ans); err != nil {
				return err
			}
		}
		_, err = audit.Append(ctx, tx.Audit(), s.entry(r, event{Action: "device." + action, Target: d.ID, Details: details}))
		return err
	})
	if err != nil {
		return securityAnswer{}, err
	}
	s.deviceChanged(causedBy(ctx, d.ID, commandID), d.ID) // the events carry the command as txn

	by := actor(r)
	ans := securityAnswer{CommandID: commandID, DeviceID: d.ID}
	switch d.Platform {
	case inventory.PlatformApple:
		cmd := appleCommand(action, req)
		cmd.UUID = commandID
		rec, err := s.dispatch.Send(ctx, d.EnrollmentID, cmd, by)
		if err != nil {
			s.record(r, event{Action: "device." + action, Target: d.ID, Outcome: audit.OutcomeError, Details: map[string]string{"command_id": commandID, "error": "the command could not be queued"}})
			return securityAnswer{}, err
		}
		ans.State = string(rec.State)
	default:
		c := agentcmd.Command{ID: commandID, DeviceID: d.ID, Type: agentcmd.TypeLock, Reason: req.Reason, IssuedBy: by}
		if action == "wipe" {
			c.Type, c.Mode, c.ManagedData = agentcmd.TypeWipe, "selective", s.managedData(ctx, d)
		}
		cmd, err := s.agentQueue.Enqueue(ctx, c)
		if err != nil {
			s.record(r, event{Action: "device." + action, Target: d.ID, Outcome: audit.OutcomeError, Details: map[string]string{"command_id": commandID, "error": "the command could not be queued"}})
			return securityAnswer{}, err
		}
		ans.State = cmd.State
	}
	ans.DeviceState = deviceStateAfter(action, newState)
	if cur, err := s.inventory.Get(ctx, d.ID); err == nil && action != "wipe" {
		ans.DeviceState = string(cur.State)
	}
	if idemKey != "" {
		err := s.store.Update(ctx, func(tx storage.Tx) error { return putIdempotentAnswer(tx, r, idemKey, ans) })
		if err != nil {
			s.log.ErrorContext(ctx, "updating an idempotent answer failed; a retry gets the queued one", "err", err)
		}
	}
	return ans, nil
}

// deviceStateAfter is the state an action leaves a device in, as the API answers it.
func deviceStateAfter(action string, state inventory.State) string {
	if action == "wipe" {
		return "wipe_pending"
	}
	return string(state)
}

// appleCommand builds the MDM command for an action.
func appleCommand(action string, req *securityRequest) commands.Command {
	switch action {
	case "lost-mode":
		f := map[string]any{"Message": firstNonEmpty(req.Message, "This device was reported lost.")}
		if req.PhoneNumber != "" {
			f["PhoneNumber"] = req.PhoneNumber
		}
		return commands.Command{RequestType: "EnableLostMode", Fields: f}
	case "wipe":
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

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

// idempotencyKey is the key of the caller's Idempotency-Key on this request's route.
func idempotencyKey(r *http.Request, key string) idempotency.Key {
	owner := ""
	if t := tokens.FromContext(r.Context()); t != nil {
		owner = t.ID
	}
	return idempotency.NewKey(owner, r.URL.Path, key)
}

// idempotentAnswer returns the answer saved for the caller's Idempotency-Key, if there is one.
func (s *Server) idempotentAnswer(r *http.Request, key string) (securityAnswer, bool) {
	var ans securityAnswer
	found := false
	_ = s.store.View(r.Context(), func(tx storage.Tx) error {
		var err error
		found, err = idempotency.Load(r.Context(), tx.Idempotency(), idempotencyKey(r, key), &ans)
		return err
	})
	return ans, found
}

// putIdempotentAnswer saves ans for the caller's Idempotency-Key in the unit of work of tx.
func putIdempotentAnswer(tx storage.Tx, r *http.Request, key string, ans securityAnswer) error {
	return idempotency.Save(r.Context(), tx.Idempotency(), idempotencyKey(r, key), ans)
}

// markWipeIncomplete records in the unit of work of tx that the agent's wipe cmd finished
// without removing all managed data (partial) or failed: the device is no longer wipe_pending
// but wipe_incomplete, denied all the same, keeps its identity so a new wipe can reach it, and
// is never called wiped. It reports false, changing nothing, when cmd is not the device's
// pending wipe.
func (s *Server) markWipeIncomplete(ctx context.Context, tx storage.Tx, deviceID string, cmd *agentcmd.Command) (bool, error) {
	marked, err := inventory.MarkWipeIncomplete(ctx, tx.Inventory(), deviceID, cmd.ID, time.Now())
	if err != nil || !marked {
		return false, err
	}
	n := cmd.Result.Count()
	e := auditEntry("device:"+deviceID, "device.wipe_incomplete", deviceID, map[string]string{
		"command_id": cmd.ID, "state": cmd.State,
		"refused": strconv.Itoa(n[agentcmd.OutcomeRefused]), "failed": strconv.Itoa(n[agentcmd.OutcomeFailed])})
	e.Role, e.Outcome = "device", audit.OutcomeError
	_, err = audit.Append(ctx, tx.Audit(), e)
	return err == nil, err
}

// finishAcknowledgedWipes finishes, at start, the wipes whose device acknowledged them while a
// previous run stopped before it could finish them: an erased Mac never resends its answer, and
// an agent whose certificate was already revoked cannot. Only reading the pending wipes fails
// the start; a wipe that cannot be finished is logged and finished at the next start.
func (s *Server) finishAcknowledgedWipes(ctx context.Context) error {
	var pending []inventory.Device
	for cursor := ""; ; {
		page, next, err := s.inventory.List(ctx, inventory.Filter{Wipe: inventory.WipePending}, cursor, inventory.MaxLimit)
		if err != nil {
			return fmt.Errorf("pending wipes: %w", err)
		}
		pending = append(pending, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	for i := range pending {
		d := &pending[i]
		commandID := d.Wipe.CommandID
		acked := false
		switch d.Platform {
		case inventory.PlatformAgent:
			cmd, err := s.agentQueue.Get(ctx, d.ID, commandID)
			acked = err == nil && cmd.State == agentcmd.StateAcknowledged
		case inventory.PlatformApple:
			rec, err := s.commands.Get(ctx, d.EnrollmentID, commandID)
			acked = err == nil && rec.State == commands.StateAcknowledged
		}
		if !acked {
			continue
		}
		if err := s.finishWipe(ctx, d, commandID); err != nil {
			s.log.ErrorContext(ctx, "finishing an acknowledged wipe at start failed", "device_id", d.ID, "err", err)
		}
	}
	return nil
}

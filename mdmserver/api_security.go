package mdmserver

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"time"

	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/agentcmd"
	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/inventory"
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

// securityAnswer is the 202 answer: the command and the state the device is now treated as.
type securityAnswer struct {
	CommandID   string `json:"command_id"`
	State       string `json:"state"`
	DeviceID    string `json:"device_id"`
	DeviceState string `json:"device_state"`
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

// securityAction carries out lock, lost mode and wipe. Order matters: the device is denied by
// the access API (its state committed and the decision updated) before the command is queued,
// so there is no moment where a device ordered wiped can still open a session.
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
	if idemKey != "" {
		if len(idemKey) > 128 {
			problem.BadRequest(w, r, "Idempotency-Key is at most 128 characters")
			return
		}
		if prev, ok := s.idempotentAnswer(r, idemKey); ok {
			httpjson.Write(w, http.StatusAccepted, prev)
			return
		}
	}
	switch d.State {
	case inventory.StateWiped, inventory.StateUnenrolled, inventory.StateRetired:
		s.record(r, event{Action: "device." + action, Target: d.ID, Outcome: "denied", Details: map[string]string{"reason": "device is " + string(d.State)}})
		problem.Error(w, r, http.StatusConflict, "invalid-state", "device "+d.ID+" is "+string(d.State)+"; nothing to "+action)
		return
	}
	if d.Platform == inventory.PlatformAgent && (action == "wipe" && req.Mode == "full") {
		problem.BadRequest(w, r, "agents wipe selectively (the policy's managed_data); use mode selective")
		return
	}
	if d.Platform == inventory.PlatformApple && action == "wipe" && req.Mode == "selective" {
		problem.BadRequest(w, r, "Apple devices are wiped fully (EraseDevice); use mode full")
		return
	}

	// 1. Deny first.
	newState := map[string]inventory.State{"lock": inventory.StateLocked, "lost-mode": inventory.StateLost, "wipe": inventory.StateLocked}[action]
	if action == "wipe" {
		if err := s.markWipePending(r.Context(), d.ID); err != nil {
			s.internal(w, r, err)
			return
		}
	}
	if d.State != inventory.StateLost || action != "lock" { // a lost device stays lost when locked
		if _, err := s.inventory.SetState(r.Context(), d.ID, newState, time.Now().UTC()); err != nil && !errors.Is(err, inventory.ErrInvalidTransition) {
			s.internal(w, r, err)
			return
		}
	}
	s.deviceChanged(r.Context(), d.ID)

	// 2. Order the device.
	by := actor(r)
	var ans securityAnswer
	switch d.Platform {
	case inventory.PlatformApple:
		rec, err := s.dispatch.Send(r.Context(), d.EnrollmentID, appleCommand(action, &req, d), by)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		ans = securityAnswer{CommandID: rec.UUID, State: string(rec.State)}
	default:
		c := agentcmd.Command{DeviceID: d.ID, Type: agentcmd.TypeLock, Reason: req.Reason, IssuedBy: by}
		if action == "wipe" {
			c.Type, c.Mode, c.ManagedData = agentcmd.TypeWipe, "selective", s.managedData(r.Context(), d)
		}
		cmd, err := s.agentQueue.Enqueue(r.Context(), c)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		ans = securityAnswer{CommandID: cmd.ID, State: cmd.State}
	}
	cur, _ := s.inventory.Get(r.Context(), d.ID)
	ans.DeviceID, ans.DeviceState = d.ID, string(cur.State)
	if action == "wipe" {
		ans.DeviceState = "wipe_pending"
	}
	details := map[string]string{"reason": req.Reason, "command_id": ans.CommandID, "platform": string(d.Platform)}
	if req.Mode != "" {
		details["mode"] = req.Mode
	}
	if req.PIN != "" {
		details["pin_set"] = "true" // never the PIN itself
	}
	s.record(r, event{Action: "device." + action, Target: d.ID, Details: details})
	if idemKey != "" {
		s.saveIdempotentAnswer(r, idemKey, ans)
	}
	httpjson.Write(w, http.StatusAccepted, ans)
}

// appleCommand builds the MDM command for an action.
func appleCommand(action string, req *securityRequest, d *inventory.Device) commands.Command {
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

var (
	bucketIdempotency = []byte("idempotency_keys") // "<token id>\x00<key>" → answer
	bucketPendingWipe = []byte("pending_wipes")    // device id → RFC 3339 time ordered
)

func (s *Server) idempotencyKey(r *http.Request, key string) []byte {
	owner := "anonymous"
	if t := tokens.FromContext(r.Context()); t != nil {
		owner = t.ID
	}
	return []byte(owner + "\x00" + r.URL.Path + "\x00" + key)
}

func (s *Server) idempotentAnswer(r *http.Request, key string) (securityAnswer, bool) {
	var ans securityAnswer
	found := false
	_ = s.store.DB().View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketIdempotency); b != nil {
			if v := b.Get(s.idempotencyKey(r, key)); v != nil {
				found = json.Unmarshal(v, &ans) == nil
			}
		}
		return nil
	})
	return ans, found
}

func (s *Server) saveIdempotentAnswer(r *http.Request, key string, ans securityAnswer) {
	v, _ := json.Marshal(ans)
	err := s.store.DB().Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketIdempotency)
		if err != nil {
			return err
		}
		return b.Put(s.idempotencyKey(r, key), v)
	})
	if err != nil {
		s.log.ErrorContext(r.Context(), "saving idempotency key failed", "err", err)
	}
}

// markWipePending records that a wipe was ordered, so the device is denied as wipe_pending until
// the wipe is acknowledged, across restarts. It is committed before it takes effect in memory.
func (s *Server) markWipePending(ctx context.Context, deviceID string) error {
	err := s.store.DB().Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketPendingWipe)
		if err != nil {
			return err
		}
		return b.Put([]byte(deviceID), []byte(time.Now().UTC().Format(time.RFC3339Nano)))
	})
	if err == nil {
		s.pendingWipes.Store(deviceID, true)
	}
	return err
}

// loadPendingWipes fills the in-memory set from the store at start.
func (s *Server) loadPendingWipes() error {
	return s.store.DB().Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketPendingWipe)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, _ []byte) error {
			s.pendingWipes.Store(string(k), true)
			return nil
		})
	})
}

// clearWipePending removes the mark inside tx; the caller forgets it in memory after commit.
func clearWipePending(tx *bbolt.Tx, deviceID string) error {
	if b := tx.Bucket(bucketPendingWipe); b != nil {
		return b.Delete([]byte(deviceID))
	}
	return nil
}

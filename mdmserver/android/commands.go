package android

import (
	"context"
	"errors"
	"net/http"

	"google.golang.org/api/androidmanagement/v1"
	"google.golang.org/api/googleapi"

	"github.com/halemdm/hale/mdmserver/agentcmd"
	"github.com/halemdm/hale/mdmserver/inventory"
)

// Wipe modes.
const (
	ModeFull      = "full"      // factory reset of a company phone
	ModeSelective = "selective" // removal of a personal phone's work profile
)

// maxWipeReason is AMAPI's limit on wipeReasonMessage.
const maxWipeReason = 200

// ownershipOf returns a phone's ownership: from its last report, or asked of AMAPI.
func (s *Service) ownershipOf(ctx context.Context, c *androidmanagement.Service, name string) (string, error) {
	s.mu.Lock()
	o := s.ownership[name]
	s.mu.Unlock()
	if o != "" {
		return o, nil
	}
	d, err := c.Enterprises.Devices.Get(name).Context(ctx).Do()
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	s.ownership[name] = d.Ownership
	s.mu.Unlock()
	return d.Ownership, nil
}

// Allowed refuses a wipe mode a phone cannot take, before anything is ordered: a personally
// owned phone is never factory reset (its work profile is removed: mode selective), and a
// company phone, fully managed, has no work profile to remove (mode full).
func (s *Service) Allowed(ctx context.Context, d *inventory.Device, wipe bool, mode string) error {
	name, err := s.nameOf(ctx, d.ID)
	if err != nil {
		return err
	}
	if !wipe {
		return nil
	}
	c, _, err := s.amapi(ctx)
	if err != nil {
		return err
	}
	o, err := s.ownershipOf(ctx, c, name)
	if err != nil {
		return refuse(http.StatusBadGateway, "reading device %s from the Android Management API failed: %v", d.ID, err)
	}
	switch {
	case o == "PERSONALLY_OWNED" && mode != ModeSelective:
		return refuse(http.StatusBadRequest, "device %s is a personal phone: a wipe removes its work profile; use mode selective", d.ID)
	case o != "PERSONALLY_OWNED" && mode != ModeFull:
		return refuse(http.StatusBadRequest, "device %s is a company phone without a work profile: use mode full", d.ID)
	}
	return nil
}

func (s *Service) nameOf(ctx context.Context, id string) (string, error) {
	var name string
	err := s.dep.Store.View(ctx, func(tx Tx) error {
		var err error
		name, err = tx.Android().DeviceName(ctx, id)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return "", refuse(http.StatusConflict, "device %s has no Android Management API device", id)
	}
	return name, err
}

// Issue carries out a lock, lost mode or wipe the security service recorded as cmd (its
// audit entry and the device's new state already committed): LOCK, START_LOST_MODE with
// message and phone, WIPE for a company phone (falling back to devices.delete with
// wipeDataFlags when the phone's API level lacks the command), and devices.delete for a
// personal phone, which removes its work profile. A wipe Google accepted is finished at once:
// the device resource is gone and Google wipes the phone when it next checks in. A command
// Google answers done is acknowledged; one still running is acknowledged by its COMMAND
// notification.
func (s *Service) Issue(ctx context.Context, d *inventory.Device, cmd agentcmd.Command, message, phone string) error {
	name, err := s.nameOf(ctx, d.ID)
	if err != nil {
		return err
	}
	c, _, err := s.amapi(ctx)
	if err != nil {
		return err
	}
	var op *androidmanagement.Operation
	switch cmd.Type {
	case agentcmd.TypeLock:
		op, err = c.Enterprises.Devices.IssueCommand(name, &androidmanagement.Command{Type: "LOCK"}).Context(ctx).Do()
	case agentcmd.TypeLostMode:
		if message == "" {
			message = "This phone was reported lost."
		}
		p := &androidmanagement.StartLostModeParams{LostMessage: &androidmanagement.UserFacingMessage{DefaultMessage: message}}
		if phone != "" {
			p.LostPhoneNumber = &androidmanagement.UserFacingMessage{DefaultMessage: phone}
		}
		op, err = c.Enterprises.Devices.IssueCommand(name, &androidmanagement.Command{Type: "START_LOST_MODE", StartLostModeParams: p}).Context(ctx).Do()
	case agentcmd.TypeWipe:
		return s.wipe(ctx, c, d, name, cmd)
	default:
		return errors.New("android: command type " + cmd.Type + " is not an Android command")
	}
	if err != nil {
		s.complete(ctx, d.ID, cmd.ID, agentcmd.Result{Status: agentcmd.ResultFailed, Detail: clip(err.Error())})
		return refuse(http.StatusBadGateway, "the Android Management API refused the command: %v", err)
	}
	s.operationResult(ctx, d.ID, cmd.ID, op)
	return nil
}

// wipe wipes a company phone (WIPE, or devices.delete) or removes a personal phone's work
// profile (devices.delete).
func (s *Service) wipe(ctx context.Context, c *androidmanagement.Service, d *inventory.Device, name string, cmd agentcmd.Command) error {
	reason := cmd.Reason
	if len(reason) > maxWipeReason {
		reason = reason[:maxWipeReason]
	}
	var err error
	if cmd.Mode == ModeFull {
		wc := &androidmanagement.Command{Type: "WIPE", WipeParams: &androidmanagement.WipeParams{
			WipeDataFlags: []string{"WIPE_EXTERNAL_STORAGE"},
			WipeReason:    &androidmanagement.UserFacingMessage{DefaultMessage: reason}}}
		var op *androidmanagement.Operation
		op, err = c.Enterprises.Devices.IssueCommand(name, wc).Context(ctx).Do()
		var ge *googleapi.Error
		if errors.As(err, &ge) && ge.Code == http.StatusBadRequest {
			// The WIPE command needs a recent Android Device Policy; deleting the device wipes any.
			_, err = c.Enterprises.Devices.Delete(name).WipeDataFlags("WIPE_EXTERNAL_STORAGE").Context(ctx).Do()
		} else if err == nil && op.Error != nil {
			err = errors.New(op.Error.Message)
		}
	} else {
		_, err = c.Enterprises.Devices.Delete(name).WipeReasonMessage(reason).Context(ctx).Do()
	}
	if err != nil {
		s.complete(ctx, d.ID, cmd.ID, agentcmd.Result{Status: agentcmd.ResultFailed, Detail: clip(err.Error())})
		return refuse(http.StatusBadGateway, "the Android Management API refused the wipe: %v", err)
	}
	cur, err := s.dep.Devices.Get(ctx, d.ID)
	if err != nil {
		return err
	}
	return s.deviceGone(ctx, cur)
}

// operationResult records a command operation's outcome when it is done, or remembers it for
// its COMMAND notification.
func (s *Service) operationResult(ctx context.Context, deviceID, cmdID string, op *androidmanagement.Operation) {
	switch {
	case op == nil:
	case op.Done && op.Error == nil:
		s.complete(ctx, deviceID, cmdID, agentcmd.Result{Status: agentcmd.ResultDone})
	case op.Done:
		s.complete(ctx, deviceID, cmdID, agentcmd.Result{Status: agentcmd.ResultFailed, Detail: clip(op.Error.Message)})
	default:
		// Kept in the store, so that a restart before the COMMAND notification (or a lost one)
		// still ends with the command's result: the reconcile asks AMAPI for it.
		err := s.dep.Store.Update(ctx, func(tx Tx) error {
			return tx.Android().PutOperation(ctx, op.Name, Operation{DeviceID: deviceID, CommandID: cmdID})
		})
		if err != nil {
			s.log.WarnContext(ctx, "android: a running command was not recorded; its result will not be", "operation", op.Name, "err", err)
		}
	}
}

// commandDone takes a finished operation (a COMMAND notification, or the reconcile's
// operations.get): its command is acknowledged or failed, and the operation forgotten.
func (s *Service) commandDone(ctx context.Context, op *androidmanagement.Operation) error {
	if !op.Done {
		return nil
	}
	var ops map[string]Operation
	if err := s.dep.Store.View(ctx, func(tx Tx) error {
		var err error
		ops, err = tx.Android().Operations(ctx)
		return err
	}); err != nil {
		return err
	}
	ref, ok := ops[op.Name]
	if !ok {
		return nil // not Hale's, or already answered
	}
	s.operationResult(ctx, ref.DeviceID, ref.CommandID, op)
	return s.dep.Store.Update(ctx, func(tx Tx) error { return tx.Android().DeleteOperation(ctx, op.Name) })
}

// pendingOperations asks AMAPI for every operation Hale still waits on, and takes those done.
func (s *Service) pendingOperations(ctx context.Context, c *androidmanagement.Service) error {
	var ops map[string]Operation
	if err := s.dep.Store.View(ctx, func(tx Tx) error {
		var err error
		ops, err = tx.Android().Operations(ctx)
		return err
	}); err != nil {
		return err
	}
	var failed error
	for name := range ops {
		op, err := c.Enterprises.Devices.Operations.Get(name).Context(ctx).Do()
		if err == nil {
			err = s.commandDone(ctx, op)
		}
		if err != nil {
			failed = err
		}
	}
	return failed
}

func (s *Service) complete(ctx context.Context, deviceID, cmdID string, r agentcmd.Result) {
	if _, _, err := s.dep.Commands.Complete(ctx, deviceID, cmdID, r); err != nil {
		s.log.WarnContext(ctx, "android: command result not recorded", "device", deviceID, "command", cmdID, "err", err)
	}
}

package security

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/halemdm/hale/certs"
	"github.com/halemdm/hale/mdmserver/agentcmd"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/inventory"
)

// revokeReason is the CRL reason of the certificates of a device wiped or unenrolled.
const revokeReason = "cessationOfOperation"

// deviceEntry is the audit entry of something device deviceID did (its wipe finished or not).
func deviceEntry(deviceID, action, outcome string, details map[string]string) audit.Entry {
	return withEvent(audit.Entry{Actor: "device:" + deviceID, Role: "device"}, action, deviceID, outcome, details)
}

// FinishWipe marks d wiped after its wipe commandID was acknowledged, and revokes its
// certificates first: the device deleted its key, and nothing should be able to use a copy. The
// state, the end of wipe_pending (or wipe_incomplete) and the audit entry commit together, and
// the access decision follows. It is idempotent, so a crash anywhere is finished by the next
// call (the agent's resent result, or FinishAcknowledgedWipes at the next start).
func (s *Service) FinishWipe(ctx context.Context, d *inventory.Device, commandID string) error {
	if err := s.revokeCerts(ctx, d); err != nil {
		return err
	}
	var after *inventory.Device
	err := s.dep.Store.Update(ctx, func(tx Tx) error {
		wiped, err := inventory.FinishWipe(ctx, tx.Inventory(), d.ID, time.Now())
		if err != nil || !wiped {
			return err
		}
		// The record as committed: another server may have added a certificate since d was read.
		if after, err = tx.Inventory().Get(ctx, d.ID); err != nil {
			return err
		}
		_, err = audit.Append(ctx, tx.Audit(), deviceEntry(d.ID, "device.wiped", "", map[string]string{
			"command_id": commandID, "revoked_certificates": strconv.Itoa(len(after.CertSerials))}))
		return err
	})
	if err != nil {
		return err
	}
	if after != nil {
		if err := s.revokeNew(ctx, d, after); err != nil {
			return err
		}
	}
	s.dep.Decisions.DeviceChanged(ctx, d.ID, commandID)
	return nil
}

// MarkWipeIncomplete records, in the caller's unit of work tx, that the agent's wipe cmd
// finished without removing all managed data (partial) or failed: the device is no longer
// wipe_pending but wipe_incomplete, denied all the same, keeps its identity so a new wipe can
// reach it, and is never called wiped. It reports false, changing nothing, when cmd is not the
// device's pending wipe. Once tx committed, a caller that got true calls DeviceChanged with the
// command, so that the access decision follows.
func (s *Service) MarkWipeIncomplete(ctx context.Context, tx WipeTx, deviceID string, cmd *agentcmd.Command) (bool, error) {
	marked, err := inventory.MarkWipeIncomplete(ctx, tx.Inventory(), deviceID, cmd.ID, time.Now())
	if err != nil || !marked {
		return false, err
	}
	n := cmd.Result.Count()
	_, err = audit.Append(ctx, tx.Audit(), deviceEntry(deviceID, "device.wipe_incomplete", audit.OutcomeError, map[string]string{
		"command_id": cmd.ID, "state": cmd.State,
		"refused": strconv.Itoa(n[agentcmd.OutcomeRefused]), "failed": strconv.Itoa(n[agentcmd.OutcomeFailed])}))
	return err == nil, err
}

// DeviceChanged re-derives deviceID's access decision after commandID changed it outside the
// service's own operations (see MarkWipeIncomplete).
func (s *Service) DeviceChanged(ctx context.Context, deviceID, commandID string) {
	s.dep.Decisions.DeviceChanged(ctx, deviceID, commandID)
}

// AgentResult records res, reported by agent d for its command commandID, with its audit entry
// (whose actor and request are actor's, an entry with no action yet). A selective wipe that
// removed every managed path makes the device wiped and revokes its certificates: the agent
// deleted its key, and nothing should be able to use a copy. A wipe that left any path behind
// (partial) or failed leaves the device denied as wipe_incomplete, with its identity, so that a
// new wipe can reach it. A result reported again changes nothing, but finishes a wipe that was
// acknowledged and not yet finished. The errors agentcmd.ErrNotFound and agentcmd.ErrInvalid
// are a command or a result refused.
func (s *Service) AgentResult(ctx context.Context, actor audit.Entry, d *inventory.Device, commandID string, res agentcmd.Result) error {
	// The result, its audit entry and, for a wipe that did not finish, the device's move from
	// wipe_pending to wipe_incomplete commit together.
	var cmd *agentcmd.Command
	incomplete := false
	err := s.dep.Store.Update(ctx, func(tx Tx) error {
		var first bool
		var err error
		cmd, first, err = agentcmd.Complete(ctx, tx.AgentCommands(), d.ID, commandID, res, time.Now())
		if err != nil || !first {
			return err
		}
		_, err = audit.Append(ctx, tx.Audit(), withEvent(actor, "command.result", d.ID, outcomeOf(cmd.Result.Status), resultDetails(cmd)))
		if err != nil || cmd.Type != agentcmd.TypeWipe || cmd.State == agentcmd.StateAcknowledged {
			return err
		}
		incomplete, err = s.MarkWipeIncomplete(ctx, tx, d.ID, cmd)
		return err
	})
	if err != nil {
		return err
	}
	if incomplete {
		s.dep.Decisions.DeviceChanged(ctx, d.ID, cmd.ID)
	}
	// Not only on the first report: if the server stopped after recording the result but before
	// finishing the wipe, the agent's resent result finishes it (FinishWipe is idempotent).
	if cmd.Type == agentcmd.TypeWipe && cmd.State == agentcmd.StateAcknowledged && d.State != inventory.StateWiped {
		return s.FinishWipe(ctx, d, cmd.ID)
	}
	return nil
}

// maxLeftBehind bounds the paths a wipe left behind as listed in its audit entry.
const maxLeftBehind = 4096

// resultDetails are the audit details of an agent's result: for a wipe, how many paths had each
// outcome and, bounded, every path that was not removed or absent, with its reason.
func resultDetails(cmd *agentcmd.Command) map[string]string {
	res := cmd.Result
	det := map[string]string{"command_id": cmd.ID, "type": cmd.Type, "status": res.Status, "state": cmd.State,
		"removed": strconv.Itoa(len(res.Removed))}
	if len(res.Paths) == 0 {
		return det
	}
	n := res.Count()
	for _, o := range []string{agentcmd.OutcomeRemoved, agentcmd.OutcomeAbsent, agentcmd.OutcomeRefused, agentcmd.OutcomeFailed} {
		det[o] = strconv.Itoa(n[o])
	}
	var left []string
	size := 0
	for _, p := range res.Paths {
		if p.Outcome != agentcmd.OutcomeRefused && p.Outcome != agentcmd.OutcomeFailed {
			continue
		}
		item := p.Outcome + " " + p.Path + ": " + p.Reason
		if size+len(item) > maxLeftBehind {
			left = append(left, fmt.Sprintf("and %d more (see the command)", n[agentcmd.OutcomeRefused]+n[agentcmd.OutcomeFailed]-len(left)))
			break
		}
		size += len(item)
		left = append(left, item)
	}
	if len(left) > 0 {
		det["left_behind"] = strings.Join(left, "; ")
	}
	return det
}

// outcomeOf is the audit outcome of an agent's result status.
func outcomeOf(status string) string {
	if status == agentcmd.ResultDone {
		return audit.OutcomeOK
	}
	return audit.OutcomeError
}

// FinishAcknowledgedWipes finishes, at start, the wipes whose device acknowledged them while a
// previous run stopped before it could finish them: an erased Mac never resends its answer, and
// an agent whose certificate was already revoked cannot. Only reading the pending wipes fails;
// a wipe that cannot be finished is logged and finished at the next start.
func (s *Service) FinishAcknowledgedWipes(ctx context.Context) error {
	var pending []inventory.Device
	for cursor := ""; ; {
		page, next, err := s.dep.Devices.List(ctx, inventory.Filter{Wipe: inventory.WipePending}, cursor, inventory.MaxLimit)
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
			cmd, err := s.dep.Agent.Get(ctx, d.ID, commandID)
			acked = err == nil && cmd.State == agentcmd.StateAcknowledged
		case inventory.PlatformApple:
			rec, err := s.dep.Apple.Get(ctx, d.EnrollmentID, commandID)
			acked = err == nil && rec.State == commands.StateAcknowledged
		}
		if !acked {
			continue
		}
		if err := s.FinishWipe(ctx, d, commandID); err != nil {
			s.log.ErrorContext(ctx, "finishing an acknowledged wipe at start failed", "device_id", d.ID, "err", err)
		}
	}
	return nil
}

// Unenroll revokes every certificate of d, so that it can no longer talk to the server, and
// makes it unenrolled, on the record. A device whose state cannot move to unenrolled is a
// Refusal of kind ErrInvalidState.
func (s *Service) Unenroll(ctx context.Context, by Actor, d *inventory.Device) (*inventory.Device, error) {
	if err := s.revokeCerts(ctx, d); err != nil {
		return nil, err
	}
	after, err := s.dep.Devices.SetState(ctx, d.ID, inventory.StateUnenrolled, time.Now().UTC())
	if errors.Is(err, inventory.ErrInvalidTransition) {
		return nil, refuse(ErrInvalidState, "the device is "+string(d.State)+" and cannot be unenrolled")
	} else if err != nil {
		return nil, err
	}
	// SetState moved the record as committed, which may hold a certificate issued (by another
	// server) after d was read; it is revoked too.
	if err := s.revokeNew(ctx, d, after); err != nil {
		return nil, err
	}
	_ = s.record(ctx, by.entry("device.unenroll", after.ID, "", map[string]string{"revoked_certificates": strconv.Itoa(len(after.CertSerials))}))
	// Re-derive its decision: an unenrolled device is denied at once, its sessions revoked and
	// its messaging app instances with them.
	s.dep.Decisions.DeviceChanged(ctx, after.ID, "")
	return after, nil
}

// revokeNew revokes the certificates of after, the device's record as committed, that before
// (the record revokeCerts already went through) did not hold.
func (s *Service) revokeNew(ctx context.Context, before, after *inventory.Device) error {
	var added []string
	for _, hex := range after.CertSerials {
		if !slices.Contains(before.CertSerials, hex) {
			added = append(added, hex)
		}
	}
	if len(added) == 0 {
		return nil
	}
	return s.revokeSerials(ctx, added)
}

// revokeCerts revokes every certificate Hale issued to d.
func (s *Service) revokeCerts(ctx context.Context, d *inventory.Device) error {
	return s.revokeSerials(ctx, d.CertSerials)
}

// revokeSerials revokes the certificates Hale issued with these serials (inventory's hex form).
func (s *Service) revokeSerials(ctx context.Context, serials []string) error {
	for _, hex := range serials {
		serial, ok := inventory.ParseSerialHex(hex)
		if !ok {
			continue
		}
		// A device identity from an extra device CA is not Hale's to revoke; its CA's
		// operator must, and the device record's state refuses it here meanwhile.
		if err := s.dep.CA.Revoke(ctx, serial, revokeReason); err != nil && !errors.Is(err, certs.ErrUnknownCertificate) {
			return err
		}
	}
	return nil
}

package security

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/mdmserver/approvals"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/idempotency"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// requestApproval holds a wipe for a second person holding a security token. The request, with
// its parameters sealed (they may carry a PIN), its idempotent answer and its audit entry commit
// together. The parameters are the request as the caller sent it, so that approving it carries
// out exactly what was asked.
func (s *Service) requestApproval(ctx context.Context, by Actor, d *inventory.Device, req *api.SecurityRequest, idem idempotency.Key) (api.SecurityAnswer, error) {
	if by.Token == nil {
		return api.SecurityAnswer{}, errors.New("security: approval requested without a token")
	}
	requester, err := s.party(ctx, by.Token)
	if err != nil {
		return api.SecurityAnswer{}, err
	}
	params, err := json.Marshal(req)
	if err != nil {
		return api.SecurityAnswer{}, err
	}
	ap := approvals.Request{
		Action: string(Wipe), DeviceID: d.ID, Group: d.Group, Reason: req.Reason, Mode: req.Mode,
		RequestedBy: requester.Name, RequesterTokenID: by.Token.ID, RequesterPerson: requester.Person, RequesterCreators: requester.Creators,
	}
	var ans, replay api.SecurityAnswer
	err = s.dep.Store.Update(ctx, func(tx Tx) error {
		// Checked again on what is committed: another server may have ordered a wipe, held one
		// for approval, ended the device or answered this Idempotency-Key since Order looked.
		if err := s.recheck(ctx, tx, d.ID, Wipe, idem, "", &replay); err != nil {
			return err
		}
		cur, err := tx.Inventory().Get(ctx, d.ID)
		if err != nil {
			return err
		}
		if err := recheckDevice(cur, Wipe); err != nil {
			return err
		}
		a, err := approvals.Create(ctx, tx.Approvals(), ap, s.approvalTTL, s.dep.Approvals.Now(), func(a *approvals.Request) error {
			a.Params = s.dep.Key.Seal(approvalPurpose(a.ID), params)
			return nil
		})
		if err != nil {
			return err
		}
		ans = api.SecurityAnswer{ApprovalID: a.ID, State: api.StatePendingApproval, ExpiresAt: a.ExpiresAt, DeviceID: d.ID, DeviceState: string(cur.State)}
		if idem.Key != "" {
			if err := idempotency.Save(ctx, tx.Idempotency(), idem, ans); err != nil {
				return err
			}
		}
		_, err = audit.Append(ctx, tx.Audit(), by.entry("approval.request", d.ID, "", map[string]string{
			"approval_id": a.ID, "action": a.Action, "mode": a.Mode, "reason": a.Reason, "expires_at": a.ExpiresAt.Format(time.RFC3339),
		}))
		return err
	})
	if errors.Is(err, errReplay) {
		return replay, nil
	}
	if err != nil {
		return api.SecurityAnswer{}, s.leftTx(ctx, by, d.ID, Wipe, "", err)
	}
	return ans, nil
}

// approvalPurpose binds an approval's sealed parameters to the approval.
func approvalPurpose(id string) string { return "approval/" + id }

// party is t as the two-person rule sees it: the person it belongs to and the people whose
// tokens created it.
func (s *Service) party(ctx context.Context, t *tokens.Token) (approvals.Party, error) {
	creators, err := s.dep.Tokens.Creators(ctx, t)
	if err != nil {
		return approvals.Party{}, err
	}
	return approvals.Party{Name: t.Name + " (" + t.ID + ")", TokenID: t.ID, Person: t.Person, Creators: creators}, nil
}

// requester is the party that made ap, read afresh from its token: a request made before
// tokens had people stored none, and the token's person and creators never change.
func (s *Service) requester(ctx context.Context, ap *approvals.Request) (approvals.Party, error) {
	t, err := s.dep.Tokens.Get(ctx, ap.RequesterTokenID)
	if errors.Is(err, tokens.ErrNotFound) {
		return ap.Requester(), nil
	} else if err != nil {
		return approvals.Party{}, err
	}
	return s.party(ctx, t)
}

// Decided is a request decided under the two-person rule and, once approved, the command it
// was carried out with (State api.StateNotSent when the device's management had ended).
type Decided struct {
	Request *approvals.Request
	Command *api.SecurityAnswer
}

// Decide approves (and carries out at once) or rejects the held request id, for by, a second
// person holding a security token that existed before the request. The requester cannot decide
// their own request, with any token of theirs, nor can a person who created the requester's
// token or whose token the requester created (approvals.SecondPerson); an expired request can
// no longer be approved. A request approved whose wipe was never sent (the server stopped in
// between) is sent when approved again by an eligible person.
//
// Its errors: approvals.ErrNotFound, ErrSamePerson, ErrCreator, ErrDecided and ErrExpired, and
// a Refusal of kind ErrNotEligible; the refusals of the two-person rule are on the record.
func (s *Service) Decide(ctx context.Context, by Actor, id string, approve bool, comment string) (Decided, error) {
	decision := "reject"
	if approve {
		decision = "approve"
	}
	t := by.Token
	if t == nil {
		return Decided{}, errors.New("security: a decision without a token")
	}
	ap, err := s.dep.Approvals.Get(ctx, id)
	if err != nil {
		return Decided{}, err
	}
	// The second person holds a security token that existed before the request. The role keeps
	// admins (who can mint any token) out; the age still matters with people counted: an admin
	// can name a token for someone who does not exist, and this way such a token cannot be
	// conjured once a request is waiting, only made beforehand, on the record.
	if t.Role != tokens.RoleSecurity || !t.CreatedAt.Before(ap.CreatedAt) {
		_ = s.record(ctx, by.entry("approval."+decision, ap.DeviceID, audit.OutcomeDenied,
			map[string]string{"approval_id": ap.ID, "reason": "not an eligible second approver"}))
		return Decided{}, refuse(ErrNotEligible, "the second approver must hold a security token created before the request")
	}
	decider, err := s.party(ctx, t)
	if err != nil {
		return Decided{}, err
	}
	requester, err := s.requester(ctx, ap)
	if err != nil {
		return Decided{}, err
	}
	if err := approvals.SecondPerson(requester, decider); err != nil {
		return Decided{}, s.twoPersonRefused(ctx, by, id, err)
	}
	// Spares this server's concurrent deciders the work below; across servers the decision's
	// unit of work (approvals.Decide: ErrDecided) and carryOut's checks keep one wipe.
	defer s.serialize(ap.DeviceID)()

	var decided *approvals.Request
	err = s.dep.Store.Update(ctx, func(tx Tx) error {
		a, err := approvals.Decide(ctx, tx.Approvals(), id, approve, decider, comment, s.dep.Approvals.Now())
		if err != nil {
			return err
		}
		_, err = audit.Append(ctx, tx.Audit(), by.entry("approval."+decision, a.DeviceID, "", map[string]string{
			"approval_id": a.ID, "action": a.Action, "requested_by": a.RequestedBy, "requester_person": requester.Person,
		}))
		if err != nil {
			return err
		}
		decided = a
		return nil
	})
	if errors.Is(err, approvals.ErrDecided) {
		// Approved, but the wipe was never sent (the server stopped in between): send it now.
		// The caller passed the same two-person checks above.
		if cur, gerr := s.dep.Approvals.Get(ctx, id); gerr == nil && approve && cur.State == approvals.StateApproved &&
			cur.CommandID == "" {
			decided, err = cur, nil
		}
	}
	if err != nil {
		return Decided{}, s.twoPersonRefused(ctx, by, id, err)
	}
	out := Decided{Request: decided}
	if approve {
		cmd, err := s.carryOutApproved(ctx, by, decided)
		if err != nil {
			return Decided{}, err
		}
		out.Command = cmd
		decided.CommandID = cmd.CommandID
	}
	decided.Params = nil
	return out, nil
}

// twoPersonRefused puts a refusal by the two-person rule (the same person, or a token's
// creator, deciding) on the record, and returns err.
func (s *Service) twoPersonRefused(ctx context.Context, by Actor, id string, err error) error {
	reason := ""
	switch {
	case errors.Is(err, approvals.ErrSamePerson):
		reason = "requester cannot decide"
	case errors.Is(err, approvals.ErrCreator):
		reason = "token creator"
	default:
		return err
	}
	_ = s.record(ctx, by.entry("approval.decide", id, audit.OutcomeDenied, map[string]string{"reason": reason, "rule": err.Error()}))
	return err
}

// carryOutApproved wipes the device of an approved request, unless it has since been wiped or
// unenrolled, and records the command on the request.
func (s *Service) carryOutApproved(ctx context.Context, by Actor, ap *approvals.Request) (*api.SecurityAnswer, error) {
	plain, err := s.dep.Key.Open(approvalPurpose(ap.ID), ap.Params)
	if err != nil {
		return nil, fmt.Errorf("approval %s: opening its parameters: %w", ap.ID, err)
	}
	var req api.SecurityRequest
	if err := json.Unmarshal(plain, &req); err != nil {
		return nil, fmt.Errorf("approval %s: %w", ap.ID, err)
	}
	d, err := s.dep.Devices.Get(ctx, ap.DeviceID)
	if err != nil {
		return nil, err
	}
	if ended(d) {
		_ = s.record(ctx, by.entry("device.wipe", d.ID, audit.OutcomeDenied,
			map[string]string{"approval_id": ap.ID, "reason": "device is " + string(d.State)}))
		return &api.SecurityAnswer{State: api.StateNotSent, DeviceID: d.ID, DeviceState: string(d.State)}, nil
	}
	// carryOut checks again, in the unit of work that orders the wipe, that the device's
	// management has not ended, that no wipe is on its way and that no server carried this
	// approval out already; it records the command on the approval in that unit of work. Two
	// servers approving at once thus send one wipe: the second is refused ErrWipePending.
	ans, err := s.carryOut(ctx, by, d, Action(ap.Action), &req, map[string]string{"approval_id": ap.ID, "requested_by": ap.RequestedBy}, ap.ID, idempotency.Key{})
	if errors.Is(err, ErrInvalidState) {
		// Ended since it was read above; the refusal is on the record (leftTx).
		st := inventory.StateWiped
		if cur, gerr := s.dep.Devices.Get(ctx, ap.DeviceID); gerr == nil {
			st = cur.State
		}
		return &api.SecurityAnswer{State: api.StateNotSent, DeviceID: d.ID, DeviceState: string(st)}, nil
	}
	if err != nil {
		return nil, err
	}
	return &ans, nil
}

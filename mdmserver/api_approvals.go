package mdmserver

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"time"

	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/approvals"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// requestApproval holds a wipe for a second person holding a security token. The request, with
// its parameters sealed (they may carry a PIN), and its audit entry commit together.
func (s *Server) requestApproval(r *http.Request, d *inventory.Device, req *securityRequest, idemKey string) (securityAnswer, error) {
	t := tokens.FromContext(r.Context())
	if t == nil {
		return securityAnswer{}, errors.New("approval requested without a token")
	}
	requester, err := s.party(r.Context(), t)
	if err != nil {
		return securityAnswer{}, err
	}
	params, err := json.Marshal(req)
	if err != nil {
		return securityAnswer{}, err
	}
	ap := approvals.Request{
		Action: "wipe", DeviceID: d.ID, Group: d.Group, Reason: req.Reason, Mode: req.Mode,
		RequestedBy: requester.Name, RequesterTokenID: t.ID, RequesterPerson: requester.Person, RequesterCreators: requester.Creators,
	}
	var ans securityAnswer
	ctx := r.Context()
	err = s.store.Update(ctx, func(tx storage.Tx) error {
		a, err := approvals.Create(ctx, tx.Approvals(), ap, s.cfg.ApprovalTTL, s.approvals.Now(), func(a *approvals.Request) error {
			a.Params = s.key.Seal(approvalPurpose(a.ID), params)
			return nil
		})
		if err != nil {
			return err
		}
		ans = securityAnswer{ApprovalID: a.ID, State: "pending_approval", ExpiresAt: a.ExpiresAt, DeviceID: d.ID, DeviceState: string(d.State)}
		if idemKey != "" {
			if err := putIdempotentAnswer(tx, r, idemKey, ans); err != nil {
				return err
			}
		}
		_, err = audit.Append(ctx, tx.Audit(), s.entry(r, event{Action: "approval.request", Target: d.ID, Details: map[string]string{
			"approval_id": a.ID, "action": a.Action, "mode": a.Mode, "reason": a.Reason, "expires_at": a.ExpiresAt.Format(time.RFC3339),
		}}))
		return err
	})
	if err != nil {
		return securityAnswer{}, err
	}
	return ans, nil
}

func approvalPurpose(id string) string { return "approval/" + id }

// approvalsStore narrows the server's store to what the approvals service uses.
func approvalsStore(st storage.Store) approvals.Store {
	return storage.Scope(st, func(tx storage.Tx) approvals.Tx { return tx })
}

// party is t as the two-person rule sees it: the person it belongs to and the people whose
// tokens created it.
func (s *Server) party(ctx context.Context, t *tokens.Token) (approvals.Party, error) {
	creators, err := s.tokens.Creators(ctx, t)
	if err != nil {
		return approvals.Party{}, err
	}
	return approvals.Party{Name: t.Name + " (" + t.ID + ")", TokenID: t.ID, Person: t.Person, Creators: creators}, nil
}

// requester is the party that made ap, read afresh from its token: a request made before
// tokens had people stored none, and the token's person and creators never change.
func (s *Server) requester(ctx context.Context, ap *approvals.Request) (approvals.Party, error) {
	t, err := s.tokens.Get(ctx, ap.RequesterTokenID)
	if errors.Is(err, tokens.ErrNotFound) {
		return ap.Requester(), nil
	} else if err != nil {
		return approvals.Party{}, err
	}
	return s.party(ctx, t)
}

// GET /api/v1/approvals?state=pending|approved|rejected|expired
func (s *Server) listApprovals(w http.ResponseWriter, r *http.Request) {
	state := r.URL.Query().Get("state")
	switch state {
	case "", approvals.StatePending, approvals.StateApproved, approvals.StateRejected, approvals.StateExpired:
	default:
		problem.BadRequest(w, r, "state must be pending, approved, rejected or expired")
		return
	}
	list, err := s.approvals.List(r.Context(), state)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"approvals": list})
}

// approvalAnswer is a decided request and, once approved, the command it was carried out with.
type approvalAnswer struct {
	*approvals.Request
	Command *securityAnswer `json:"command,omitempty"`
}

// POST /api/v1/approvals/{id} {"decision": "approve"|"reject", "comment": "..."}: a second
// person holding a security token decides a held wipe. The requester cannot decide their own
// request, with any token of theirs, nor can a person who created the requester's token or
// whose token the requester created (approvals.SecondPerson); an expired request can no longer
// be approved. On approval the wipe is carried out at once.
func (s *Server) decideApproval(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Decision string `json:"decision"`
		Comment  string `json:"comment"`
	}
	if !problem.DecodeJSON(w, r, 16<<10, &req) {
		return
	}
	if req.Decision == "" {
		req.Decision = "approve"
	}
	if (req.Decision != "approve" && req.Decision != "reject") || len(req.Comment) > 500 {
		problem.BadRequest(w, r, "decision must be approve or reject; comment at most 500 characters")
		return
	}
	t := tokens.FromContext(r.Context())
	id := r.PathValue("id")
	approve := req.Decision == "approve"
	ap, err := s.approvals.Get(r.Context(), id)
	if err != nil {
		s.approvalError(w, r, id, err)
		return
	}
	// The second person holds a security token that existed before the request. The role keeps
	// admins (who can mint any token) out; the age still matters with people counted: an admin
	// can name a token for someone who does not exist, and this way such a token cannot be
	// conjured once a request is waiting, only made beforehand, on the record.
	if t.Role != tokens.RoleSecurity || !t.CreatedAt.Before(ap.CreatedAt) {
		s.record(r, event{Action: "approval." + req.Decision, Target: ap.DeviceID, Outcome: audit.OutcomeDenied,
			Details: map[string]string{"approval_id": ap.ID, "reason": "not an eligible second approver"}})
		problem.Error(w, r, http.StatusForbidden, "not-eligible",
			"the second approver must hold a security token created before the request")
		return
	}
	decider, err := s.party(r.Context(), t)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	requester, err := s.requester(r.Context(), ap)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if err := approvals.SecondPerson(requester, decider); err != nil {
		s.approvalError(w, r, id, err)
		return
	}
	defer s.serialize(ap.DeviceID)()

	var decided *approvals.Request
	err = s.store.Update(r.Context(), func(tx storage.Tx) error {
		a, err := approvals.Decide(r.Context(), tx.Approvals(), id, approve, decider, req.Comment, s.approvals.Now())
		if err != nil {
			return err
		}
		_, err = audit.Append(r.Context(), tx.Audit(), s.entry(r, event{Action: "approval." + req.Decision, Target: a.DeviceID, Details: map[string]string{
			"approval_id": a.ID, "action": a.Action, "requested_by": a.RequestedBy, "requester_person": requester.Person,
		}}))
		if err != nil {
			return err
		}
		decided = a
		return nil
	})
	if errors.Is(err, approvals.ErrDecided) {
		// Approved, but the wipe was never sent (the server stopped in between): send it now.
		// The caller passed the same two-person checks above.
		if cur, gerr := s.approvals.Get(r.Context(), id); gerr == nil && approve && cur.State == approvals.StateApproved &&
			cur.CommandID == "" {
			decided, err = cur, nil
		}
	}
	if err != nil {
		s.approvalError(w, r, id, err)
		return
	}
	ans := approvalAnswer{Request: decided}
	if approve {
		cmd, err := s.carryOutApproved(r, decided)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		ans.Command = cmd
		decided.CommandID = cmd.CommandID
	}
	decided.Params = nil
	httpjson.Write(w, http.StatusOK, ans)
}

// carryOutApproved wipes the device of an approved request, unless it has since been wiped or
// unenrolled, and records the command on the request.
func (s *Server) carryOutApproved(r *http.Request, ap *approvals.Request) (*securityAnswer, error) {
	plain, err := s.key.Open(approvalPurpose(ap.ID), ap.Params)
	if err != nil {
		return nil, fmt.Errorf("approval %s: opening its parameters: %w", ap.ID, err)
	}
	var req securityRequest
	if err := json.Unmarshal(plain, &req); err != nil {
		return nil, fmt.Errorf("approval %s: %w", ap.ID, err)
	}
	d, err := s.inventory.Get(r.Context(), ap.DeviceID)
	if err != nil {
		return nil, err
	}
	if d.State == inventory.StateWiped || d.State == inventory.StateUnenrolled || d.State == inventory.StateRetired {
		s.record(r, event{Action: "device.wipe", Target: d.ID, Outcome: audit.OutcomeDenied,
			Details: map[string]string{"approval_id": ap.ID, "reason": "device is " + string(d.State)}})
		return &securityAnswer{State: "not_sent", DeviceID: d.ID, DeviceState: string(d.State)}, nil
	}
	ans, err := s.carryOut(r, d, ap.Action, &req, map[string]string{"approval_id": ap.ID, "requested_by": ap.RequestedBy}, "")
	if err != nil {
		return nil, err
	}
	if err := s.approvals.SetCommand(r.Context(), ap.ID, ans.CommandID); err != nil {
		s.log.ErrorContext(r.Context(), "recording an approval's command failed", "approval_id", ap.ID, "err", err)
	}
	return &ans, nil
}

func (s *Server) approvalError(w http.ResponseWriter, r *http.Request, id string, err error) {
	switch {
	case errors.Is(err, approvals.ErrNotFound):
		problem.NotFound(w, r, "no approval request "+id)
	case errors.Is(err, approvals.ErrSamePerson):
		s.record(r, event{Action: "approval.decide", Target: id, Outcome: audit.OutcomeDenied, Details: map[string]string{"reason": "requester cannot decide", "rule": err.Error()}})
		problem.Error(w, r, http.StatusForbidden, "same-person", "two-person rule: "+strings.TrimPrefix(err.Error(), "approvals: ")+
			"; another person, holding a security token, must decide it")
	case errors.Is(err, approvals.ErrCreator):
		s.record(r, event{Action: "approval.decide", Target: id, Outcome: audit.OutcomeDenied, Details: map[string]string{"reason": "token creator", "rule": err.Error()}})
		problem.Error(w, r, http.StatusForbidden, "token-creator", "two-person rule: "+strings.TrimPrefix(err.Error(), "approvals: ")+
			"; whoever made a token could have made it for themselves, so another person must decide it")
	case errors.Is(err, approvals.ErrDecided), errors.Is(err, approvals.ErrExpired):
		problem.Error(w, r, http.StatusConflict, "approval-closed", err.Error())
	default:
		s.internal(w, r, err)
	}
}

// Lock and erase PINs are sealed under the master key and bound to their command
// (commands.PutPIN, in the unit of work that orders the lock or erase).

// newPIN returns a random 6-digit PIN.
func newPIN() string {
	n, err := rand.Int(rand.Reader, big.NewInt(1_000_000))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return fmt.Sprintf("%06d", n.Int64())
}

// GET /api/v1/devices/{id}/commands/{uuid}/pin (security): the PIN that unlocks a Mac after a
// lock or erase. Every reading is audited.
func (s *Server) commandPIN(w http.ResponseWriter, r *http.Request) {
	d, ok := s.deviceFor(w, r)
	if !ok {
		return
	}
	uuid := r.PathValue("uuid")
	if _, err := s.commands.Get(r.Context(), d.EnrollmentID, uuid); err != nil {
		problem.NotFound(w, r, "no command "+uuid+" for device "+d.ID)
		return
	}
	pin, err := s.commands.PIN(r.Context(), s.key, uuid)
	if errors.Is(err, commands.ErrNotFound) {
		problem.NotFound(w, r, "command "+uuid+" has no PIN")
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if err := s.record(r, event{Action: "command.pin_view", Target: d.ID, Details: map[string]string{"command_id": uuid}}); err != nil {
		s.internal(w, r, err) // a PIN is shown only on the record
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]string{"pin": pin, "command_id": uuid})
}

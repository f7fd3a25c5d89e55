package security

import (
	"context"
	"errors"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/mdmserver/approvals"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/idempotency"
	"github.com/halemdm/hale/mdmserver/inventory"
)

// Several servers may share one database. Each checks an order before its unit of work (from a
// snapshot, under a per-process lock), but only a check made inside the unit of work that acts
// sees every commit before it: on PostgreSQL every Update takes the cluster's write lock first
// and reads what was committed, on bbolt writers run one at a time. So every rule an order
// depends on is checked again there, by recheck and recheckDevice, and a failed check leaves
// the unit of work through an error that writes nothing.

// errReplay leaves an order's unit of work whose Idempotency-Key already has an answer: the
// order was carried out (by this server or another) and is not carried out again.
var errReplay = errors.New("security: the Idempotency-Key already has an answer")

// endedError leaves an order's unit of work for a device whose management has ended (wiped,
// unenrolled or retired since it was read). leftTx records the refusal.
type endedError struct{ state inventory.State }

func (e *endedError) Error() string { return "security: the device is " + string(e.state) }

// recheck checks, inside the order's unit of work tx, what does not depend on the device record:
// an answer saved for idem (errReplay, with the answer in replay), an approval already carried
// out, and a wipe that already awaits approval.
func (s *Service) recheck(ctx context.Context, tx Tx, deviceID string, action Action, idem idempotency.Key, approvalID string, replay *api.SecurityAnswer) error {
	if idem.Key != "" {
		found, err := idempotency.Load(ctx, tx.Idempotency(), idem, replay)
		if err != nil {
			return err
		}
		if found {
			return errReplay
		}
	}
	if approvalID != "" {
		ap, err := tx.Approvals().Get(ctx, approvalID)
		if err != nil {
			return err
		}
		if ap.State != approvals.StateApproved {
			return refuse(approvals.ErrDecided, "approval "+approvalID+" is "+ap.State)
		}
		if ap.CommandID != "" {
			// Another server carried out the same approval first.
			return refuse(ErrWipePending, "approval "+approvalID+" was already carried out: command "+ap.CommandID)
		}
	}
	if action != Wipe {
		return nil
	}
	held, err := approvals.Pending(ctx, tx.Approvals(), deviceID, s.dep.Approvals.Now())
	if err != nil {
		return err
	}
	if held != nil {
		return refuse(ErrApprovalPending, "a wipe of device "+deviceID+" already awaits approval: "+held.ID)
	}
	return nil
}

// recheckDevice checks the device record cur as committed, inside the order's unit of work:
// its management has not ended, and a wipe finds no other on its way.
func recheckDevice(cur *inventory.Device, action Action) error {
	if ended(cur) {
		return &endedError{state: cur.State}
	}
	if action == Wipe && cur.Wipe.Pending() {
		return refuse(ErrWipePending, "device "+cur.ID+" already has a wipe on its way; see GET /api/v1/devices/"+cur.ID+"/commands")
	}
	return nil
}

// leftTx turns err, which left an order's unit of work, into what the caller answers. A device
// whose management ended is refused on the record, as before the unit of work; the entry goes
// in a unit of work of its own, since the order's wrote nothing.
func (s *Service) leftTx(ctx context.Context, by Actor, deviceID string, action Action, approvalID string, err error) error {
	var ee *endedError
	if !errors.As(err, &ee) {
		return err
	}
	details := map[string]string{"reason": "device is " + string(ee.state)}
	if approvalID != "" {
		details["approval_id"] = approvalID
	}
	_ = s.record(ctx, by.entry("device."+string(action), deviceID, audit.OutcomeDenied, details))
	return refuse(ErrInvalidState, "device "+deviceID+" is "+string(ee.state)+"; nothing to "+string(action))
}

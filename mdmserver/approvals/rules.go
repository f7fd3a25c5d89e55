package approvals

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/halemdm/hale/internal/randid"
)

// Create stores r as a new pending request made at now that expires after ttl, and returns it
// with its ID. prepare, when not nil, runs first with the new request and may set its Params
// (sealed under its ID); an error from it stores nothing. Run Create in the unit of work that
// also writes the caller's audit entry, so both commit together.
func Create(ctx context.Context, repo Repository, r Request, ttl time.Duration, now time.Time, prepare func(*Request) error) (*Request, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if r.Action == "" || r.DeviceID == "" || r.RequesterTokenID == "" {
		return nil, errors.New("approvals: a request needs an action, a device and a requester")
	}
	now = now.UTC()
	r.ID, r.State, r.CreatedAt, r.ExpiresAt = "ap_"+randid.Hex(12), StatePending, now, now.Add(ttl)
	r.DecidedBy, r.DeciderTokenID, r.DeciderPerson, r.DecidedAt, r.CommandID = "", "", "", time.Time{}, ""
	if prepare != nil {
		if err := prepare(&r); err != nil {
			return nil, err
		}
	}
	if err := repo.Put(ctx, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Decide records decider's decision, at now, on request id, if it is still pending, unexpired
// and decider is a second person to its requester ([SecondPerson]). Run it in the unit of work
// that also writes the caller's audit entry: an error there undoes the decision.
func Decide(ctx context.Context, repo Repository, id string, approve bool, decider Party, comment string, now time.Time) (*Request, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r, err := repo.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	now = now.UTC()
	switch {
	case r.State != StatePending:
		return nil, fmt.Errorf("%w: it is %s", ErrDecided, r.State)
	case !now.Before(r.ExpiresAt):
		return nil, fmt.Errorf("%w at %s", ErrExpired, r.ExpiresAt.Format(time.RFC3339))
	}
	if err := SecondPerson(r.Requester(), decider); err != nil {
		return nil, err
	}
	r.State = StateRejected
	if approve {
		r.State = StateApproved
	}
	r.DecidedBy, r.DeciderTokenID, r.DeciderPerson, r.DecidedAt, r.Comment = decider.Name, decider.TokenID, decider.Person, now, comment
	if err := repo.Put(ctx, r); err != nil {
		return nil, err
	}
	return r, nil
}

// SetCommand records the command an approved request was carried out with.
func SetCommand(ctx context.Context, repo Repository, id, commandID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r, err := repo.Get(ctx, id)
	if err != nil {
		return err
	}
	r.CommandID = commandID
	return repo.Put(ctx, r)
}

// Get returns one request, with its Params, as it stands at now.
func Get(ctx context.Context, repo Repository, id string, now time.Time) (*Request, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r, err := repo.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	expire(r, now)
	return r, nil
}

// List returns the requests in state (all when empty) as they stand at now, newest first,
// without their Params.
func List(ctx context.Context, repo Repository, state string, now time.Time) ([]Request, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	all, err := repo.List(ctx)
	if err != nil {
		return nil, err
	}
	out := []Request{}
	for _, r := range all {
		expire(&r, now)
		if state == "" || r.State == state {
			r.Params = nil
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b Request) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return out, nil
}

// Pending returns the device's request awaiting a decision at now, or nil.
func Pending(ctx context.Context, repo Repository, deviceID string, now time.Time) (*Request, error) {
	list, err := List(ctx, repo, StatePending, now)
	if err != nil {
		return nil, err
	}
	for i := range list {
		if list[i].DeviceID == deviceID {
			return &list[i], nil
		}
	}
	return nil, nil
}

// expire shows a pending request past its expiry as expired: Expired is never stored, so no
// sweeper has to run for a request to lapse.
func expire(r *Request, now time.Time) {
	if r.State == StatePending && !now.Before(r.ExpiresAt) {
		r.State = StateExpired
	}
}

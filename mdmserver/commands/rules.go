package commands

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/halemdm/hale/internal/seal"
)

// The rules over a Repository, in the repository's unit of work: a caller commits what they
// write together with its own writes (an audit entry), and Service runs each alone.

// UpdateRecord applies fn to the stored record of command uuid sent to enrollmentID and stores
// it, or returns ErrNotFound.
func UpdateRecord(ctx context.Context, r Repository, enrollmentID, uuid string, fn func(*Record)) (*Record, error) {
	rec, err := r.Record(ctx, enrollmentID, uuid)
	if err != nil {
		return nil, err
	}
	fn(rec)
	return rec, r.PutRecord(ctx, rec)
}

// SaveResult stores res and moves the matching record (if Hale sent the command) to the state
// the device answered: in one unit of work, a result is never stored without its state change.
// Once a command has a final answer, later answers for it (a device resending after a lost
// response) change nothing; saved reports whether res was recorded. It reads before it writes,
// so running it again in a retried unit of work gives the same result.
func SaveResult(ctx context.Context, r Repository, res *Result) (saved bool, err error) {
	// A previous answer that cannot be read is replaced: the device's new answer is worth more.
	if old, err := r.Result(ctx, res.EnrollmentID, res.CommandUUID); err == nil && old.Status != "NotNow" {
		return false, nil
	}
	if err := r.PutResult(ctx, res); err != nil {
		return false, err
	}
	_, err = UpdateRecord(ctx, r, res.EnrollmentID, res.CommandUUID, func(rec *Record) {
		rec.State = stateOf(res.Status)
		rec.AnsweredAt = res.ReceivedAt
		rec.UpdatedAt = res.ReceivedAt
		rec.ErrorChain = res.ErrorChain
	})
	if err != nil && !errors.Is(err, ErrNotFound) { // not found: enqueued outside Hale (nanomdm's API)
		return false, err
	}
	return true, nil
}

// CancelOpen marks every unanswered command of an enrollment cancelled with the reason given,
// and returns them. Call it when nanomdm cleared the enrollment's queue, so the command list
// never shows as queued what will never be delivered.
func CancelOpen(ctx context.Context, r Repository, enrollmentID, reason string, at time.Time) ([]*Record, error) {
	recs, err := r.Records(ctx, enrollmentID)
	if err != nil {
		return nil, err
	}
	var open []*Record
	for _, rec := range recs {
		if rec.State.Final() {
			continue
		}
		rec.State, rec.Detail, rec.UpdatedAt = StateCancelled, reason, at.UTC()
		if err := r.PutRecord(ctx, rec); err != nil {
			return nil, err
		}
		open = append(open, rec)
	}
	return open, nil
}

// Unanswered returns the commands created before cutoff that no device has answered (queued,
// pushed, or deferred with NotNow).
func Unanswered(ctx context.Context, r Repository, cutoff time.Time) ([]*Record, error) {
	var out []*Record
	err := r.EachRecord(ctx, func(rec *Record) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !rec.State.Final() && rec.CreatedAt.Before(cutoff) {
			out = append(out, rec)
		}
		return nil
	})
	return out, err
}

// pinPurpose binds a sealed PIN to its command: a PIN copied to another command's slot does not
// open.
func pinPurpose(uuid string) string { return "command-pin/" + uuid }

// PutPIN stores the PIN of a lock or erase command, sealed under key and bound to the command.
func PutPIN(ctx context.Context, r Repository, key *seal.Key, uuid, pin string) error {
	return r.PutSealedPIN(ctx, uuid, key.Seal(pinPurpose(uuid), []byte(pin)))
}

// PIN returns the PIN of command uuid, opened with key, or ErrNotFound when it has none.
func PIN(ctx context.Context, r Repository, key *seal.Key, uuid string) (string, error) {
	sealed, err := r.SealedPIN(ctx, uuid)
	if err == nil && len(sealed) == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return "", err
	}
	pin, err := key.Open(pinPurpose(uuid), sealed)
	if err != nil {
		return "", fmt.Errorf("commands: opening the PIN of command %s: %w", uuid, err)
	}
	return string(pin), nil
}

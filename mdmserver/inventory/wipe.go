package inventory

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// WipeState is where an unfinished wipe of a device stands.
type WipeState string

// The states of an unfinished wipe. A finished wipe leaves none: the device is wiped.
const (
	// WipePending is a wipe ordered and not yet answered: the device is denied from the moment
	// the wipe was accepted, and a second wipe is refused while it is on its way.
	WipePending WipeState = "pending"
	// WipeIncomplete is a wipe the device answered without removing all managed data (partial)
	// or could not run (failed): the device is denied, is never called wiped, keeps its
	// identity, and may be ordered wiped again.
	WipeIncomplete WipeState = "incomplete"
)

// Valid reports whether w is a known wipe state.
func (w WipeState) Valid() bool { return w == WipePending || w == WipeIncomplete }

// WipeStatus is a device's unfinished wipe: the command that carries it and where it stands.
type WipeStatus struct {
	CommandID string    `json:"command_id"`
	State     WipeState `json:"state"`
}

// Pending reports whether the wipe is ordered and not yet answered (false for nil).
func (w *WipeStatus) Pending() bool { return w != nil && w.State == WipePending }

func (w *WipeStatus) validate() error {
	switch {
	case w == nil:
		return nil
	case !w.State.Valid():
		return fmt.Errorf("wipe state %q is not %q or %q", w.State, WipePending, WipeIncomplete)
	case w.CommandID == "" || len(w.CommandID) > maxText:
		return fmt.Errorf("a wipe needs its command ID (at most %d bytes)", maxText)
	}
	return nil
}

// OrderWipe marks on d that the wipe commandID was ordered: d is wipe pending until the wipe is
// answered. It replaces an incomplete wipe (the new one is to finish that job). Call it inside
// the Update that commits the order, so that the order is in force exactly when it is on the
// record.
func (d *Device) OrderWipe(commandID string) {
	d.Wipe = &WipeStatus{CommandID: commandID, State: WipePending}
}

// MarkWipeIncomplete records, through r, that the wipe commandID of device id was answered without
// finishing (partial or failed): the device goes from wipe pending to wipe incomplete. It
// reports false, changing nothing, when commandID is not the device's pending wipe (an older
// wipe's late answer, say).
func MarkWipeIncomplete(ctx context.Context, r Repository, id, commandID string, now time.Time) (bool, error) {
	marked := false
	_, err := Update(ctx, r, id, now, func(d *Device) error {
		if !d.Wipe.Pending() || d.Wipe.CommandID != commandID {
			return errNoChange
		}
		d.Wipe, marked = &WipeStatus{CommandID: commandID, State: WipeIncomplete}, true
		return nil
	})
	if errors.Is(err, errNoChange) {
		return false, nil
	}
	return marked, err
}

// FinishWipe records, through r, that device id acknowledged a wipe that removed everything:
// it becomes wiped at at (it reports true then) and its unfinished wipe, pending or incomplete,
// is gone. A device already wiped only loses the mark, so finishing again is harmless.
func FinishWipe(ctx context.Context, r Repository, id string, at time.Time) (wiped bool, err error) {
	_, err = update(ctx, r, id, at, func(d *Device) error {
		d.Wipe = nil
		if d.State == StateWiped {
			return nil
		}
		if !CanTransition(d.State, StateWiped) {
			return fmt.Errorf("%w: %s to %s (device %s)", ErrInvalidTransition, d.State, StateWiped, d.ID)
		}
		d.State, d.StateChangedAt, wiped = StateWiped, at.UTC(), true
		return nil
	}, false)
	if err != nil {
		return false, err
	}
	return wiped, nil
}

// errNoChange stops an Update whose function found nothing to change, so nothing is written.
var errNoChange = errors.New("inventory: nothing to change")

package revocation

import (
	"context"
	"log/slog"

	"github.com/halemdm/hale/internal/randid"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
)

// causeKey carries, in the context of a device change, the command that caused it.
type causeKey struct{}

type cause struct{ deviceID, commandID string }

// CausedBy marks ctx as the change commandID (a lock, lost mode or wipe, ordered or
// acknowledged) makes to deviceID: the security events of that device's change carry the
// command ID as their txn, so a backend can tie a revocation to the command behind it.
func CausedBy(ctx context.Context, deviceID, commandID string) context.Context {
	return context.WithValue(ctx, causeKey{}, cause{deviceID, commandID})
}

// causeOf is the txn of a device's change: the command that caused it, or a new ID shared by
// the events of this one change (SSF: txn is unique to the underlying event).
func causeOf(ctx context.Context, deviceID string) string {
	if c, ok := ctx.Value(causeKey{}).(cause); ok && c.deviceID == deviceID && c.commandID != "" {
		return c.commandID
	}
	return "chg_" + randid.Hex(12)
}

// Devices reads device records (an *inventory.Service).
type Devices interface {
	Get(ctx context.Context, id string) (*inventory.Device, error)
}

// Engine re-evaluates a device (a *compliance.Engine); its change listeners, the Emitter among
// them, run before DeviceChanged returns.
type Engine interface {
	DeviceChanged(ctx context.Context, d *inventory.Device) (policies.Verdict, error)
}

// Reevaluator re-derives a device's access decision after a service changed its state (a lock,
// lost mode, a wipe ordered or finished). A failure is logged, not returned: the change itself
// has committed, and the staleness pass re-evaluates every device anyway.
type Reevaluator struct {
	Devices Devices
	Engine  Engine
	Log     *slog.Logger
	// AfterChange, when set, runs after the re-evaluation: the messaging app instances a wipe
	// or unenroll ended are revoked there, once the revocation events have named them.
	AfterChange func(ctx context.Context, d *inventory.Device)
}

// DeviceChanged re-evaluates deviceID. commandID, when not empty, is the command that caused the
// change: the security events the change sends carry it as their txn.
func (r Reevaluator) DeviceChanged(ctx context.Context, deviceID, commandID string) {
	if commandID != "" {
		ctx = CausedBy(ctx, deviceID, commandID)
	}
	d, err := r.Devices.Get(ctx, deviceID)
	if err != nil {
		r.Log.ErrorContext(ctx, "device changed but cannot be read", "device_id", deviceID, "err", err)
		return
	}
	if _, err := r.Engine.DeviceChanged(ctx, d); err != nil {
		r.Log.ErrorContext(ctx, "re-evaluating a changed device failed", "device_id", deviceID, "err", err)
	}
	if r.AfterChange != nil {
		r.AfterChange(ctx, d)
	}
}

package applesim

import (
	"context"
	"errors"

	"github.com/halemdm/hale/internal/fakeapns"
)

// PushSource delivers APNs pushes by device token; *fakeapns.Server is
// one.
type PushSource interface {
	Subscribe(token string) (<-chan fakeapns.Push, func())
}

// RunPushLoop subscribes to src for the device's token, polls once
// (as a device does when it comes online, which also picks up commands
// whose push came before the subscription), then polls whenever a push
// carrying the device's push magic arrives. It returns when ctx ends
// (ctx.Err()), when src closes the subscription (nil) or when the
// device is erased ([ErrErased]). Other Poll errors are logged and the
// loop goes on, as a device retries at the next push.
func (d *Device) RunPushLoop(ctx context.Context, src PushSource) error {
	ch, cancel := src.Subscribe(d.PushToken())
	defer cancel()
	poll := func() error {
		if _, err := d.Poll(ctx); err != nil {
			if errors.Is(err, ErrErased) || errors.Is(err, ErrUnenrolled) {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			d.logger.Warn("poll failed", "err", err)
		}
		return nil
	}
	if err := poll(); err != nil {
		return err
	}
	for {
		// A device on declarative management reports subscribed status items the
		// moment they change, unasked. The change channel is taken before the
		// values are compared, so a change made at any moment is either in this
		// comparison or wakes the next.
		d.mu.Lock()
		changed := d.changed
		d.mu.Unlock()
		if _, err := d.ReportStatus(ctx, false); err != nil {
			if errors.Is(err, ErrErased) || errors.Is(err, ErrUnenrolled) {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			d.logger.Warn("status report failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case p, ok := <-ch:
			if !ok {
				return nil
			}
			if p.PushMagic != d.pushMagic {
				// Devices ignore MDM pushes that lack their magic.
				d.logger.Warn("ignoring push with wrong push magic", "apns_id", p.ID)
				continue
			}
			if err := poll(); err != nil {
				return err
			}
		}
	}
}

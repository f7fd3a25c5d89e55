package events

import (
	"context"
	"fmt"

	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/posture"
)

// Subjects. A stream starts with every device's events (SSF default_subjects "ALL"). The
// receiver narrows it in one of two ways, kept in the subjects bucket:
//
//   - removing a device from an all-devices stream excludes that device; adding an excluded
//     device back lifts the exclusion (SSF: re-adding a removed subject);
//   - adding a device that is not excluded makes the stream listed: from then on it carries
//     only the devices added (the exclusions are dropped), and removing one takes it off the
//     list. A listed stream never goes back to all devices; emptied, it carries verification
//     events only. Delete and re-create the stream to start again from all devices.
//
// The stream's own ID is always a subject (its verification events) and cannot be removed.

// maxSubjects bounds the subjects bucket entries of one stream.
const maxSubjects = 10000

// Subject markers in the subjects bucket.
const (
	markListed   = '+' // on a listed stream: the device is delivered
	markExcluded = '-' // on an all-devices stream: the device is not
)

// subjectKey is streamID 0x00 deviceID.
func subjectKey(streamID, deviceID string) []byte { return []byte(streamID + "\x00" + deviceID) }

// validSubject checks an SSF subject: Hale's subjects are devices, named as in its SETs.
func validSubject(streamID string, sub posture.SubjectID) error {
	if sub.Format != "opaque" {
		return fmt.Errorf("%w subject: Hale's subjects are devices, named {\"format\":\"opaque\",\"id\":DEVICE_ID}; format %q is not supported", ErrInvalid, truncate(sub.Format, 32))
	}
	if sub.ID == "" || len(sub.ID) > 256 || hasControl(sub.ID) {
		return fmt.Errorf("%w subject: id must be a device ID of 1 to 256 characters", ErrInvalid)
	}
	if sub.ID == streamID {
		return fmt.Errorf("%w subject: a stream's own subject is always part of it", ErrInvalid)
	}
	return nil
}

// includes reports, inside tx, whether the stream delivers deviceID's events.
func includes(tx *bbolt.Tx, rec *record, deviceID string) bool {
	if !rec.Listed && rec.Subjects == 0 {
		return true
	}
	v := tx.Bucket(subjectsBucket).Get(subjectKey(rec.ID, deviceID))
	if rec.Listed {
		return len(v) == 1 && v[0] == markListed
	}
	return len(v) != 1 || v[0] != markExcluded
}

// AddSubject adds a device to a stream the caller owns (see the Subjects comment above).
func (t *Transmitter) AddSubject(ctx context.Context, caller Caller, streamID string, sub posture.SubjectID) error {
	if err := validSubject(streamID, sub); err != nil {
		return err
	}
	return t.change(ctx, caller, streamID, func(tx *bbolt.Tx, rec *record) error {
		b, key := tx.Bucket(subjectsBucket), subjectKey(streamID, sub.ID)
		v := b.Get(key)
		switch {
		case !rec.Listed && len(v) == 1 && v[0] == markExcluded:
			rec.Subjects--
			return b.Delete(key)
		case !rec.Listed:
			if err := deletePrefix(b, outboxPrefix(streamID)); err != nil {
				return err
			}
			rec.Listed, rec.Subjects = true, 1
			return b.Put(key, []byte{markListed})
		case v != nil:
			return nil
		case rec.Subjects >= maxSubjects:
			return fmt.Errorf("%w: stream %s already lists %d devices", ErrTooMany, streamID, maxSubjects)
		}
		rec.Subjects++
		return b.Put(key, []byte{markListed})
	})
}

// RemoveSubject stops a stream the caller owns from delivering a device's events.
func (t *Transmitter) RemoveSubject(ctx context.Context, caller Caller, streamID string, sub posture.SubjectID) error {
	if err := validSubject(streamID, sub); err != nil {
		return err
	}
	return t.change(ctx, caller, streamID, func(tx *bbolt.Tx, rec *record) error {
		b, key := tx.Bucket(subjectsBucket), subjectKey(streamID, sub.ID)
		v := b.Get(key)
		switch {
		case rec.Listed && v == nil, !rec.Listed && v != nil:
			return nil // not delivered already
		case rec.Listed:
			rec.Subjects--
			return b.Delete(key)
		case rec.Subjects >= maxSubjects:
			return fmt.Errorf("%w: stream %s already excludes %d devices", ErrTooMany, streamID, maxSubjects)
		}
		rec.Subjects++
		return b.Put(key, []byte{markExcluded})
	})
}

// StreamStatus is a stream's status (SSF 1.0 section 8.1.2).
type StreamStatus struct {
	StreamID string `json:"stream_id"`
	Status   string `json:"status"`
	Reason   string `json:"reason,omitempty"`
}

// Status returns the status of a stream the caller owns or may read.
func (t *Transmitter) Status(ctx context.Context, caller Caller, streamID string) (StreamStatus, error) {
	s, err := t.GetStream(ctx, caller, streamID)
	if err != nil {
		return StreamStatus{}, err
	}
	return StreamStatus{StreamID: s.StreamID, Status: s.Status, Reason: s.StatusReason}, nil
}

// SetStatus enables, pauses or disables a stream the caller owns. A paused stream keeps its
// events and delivers them when enabled again; disabling drops the events waiting for it, in
// the same transaction, and it gets none until enabled.
func (t *Transmitter) SetStatus(ctx context.Context, caller Caller, streamID, status, reason string) (StreamStatus, error) {
	switch status {
	case StatusEnabled, StatusPaused, StatusDisabled:
	default:
		return StreamStatus{}, fmt.Errorf("%w status: want enabled, paused or disabled, got %q", ErrInvalid, truncate(status, 32))
	}
	if len(reason) > maxReason || hasControl(reason) {
		return StreamStatus{}, fmt.Errorf("%w status: reason is longer than %d bytes or has control characters", ErrInvalid, maxReason)
	}
	err := t.change(ctx, caller, streamID, func(tx *bbolt.Tx, rec *record) error {
		rec.Status, rec.StatusReason = status, reason
		if status == StatusDisabled {
			return deletePrefix(tx.Bucket(outboxBucket), outboxPrefix(streamID))
		}
		return nil
	})
	if err != nil {
		return StreamStatus{}, err
	}
	return StreamStatus{StreamID: streamID, Status: status, Reason: reason}, nil
}

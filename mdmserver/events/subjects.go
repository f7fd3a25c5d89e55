package events

import (
	"context"
	"fmt"

	"github.com/halemdm/hale/api"

	"github.com/halemdm/hale/posture"
)

// Subjects. A stream starts with every device's events (SSF default_subjects "ALL"). The
// receiver narrows it in one of two ways, kept as subject marks (Repository.PutSubject):
//
//   - removing a device from an all-devices stream excludes that device; adding an excluded
//     device back lifts the exclusion (SSF: re-adding a removed subject);
//   - adding a device that is not excluded makes the stream listed: from then on it carries
//     only the devices added (the exclusions are dropped), and removing one takes it off the
//     list. A listed stream never goes back to all devices; emptied, it carries verification
//     events only. Delete and re-create the stream to start again from all devices.
//
// The stream's own ID is always a subject (its verification events) and cannot be removed.

// maxSubjects bounds the subject marks of one stream.
const maxSubjects = 10000

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

// includes reports, through r, whether the stream delivers deviceID's events.
func includes(ctx context.Context, r Repository, rec *StreamRecord, deviceID string) (bool, error) {
	if !rec.Listed && rec.Subjects == 0 {
		return true, nil
	}
	m, err := r.Subject(ctx, rec.ID, deviceID)
	if err != nil {
		return false, err
	}
	if rec.Listed {
		return m == SubjectListed, nil
	}
	return m != SubjectExcluded, nil
}

// AddSubject adds a device to a stream the caller owns (see the Subjects comment above).
func (t *Transmitter) AddSubject(ctx context.Context, caller Caller, streamID string, sub posture.SubjectID) error {
	if err := validSubject(streamID, sub); err != nil {
		return err
	}
	return t.change(ctx, caller, streamID, func(r Repository, rec *StreamRecord) error {
		m, err := r.Subject(ctx, streamID, sub.ID)
		if err != nil {
			return err
		}
		switch {
		case !rec.Listed && m == SubjectExcluded:
			rec.Subjects--
			return r.DeleteSubject(ctx, streamID, sub.ID)
		case !rec.Listed:
			if err := r.ClearSubjects(ctx, streamID); err != nil {
				return err
			}
			rec.Listed, rec.Subjects = true, 1
			return r.PutSubject(ctx, streamID, sub.ID, SubjectListed)
		case m != SubjectAbsent:
			return nil
		case rec.Subjects >= maxSubjects:
			return fmt.Errorf("%w: stream %s already lists %d devices", ErrTooMany, streamID, maxSubjects)
		}
		rec.Subjects++
		return r.PutSubject(ctx, streamID, sub.ID, SubjectListed)
	})
}

// RemoveSubject stops a stream the caller owns from delivering a device's events.
func (t *Transmitter) RemoveSubject(ctx context.Context, caller Caller, streamID string, sub posture.SubjectID) error {
	if err := validSubject(streamID, sub); err != nil {
		return err
	}
	return t.change(ctx, caller, streamID, func(r Repository, rec *StreamRecord) error {
		m, err := r.Subject(ctx, streamID, sub.ID)
		if err != nil {
			return err
		}
		switch {
		case rec.Listed && m == SubjectAbsent, !rec.Listed && m != SubjectAbsent:
			return nil // not delivered already
		case rec.Listed:
			rec.Subjects--
			return r.DeleteSubject(ctx, streamID, sub.ID)
		case rec.Subjects >= maxSubjects:
			return fmt.Errorf("%w: stream %s already excludes %d devices", ErrTooMany, streamID, maxSubjects)
		}
		rec.Subjects++
		return r.PutSubject(ctx, streamID, sub.ID, SubjectExcluded)
	})
}

// StreamStatus is a stream's status (SSF 1.0 section 8.1.2): the wire type of package api.
type StreamStatus = api.EventStreamStatus

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
	err := t.change(ctx, caller, streamID, func(r Repository, rec *StreamRecord) error {
		rec.Status, rec.StatusReason = status, reason
		if status == StatusDisabled {
			return r.ClearOutbox(ctx, streamID)
		}
		return nil
	})
	if err != nil {
		return StreamStatus{}, err
	}
	return StreamStatus{StreamID: streamID, Status: status, Reason: reason}, nil
}

package inventory

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Ended reports whether a device in state s has ended its managed life (wiped, unenrolled or
// retired). Such a device cannot come back to life: a returning device enrolls anew and gets a
// new record.
func (s State) Ended() bool {
	return s == StateWiped || s == StateUnenrolled || s == StateRetired
}

// LinkEnrollment gives device id the nanomdm enrollment ID eid and applies fn to it, through r.
// When no device has id, fn fills a new record (isNew is true; its ID is set) enrolled now.
//
// An enrollment ID belongs to one device. When another device holds eid it must have ended (a
// wiped Mac enrolling again through a new profile): it gives the ID up and keeps the rest of its
// record, so its history stays. A live holder is ErrConflict: the enrollment is someone else's.
// If fn returns an error it is returned, and the caller's unit of work must not commit.
func LinkEnrollment(ctx context.Context, r Repository, id, eid string, now time.Time, fn func(d *Device, isNew bool) error) (*Device, error) {
	if id == "" || eid == "" {
		return nil, fmt.Errorf("%w: a link needs a device ID and an enrollment ID", ErrInvalid)
	}
	holder, err := r.GetByEnrollmentID(ctx, eid)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return nil, err
	case holder.ID != id && !holder.State.Ended():
		return nil, fmt.Errorf("%w: enrollment %q belongs to device %s (%s)", ErrConflict, eid, holder.ID, holder.State)
	case holder.ID != id:
		holder.EnrollmentID = ""
		if err := Save(ctx, r, holder, now); err != nil {
			return nil, err
		}
	}
	d, err := r.Get(ctx, id)
	isNew := errors.Is(err, ErrNotFound)
	if isNew {
		d = &Device{ID: id}
	} else if err != nil {
		return nil, err
	}
	var old *Device
	if !isNew {
		before := *d
		old = &before
	}
	d.EnrollmentID = eid
	if err := fn(d, isNew); err != nil {
		return nil, err
	}
	if d.ID != id || d.EnrollmentID != eid {
		return nil, fmt.Errorf("%w: a link may not change the device or enrollment ID", ErrInvalid)
	}
	if isNew {
		now := now.UTC()
		if d.State == "" {
			d.State = StateActive
		}
		if d.EnrolledAt.IsZero() {
			d.EnrolledAt = now
		}
		d.StateChangedAt = d.EnrolledAt
	}
	if err := save(ctx, r, d, old, now); err != nil {
		return nil, err
	}
	return d, nil
}

package inventory

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Create stores a new device through r. An empty ID gets NewID; an empty State is active; zero
// EnrolledAt and StateChangedAt are now. A device with the same ID, or one holding any of its
// identifiers, is ErrConflict.
func Create(ctx context.Context, r Repository, d Device, now time.Time) (*Device, error) {
	if d.ID == "" {
		d.ID = NewID()
	}
	now = now.UTC()
	if d.State == "" {
		d.State = StateActive
	}
	if d.EnrolledAt.IsZero() {
		d.EnrolledAt = now
	}
	if d.StateChangedAt.IsZero() {
		d.StateChangedAt = d.EnrolledAt
	}
	switch _, err := r.Get(ctx, d.ID); {
	case err == nil:
		return nil, fmt.Errorf("%w: device id %s exists", ErrConflict, d.ID)
	case !errors.Is(err, ErrNotFound):
		return nil, err
	}
	if err := save(ctx, r, &d, nil, now); err != nil {
		return nil, err
	}
	return &d, nil
}

// Save validates d and writes it with its index entries through r, creating or replacing the
// record. Against the stored record it enforces the state transition table, keeps EnrolledAt,
// and moves index entries. The caller sets StateChangedAt when it changes State (zero is
// stamped now). d's serials are normalized in place.
func Save(ctx context.Context, r Repository, d *Device, now time.Time) error {
	old, err := r.Get(ctx, d.ID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	return save(ctx, r, d, old, now)
}

// save is Save with the stored record already read (nil: there is none).
func save(ctx context.Context, r Repository, d, old *Device, now time.Time) error {
	if err := d.normalize(); err != nil {
		return err
	}
	if d.StateChangedAt.IsZero() {
		d.StateChangedAt = now.UTC()
	}
	if old != nil {
		if !CanTransition(old.State, d.State) {
			return fmt.Errorf("%w: %s to %s (device %s)", ErrInvalidTransition, old.State, d.State, d.ID)
		}
		d.EnrolledAt = old.EnrolledAt
	} else if d.EnrolledAt.IsZero() {
		d.EnrolledAt = now.UTC()
	}
	return r.Put(ctx, d)
}

// Update applies fn to the device with id and saves the result through r. fn may change
// anything but the ID and EnrolledAt; state changes must follow the transition table, and if fn
// changes State without touching StateChangedAt, it is stamped now. If fn returns an error
// nothing is written.
func Update(ctx context.Context, r Repository, id string, now time.Time, fn func(*Device) error) (*Device, error) {
	return update(ctx, r, id, now, fn, true)
}

func update(ctx context.Context, r Repository, id string, now time.Time, fn func(*Device) error, stamp bool) (*Device, error) {
	d, err := r.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	before := *d
	if err := fn(d); err != nil {
		return nil, err
	}
	if d.ID != id {
		return nil, fmt.Errorf("%w: the device id cannot change", ErrInvalid)
	}
	if stamp && d.State != before.State && d.StateChangedAt.Equal(before.StateChangedAt) {
		d.StateChangedAt = now.UTC()
	}
	if err := save(ctx, r, d, &before, now); err != nil {
		return nil, err
	}
	return d, nil
}

// SetState moves device id to state at time at, following the transition table. Setting the
// current state again changes nothing.
func SetState(ctx context.Context, r Repository, id string, state State, at time.Time) (*Device, error) {
	if !state.Valid() {
		return nil, fmt.Errorf("%w: unknown state %q (want one of %v)", ErrInvalid, state, States)
	}
	return update(ctx, r, id, at, func(d *Device) error {
		if d.State == state {
			return nil
		}
		if !CanTransition(d.State, state) {
			return fmt.Errorf("%w: %s to %s (device %s)", ErrInvalidTransition, d.State, state, d.ID)
		}
		d.State, d.StateChangedAt = state, at.UTC()
		return nil
	}, false)
}

// GetByCertSerial returns the device a certificate with this serial was issued to. serial may
// be any spelling NormalizeSerial accepts; any other is ErrNotFound. Serials stay indexed for
// the device's lifetime, so the caller must still check the device's State (and the
// certificate's revocation).
func GetByCertSerial(ctx context.Context, r Repository, serial string) (*Device, error) {
	sn, ok := NormalizeSerial(serial)
	if !ok {
		return nil, ErrNotFound
	}
	return r.GetByCertSerial(ctx, sn)
}

// AddCert records that cert was issued to device id: its serial and its fingerprint. Adding a
// certificate the device has is a no-op; one whose serial belongs to another device is
// ErrConflict.
func AddCert(ctx context.Context, r Repository, id string, cert *x509.Certificate, now time.Time) (*Device, error) {
	return Update(ctx, r, id, now, func(d *Device) error { d.RecordCert(cert); return nil })
}

// AddCertSerial records that a certificate with serial was issued to device id. Adding a serial
// the device has is a no-op; one that belongs to another device is ErrConflict.
func AddCertSerial(ctx context.Context, r Repository, id, serial string, now time.Time) (*Device, error) {
	sn, ok := NormalizeSerial(serial)
	if !ok {
		return nil, fmt.Errorf("%w: certificate serial %q is not hex", ErrInvalid, serial)
	}
	return Update(ctx, r, id, now, func(d *Device) error {
		if !slices.Contains(d.CertSerials, sn) {
			d.CertSerials = append(d.CertSerials, sn)
		}
		return nil
	})
}

// Touch records that device id was seen at time at. It never moves last_seen backwards, so
// running it again (a Batch may) is harmless.
func Touch(ctx context.Context, r Repository, id string, at time.Time) error {
	return r.Touch(ctx, id, at.UTC())
}

package inventory

import (
	"context"
	"crypto/x509"
	"errors"
	"time"
)

// Service runs the inventory's rules each as a unit of work of its own, for callers with nothing
// else to commit with them. A caller that must commit a device change together with other
// writes (an audit entry) calls the package's functions on its own unit of work's Repository.
type Service struct {
	st  Store
	now func() time.Time
}

// Option configures a Service.
type Option func(*Service)

// WithClock sets the clock used for enrolled_at and state_changed_at defaults (tests).
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// NewService returns a Service on st.
func NewService(st Store, opts ...Option) *Service {
	s := &Service{st: st, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s
}

// view runs fn on the repository of one read transaction.
func (s *Service) view(ctx context.Context, fn func(Repository) error) error {
	return s.st.View(ctx, func(tx Tx) error { return fn(tx.Inventory()) })
}

// write runs fn on the repository of one write transaction and returns the device it gives.
func (s *Service) write(ctx context.Context, fn func(Repository) (*Device, error)) (*Device, error) {
	var d *Device
	err := s.st.Update(ctx, func(tx Tx) error {
		var err error
		d, err = fn(tx.Inventory())
		return err
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// Get returns the device with id.
func (s *Service) Get(ctx context.Context, id string) (*Device, error) {
	var d *Device
	err := s.st.View(ctx, func(tx Tx) error {
		var err error
		d, err = tx.Inventory().Get(ctx, id)
		return err
	})
	return d, err
}

// GetByEnrollmentID returns the device with nanomdm enrollment ID eid.
func (s *Service) GetByEnrollmentID(ctx context.Context, eid string) (*Device, error) {
	var d *Device
	err := s.st.View(ctx, func(tx Tx) error {
		var err error
		d, err = tx.Inventory().GetByEnrollmentID(ctx, eid)
		return err
	})
	return d, err
}

// GetByCertSerial returns the device a certificate with this serial was issued to (see the
// package's GetByCertSerial). It runs on every agent request: one closure, no helper layers.
func (s *Service) GetByCertSerial(ctx context.Context, serial string) (*Device, error) {
	var d *Device
	err := s.st.View(ctx, func(tx Tx) error {
		var err error
		d, err = GetByCertSerial(ctx, tx.Inventory(), serial)
		return err
	})
	return d, err
}

// Create stores a new device (see the package's Create); it is committed before Create returns.
func (s *Service) Create(ctx context.Context, d Device) (*Device, error) {
	return s.write(ctx, func(r Repository) (*Device, error) { return Create(ctx, r, d, s.now()) })
}

// Update applies fn to the device with id and stores the result, in one transaction (see the
// package's Update; state_changed_at is stamped with the service's clock).
func (s *Service) Update(ctx context.Context, id string, fn func(*Device) error) (*Device, error) {
	return s.write(ctx, func(r Repository) (*Device, error) { return Update(ctx, r, id, s.now(), fn) })
}

// SetState moves device id to state at time at, following the transition table.
func (s *Service) SetState(ctx context.Context, id string, state State, at time.Time) (*Device, error) {
	return s.write(ctx, func(r Repository) (*Device, error) { return SetState(ctx, r, id, state, at) })
}

// AddCert records that cert was issued to device id (see the package's AddCert).
func (s *Service) AddCert(ctx context.Context, id string, cert *x509.Certificate) (*Device, error) {
	return s.write(ctx, func(r Repository) (*Device, error) { return AddCert(ctx, r, id, cert, s.now()) })
}

// AddCertSerial records that a certificate with serial was issued to device id.
func (s *Service) AddCertSerial(ctx context.Context, id, serial string) (*Device, error) {
	return s.write(ctx, func(r Repository) (*Device, error) { return AddCertSerial(ctx, r, id, serial, s.now()) })
}

// LinkEnrollment gives device id the nanomdm enrollment ID eid and applies fn to it, in one
// transaction (see the package's LinkEnrollment). If fn returns an error nothing is written.
func (s *Service) LinkEnrollment(ctx context.Context, id, eid string, fn func(d *Device, isNew bool) error) (*Device, error) {
	return s.write(ctx, func(r Repository) (*Device, error) { return LinkEnrollment(ctx, r, id, eid, s.now(), fn) })
}

// LastSeenResolution is how fine a device's last_seen is kept: a caller touches a device seen
// again only when its last_seen is at least this old. Writing it on every request would make
// each agent long poll and nonce fetch a disk commit; once a minute is all an inventory view
// needs, and staleness is judged from report times, not from last_seen.
const LastSeenResolution = time.Minute

// Touch records that device id was seen at time at; it never moves last_seen backwards.
// Touches from many requests are coalesced into few transactions (Store.Batch), so it is cheap
// to call on every authenticated request; it returns once the write is committed.
func (s *Service) Touch(ctx context.Context, id string, at time.Time) error {
	return s.st.Batch(ctx, func(tx Tx) error { return Touch(ctx, tx.Inventory(), id, at) })
}

// List returns a page of devices matching f (see the package's List).
func (s *Service) List(ctx context.Context, f Filter, cursor string, limit int) ([]Device, string, error) {
	var devs []Device
	next := ""
	err := s.view(ctx, func(r Repository) error {
		var err error
		devs, next, err = List(ctx, r, f, cursor, limit)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return devs, next, nil
}

// Count returns how many devices match f.
func (s *Service) Count(ctx context.Context, f Filter) (int, error) {
	n := 0
	err := s.view(ctx, func(r Repository) error {
		var err error
		n, err = Count(ctx, r, f)
		return err
	})
	return n, err
}

// forEachChunk is how many records ForEach reads per read transaction.
const forEachChunk = 512

// errChunkFull ends a read transaction of ForEach once it holds a chunk.
var errChunkFull = errors.New("inventory: chunk full")

// ForEach calls fn for every device in ID order, stopping at the first error. It reads in chunks,
// each in its own short read transaction, and calls fn outside any transaction: fn may write
// (a long read transaction would block bbolt from growing its file, deadlocking a writer in the
// same goroutine). A device added or changed during the pass may or may not be seen in its new
// form; every device present throughout is seen exactly once.
func (s *Service) ForEach(ctx context.Context, fn func(*Device) error) error {
	after := ""
	chunk := make([]*Device, 0, forEachChunk)
	for {
		chunk = chunk[:0]
		err := s.view(ctx, func(r Repository) error {
			return r.ForEach(ctx, after, func(d *Device) error {
				chunk = append(chunk, d)
				if len(chunk) == forEachChunk {
					return errChunkFull
				}
				return nil
			})
		})
		if err != nil && !errors.Is(err, errChunkFull) {
			return err
		}
		for _, d := range chunk {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(d); err != nil {
				return err
			}
		}
		if len(chunk) < forEachChunk {
			return nil
		}
		after = chunk[len(chunk)-1].ID
	}
}

package approvals

import (
	"context"
	"time"
)

// Service answers reads of the requests, and records their commands, each in a unit of work of
// its own on its clock. Creating and deciding a request commit with the caller's audit entry,
// so the caller runs [Create] and [Decide] in a unit of work of its own instead. It is safe for
// concurrent use.
type Service struct {
	st  Store
	now func() time.Time
}

// Option configures a Service.
type Option func(*Service)

// WithClock sets the clock used for expiry (tests).
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// New returns the approvals service on st.
func New(st Store, opts ...Option) *Service {
	s := &Service{st: st, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Now reads the service's clock, for a step that runs this package's rules in a unit of work of
// its own.
func (s *Service) Now() time.Time { return s.now() }

// Get returns one request, with its Params.
func (s *Service) Get(ctx context.Context, id string) (r *Request, err error) {
	err = s.st.View(ctx, func(tx Tx) error {
		r, err = Get(ctx, tx.Approvals(), id, s.now())
		return err
	})
	return r, err
}

// List returns the requests in state (all when empty), newest first.
func (s *Service) List(ctx context.Context, state string) (list []Request, err error) {
	err = s.st.View(ctx, func(tx Tx) error {
		list, err = List(ctx, tx.Approvals(), state, s.now())
		return err
	})
	return list, err
}

// Pending returns the device's request awaiting a decision, or nil.
func (s *Service) Pending(ctx context.Context, deviceID string) (r *Request, err error) {
	err = s.st.View(ctx, func(tx Tx) error {
		r, err = Pending(ctx, tx.Approvals(), deviceID, s.now())
		return err
	})
	return r, err
}

// SetCommand records the command an approved request was carried out with.
func (s *Service) SetCommand(ctx context.Context, id, commandID string) error {
	return s.st.Update(ctx, func(tx Tx) error { return SetCommand(ctx, tx.Approvals(), id, commandID) })
}

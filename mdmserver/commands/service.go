package commands

import (
	"context"
	"slices"
	"time"

	"github.com/halemdm/hale/internal/seal"
)

// Service runs the commands rules each as a unit of work of its own, for callers with nothing
// else to commit with them. A caller that must commit a command write together with other
// writes (a lock's PIN with the device's new state) calls the package's functions on its own
// unit of work's Repository.
type Service struct {
	st Store
}

// NewService returns a Service on st.
func NewService(st Store) *Service { return &Service{st: st} }

// view runs fn on the repository of one read transaction.
func (s *Service) view(ctx context.Context, fn func(Repository) error) error {
	return s.st.View(ctx, func(tx Tx) error { return fn(tx.Commands()) })
}

// update runs fn on the repository of one write transaction.
func (s *Service) update(ctx context.Context, fn func(Repository) error) error {
	return s.st.Update(ctx, func(tx Tx) error { return fn(tx.Commands()) })
}

// Put stores rec (insert or replace); it is committed when Put returns.
func (s *Service) Put(ctx context.Context, rec *Record) error {
	return s.update(ctx, func(r Repository) error { return r.PutRecord(ctx, rec) })
}

// Update applies fn to the stored record in one transaction (see UpdateRecord).
func (s *Service) Update(ctx context.Context, enrollmentID, uuid string, fn func(*Record)) (*Record, error) {
	var rec *Record
	err := s.update(ctx, func(r Repository) error {
		var err error
		rec, err = UpdateRecord(ctx, r, enrollmentID, uuid, fn)
		return err
	})
	return rec, err
}

// PutShared is Put in a transaction it may share with other goroutines' (Store.Batch), for
// commands queued for many devices at once; it is committed when PutShared returns.
func (s *Service) PutShared(ctx context.Context, rec *Record) error {
	return s.st.Batch(ctx, func(tx Tx) error { return tx.Commands().PutRecord(ctx, rec) })
}

// UpdateShared is Update in a transaction it may share with other goroutines' (Store.Batch),
// for the many small updates that background pushes make at once. fn may run more than once.
func (s *Service) UpdateShared(ctx context.Context, enrollmentID, uuid string, fn func(*Record)) (*Record, error) {
	var rec *Record
	err := s.st.Batch(ctx, func(tx Tx) error {
		var err error
		rec, err = UpdateRecord(ctx, tx.Commands(), enrollmentID, uuid, fn)
		return err
	})
	return rec, err
}

// Get returns one command record.
func (s *Service) Get(ctx context.Context, enrollmentID, uuid string) (*Record, error) {
	var rec *Record
	err := s.view(ctx, func(r Repository) error {
		var err error
		rec, err = r.Record(ctx, enrollmentID, uuid)
		return err
	})
	return rec, err
}

// List returns an enrollment's command records, oldest first.
func (s *Service) List(ctx context.Context, enrollmentID string) ([]*Record, error) {
	var out []*Record
	err := s.view(ctx, func(r Repository) error {
		var err error
		out, err = r.Records(ctx, enrollmentID)
		return err
	})
	slices.SortStableFunc(out, func(a, b *Record) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, err
}

// Open returns an enrollment's unanswered commands (queued, pushed or deferred), oldest first.
func (s *Service) Open(ctx context.Context, enrollmentID string) ([]*Record, error) {
	all, err := s.List(ctx, enrollmentID)
	var out []*Record
	for _, rec := range all {
		if !rec.State.Final() {
			out = append(out, rec)
		}
	}
	return out, err
}

// CancelOpen cancels an enrollment's unanswered commands in one transaction (see the package's
// CancelOpen) and returns them.
func (s *Service) CancelOpen(ctx context.Context, enrollmentID, reason string, at time.Time) ([]*Record, error) {
	var out []*Record
	err := s.update(ctx, func(r Repository) error {
		var err error
		out, err = CancelOpen(ctx, r, enrollmentID, reason, at)
		return err
	})
	return out, err
}

// Unanswered returns the commands created before cutoff that no device has answered.
func (s *Service) Unanswered(ctx context.Context, cutoff time.Time) ([]*Record, error) {
	var out []*Record
	err := s.view(ctx, func(r Repository) error {
		var err error
		out, err = Unanswered(ctx, r, cutoff)
		return err
	})
	return out, err
}

// Result returns the stored result of a command.
func (s *Service) Result(ctx context.Context, enrollmentID, uuid string) (*Result, error) {
	var res *Result
	err := s.view(ctx, func(r Repository) error {
		var err error
		res, err = r.Result(ctx, enrollmentID, uuid)
		return err
	})
	return res, err
}

// Results returns every stored result of an enrollment.
func (s *Service) Results(ctx context.Context, enrollmentID string) ([]*Result, error) {
	var out []*Result
	err := s.view(ctx, func(r Repository) error {
		var err error
		out, err = r.Results(ctx, enrollmentID)
		return err
	})
	return out, err
}

// PIN returns the PIN of a lock or erase command, opened with key, or ErrNotFound.
func (s *Service) PIN(ctx context.Context, key *seal.Key, uuid string) (string, error) {
	var pin string
	err := s.view(ctx, func(r Repository) error {
		var err error
		pin, err = PIN(ctx, r, key, uuid)
		return err
	})
	return pin, err
}

// StateCounts returns how many commands are in each state, every state listed (at zero when
// none is); "" counts records whose state could not be read.
func (s *Service) StateCounts(ctx context.Context) (map[string]int64, error) {
	var counts map[State]int64
	if err := s.view(ctx, func(r Repository) error {
		var err error
		counts, err = r.StateCounts(ctx)
		return err
	}); err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(States)+1)
	for _, st := range States {
		out[string(st)] = 0
	}
	for st, n := range counts {
		out[string(st)] = n
	}
	return out, nil
}

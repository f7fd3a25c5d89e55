package approvals

import "context"

// Repository keeps the requests by ID, Params included. It only stores and reads: the rules
// (a request is created pending, decided once, by a second person, before it expires) are this
// package's functions over it.
type Repository interface {
	// Get returns request id with its Params, or an error wrapping ErrNotFound.
	Get(ctx context.Context, id string) (*Request, error)
	// Put stores r under r.ID, replacing what was stored there.
	Put(ctx context.Context, r *Request) error
	// List returns every stored request with its Params, in no particular order.
	List(ctx context.Context) ([]Request, error)
}

// Tx is what the approvals service needs of a unit of work: its repository.
type Tx interface {
	Approvals() Repository
}

// Store runs the approvals service's units of work (storage.Scope(st, func(tx storage.Tx)
// approvals.Tx { return tx }) is one).
type Store interface {
	// View runs fn on one consistent snapshot.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in one read-write transaction that commits when fn returns nil.
	Update(ctx context.Context, fn func(Tx) error) error
}

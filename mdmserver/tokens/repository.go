package tokens

import "context"

// Repository keeps the token records by ID. It only stores and reads: making, checking and
// revoking tokens, and the people rules, are this package's functions over it.
type Repository interface {
	// Get returns the token with id, or ErrNotFound.
	Get(ctx context.Context, id string) (*Token, error)
	// Put stores t under t.ID, replacing what was stored there.
	Put(ctx context.Context, t *Token) error
	// List returns every token, in no particular order.
	List(ctx context.Context) ([]*Token, error)
	// Count returns how many tokens are stored.
	Count(ctx context.Context) (int, error)
}

// Tx is what the token service needs of a unit of work: its repository.
type Tx interface {
	Tokens() Repository
}

// Store runs the token service's units of work (storage.Scope(st, func(tx storage.Tx)
// tokens.Tx { return tx }) is one).
type Store interface {
	// View runs fn on one consistent snapshot.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in one read-write transaction that commits when fn returns nil.
	Update(ctx context.Context, fn func(Tx) error) error
}

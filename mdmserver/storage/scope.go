package storage

import "context"

// Scoped is a Store narrowed to the repositories one service uses. A service declares what it
// needs in its own package, in its own terms, for example
//
//	// package compliance
//	type Tx interface {
//		Compliance() Repository
//		Inventory() inventory.Repository
//	}
//	type Store interface {
//		View(ctx context.Context, fn func(Tx) error) error
//		Update(ctx context.Context, fn func(Tx) error) error
//		Batch(ctx context.Context, fn func(Tx) error) error
//	}
//
// and the composition hands it Scope(st, func(tx storage.Tx) compliance.Tx { return tx }), which
// satisfies compliance.Store. The service sees only its repositories, and no domain package
// imports this one.
type Scoped[T any] struct {
	st   Store
	pick func(Tx) T
}

// Scope narrows st to what pick takes from each transaction.
func Scope[T any](st Store, pick func(Tx) T) Scoped[T] { return Scoped[T]{st: st, pick: pick} }

// View runs fn on one consistent snapshot (Store.View).
func (s Scoped[T]) View(ctx context.Context, fn func(T) error) error {
	return s.st.View(ctx, func(tx Tx) error { return fn(s.pick(tx)) })
}

// Update runs fn in one read-write transaction (Store.Update).
func (s Scoped[T]) Update(ctx context.Context, fn func(T) error) error {
	return s.st.Update(ctx, func(tx Tx) error { return fn(s.pick(tx)) })
}

// Batch runs fn in a transaction it may share with others; fn may run more than once
// (Store.Batch).
func (s Scoped[T]) Batch(ctx context.Context, fn func(T) error) error {
	return s.st.Batch(ctx, func(tx Tx) error { return fn(s.pick(tx)) })
}

package commands

import "context"

// Repository keeps the commands Hale sent to Apple devices: each command's record and the
// device's result, both by enrollment ID and command UUID, and the sealed PINs of lock and erase
// commands by command UUID. It only stores, reads and counts: what a result does to its record,
// and which records a cleared queue cancels, are this package's functions over it, so every
// backend keeps the same rules.
//
// A Repository belongs to one transaction of its backend: what it writes commits with everything
// else written in that transaction, or not at all. Records and results it returns are the
// caller's own copies.
type Repository interface {
	// Record returns the record of command uuid sent to enrollmentID, or ErrNotFound.
	Record(ctx context.Context, enrollmentID, uuid string) (*Record, error)
	// PutRecord stores rec under its EnrollmentID and UUID, replacing what was there.
	PutRecord(ctx context.Context, rec *Record) error
	// Records returns the records of one enrollment, in command UUID order. Another
	// enrollment's records never match, even one whose ID starts with this one.
	Records(ctx context.Context, enrollmentID string) ([]*Record, error)
	// EachRecord calls fn with every record of every enrollment, and stops at fn's first error,
	// which it returns.
	EachRecord(ctx context.Context, fn func(*Record) error) error
	// StateCounts returns how many records are in each state; a stored record whose state
	// cannot be read counts under "". A state no record is in may be missing or zero. It is
	// what the metrics read at every scrape, so a backend answers it without reading every
	// record (bbolt keeps the counts in memory, moved by each committed write).
	StateCounts(ctx context.Context) (map[State]int64, error)

	// Result returns the stored result of command uuid from enrollmentID, or ErrNotFound.
	Result(ctx context.Context, enrollmentID, uuid string) (*Result, error)
	// PutResult stores res under its EnrollmentID and CommandUUID, replacing what was there.
	PutResult(ctx context.Context, res *Result) error
	// Results returns the results of one enrollment, in command UUID order.
	Results(ctx context.Context, enrollmentID string) ([]*Result, error)

	// SealedPIN returns the sealed PIN stored for command uuid, or ErrNotFound.
	SealedPIN(ctx context.Context, uuid string) ([]byte, error)
	// PutSealedPIN stores the sealed PIN of command uuid, replacing what was there.
	PutSealedPIN(ctx context.Context, uuid string, sealed []byte) error
}

// Tx is what the commands service needs of a unit of work: its repository.
type Tx interface {
	Commands() Repository
}

// Store runs the commands service's units of work (storage.Scope(st, func(tx storage.Tx)
// commands.Tx { return tx }) is one).
type Store interface {
	// View runs fn on one consistent snapshot.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in one read-write transaction that commits when fn returns nil.
	Update(ctx context.Context, fn func(Tx) error) error
	// Batch is Update for small idempotent units many goroutines run at once (each device's
	// result); fn may run more than once.
	Batch(ctx context.Context, fn func(Tx) error) error
}

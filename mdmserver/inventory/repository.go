package inventory

import (
	"context"
	"time"
)

// Repository stores device records and the two indexes that find them: by nanomdm enrollment
// ID and by certificate serial. It only stores, indexes and reads; the rules (validation, the
// transition table, enrolled_at never changing) are this package's functions over it, so every
// backend keeps the same ones.
//
// A Repository belongs to one transaction of its backend: what Put and Touch write commits with
// everything else written in that transaction, or not at all. Devices it returns are the
// caller's own copies.
type Repository interface {
	// Get returns the device with id, or ErrNotFound.
	Get(ctx context.Context, id string) (*Device, error)
	// GetByEnrollmentID returns the device holding nanomdm enrollment ID eid, or ErrNotFound
	// (also for an empty eid).
	GetByEnrollmentID(ctx context.Context, eid string) (*Device, error)
	// GetByCertSerial returns the device holding a certificate serial in its indexed form
	// (NormalizeSerial's), or ErrNotFound (also for an empty serial).
	GetByCertSerial(ctx context.Context, serial string) (*Device, error)
	// Put creates or replaces d's record as given, and moves its index entries from those of
	// the record it replaces to d's EnrollmentID and CertSerials. An identifier indexed to
	// another device is ErrConflict, and then nothing is written.
	Put(ctx context.Context, d *Device) error
	// Touch moves the LastSeen of device id forward to at; an older at changes nothing. It is
	// the hot write of every authenticated request, so it touches no index. ErrNotFound for an
	// unknown device.
	Touch(ctx context.Context, id string, at time.Time) error
	// List returns up to limit devices matching f with an ID greater than after (empty: from
	// the first), in ID order, and whether another match follows them.
	List(ctx context.Context, f Filter, after string, limit int) (devices []Device, more bool, err error)
	// Count returns how many devices match f.
	Count(ctx context.Context, f Filter) (int, error)
	// ForEach calls fn with every device whose ID is greater than after (empty: from the
	// first), in ID order, and stops at fn's first error, which it returns.
	ForEach(ctx context.Context, after string, fn func(*Device) error) error
}

// Tx is what the inventory needs of a unit of work: its repository.
type Tx interface {
	Inventory() Repository
}

// Store runs the inventory's units of work (storage.Scope(st, func(tx storage.Tx) inventory.Tx
// { return tx }) is one).
type Store interface {
	// View runs fn on one consistent snapshot.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in one read-write transaction that commits when fn returns nil.
	Update(ctx context.Context, fn func(Tx) error) error
	// Batch is Update for small idempotent units many goroutines run at once; fn may run more
	// than once.
	Batch(ctx context.Context, fn func(Tx) error) error
}

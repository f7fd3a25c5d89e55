package audit

import (
	"context"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// Repository is where one audit log is kept, in the log's own terms: each entry's exact bytes by
// index, the Merkle tree's stored hashes by their tlog stored-hash index, the number of entries,
// and the signed checkpoints by tree size. It only stores and reads; [Append] decides an entry's
// bytes and hashes and the [Log] signs and proves, so every backend keeps the same tree.
//
// A Repository belongs to one transaction of its backend: what Put and PutCheckpoint write
// commits with everything else written in that transaction, or not at all.
type Repository interface {
	// Size returns the number of entries (0 for a new log).
	Size(ctx context.Context) (int64, error)
	// Entry returns a copy of the stored bytes of entry index, or ErrNotFound.
	Entry(ctx context.Context, index int64) ([]byte, error)
	// Hashes returns the stored tree hashes at the given stored-hash indexes, in order. A
	// missing or malformed one is an error wrapping ErrCorrupt.
	Hashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error)
	// Put stores entry index, which must be the current Size, with its bytes and its stored
	// hashes (numbered from tlog.StoredHashIndex(0, index) on), and makes the size index+1.
	// An entry already stored at index is an error wrapping ErrCorrupt: it is never
	// overwritten.
	Put(ctx context.Context, index int64, data []byte, hashes []tlog.Hash) error
	// Checkpoint returns the signed checkpoint stored for tree size n, or ErrNoCheckpoint.
	Checkpoint(ctx context.Context, n int64) ([]byte, error)
	// PutCheckpoint stores the signed checkpoint of tree size n.
	PutCheckpoint(ctx context.Context, n int64, signed []byte) error
	// LatestCheckpoint returns the stored checkpoint of the largest tree size, or
	// ErrNoCheckpoint.
	LatestCheckpoint(ctx context.Context) ([]byte, error)
	// Checkpoints calls fn with every stored checkpoint, smallest tree size first, and stops at
	// fn's first error, which it returns.
	Checkpoints(ctx context.Context, fn func(n int64, signed []byte) error) error
	// Extent returns one past the highest entry index and one past the highest stored-hash
	// index held, whatever Size says: VerifyStored checks that nothing lies past the size.
	Extent(ctx context.Context) (entries, hashes int64, err error)
	// Delivered returns the named sink's delivery cursor: the index of the first entry not yet
	// delivered to it (0 when none is stored).
	Delivered(ctx context.Context, sink string) (int64, error)
	// PutDelivered stores the named sink's delivery cursor.
	PutDelivered(ctx context.Context, sink string, next int64) error
}

// Tx is what the log needs of a unit of work: its repository.
type Tx interface {
	Audit() Repository
}

// Store runs the log's units of work (storage.Scope(st, func(tx storage.Tx) audit.Tx { return
// tx }) is one). Reads use short View transactions, so that a long export or self-check never
// holds one open for long.
type Store interface {
	// View runs fn on one consistent snapshot.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in one read-write transaction that commits when fn returns nil.
	Update(ctx context.Context, fn func(Tx) error) error
}

// hashReader reads stored tree hashes from a repository for the tlog functions, which take no
// context.
type hashReader struct {
	ctx context.Context
	r   Repository
}

// ReadHashes implements tlog.HashReader.
func (h hashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	hs, err := h.r.Hashes(h.ctx, indexes)
	if err != nil {
		return nil, err
	}
	if len(hs) != len(indexes) {
		return nil, fmt.Errorf("%w: asked for %d tree hashes, got %d", ErrCorrupt, len(indexes), len(hs))
	}
	return hs, nil
}

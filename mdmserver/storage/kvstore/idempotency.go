package kvstore

import (
	"context"
	"encoding/json"
	"slices"

	"github.com/halemdm/hale/mdmserver/idempotency"
	"github.com/halemdm/hale/mdmserver/storage"
)

// BucketIdempotency holds the saved answers: "<owner>\x00<route>\x00<key>" -> answer JSON.
var (
	BucketIdempotency  = []byte("idempotency_keys")
	idempotencyBuckets = [][]byte{BucketIdempotency}
)

// Idempotency returns the saved Idempotency-Key answers of this transaction.
func (t *tx) Idempotency() idempotency.Repository { return idempotencyRepo{t} }

// idempotencyRepo is idempotency.Repository on one key-value transaction.
type idempotencyRepo struct{ t *tx }

var _ idempotency.Repository = idempotencyRepo{}

// idempotencyKey is k's key in the bucket. NUL cannot occur in a token ID, a URL path or an
// HTTP header value, so the parts cannot run into each other.
func idempotencyKey(k idempotency.Key) []byte {
	return []byte(k.Owner + "\x00" + k.Route + "\x00" + k.Key)
}

// Get returns a copy of the answer saved under k.
func (r idempotencyRepo) Get(ctx context.Context, k idempotency.Key) (json.RawMessage, error) {
	b, err := bucket(r.t.tx, BucketIdempotency)
	if err != nil {
		return nil, err
	}
	v := b.Get(idempotencyKey(k))
	if v == nil {
		return nil, idempotency.ErrNotFound
	}
	return slices.Clone(v), nil
}

// Put saves answer under k.
func (r idempotencyRepo) Put(ctx context.Context, k idempotency.Key, answer json.RawMessage) error {
	if !r.t.tx.Writable() {
		return storage.ErrReadOnly
	}
	b, err := bucket(r.t.tx, BucketIdempotency)
	if err != nil {
		return err
	}
	return b.Put(idempotencyKey(k), answer)
}

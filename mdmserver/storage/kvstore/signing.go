package kvstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/halemdm/hale/mdmserver/signing"
)

// BucketSigningKeys holds kid → signingKeyRecord JSON.
var BucketSigningKeys = []byte("signing_keys")

// signingBuckets are the buckets of the signing keys.
var signingBuckets = [][]byte{BucketSigningKeys}

// signingKeyRecord is a signing key as stored; the kid is its key in the bucket.
type signingKeyRecord struct {
	Alg       string    `json:"alg"`
	CreatedAt time.Time `json:"created_at"`
	RetiredAt time.Time `json:"retired_at,omitzero"`
	SealedKey []byte    `json:"sealed_key"`
}

// Signing returns the signing keys of this transaction.
func (t *tx) Signing() signing.Repository { return signingRepo{t} }

// signingRepo is signing.Repository on one key-value transaction.
type signingRepo struct{ t *tx }

func decodeSigningKey(kid, v []byte) (signing.StoredKey, error) {
	var rec signingKeyRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return signing.StoredKey{}, fmt.Errorf("decode record: %w", err)
	}
	// json.Unmarshal copies: nothing here points into the transaction's memory.
	return signing.StoredKey{KID: string(kid), Alg: rec.Alg, CreatedAt: rec.CreatedAt, RetiredAt: rec.RetiredAt, SealedKey: rec.SealedKey}, nil
}

// Keys returns every stored key in kid order.
func (r signingRepo) Keys(ctx context.Context) ([]signing.StoredKey, error) {
	b, err := bucket(r.t.tx, BucketSigningKeys)
	if err != nil {
		return nil, err
	}
	var out []signing.StoredKey
	err = b.ForEach(func(k, v []byte) error {
		sk, err := decodeSigningKey(k, v)
		if err != nil {
			return fmt.Errorf("key %q: %w", k, err)
		}
		out = append(out, sk)
		return nil
	})
	return out, err
}

// Key returns the key stored under kid.
func (r signingRepo) Key(ctx context.Context, kid string) (signing.StoredKey, error) {
	b, err := bucket(r.t.tx, BucketSigningKeys)
	if err != nil {
		return signing.StoredKey{}, err
	}
	v := b.Get([]byte(kid))
	if v == nil {
		return signing.StoredKey{}, fmt.Errorf("%w: %q", signing.ErrKeyNotFound, kid)
	}
	return decodeSigningKey([]byte(kid), v)
}

// PutKey stores k under its kid.
func (r signingRepo) PutKey(ctx context.Context, k signing.StoredKey) error {
	if k.KID == "" {
		return fmt.Errorf("kvstore: signing key without a kid")
	}
	v, err := json.Marshal(signingKeyRecord{Alg: k.Alg, CreatedAt: k.CreatedAt, RetiredAt: k.RetiredAt, SealedKey: k.SealedKey})
	if err != nil {
		return err
	}
	b, err := bucket(r.t.tx, BucketSigningKeys)
	if err != nil {
		return err
	}
	return b.Put([]byte(k.KID), v)
}

// DeleteKey removes the key stored under kid.
func (r signingRepo) DeleteKey(ctx context.Context, kid string) error {
	b, err := bucket(r.t.tx, BucketSigningKeys)
	if err != nil {
		return err
	}
	return b.Delete([]byte(kid))
}

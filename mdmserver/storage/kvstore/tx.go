package kvstore

import "github.com/halemdm/hale/mdmserver/storage"

var _ storage.Tx = (*tx)(nil)

// tx is a storage.Tx on one key-value transaction. Each repository accessor (in the file of its
// domain) wraps the same Tx, so everything written through them commits together.
type tx struct{ tx Tx }

// NewTx returns every repository of storage.Tx on kv. The backend runs the transaction (commits,
// rolls back, retries); the repositories only read and write its buckets.
func NewTx(kv Tx) storage.Tx { return &tx{tx: kv} }

// bucket returns the named bucket of kv, or the backend's error naming it.
func bucket(kv Tx, name []byte) (Bucket, error) { return kv.Bucket(name) }

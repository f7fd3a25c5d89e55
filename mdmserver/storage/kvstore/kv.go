// Package kvstore implements every repository of [storage.Tx] once, over an ordered key-value
// transaction ([Tx]): named buckets of byte keys kept in order, with cursors and per-bucket
// sequences. A backend that offers such a transaction gets all of Hale's repositories from
// [NewTx], and the two backends cannot drift apart: bbolt (storage/boltstore, where buckets are
// bbolt's own) and PostgreSQL (storage/pgstore, where a bucket is the rows of one table that share
// its name).
//
// A backend provides, besides [Tx]: every bucket of [Buckets]; the state counts of
// [CountedBuckets] (counted once at open with [CountStates], or by a query); a Put, Delete or
// NextSequence in a read-only transaction failing with an error that wraps storage.ErrReadOnly.
// [AppendOnlyBuckets] is a hint it may ignore.
//
// The layout of each repository's buckets, and why, is in the file of its domain.
package kvstore

// Tx is one transaction of an ordered key-value backend. It is what every repository of this
// package is written in, and nothing more.
type Tx interface {
	// Bucket returns the bucket name, one of [Buckets]. A backend that cannot find it returns
	// an error: a missing bucket means a damaged store, not an empty one.
	Bucket(name []byte) (Bucket, error)
	// Writable reports whether the transaction may write (Update and Batch, not View).
	Writable() bool
	// MoveState records that one record of bucket leaves state from for state to ("" is no
	// state: from, a new record; to, a deleted one). It counts only if the transaction commits.
	MoveState(bucket []byte, from, to string)
	// StateCounts returns how many records of bucket are in each state, as MoveState kept
	// them, without reading the records.
	StateCounts(bucket []byte) (map[string]int64, error)
}

// Prefetcher is a Tx that can read several keys in one round trip (a database across a
// network): the Gets of those keys that follow in the transaction then cost none. A backend
// whose reads are local (bbolt) does not implement it.
type Prefetcher interface {
	// Prefetch reads keys; a failed read fails the transaction, as a failed Get does.
	Prefetch(keys []BucketKey)
}

// BucketKey names one key of one bucket.
type BucketKey struct{ Bucket, Key []byte }

// Bucket is one ordered set of keys and values within a transaction. Keys are at most
// [MaxKeySize] bytes and not empty. Values and keys it returns are valid until the transaction
// ends and must not be modified; copy what outlives it.
type Bucket interface {
	// Get returns the value at key, or nil when there is none. A backend whose read fails
	// returns nil and fails the whole transaction (View, Update and Batch return the error),
	// so an answer computed from a failed read is never returned to a caller.
	Get(key []byte) []byte
	// Put sets key to value.
	Put(key, value []byte) error
	// Delete removes key; a missing key is not an error.
	Delete(key []byte) error
	// ForEach calls fn for every key in order until fn returns an error, which it returns. fn
	// must not write to the bucket.
	ForEach(fn func(k, v []byte) error) error
	// Cursor returns a cursor over the bucket's keys, in order.
	Cursor() Cursor
	// NextSequence returns the bucket's next sequence number: 1, 2, 3, ... It is part of the
	// transaction (a rollback returns it).
	NextSequence() (uint64, error)
	// KeyN returns the number of keys in the bucket.
	KeyN() (int, error)
}

// Cursor walks a bucket's keys in order. Each method returns the key and value it moved to, or
// a nil key past either end. As with Get, a backend whose read fails returns a nil key and fails
// the transaction.
type Cursor interface {
	First() (key, value []byte)
	Last() (key, value []byte)
	Next() (key, value []byte)
	Prev() (key, value []byte)
	// Seek moves to key, or to the first key after it when it is missing.
	Seek(key []byte) (k, v []byte)
}

// MaxKeySize is the longest key, in bytes, a backend must accept.
const MaxKeySize = 4 << 10

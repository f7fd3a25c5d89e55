// Package boltstore is Hale's embedded storage backend: one bbolt file,
// DATA/hale.db, holding every repository of storage.Tx, the certificate
// authority's database ([Store.CADB], smallstep's nosql.DB on "ca_" buckets)
// and nanomdm's own storage.
//
// Every repository is package kvstore's, written once over an ordered
// key-value transaction and shared with the PostgreSQL backend. Here a
// kvstore bucket is a top-level bbolt bucket (all of [kvstore.Buckets] are
// created at [Open]) and kvtx.go adapts *bbolt.Tx to kvstore.Tx: bucket
// lookup, writes in a read transaction mapped to storage.ErrReadOnly, key
// counts from bbolt's page statistics, full pages for append-only buckets,
// and the command state counts kept in memory (statecount.go). The on-disk
// layout (bucket names, keys, JSON values) is the one earlier releases
// wrote, so existing data directories open unchanged; wipes_migration.go and
// cadb_import.go carry the two older layouts over once.
//
// [Store.View], [Store.Update] and [Store.Batch] run storage units of work
// on bbolt transactions, handing them kvstore.NewTx over the adapter.
// [NewMDMStorage] puts nanomdm's storage (nanomdm's storage/kv backend) on
// key-value buckets of the same file (prefixed "nanomdm_"), with a native
// command queue beside them; the rest of this comment is about those.
// [Store.DB] is for backend-specific tests and tools (bbolt check), never
// for domain code.
//
// # Transaction shape, and why
//
// bbolt allows a single writer. nanomdm's kv storage opens a kv
// "transaction" and, while it is still open, writes through the parent
// bucket (EnqueueCommand links the queue through the parent). Holding a real
// bbolt write transaction for the life of a kv transaction would therefore
// deadlock: the parent write waits for the writer lock that the open
// transaction holds. So:
//
//   - Every plain [Bucket] operation is its own short db.View or db.Update.
//     A Set or Delete returns only after bbolt committed (and fsynced) it.
//   - A kv transaction ([Txn]) never holds a bbolt transaction. It buffers
//     its writes and deletes in memory (reads inside it see its own writes)
//     and applies all of them in ONE db.Update at Commit, so a crash leaves
//     either the whole transaction or none of it. Rollback discards the
//     buffer.
//   - A Txn also remembers what it read from the database (a SHA-256 of each
//     value, or its absence). Commit re-checks those reads inside the same
//     db.Update that applies the writes and fails with [ErrTxnConflict],
//     writing nothing, if another writer changed any of them meanwhile. This
//     is optimistic concurrency control: transactions never block each
//     other or plain writes, yet a committed transaction never acted on a
//     stale read. Key listings inside a Txn are not part of this check.
//   - Key listings are collected inside a db.View, which is closed before
//     the first key is sent on the channel: a slow (or abandoned) consumer
//     never holds a bbolt transaction open, which would block the mmap
//     growth that writers need. Streams stop when ctx is done or when the
//     cancel channel is closed.
//   - Values are copied out of bbolt: its memory is only valid inside the
//     bbolt transaction that read it.
//
// Single operations and commits run to completion even if their context is
// cancelled: nanomdm issues sequences of parent writes (linking a queue)
// that are worse half-done than finished, and each operation is short.
//
// # Limits
//
// Keys must be 1 to [MaxKeySize] bytes and values at most [MaxValueSize]
// bytes (32 MiB: large MDM command payloads and reports such as
// InstalledApplicationList fit with room to spare; bigger values would hold
// the single writer for too long and are rejected with [ErrValueTooLarge]
// before anything is written).
package boltstore

package boltstore

import (
	"bytes"
	"fmt"

	"go.etcd.io/bbolt"
)

// Export is one consistent read of the whole file, for copying it into another backend
// (mdmserver migrate). Everything it returns is valid only inside the [Store.Export] call.
type Export struct {
	tx *bbolt.Tx
}

// Export runs fn on one read-only snapshot of the file: what it reads is the state of a single
// moment, even if the copy takes minutes.
func (s *Store) Export(fn func(*Export) error) error {
	return s.db.View(func(tx *bbolt.Tx) error { return fn(&Export{tx: tx}) })
}

// ExportBucket walks one top-level bucket in key order.
type ExportBucket struct {
	name    []byte
	b       *bbolt.Bucket
	c       *bbolt.Cursor
	started bool
}

// Bucket returns the top-level bucket name; a missing one is an error (a damaged file).
func (e *Export) Bucket(name []byte) (*ExportBucket, error) {
	b := e.tx.Bucket(name)
	if b == nil {
		return nil, fmt.Errorf("store: export: bucket %q is missing", name)
	}
	return &ExportBucket{name: name, b: b, c: b.Cursor()}, nil
}

// Sequence is the bucket's sequence (what its last NextSequence returned), which the copy must
// carry so new records never reuse a number.
func (b *ExportBucket) Sequence() uint64 { return b.b.Sequence() }

// KeyN counts the bucket's keys (nested buckets included).
func (b *ExportBucket) KeyN() int { return b.b.Stats().KeyN }

// Next returns the next key and value, or a nil key at the end. A nested bucket (nil value) is
// an error: Hale's repository buckets hold none, so one means the file is not what we think.
func (b *ExportBucket) Next() (k, v []byte, err error) {
	if b.started {
		k, v = b.c.Next()
	} else {
		k, v = b.c.First()
		b.started = true
	}
	if k != nil && v == nil {
		return nil, nil, fmt.Errorf("store: export: bucket %q holds a nested bucket %q", b.name, k)
	}
	return k, v, nil
}

// CA calls table for every table of the certificate authority's database (parents before the
// tables nested in them, as "T/U"), then entry for each of its entries.
func (e *Export) CA(table func(name []byte) error, entry func(table, k, v []byte) error) error {
	return e.tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
		t, ok := bytes.CutPrefix(name, []byte(CABucketPrefix))
		if !ok {
			return nil
		}
		return exportCATable(bytes.Clone(t), b, table, entry)
	})
}

// exportCATable exports the table name held in b and the tables nested in it.
func exportCATable(name []byte, b *bbolt.Bucket, table func([]byte) error, entry func(t, k, v []byte) error) error {
	if err := table(name); err != nil {
		return err
	}
	return b.ForEach(func(k, v []byte) error {
		if v == nil {
			return exportCATable(append(append(bytes.Clone(name), caSep...), k...), b.Bucket(k), table, entry)
		}
		return entry(name, k, v)
	})
}

// QueuedCommand is one command queued for one enrollment in the native queue, its body as
// stored (sealed under purpose "mdm-command/"+UUID when the server seals, as it always does).
type QueuedCommand struct {
	EnrollmentID string
	UUID         string
	RequestType  string
	Stored       []byte
	// NotNow says the enrollment last answered NotNow to it.
	NotNow bool
}

// QueuedCommands calls fn for every queued command of every enrollment, each enrollment's in
// queue order. Values passed to fn are copies.
func (e *Export) QueuedCommands(fn func(QueuedCommand) error) error {
	entries, cmds, status := e.tx.Bucket(bucketQueueEntries), e.tx.Bucket(bucketQueueCommands), e.tx.Bucket(bucketQueueStatus)
	if entries == nil || cmds == nil || status == nil {
		return nil // the queue was never opened on this file: nothing queued
	}
	return entries.ForEach(func(k, v []byte) error {
		i := bytes.IndexByte(k, 0)
		if i <= 0 || len(k)-i-1 != 8 { // <id> 0x00 <8-byte seq>: key order is queue order
			return fmt.Errorf("store: export: malformed queue key %q", k)
		}
		id := string(k[:i])
		reqType, body, ok := bytes.Cut(cmds.Get(v), []byte{0})
		if !ok {
			return fmt.Errorf("store: export: queued command %s of %s has no body (corrupt queue)", v, id)
		}
		return fn(QueuedCommand{
			EnrollmentID: id, UUID: string(v), RequestType: string(reqType), Stored: bytes.Clone(body),
			NotNow: string(status.Get(statusKey(id, string(v)))) == "NotNow",
		})
	})
}

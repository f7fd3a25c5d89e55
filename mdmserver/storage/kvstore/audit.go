package kvstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/halemdm/hale/mdmserver/audit"
)

// The audit log's buckets. Keys are indexes (or tree sizes) as 8 big-endian bytes, so the bucket's
// byte order is index order.
var (
	BucketAuditEntries     = []byte("audit_entries")     // index -> entry bytes
	BucketAuditHashes      = []byte("audit_hashes")      // stored hash index -> 32-byte hash
	BucketAuditMeta        = []byte("audit_meta")        // "size" -> number of entries
	BucketAuditCheckpoints = []byte("audit_checkpoints") // tree size -> signed note
	BucketAuditSinks       = []byte("audit_sinks")       // sink name -> delivery cursor
	keyAuditSize           = []byte("size")
)

var auditBuckets = [][]byte{BucketAuditEntries, BucketAuditHashes, BucketAuditMeta, BucketAuditCheckpoints, BucketAuditSinks}

// Audit returns the audit log's repository in this transaction.
func (t *tx) Audit() audit.Repository { return auditRepo{t} }

// auditRepo is audit.Repository on the four audit buckets.
type auditRepo struct{ t *tx }

func (r auditRepo) Size(ctx context.Context) (int64, error) {
	meta, err := bucket(r.t.tx, BucketAuditMeta)
	if err != nil {
		return 0, err
	}
	return auditSize(meta)
}

func auditSize(meta Bucket) (int64, error) {
	v := meta.Get(keyAuditSize)
	if v == nil {
		return 0, nil
	}
	n, ok := parseIndexKey(v)
	if !ok {
		return 0, fmt.Errorf("%w: the stored size is %d bytes", audit.ErrCorrupt, len(v))
	}
	return n, nil
}

func (r auditRepo) Entry(ctx context.Context, index int64) ([]byte, error) {
	b, err := bucket(r.t.tx, BucketAuditEntries)
	if err != nil {
		return nil, err
	}
	if index < 0 {
		return nil, audit.ErrNotFound
	}
	v := b.Get(indexKey(index))
	if v == nil {
		return nil, audit.ErrNotFound
	}
	return bytes.Clone(v), nil
}

func (r auditRepo) Hashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	b, err := bucket(r.t.tx, BucketAuditHashes)
	if err != nil {
		return nil, err
	}
	out := make([]tlog.Hash, len(indexes))
	var k [8]byte
	for i, idx := range indexes {
		binary.BigEndian.PutUint64(k[:], uint64(idx))
		v := b.Get(k[:])
		if len(v) != tlog.HashSize {
			return nil, fmt.Errorf("%w: stored tree hash %d is missing or malformed", audit.ErrCorrupt, idx)
		}
		copy(out[i][:], v)
	}
	return out, nil
}

func (r auditRepo) Put(ctx context.Context, index int64, data []byte, hashes []tlog.Hash) error {
	entries, err := bucket(r.t.tx, BucketAuditEntries)
	if err != nil {
		return err
	}
	hb, err := bucket(r.t.tx, BucketAuditHashes)
	if err != nil {
		return err
	}
	meta, err := bucket(r.t.tx, BucketAuditMeta)
	if err != nil {
		return err
	}
	if entries.Get(indexKey(index)) != nil {
		return fmt.Errorf("%w: entry %d is already stored but the size says %d", audit.ErrCorrupt, index, index)
	}
	base := tlog.StoredHashIndex(0, index)
	for i, h := range hashes {
		if err := hb.Put(indexKey(base+int64(i)), h[:]); err != nil {
			return fmt.Errorf("storing tree hash: %w", err)
		}
	}
	if err := entries.Put(indexKey(index), data); err != nil {
		return err
	}
	if err := meta.Put(keyAuditSize, indexKey(index+1)); err != nil {
		return fmt.Errorf("storing size: %w", err)
	}
	return nil
}

func (r auditRepo) Checkpoint(ctx context.Context, n int64) ([]byte, error) {
	b, err := bucket(r.t.tx, BucketAuditCheckpoints)
	if err != nil {
		return nil, err
	}
	v := b.Get(indexKey(n))
	if v == nil {
		return nil, audit.ErrNoCheckpoint
	}
	return bytes.Clone(v), nil
}

func (r auditRepo) PutCheckpoint(ctx context.Context, n int64, signed []byte) error {
	b, err := bucket(r.t.tx, BucketAuditCheckpoints)
	if err != nil {
		return err
	}
	return b.Put(indexKey(n), signed)
}

func (r auditRepo) LatestCheckpoint(ctx context.Context) ([]byte, error) {
	b, err := bucket(r.t.tx, BucketAuditCheckpoints)
	if err != nil {
		return nil, err
	}
	_, v := b.Cursor().Last()
	if v == nil {
		return nil, audit.ErrNoCheckpoint
	}
	return bytes.Clone(v), nil
}

func (r auditRepo) Checkpoints(ctx context.Context, fn func(n int64, signed []byte) error) error {
	b, err := bucket(r.t.tx, BucketAuditCheckpoints)
	if err != nil {
		return err
	}
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		n, ok := parseIndexKey(k)
		if !ok {
			return fmt.Errorf("%w: a checkpoint is stored under the key %x, which is no tree size", audit.ErrCorrupt, k)
		}
		if err := fn(n, bytes.Clone(v)); err != nil {
			return err
		}
	}
	return nil
}

func (r auditRepo) Extent(ctx context.Context) (entries, hashes int64, err error) {
	for _, x := range []struct {
		name []byte
		out  *int64
	}{{BucketAuditEntries, &entries}, {BucketAuditHashes, &hashes}} {
		b, err := bucket(r.t.tx, x.name)
		if err != nil {
			return 0, 0, err
		}
		k, _ := b.Cursor().Last()
		if k == nil {
			continue
		}
		last, ok := parseIndexKey(k)
		if !ok {
			return 0, 0, fmt.Errorf("%w: %s holds the key %x, which is no index", audit.ErrCorrupt, x.name, k)
		}
		*x.out = last + 1
	}
	return entries, hashes, nil
}

// indexKey encodes a non-negative index big-endian, so the bucket's byte order is index order.
func indexKey(n int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(n)) }

// parseIndexKey reads an indexKey back; ok is false for anything else.
func parseIndexKey(b []byte) (int64, bool) {
	if len(b) != 8 {
		return 0, false
	}
	n := int64(binary.BigEndian.Uint64(b))
	return n, n >= 0
}

func (r auditRepo) Delivered(ctx context.Context, sink string) (int64, error) {
	b, err := bucket(r.t.tx, BucketAuditSinks)
	if err != nil {
		return 0, err
	}
	v := b.Get([]byte(sink))
	if v == nil {
		return 0, nil
	}
	n, ok := parseIndexKey(v)
	if !ok {
		return 0, fmt.Errorf("%w: the delivery cursor of sink %q is %d bytes", audit.ErrCorrupt, sink, len(v))
	}
	return n, nil
}

func (r auditRepo) PutDelivered(ctx context.Context, sink string, next int64) error {
	b, err := bucket(r.t.tx, BucketAuditSinks)
	if err != nil {
		return err
	}
	if sink == "" {
		return fmt.Errorf("kvstore: a delivery cursor needs a sink name")
	}
	return b.Put([]byte(sink), indexKey(next))
}

package boltstore

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/micromdm/nanolib/storage/kv"
	"github.com/micromdm/nanolib/storage/kv/kvdiskv"
	"github.com/micromdm/nanolib/storage/kv/kvmap"
	"github.com/micromdm/nanolib/storage/kv/kvtxn"
	"github.com/peterbourgon/diskv/v3"
	"go.etcd.io/bbolt"
)

// benchBuckets are the implementations compared: ours on bbolt, and
// nanolib's in-memory and diskv buckets wrapped in kvtxn (as nanomdm's
// inmem and diskv storages do).
func benchBuckets(b *testing.B) map[string]func() kv.TxnBucketWithCRUD {
	return map[string]func() kv.TxnBucketWithCRUD{
		"bbolt": func() kv.TxnBucketWithCRUD { return openTestBucket(b) },
		"kvmap": func() kv.TxnBucketWithCRUD { return kvtxn.New(kvmap.New()) },
		"kvdiskv": func() kv.TxnBucketWithCRUD {
			return kvtxn.New(kvdiskv.New(diskv.New(diskv.Options{
				BasePath:     b.TempDir(),
				Transform:    kvdiskv.FlatTransform,
				CacheSizeMax: 1024 * 1024,
			})))
		},
	}
}

// benchValue is about the size of a small MDM check-in message.
var benchValue = make([]byte, 512)

func BenchmarkBucketSet(b *testing.B) {
	ctx := context.Background()
	for name, newBucket := range benchBuckets(b) {
		b.Run(name, func(b *testing.B) {
			bk := newBucket()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := bk.Set(ctx, fmt.Sprintf("key-%08d", i%1000), benchValue); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func BenchmarkBucketGet(b *testing.B) {
	ctx := context.Background()
	for name, newBucket := range benchBuckets(b) {
		b.Run(name, func(b *testing.B) {
			bk := newBucket()
			const n = 1000
			txn, err := bk.BeginCRUDBucketTxn(ctx)
			if err != nil {
				b.Fatal(err)
			}
			for i := range n {
				if err := txn.Set(ctx, fmt.Sprintf("key-%08d", i), benchValue); err != nil {
					b.Fatal(err)
				}
			}
			if err := txn.Commit(ctx); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := bk.Get(ctx, fmt.Sprintf("key-%08d", i%n)); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkTxnCommit measures a nanomdm-like transaction: read two keys,
// write four, delete one, commit.
func BenchmarkTxnCommit(b *testing.B) {
	ctx := context.Background()
	for name, newBucket := range benchBuckets(b) {
		b.Run(name, func(b *testing.B) {
			bk := newBucket()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				err := kv.PerformCRUDBucketTxn(ctx, bk, func(ctx context.Context, t kv.CRUDBucket) error {
					p := fmt.Sprintf("dev-%04d.", i%100)
					if _, err := t.Has(ctx, p+"last"); err != nil {
						return err
					}
					if _, err := t.Has(ctx, p+"first"); err != nil {
						return err
					}
					for _, k := range []string{"raw", "req_type", "first", "last"} {
						if err := t.Set(ctx, p+k, benchValue); err != nil {
							return err
						}
					}
					return t.Delete(ctx, p+"next")
				})
				if err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkStoreParallelWrite compares one db.Update per write with
// Store.Batch under concurrent writers (posture reports).
func BenchmarkStoreParallelWrite(b *testing.B) {
	for _, mode := range []string{"update", "batch"} {
		b.Run(mode, func(b *testing.B) {
			s := openTestStore(b)
			if err := s.createBuckets("posture"); err != nil {
				b.Fatal(err)
			}
			write := s.db.Update
			if mode == "batch" {
				write = s.db.Batch
			}
			var n atomic.Int64
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					key := fmt.Appendf(nil, "dev-%08d", n.Add(1)%1000)
					err := write(func(tx *bbolt.Tx) error {
						return tx.Bucket([]byte("posture")).Put(key, benchValue)
					})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

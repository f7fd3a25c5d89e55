package audit_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/audit/audittest"
	"github.com/halemdm/hale/mdmserver/storage"
)

// The benchmarks pair each audit append with a plain bbolt Put of the same entry bytes in the
// same kind of transaction on the same bbolt store, so the Merkle overhead (and the storage
// boundary's) is the ratio of the two in one run.

func benchEntryBytes(b *testing.B, i int) []byte {
	e := audittest.Entry(i)
	e.Index = int64(i)
	e.Time = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	data, err := json.Marshal(e)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// plainPut puts data under index i in the audit entries bucket, as the log itself would, but
// with no tree.
func plainPut(tx *bbolt.Tx, i int, data []byte) error {
	return tx.Bucket([]byte("audit_entries")).Put(binary.BigEndian.AppendUint64(nil, uint64(i)), data)
}

// BenchmarkAppend: one entry per write transaction (each commit is an fsync).
func BenchmarkAppend(b *testing.B) {
	ctx := context.Background()
	b.Run("merkle", func(b *testing.B) {
		l, _, _ := newLog(b)
		i := 0
		for b.Loop() {
			if _, err := l.Append(ctx, audittest.Entry(i)); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("plain-put", func(b *testing.B) {
		_, st, _ := newLog(b)
		i := 0
		for b.Loop() {
			data := benchEntryBytes(b, i)
			if err := st.DB().Update(func(tx *bbolt.Tx) error { return plainPut(tx, i, data) }); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkAppendTx: many entries per write transaction, the shape of a batched caller. fsync is
// off so the numbers are the CPU and page work the tree adds, not the disk.
func BenchmarkAppendTx(b *testing.B) {
	const batch = 1000
	ctx := context.Background()
	b.Run("merkle", func(b *testing.B) {
		_, st, _ := newLog(b)
		st.DB().NoSync = true
		i := 0
		for b.Loop() {
			err := st.Update(ctx, func(tx storage.Tx) error {
				for range batch {
					if _, err := audit.Append(ctx, tx.Audit(), audittest.Entry(i)); err != nil {
						return err
					}
					i++
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(i), "ns/entry")
	})
	b.Run("plain-put", func(b *testing.B) {
		_, st, _ := newLog(b)
		st.DB().NoSync = true
		i := 0
		for b.Loop() {
			err := st.DB().Update(func(tx *bbolt.Tx) error {
				for range batch {
					if err := plainPut(tx, i, benchEntryBytes(b, i)); err != nil {
						return err
					}
					i++
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(i), "ns/entry")
	})
}

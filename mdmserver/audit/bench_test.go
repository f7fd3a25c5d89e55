package audit

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// The benchmarks pair each audit append with a plain bbolt Put of the same entry bytes in the
// same kind of transaction, so the Merkle overhead is the ratio of the two in one run.

func benchEntryBytes(b *testing.B, i int) []byte {
	e := entry(i)
	e.Index = int64(i)
	e.Time = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	data, err := json.Marshal(e)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkAppend: one entry per write transaction (each commit is an fsync).
func BenchmarkAppend(b *testing.B) {
	ctx := context.Background()
	b.Run("merkle", func(b *testing.B) {
		l, _, _ := newLog(b, "")
		i := 0
		for b.Loop() {
			if _, err := l.Append(ctx, entry(i)); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("plain-put", func(b *testing.B) {
		_, db, _ := newLog(b, "")
		i := 0
		for b.Loop() {
			data := benchEntryBytes(b, i)
			err := db.Update(func(tx *bbolt.Tx) error {
				return tx.Bucket(bucketEntries).Put(key(int64(i)), data)
			})
			if err != nil {
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
	run := func(b *testing.B, put func(l *Log, tx *bbolt.Tx, i int) error) {
		l, db, _ := newLog(b, "")
		db.NoSync = true
		i := 0
		for b.Loop() {
			err := db.Update(func(tx *bbolt.Tx) error {
				for range batch {
					if err := put(l, tx, i); err != nil {
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
	}
	b.Run("merkle", func(b *testing.B) {
		run(b, func(l *Log, tx *bbolt.Tx, i int) error {
			_, err := l.AppendTx(tx, entry(i))
			return err
		})
	})
	b.Run("plain-put", func(b *testing.B) {
		run(b, func(_ *Log, tx *bbolt.Tx, i int) error {
			return tx.Bucket(bucketEntries).Put(key(int64(i)), benchEntryBytes(b, i))
		})
	})
}

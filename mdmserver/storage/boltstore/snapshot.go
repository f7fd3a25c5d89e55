package boltstore

import (
	"context"
	"fmt"
	"io"

	"go.etcd.io/bbolt"
)

// Snapshot calls fn with a consistent copy of the database file, taken in one read transaction:
// size is the number of bytes the copy writes, and write writes them to w. Writers carry on
// meanwhile; the copy is the database as of the moment the transaction began. A long copy keeps
// old pages from being reused, so the file may grow while it runs.
func (s *Store) Snapshot(ctx context.Context, fn func(size int64, write func(w io.Writer) (int64, error)) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(func(tx *bbolt.Tx) error {
		write := func(w io.Writer) (int64, error) {
			n, err := tx.WriteTo(ctxWriter{ctx: ctx, w: w})
			if err != nil {
				return n, fmt.Errorf("store: snapshot: %w", err)
			}
			return n, nil
		}
		return fn(tx.Size(), write)
	})
}

// ctxWriter stops a copy whose context has ended (the client went away).
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

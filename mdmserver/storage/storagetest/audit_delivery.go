package storagetest

import (
	"context"
	"errors"
	"testing"

	"github.com/halemdm/hale/mdmserver/storage"
)

// auditDeliveryCursors: each sink's cursor starts at 0, is its own, survives a reopen, and is
// not written in a View.
func auditDeliveryCursors(t *testing.T, open Opener) {
	dir := t.TempDir()
	st := open(t, dir)
	update(t, st, func(ctx context.Context, tx storage.Tx) error {
		r := tx.Audit()
		if n, err := r.Delivered(ctx, "siem"); err != nil || n != 0 {
			t.Errorf("Delivered of a new sink = %d, %v; want 0", n, err)
		}
		if err := r.PutDelivered(ctx, "siem", 42); err != nil {
			return err
		}
		return r.PutDelivered(ctx, "file", 7)
	})
	st = Reopen(t, open, st, dir)
	view(t, st, func(ctx context.Context, tx storage.Tx) error {
		r := tx.Audit()
		for sink, want := range map[string]int64{"siem": 42, "file": 7, "other": 0} {
			if n, err := r.Delivered(ctx, sink); err != nil || n != want {
				t.Errorf("Delivered(%q) after reopen = %d, %v; want %d", sink, n, err, want)
			}
		}
		if err := r.PutDelivered(ctx, "siem", 43); !errors.Is(err, storage.ErrReadOnly) {
			t.Errorf("PutDelivered in a View: %v, want ErrReadOnly", err)
		}
		return nil
	})
}

package boltstore

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/mdmserver/inventory"
)

// The buckets in which servers before the inventory's wipe status kept unfinished wipes:
// device ID -> the command ID of the wipe ordered and not yet answered, and device ID -> the
// command ID of a wipe that left managed data behind. They are read only to carry them over.
var (
	oldBucketPendingWipes    = []byte("pending_wipes")
	oldBucketIncompleteWipes = []byte("incomplete_wipes")
)

// migrateWipes carries the unfinished wipes of a data directory written before they were kept on
// the device record over to it, once: in one write transaction it sets each listed device's
// inventory.WipeStatus and deletes both old buckets, so a crash leaves either the old layout or
// the new one, and the next Open finds nothing to do. A device with both marks is pending (its
// newer wipe, ordered to finish the incomplete one). A mark naming no device is dropped: there
// is no one left to deny. This is the store's only migration.
func (s *Store) migrateWipes() error {
	old := false
	if err := s.db.View(func(btx *bbolt.Tx) error {
		old = btx.Bucket(oldBucketPendingWipes) != nil || btx.Bucket(oldBucketIncompleteWipes) != nil
		return nil
	}); err != nil || !old {
		return err
	}
	pending, incomplete, dropped := 0, 0, 0
	err := s.db.Update(func(btx *bbolt.Tx) error {
		marks := map[string]*inventory.WipeStatus{}
		for _, m := range []struct {
			bucket []byte
			state  inventory.WipeState
		}{{oldBucketIncompleteWipes, inventory.WipeIncomplete}, {oldBucketPendingWipes, inventory.WipePending}} {
			b := btx.Bucket(m.bucket)
			if b == nil {
				continue
			}
			if err := b.ForEach(func(k, v []byte) error {
				marks[string(k)] = &inventory.WipeStatus{CommandID: string(v), State: m.state}
				return nil
			}); err != nil {
				return err
			}
			if err := btx.DeleteBucket(m.bucket); err != nil {
				return err
			}
		}
		r := s.newTx(btx).Inventory()
		ctx := context.Background()
		for id, w := range marks {
			d, err := r.Get(ctx, id)
			if errors.Is(err, inventory.ErrNotFound) {
				dropped++
				continue
			} else if err != nil {
				return err
			}
			d.Wipe = w
			if err := r.Put(ctx, d); err != nil {
				return err
			}
			if w.State == inventory.WipePending {
				pending++
			} else {
				incomplete++
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: carrying unfinished wipes over to the device records: %w", err)
	}
	s.logger.Info("unfinished wipes carried over to the device records", "pending", pending, "incomplete", incomplete,
		"dropped_without_device", dropped)
	return nil
}

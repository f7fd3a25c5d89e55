package boltstore

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/kvstore"
)

// A data directory from before the device record kept its unfinished wipe has the marks in
// pending_wipes and incomplete_wipes. Open carries them over to the records once, in the
// transaction that drops the old buckets; records without a mark keep their exact bytes.
func TestOpenCarriesOldWipeMarksOver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hale.db")
	// The old layout, written as the old server wrote it: device records in the old JSON (no
	// wipe field), their indexes, and the two mark buckets.
	records := map[string]string{
		"d_0000000000000001": `{"id":"d_0000000000000001","platform":"agent","os":"linux","owner":"alice","group":"icu","enrolled_at":"2026-03-01T12:00:00Z","cert_serials":["a1"],"state":"locked","state_changed_at":"2026-03-01T12:00:00Z"}`,
		"d_0000000000000002": `{"id":"d_0000000000000002","platform":"agent","os":"linux","owner":"bob","group":"icu","enrolled_at":"2026-03-01T12:00:00Z","state":"locked","state_changed_at":"2026-03-01T12:00:00Z"}`,
		"d_0000000000000003": `{"id":"d_0000000000000003","platform":"apple","owner":"carol","group":"er","enrollment_id":"UDID-3","enrolled_at":"2026-03-01T12:00:00Z","state":"active","state_changed_at":"2026-03-01T12:00:00Z"}`,
	}
	old := map[string]map[string]string{
		"inventory_devices":       records,
		"inventory_by_cert":       {"a1": "d_0000000000000001"},
		"inventory_by_enrollment": {"UDID-3": "d_0000000000000003"},
		// d1's first wipe left data behind and a second is on its way; d2's left data behind;
		// d9 is no device at all.
		"pending_wipes":    {"d_0000000000000001": "wipe-2", "d_0000000000000009": "wipe-9"},
		"incomplete_wipes": {"d_0000000000000001": "wipe-1", "d_0000000000000002": "wipe-3"},
	}
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for name, kv := range old {
			b, err := tx.CreateBucket([]byte(name))
			if err != nil {
				return err
			}
			for k, v := range kv {
				if err := b.Put([]byte(k), []byte(v)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	want := map[string]*inventory.WipeStatus{
		"d_0000000000000001": {CommandID: "wipe-2", State: inventory.WipePending},
		"d_0000000000000002": {CommandID: "wipe-3", State: inventory.WipeIncomplete},
		"d_0000000000000003": nil,
	}
	for _, when := range []string{"first open", "second open"} {
		st, err := Open(path)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		ctx := context.Background()
		err = st.View(ctx, func(tx storage.Tx) error {
			for id, w := range want {
				d, err := tx.Inventory().Get(ctx, id)
				if err != nil {
					return err
				}
				if (w == nil) != (d.Wipe == nil) || w != nil && *w != *d.Wipe {
					t.Errorf("%s: %s wipe = %+v, want %+v", when, id, d.Wipe, w)
				}
			}
			if _, err := tx.Inventory().Get(ctx, "d_0000000000000009"); err == nil {
				t.Errorf("%s: a mark without a device made one", when)
			}
			if d, err := tx.Inventory().GetByCertSerial(ctx, "a1"); err != nil || d.ID != "d_0000000000000001" {
				t.Errorf("%s: index after the migration: %+v, %v", when, d, err)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		st.db.View(func(btx *bbolt.Tx) error {
			for _, name := range []string{"pending_wipes", "incomplete_wipes"} {
				if btx.Bucket([]byte(name)) != nil {
					t.Errorf("%s: bucket %s is still there", when, name)
				}
			}
			// A record the migration had nothing to carry to keeps its bytes.
			id := "d_0000000000000003"
			if v := btx.Bucket(kvstore.BucketInventoryDevices).Get([]byte(id)); !bytes.Equal(v, []byte(records[id])) {
				t.Errorf("%s: untouched record rewritten:\n%s\nwas\n%s", when, v, records[id])
			}
			return nil
		})
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// A migration that cannot finish (a marked record that does not decode) leaves the old layout
// whole and fails the open, rather than dropping marks: the devices would be let in.
func TestOpenKeepsOldWipeMarksWhenTheMigrationFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hale.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		devices, err := tx.CreateBucket(kvstore.BucketInventoryDevices)
		if err != nil {
			return err
		}
		pending, err := tx.CreateBucket(oldBucketPendingWipes)
		if err != nil {
			return err
		}
		if err := devices.Put([]byte("d_0000000000000001"), []byte("{not json")); err != nil {
			return err
		}
		return pending.Put([]byte("d_0000000000000001"), []byte("wipe-1"))
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if st, err := Open(path); err == nil {
		st.Close()
		t.Fatal("Open carried over a mark it could not put on its record")
	}
	db, err = bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(oldBucketPendingWipes); b == nil || string(b.Get([]byte("d_0000000000000001"))) != "wipe-1" {
			t.Error("the failed migration lost the old mark")
		}
		return nil
	})
}

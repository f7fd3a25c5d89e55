package boltstore

import (
	"context"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/kvstore"
)

// A verdict record that does not decode fails the engine's Load, and the index stays not
// loaded: every lookup denies. Only a backend can hold such a record, so the test is here.
func TestComplianceLoadFailsClosed(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	cs := storage.Scope(s, func(tx storage.Tx) compliance.Tx { return tx })
	inv := inventory.NewService(storage.Scope(s, func(tx storage.Tx) inventory.Tx { return tx }))
	ps, err := compliance.NewPolicyStore(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := compliance.NewEngine(cs, ps, access.NewIndex())
	if err != nil {
		t.Fatal(err)
	}
	d, err := inv.Create(ctx, inventory.Device{ID: inventory.NewID(), Platform: inventory.PlatformAgent, OS: "windows", Owner: "nurse@example.org", Group: "icu"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eng.DeviceChanged(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(kvstore.BucketComplianceVerdict).Put([]byte(d.ID), []byte("{not json"))
	}); err != nil {
		t.Fatal(err)
	}
	idx := access.NewIndex()
	eng, err = compliance.NewEngine(cs, ps, idx)
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Load(ctx); err == nil {
		t.Fatal("Load accepted a corrupt verdict")
	}
	if idx.Loaded() || idx.Lookup(d.ID, time.Now()).Reasons[0].Code != access.ReasonIndexNotLoaded {
		t.Fatal("index marked loaded after a failed Load")
	}
}

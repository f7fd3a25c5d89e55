package inventory_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/boltstore"
)

// The benchmarks and the cursor fuzz test run on the bbolt backend; the contract every backend
// meets is in mdmserver/storage/storagetest.

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// newStore opens a bbolt store without fsync (these measure and fuzz the inventory, not the
// disk) and an inventory service on it with a clock stopped at t0.
func newStore(tb testing.TB) (storage.Store, *inventory.Service) {
	tb.Helper()
	st, err := boltstore.Open(filepath.Join(tb.TempDir(), "inv.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	st.DB().NoSync = true
	svc := inventory.NewService(storage.Scope(st, func(tx storage.Tx) inventory.Tx { return tx }),
		inventory.WithClock(func() time.Time { return t0 }))
	return st, svc
}

func agent(owner, group string) inventory.Device {
	return inventory.Device{Platform: inventory.PlatformAgent, OS: "linux", Owner: owner, Group: group, Hostname: "ws"}
}

package boltstore_test

import (
	"path/filepath"
	"testing"

	"github.com/smallstep/nosql/database"

	"github.com/halemdm/hale/mdmserver/storage/boltstore"
	"github.com/halemdm/hale/mdmserver/storage/storagetest"
)

// openStore opens a store on a fresh directory and closes it when the test ends.
func openStore(t *testing.T) *boltstore.Store {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "hale.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// The CA database's contract (storagetest.CADB), on the store's file.
func TestCADB(t *testing.T) {
	storagetest.CADB(t, func(t *testing.T) database.DB { return openStore(t).CADB() })
}

// What only the bbolt CA database does: its tables are the store's buckets under their prefix,
// covered by the store's consistency check, and closing it does not close the store.
func TestCADBInStoreFile(t *testing.T) {
	st := openStore(t)
	d := st.CADB()
	if err := d.CreateTable([]byte("acme/orders")); err != nil {
		t.Fatal(err)
	}
	if err := d.Set([]byte("acme/orders"), []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Ping(t.Context()); err != nil {
		t.Errorf("closing the CA database closed the store: %v", err)
	}
	if err := st.Check(); err != nil {
		t.Error(err)
	}
}

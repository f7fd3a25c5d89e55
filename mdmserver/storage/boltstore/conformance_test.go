package boltstore_test

import (
	"path/filepath"
	"testing"

	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/boltstore"
	"github.com/halemdm/hale/mdmserver/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, dir string) storage.Store {
		st, err := boltstore.Open(filepath.Join(dir, "hale.db"))
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}

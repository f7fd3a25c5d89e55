// Package clustertest gives tests the stores of two servers sharing one database, on every
// backend, so a rule that must hold across servers is tested where it can break: bbolt (one
// file, one process: the same store twice) and PostgreSQL (two stores on one schema, each with
// its own connections and change-feed origin, as two machines have).
package clustertest

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/pgtest"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/boltstore"
	"github.com/halemdm/hale/mdmserver/storage/pgstore"
)

// Each runs test once per backend, as a subtest named after it, with two servers' stores on
// one database. The PostgreSQL run skips without HALE_TEST_POSTGRES and fails under CI.
func Each(t *testing.T, test func(t *testing.T, a, b storage.Store)) {
	t.Run("bbolt", func(t *testing.T) {
		st := Bolt(t)
		test(t, st, st)
	})
	t.Run("postgres", func(t *testing.T) {
		a, b := Postgres(t)
		test(t, a, b)
	})
}

// Bolt opens a bbolt store in a temporary directory, closed at the end of the test.
func Bolt(t *testing.T) *boltstore.Store {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "hale.db"), boltstore.WithOpenTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// Postgres opens two stores on one new PostgreSQL schema, with opts (quiet by default), closed
// at the end of the test; it skips without HALE_TEST_POSTGRES and fails under CI.
func Postgres(t *testing.T, opts ...pgstore.Option) (a, b *pgstore.Store) {
	t.Helper()
	dsn := pgtest.NewSchema(t)
	opts = append([]pgstore.Option{pgstore.WithLogger(slog.New(slog.DiscardHandler))}, opts...)
	var sts [2]*pgstore.Store
	for i := range sts {
		st, err := pgstore.Open(context.Background(), dsn, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		sts[i] = st
	}
	return sts[0], sts[1]
}

package pgstore_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/micromdm/nanomdm/storage/pgsql"
	"github.com/smallstep/nosql/database"

	"github.com/halemdm/hale/internal/pgtest"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/pgstore"
	"github.com/halemdm/hale/mdmserver/storage/storagetest"
	"github.com/halemdm/hale/mdmserver/tokens"
	"github.com/halemdm/hale/policies"
)

// open opens a store on dsn and closes it when the test ends.
func open(t *testing.T, dsn string) *pgstore.Store {
	t.Helper()
	st, err := pgstore.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// Every repository's contract, on a real PostgreSQL server. Each storagetest directory is a
// schema of its own, so a reopen finds the same data.
func TestConformance(t *testing.T) {
	pgtest.ServerURL(t)
	var mu sync.Mutex
	databases := map[string]string{}
	storagetest.Run(t, func(t *testing.T, dir string) storage.Store {
		mu.Lock()
		dsn, ok := databases[dir]
		if !ok {
			dsn = pgtest.NewSchema(t)
			databases[dir] = dsn
		}
		mu.Unlock()
		st, err := pgstore.Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}

// Replicas starting together apply each migration once; a reopen applies none; a database
// migrated by a newer Hale is refused.
func TestMigrations(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			st, err := pgstore.Open(context.Background(), dsn)
			if err == nil {
				st.Close()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent open: %v", err)
		}
	}
	st := open(t, dsn)
	v, err := st.SchemaVersion(t.Context())
	if err != nil || v < 3 {
		t.Fatalf("schema version %d, %v", v, err)
	}
	var applied int
	if err := st.Pool().QueryRow(t.Context(), "SELECT count(*) FROM hale_schema_migrations WHERE version_id > 0").Scan(&applied); err != nil {
		t.Fatal(err)
	}
	if int64(applied) != v {
		t.Fatalf("%d migrations recorded for version %d: one ran twice", applied, v)
	}
	// A newer Hale's migration.
	pgtest.Exec(t, dsn, "INSERT INTO hale_schema_migrations (version_id, is_applied) VALUES ($1, true)", v+1)
	if _, err := pgstore.Open(t.Context(), dsn); !errors.Is(err, pgstore.ErrSchemaTooNew) {
		t.Fatalf("open of a newer schema: %v, want ErrSchemaTooNew", err)
	}
}

// nanomdm's schema is applied as migration 2, frozen as released: upgrading the nanomdm module
// must come with a migration of its schema changes, which this test then asks for.
func TestNanoMDMSchemaFrozen(t *testing.T) {
	b, err := pgstore.MigrationFile("00002_nanomdm.sql")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b, pgsql.Schema) {
		t.Fatal("the nanomdm module's schema.sql differs from migrations/00002_nanomdm.sql: add a migration with its changes")
	}
}

// A unit of work that fails after writing leaves nothing; a write in a View is refused; Update
// runs one writer at a time (a read-modify-write of a counter by many goroutines loses none).
func TestUnitsOfWork(t *testing.T) {
	st := open(t, pgtest.NewDatabase(t))
	ctx := t.Context()
	boom := errors.New("boom")
	err := st.Update(ctx, func(tx storage.Tx) error {
		if err := tx.Tokens().Put(ctx, &tokens.Token{ID: "t1", Name: "one", Role: tokens.RoleAdmin}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("update: %v", err)
	}
	err = st.View(ctx, func(tx storage.Tx) error {
		if _, err := tx.Tokens().Get(ctx, "t1"); !errors.Is(err, tokens.ErrNotFound) {
			t.Errorf("a failed update's write is there: %v", err)
		}
		return tx.Tokens().Put(ctx, &tokens.Token{ID: "t2"})
	})
	if !errors.Is(err, storage.ErrReadOnly) {
		t.Fatalf("write in a view: %v, want ErrReadOnly", err)
	}

	const n = 40
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			err := st.Update(ctx, func(tx storage.Tx) error {
				tok, err := tx.Tokens().Get(ctx, "counter")
				if errors.Is(err, tokens.ErrNotFound) {
					tok, err = &tokens.Token{ID: "counter"}, nil
				}
				if err != nil {
					return err
				}
				tok.Name += "x"
				return tx.Tokens().Put(ctx, tok)
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	_ = st.View(ctx, func(tx storage.Tx) error {
		tok, err := tx.Tokens().Get(ctx, "counter")
		if err != nil || len(tok.Name) != n {
			t.Errorf("%d of %d read-modify-writes kept (%v): writers overlapped", len(tok.Name), n, err)
		}
		return nil
	})
}

// The background lease: one holder at a time; released on Release, and by PostgreSQL when the
// holder's connection ends.
func TestLease(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a, b := open(t, dsn), open(t, dsn)
	ctx := t.Context()
	la, err := a.TryLease(ctx, pgstore.BackgroundLease)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.TryLease(ctx, pgstore.BackgroundLease); !errors.Is(err, pgstore.ErrLeaseHeld) {
		t.Fatalf("second holder: %v, want ErrLeaseHeld", err)
	}
	la.Release()
	lb, err := b.TryLease(ctx, pgstore.BackgroundLease)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	// The holder's connection is killed (as a dead holder's is closed): the holder learns it
	// lost the lease, and another takes it.
	pgtest.Exec(t, dsn, "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND granted", uint32(pgstore.BackgroundLease&0xffffffff))
	select {
	case <-lb.Lost():
	case <-time.After(15 * time.Second):
		t.Fatal("the holder did not learn its connection was gone")
	}
	lb.Release()
	la, err = a.TryLease(ctx, pgstore.BackgroundLease)
	if err != nil {
		t.Fatalf("after the holder's connection ended: %v", err)
	}
	la.Release()
}

// The CA database's contract (storagetest.CADB), on PostgreSQL.
func TestCADB(t *testing.T) {
	storagetest.CADB(t, func(t *testing.T) database.DB { return open(t, pgtest.NewSchema(t)).CADB() })
}

// Prefetching a device's records (one query) gives the reads that follow what they would
// have read one by one: found, missing, and a write made after it.
func TestPrefetchDevice(t *testing.T) {
	st := open(t, pgtest.NewSchema(t))
	ctx := t.Context()
	at := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	err := st.Update(ctx, func(tx storage.Tx) error {
		return tx.Compliance().PutPosture(ctx, "d1", &policies.Posture{Platform: policies.PlatformLinux, ReportedAt: at})
	})
	if err != nil {
		t.Fatal(err)
	}
	err = st.Update(ctx, func(tx storage.Tx) error {
		r := tx.Compliance()
		p, ok := r.(interface{ PrefetchDevice(context.Context, string) })
		if !ok {
			t.Fatal("the PostgreSQL compliance repository does not prefetch")
		}
		p.PrefetchDevice(ctx, "d1")
		if got, err := r.Posture(ctx, "d1"); err != nil || got == nil || !got.ReportedAt.Equal(at) {
			t.Errorf("prefetched posture %+v, %v", got, err)
		}
		if got, err := r.Verdict(ctx, "d1"); err != nil || got != nil {
			t.Errorf("prefetched missing verdict %+v, %v", got, err)
		}
		if _, err := tx.Inventory().Get(ctx, "d1"); !errors.Is(err, inventory.ErrNotFound) {
			t.Errorf("prefetched missing device: %v", err)
		}
		if err := r.PutPosture(ctx, "d1", &policies.Posture{Platform: policies.PlatformLinux, ReportedAt: at.Add(time.Hour)}); err != nil {
			return err
		}
		p.PrefetchDevice(ctx, "d1") // known keys are not read again over the write
		if got, err := r.Posture(ctx, "d1"); err != nil || !got.ReportedAt.Equal(at.Add(time.Hour)) {
			t.Errorf("posture after a write %+v, %v", got, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

package mdmserver

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smallstep/nosql"

	"github.com/halemdm/hale/internal/pgtest"
	"github.com/halemdm/hale/mdmserver/storage/pgstore"
)

// TestMigrateFailureLeavesTargetEmpty: when the last step fails (here another process wrote
// into the target after nanomdm's state was copied, so the import refuses it), nanomdm's rows
// are taken out again and the error says the target is empty; a migration then succeeds.
func TestMigrateFailureLeavesTargetEmpty(t *testing.T) {
	dir := fleetDataDir(t, 3)
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	intruder := func(context.Context) error {
		pgtest.Exec(t, dsn, `INSERT INTO hale_kv (bucket, key, value) VALUES ('api_tokens', 'x', 'y')`)
		return nil
	}
	_, err := Migrate(ctx, dir, dsn, func(c *migrateConfig) { c.afterApple = intruder })
	if !errors.Is(err, pgstore.ErrNotEmpty) || !strings.Contains(err.Error(), "the target is empty again") {
		t.Fatalf("migrate with an intruder: %v", err)
	}
	pgtest.Exec(t, dsn, `DELETE FROM hale_kv`)
	pg, err := pgstore.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	if err := pg.CheckEmpty(ctx); err != nil {
		t.Fatalf("after the failed migration: %v", err)
	}
	res, err := Migrate(ctx, dir, dsn)
	if err != nil || res.Devices != 3 || res.Queued != 3 || res.CertAssociations != 3 || res.AuditEntries != 3 || res.UnlockTokens != 3 {
		t.Fatalf("migrate again: %v %+v", err, res)
	}
	var n int
	if err := pg.Pool().QueryRow(ctx, `SELECT count(*) FROM devices WHERE unlock_token LIKE 'unlock-%'`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("%d unlock tokens in the target (%v), want 3", n, err)
	}
}

// TestMigrateOldCAFile: a CA database an older Hale left in DATA/ca/ca.db moves too, first into
// hale.db (the file renamed, as a bbolt server does at start), then into PostgreSQL.
func TestMigrateOldCAFile(t *testing.T) {
	dir := fleetDataDir(t, 1)
	caFile := filepath.Join(dir, "ca", "ca.db")
	if err := os.MkdirAll(filepath.Dir(caFile), 0o700); err != nil {
		t.Fatal(err)
	}
	old, err := nosql.New(nosql.BBoltDriver, caFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.CreateTable([]byte("revoked_x509_certs")); err != nil {
		t.Fatal(err)
	}
	if err := old.Set([]byte("revoked_x509_certs"), []byte("1234"), []byte(`{"Serial":"1234"}`)); err != nil {
		t.Fatal(err)
	}
	old.Close()
	dsn := pgtest.NewDatabase(t)
	res, err := Migrate(context.Background(), dir, dsn)
	if err != nil || !res.CAFileImported {
		t.Fatalf("migrate: %v %+v", err, res)
	}
	if _, err := os.Stat(caFile); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the old CA file is still there: %v", err)
	}
	pg, err := pgstore.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	if v, err := pg.CADB().Get([]byte("revoked_x509_certs"), []byte("1234")); err != nil || string(v) != `{"Serial":"1234"}` {
		t.Fatalf("the revocation in PostgreSQL: %q %v", v, err)
	}
}

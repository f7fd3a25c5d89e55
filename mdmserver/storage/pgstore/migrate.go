package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// ErrSchemaTooNew is returned by Open for a database migrated by a newer Hale: this binary would
// misread what it does not know, so it does not start.
var ErrSchemaTooNew = errors.New("pgstore: the database's schema is newer than this mdmserver; run the newer version")

// migrationLockID is the session advisory lock goose holds while migrating ("halemigr"), so
// replicas starting together apply each migration once.
const migrationLockID = 0x68616c656d696772

// migrate applies the embedded migrations the database lacks, under the migration lock.
func migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	p, db, err := newMigrator(pool)
	if err != nil {
		return err
	}
	defer db.Close()
	current, latest, err := schemaVersions(ctx, p)
	if err != nil {
		return err
	}
	if current > latest {
		return fmt.Errorf("%w (database at version %d, this binary knows up to %d)", ErrSchemaTooNew, current, latest)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("pgstore: migrate: %w", err)
	}
	for _, r := range results {
		log.Info("database schema migrated", "version", r.Source.Version, "file", r.Source.Path, "took", r.Duration)
	}
	// A newer replica may have migrated past us while we waited for the lock.
	if current, _, err = schemaVersions(ctx, p); err != nil {
		return err
	}
	if current > latest {
		return fmt.Errorf("%w (database at version %d, this binary knows up to %d)", ErrSchemaTooNew, current, latest)
	}
	return nil
}

// newMigrator returns goose's migrator of the embedded migrations on a database/sql handle of
// pool (which the caller closes; the pool stays open).
func newMigrator(pool *pgxpool.Pool) (*goose.Provider, interface{ Close() error }, error) {
	files, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, nil, err
	}
	// Replicas starting together wait for the first one's migrations, checking every second.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(migrationLockID), lock.WithLockTimeout(1, 300))
	if err != nil {
		return nil, nil, err
	}
	db := stdlib.OpenDBFromPool(pool)
	p, err := goose.NewProvider(goose.DialectPostgres, db, files,
		goose.WithSessionLocker(locker), goose.WithTableName("hale_schema_migrations"), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("pgstore: migrations: %w", err)
	}
	return p, db, nil
}

// schemaVersions returns the database's schema version and the latest this binary carries.
func schemaVersions(ctx context.Context, p *goose.Provider) (current, latest int64, err error) {
	for _, src := range p.ListSources() {
		latest = max(latest, src.Version)
	}
	// goose creates its version table first, so a new database is at version 0.
	current, err = p.GetDBVersion(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("pgstore: schema version: %w", err)
	}
	return current, latest, nil
}

// SchemaVersion returns the schema version of the database the store is on.
func (s *Store) SchemaVersion(ctx context.Context) (int64, error) {
	p, db, err := newMigrator(s.pool)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	current, _, err := schemaVersions(ctx, p)
	return current, err
}

// Package pgstore is Hale's PostgreSQL backend: every repository of storage.Tx (through
// storage/kvstore, on the hale_kv table), nanomdm's Apple MDM state (its own storage/pgsql, on
// its own schema), and the certificate authority's database. Several mdmserver replicas may share
// one database.
//
// Transactions. A View is a REPEATABLE READ, READ ONLY transaction: one consistent snapshot, as a
// bbolt read transaction is. An Update or Batch takes a transaction-scoped advisory lock before
// its first statement, so writers run one at a time across every replica, each seeing what the
// one before it committed, exactly as bbolt's single writer does. The domain rules written for
// bbolt (one-time redemption, the audit log's append, state transitions) are therefore correct
// here without retries, and no unit of work ever runs twice. The cost is one writer at a time
// across the cluster; bench/README.md has what that allows.
//
// Schema migrations are embedded (migrations/*.sql, applied by goose), run by Open under a
// session advisory lock so replicas starting together apply them once, and Open refuses a
// database whose schema is newer than this binary knows.
package pgstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/halemdm/hale/internal/randid"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/kvstore"
)

var _ storage.Store = (*Store)(nil)

// writerLock is the advisory lock key every Update holds for its transaction ("hale" in ASCII).
const writerLock = 0x68616c65

// Store is Hale's state in one PostgreSQL database. Its methods are safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	log  *slog.Logger
	// writeTimeout bounds an Update once started: it runs to the end even if its caller's
	// context ends (as on bbolt), but not forever against a database that stopped answering.
	writeTimeout time.Duration
	// followed are the buckets whose writes go into the change feed (WithChangeFeed).
	followed map[string]bool
	// origin names this Store in the change feed, so a server can skip the changes it made.
	origin string
	// sqlDB is the database/sql handle SQL hands out, made once.
	sqlOnce sync.Once
	sqlDB   *sql.DB
}

// Origin is the name this Store gives its writes in the change feed (Change.Origin): a
// server applies what the others wrote and skips what it wrote itself, which it already knows.
func (s *Store) Origin() string { return s.origin }

// Option configures Open.
type Option func(*Store)

// WithLogger sets the logger for migrations and background errors.
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.log = l } }

// Open connects to the database at dsn (a postgres:// URL or key=value string), applies the
// schema migrations this binary carries, and returns the store.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	s := &Store{log: slog.Default(), writeTimeout: 30 * time.Second, origin: randid.Hex(8)}
	for _, o := range opts {
		o(s)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgstore: database URL: %w", err)
	}
	if s.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if err := migrate(ctx, s.pool, s.log); err != nil {
		s.pool.Close()
		return nil, err
	}
	return s, nil
}

// Pool returns the connection pool, for nanomdm's storage and the CA database, which share it.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// SQL returns a database/sql handle on the store's pool (for nanomdm's storage/pgsql), closed
// with the store.
func (s *Store) SQL() *sql.DB {
	s.sqlOnce.Do(func() { s.sqlDB = stdlib.OpenDBFromPool(s.pool) })
	return s.sqlDB
}

// View runs fn on one consistent, read-only snapshot.
func (s *Store) View(ctx context.Context, fn func(storage.Tx) error) error {
	return s.run(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, false, fn)
}

// Update runs fn in one read-write transaction, after every other writer's; it commits before
// Update returns. An error from fn or from the commit leaves nothing written.
func (s *Store) Update(ctx context.Context, fn func(storage.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.writeTimeout)
	defer cancel()
	return s.run(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, true, fn)
}

// Batch is Update: PostgreSQL already groups concurrent commits into one flush of its log, so a
// unit of work gains nothing by sharing a transaction with others, and fn runs once.
func (s *Store) Batch(ctx context.Context, fn func(storage.Tx) error) error {
	return s.Update(ctx, fn)
}

// run runs fn in one transaction of the given kind and commits it, or rolls it back when fn, a
// read inside it, or the commit fails.
func (s *Store) run(ctx context.Context, opts pgx.TxOptions, write bool, fn func(storage.Tx) error) (err error) {
	ptx, err := s.pool.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("pgstore: begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = ptx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if write {
		if _, err := ptx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", writerLock); err != nil {
			return fmt.Errorf("pgstore: take the writer lock: %w", err)
		}
	}
	kt := &kvTx{ctx: ctx, tx: ptx, writable: write, followed: s.followed, origin: s.origin}
	if err := fn(kvstore.NewTx(kt)); err != nil {
		if kt.err != nil && !errors.Is(err, kt.err) {
			return fmt.Errorf("%w (after a failed read: %w)", err, kt.err)
		}
		return err
	}
	if kt.err != nil {
		return kt.err
	}
	if err := kt.writeChanges(); err != nil {
		return err
	}
	if err := ptx.Commit(ctx); err != nil {
		return fmt.Errorf("pgstore: commit: %w", err)
	}
	return nil
}

// Ping proves the database answers and accepts writes (it is not a read-only standby).
func (s *Store) Ping(ctx context.Context) error {
	var standby bool
	if err := s.pool.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&standby); err != nil {
		return fmt.Errorf("pgstore: %w", err)
	}
	if standby {
		return errors.New("pgstore: the database is a read-only standby")
	}
	return nil
}

// Close closes every connection. Units of work still running finish first.
func (s *Store) Close() error {
	if s.sqlDB != nil {
		_ = s.sqlDB.Close()
	}
	s.pool.Close()
	return nil
}

package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/halemdm/hale/mdmserver/storage/kvstore"
)

// ErrNotEmpty is returned (wrapped) by [Store.Import] and [Store.CheckEmpty] when the database
// already holds state: an import never merges into or overwrites a database in use.
var ErrNotEmpty = errors.New("pgstore: the database is not empty")

// importTables are the tables a database must have no row in to be imported into: Hale's own
// buckets and the CA's database, and nanomdm's enrollments, queue and certificates.
var importTables = []string{
	"hale_kv", "hale_kv_sequences", "hale_ca_tables", "hale_ca",
	"devices", "users", "enrollments", "commands", "command_results", "enrollment_queue",
	"push_certs", "cert_auth_associations",
}

// CheckEmpty returns an error wrapping [ErrNotEmpty] that names every table holding rows, or
// nil when the database holds no state.
func (s *Store) CheckEmpty(ctx context.Context) error {
	return checkEmpty(ctx, s.pool, importTables)
}

// querier is what checkEmpty needs of a pool or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// checkEmpty checks tables (constants of this package) hold no row.
func checkEmpty(ctx context.Context, q querier, tables []string) error {
	var full []string
	for _, t := range tables {
		var has bool
		// The table names are this package's constants, never input.
		if err := q.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+t+")").Scan(&has); err != nil {
			return fmt.Errorf("pgstore: checking %s is empty: %w", t, err)
		}
		if has {
			full = append(full, t)
		}
	}
	if len(full) > 0 {
		return fmt.Errorf("%w: rows in %s", ErrNotEmpty, strings.Join(full, ", "))
	}
	return nil
}

// Importer writes a whole store into an empty database inside one transaction ([Store.Import]).
type Importer struct {
	ctx context.Context
	tx  pgx.Tx
}

// Import runs fn in one read-write transaction that holds the writer lock, on a database whose
// Hale tables and CA tables must hold no row ([ErrNotEmpty] otherwise, checked under the lock
// so two imports cannot both pass; nanomdm's tables are the caller's, who fills them first). After fn it recounts the states of kvstore.CountedBuckets from the imported
// records, and commits: everything fn wrote is there, or nothing is.
func (s *Store) Import(ctx context.Context, fn func(*Importer) error) error {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return fmt.Errorf("pgstore: import: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit it does nothing
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", writerLock); err != nil {
		return fmt.Errorf("pgstore: import: %w", err)
	}
	if err := checkEmpty(ctx, tx, importTables[:4]); err != nil {
		return err
	}
	if err := fn(&Importer{ctx: ctx, tx: tx}); err != nil {
		return err
	}
	kt := &kvTx{ctx: ctx, tx: tx, writable: true}
	for _, name := range kvstore.CountedBuckets {
		n, err := kvstore.CountStates(kt, name)
		if err != nil {
			return fmt.Errorf("pgstore: import: counting states of %s: %w", name, err)
		}
		for state, k := range n {
			if _, err := tx.Exec(ctx, "INSERT INTO hale_kv_state_counts (bucket, state, n) VALUES ($1, $2, $3)", string(name), state, k); err != nil {
				return fmt.Errorf("pgstore: import: %w", err)
			}
		}
	}
	if kt.err != nil {
		return kt.err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("pgstore: import: commit: %w", err)
	}
	return nil
}

// Bucket copies one kvstore bucket: every pair next returns until it returns a nil key, by
// COPY, and the bucket's sequence. It returns how many pairs it wrote.
func (im *Importer) Bucket(name []byte, seq uint64, next func() (k, v []byte, err error)) (int64, error) {
	bucket := string(name)
	n, err := im.tx.CopyFrom(im.ctx, pgx.Identifier{"hale_kv"}, []string{"bucket", "key", "value"},
		pgx.CopyFromFunc(func() ([]any, error) {
			k, v, err := next()
			if err != nil || k == nil {
				return nil, err
			}
			if v == nil {
				v = []byte{}
			}
			return []any{bucket, k, v}, nil
		}))
	if err != nil {
		return n, fmt.Errorf("pgstore: import: bucket %s: %w", bucket, err)
	}
	if seq > 0 {
		if _, err := im.tx.Exec(im.ctx, "INSERT INTO hale_kv_sequences (bucket, seq) VALUES ($1, $2)", bucket, int64(seq)); err != nil {
			return n, fmt.Errorf("pgstore: import: sequence of %s: %w", bucket, err)
		}
	}
	return n, nil
}

// CATable creates a table of the CA's database; a nested one is named "T/U", after "T".
func (im *Importer) CATable(name []byte) error {
	if _, err := im.tx.Exec(im.ctx, "INSERT INTO hale_ca_tables (name) VALUES ($1)", string(name)); err != nil {
		return fmt.Errorf("pgstore: import: CA table %s: %w", name, err)
	}
	return nil
}

// CAEntry sets one entry of a CA table created before.
func (im *Importer) CAEntry(table, key, value []byte) error {
	if _, err := im.tx.Exec(im.ctx, "INSERT INTO hale_ca (tbl, key, value) VALUES ($1, $2, $3)", string(table), key, value); err != nil {
		return fmt.Errorf("pgstore: import: CA entry %s/%x: %w", table, key, err)
	}
	return nil
}

// BucketCounts returns how many keys each bucket of hale_kv holds, for comparing a copy with its
// source.
func (s *Store) BucketCounts(ctx context.Context) (map[string]int64, error) {
	rows, err := s.pool.Query(ctx, "SELECT bucket, count(*) FROM hale_kv GROUP BY bucket")
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	out := map[string]int64{}
	var b string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&b, &n}, func() error { out[b] = n; return nil })
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	return out, nil
}

// CACount returns how many tables and entries the CA's database holds.
func (s *Store) CACount(ctx context.Context) (tables, entries int64, err error) {
	err = s.pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM hale_ca_tables), (SELECT count(*) FROM hale_ca)").Scan(&tables, &entries)
	if err != nil {
		err = fmt.Errorf("pgstore: %w", err)
	}
	return tables, entries, err
}

// Holdings says what a database holds: Hale's records (any row in hale_kv) and nanomdm's
// enrollments. A server starting on it tells a new database from one in use, and from one an
// interrupted `mdmserver migrate` left with enrollments but no records.
func (s *Store) Holdings(ctx context.Context) (records, enrollments bool, err error) {
	err = s.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM hale_kv), EXISTS (SELECT 1 FROM enrollments)").Scan(&records, &enrollments)
	if err != nil {
		err = fmt.Errorf("pgstore: %w", err)
	}
	return records, enrollments, err
}

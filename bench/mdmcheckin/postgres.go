package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/micromdm/nanomdm/storage"
	"github.com/micromdm/nanomdm/storage/pgsql"
)

// database is a fresh PostgreSQL database a backend runs on, created for it on the cluster and
// dropped after it, so no backend sees another's rows or the previous run's.
type database struct {
	server string // the cluster's URL, to drop the database from
	name   string
	url    string
	empty  size // the database before the first device
}

// newDatabase creates an empty database on the cluster at server.
func newDatabase(ctx context.Context, server, prefix string) (*database, error) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("-postgres: want a postgres:// URL, got %q", server)
	}
	d := &database{server: server, name: prefix + "_" + hex.EncodeToString(b)}
	if err := execOn(ctx, server, "CREATE DATABASE "+d.name); err != nil {
		return nil, err
	}
	u.Path = "/" + d.name
	d.url = u.String()
	return d, nil
}

// drop drops the database, closing any connection still open to it.
func (d *database) drop() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return execOn(ctx, d.server, "DROP DATABASE IF EXISTS "+d.name+" WITH (FORCE)")
}

func execOn(ctx context.Context, dsn, stmt string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("%s: %w", stmt, err)
	}
	return nil
}

// size is what a database takes: on disk as it stands, and its live data.
type size struct {
	raw     int64 // pg_database_size as it stands, dead row versions and catalogs included
	compact int64 // pg_database_size after VACUUM FULL
	live    int64 // the database's own tables, their indexes and TOAST, after VACUUM FULL
}

// userRelations sums the database's own tables with their indexes and TOAST. The system
// catalogs are left out: they hold nothing a device adds, and VACUUM FULL cannot always shrink
// them (other databases' transactions on the cluster hold back what it may remove from them,
// which made a 3-device run's live figure negative).
const userRelations = `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
	FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%'`

// size measures the database as it stands, then after VACUUM FULL. Plain VACUUM only
// marks dead rows' space reusable and leaves the files as large; VACUUM FULL rewrites every table
// and index compactly, so the second figure counts live rows only.
func (d *database) size(ctx context.Context) (size, error) {
	conn, err := pgx.Connect(ctx, d.url)
	if err != nil {
		return size{}, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	var sz size
	if err := conn.QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&sz.raw); err != nil {
		return size{}, err
	}
	if _, err := conn.Exec(ctx, "VACUUM FULL"); err != nil {
		return size{}, fmt.Errorf("VACUUM FULL: %w", err)
	}
	if err := conn.QueryRow(ctx, "SELECT pg_database_size(current_database()), ("+userRelations+")").Scan(&sz.compact, &sz.live); err != nil {
		return size{}, err
	}
	return sz, nil
}

// nanoPostgres makes a database with nanomdm's own schema (storage/pgsql's schema.sql) and
// returns it with nanomdm's storage on it, as nanomdm ships it: bodies unsealed, its defaults.
func nanoPostgres(ctx context.Context, server string) (*database, *sql.DB, storage.AllStorage, error) {
	d, err := newDatabase(ctx, server, "nanomdm_bench")
	if err != nil {
		return nil, nil, nil, err
	}
	cfg, err := pgx.ParseConfig(d.url)
	if err != nil {
		return nil, nil, nil, joinDrop(d, err)
	}
	db := stdlib.OpenDB(*cfg)
	if _, err := db.ExecContext(ctx, pgsql.Schema); err != nil {
		db.Close()
		return nil, nil, nil, joinDrop(d, fmt.Errorf("nanomdm schema: %w", err))
	}
	st, err := pgsql.New(pgsql.WithDB(db))
	if err != nil {
		db.Close()
		return nil, nil, nil, joinDrop(d, err)
	}
	return d, db, st, nil
}

func joinDrop(d *database, err error) error {
	if derr := d.drop(); derr != nil {
		return fmt.Errorf("%w (and dropping %s: %v)", err, d.name, derr)
	}
	return err
}

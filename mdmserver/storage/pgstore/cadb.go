package pgstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/smallstep/nosql/database"
)

// CADB is the certificate authority's database in the store's PostgreSQL database: smallstep/
// nosql's DB interface, which the embedded smallstep authority keeps its certificates,
// revocations and CRL in (tables hale_ca_tables and hale_ca). A nested table "T/U" is simply
// the table of that name; deleting T deletes the tables nested in it, as the bbolt backend's
// nesting does. Every call is one transaction; those that write hold the store's writer lock, so
// a compare-and-swap is atomic across replicas. It is safe for concurrent use.
type CADB struct {
	s *Store
}

var _ database.DB = (*CADB)(nil)

// CADB returns the certificate authority's database on this store. Closing it does not close
// the store.
func (s *Store) CADB() *CADB { return &CADB{s: s} }

// caTimeout bounds one call: smallstep's interface carries no context.
const caTimeout = 30 * time.Second

// Open fails: a CADB is open from the start, on its Store; smallstep's authority never calls it
// on a database it was given.
func (c *CADB) Open(string, ...database.Option) error {
	return errors.New("pgstore: the CA database is opened with its store (Store.CADB), not by Open")
}

// Close does nothing: the connections belong to the Store.
func (c *CADB) Close() error { return nil }

// CreateTable creates the table (and the tables it is nested in) if missing.
func (c *CADB) CreateTable(table []byte) error {
	return c.Update(&database.Tx{Operations: []*database.TxEntry{{Bucket: table, Cmd: database.CreateTable}}})
}

// DeleteTable deletes a table, the tables nested in it and everything in them; a missing one is
// database.ErrNotFound.
func (c *CADB) DeleteTable(table []byte) error {
	return c.Update(&database.Tx{Operations: []*database.TxEntry{{Bucket: table, Cmd: database.DeleteTable}}})
}

// Get returns the value at key; a missing table or key is database.ErrNotFound.
func (c *CADB) Get(table, key []byte) ([]byte, error) {
	op := &database.TxEntry{Bucket: table, Key: key, Cmd: database.Get}
	if err := c.run(false, func(ctx context.Context, tx pgx.Tx) error { return caApply(ctx, tx, op) }); err != nil {
		return nil, err
	}
	return op.Result, nil
}

// Set stores value at key in an existing table.
func (c *CADB) Set(table, key, value []byte) error {
	return c.Update(&database.Tx{Operations: []*database.TxEntry{{Bucket: table, Key: key, Value: value, Cmd: database.Set}}})
}

// Del deletes key from an existing table; a missing key is no error.
func (c *CADB) Del(table, key []byte) error {
	return c.Update(&database.Tx{Operations: []*database.TxEntry{{Bucket: table, Key: key, Cmd: database.Delete}}})
}

// List returns every entry of a table, in key order.
func (c *CADB) List(table []byte) ([]*database.Entry, error) {
	var out []*database.Entry
	err := c.run(false, func(ctx context.Context, tx pgx.Tx) error {
		if err := caTableExists(ctx, tx, table); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, "SELECT key, value FROM hale_ca WHERE tbl = $1 ORDER BY key", string(table))
		if err != nil {
			return err
		}
		var k, v []byte
		_, err = pgx.ForEachRow(rows, []any{&k, &v}, func() error {
			out = append(out, &database.Entry{Bucket: table, Key: bytes.Clone(k), Value: bytes.Clone(v)})
			return nil
		})
		return err
	})
	return out, err
}

// CmpAndSwap sets key to newValue if its value is oldValue (nil: absent), in one transaction.
// It returns the value now stored and whether it swapped; a failed compare is no error.
// Revocation relies on it: of two revocations of one serial, on any replicas, one swaps.
func (c *CADB) CmpAndSwap(table, key, oldValue, newValue []byte) ([]byte, bool, error) {
	op := &database.TxEntry{Bucket: table, Key: key, CmpValue: oldValue, Value: newValue, Cmd: database.CmpAndSwap}
	if err := c.Update(&database.Tx{Operations: []*database.TxEntry{op}}); err != nil {
		return nil, false, err
	}
	return op.Result, op.Swapped, nil
}

// Update runs the operations of tx in one transaction: all of them commit, or none. A Get of a
// missing key fails it with database.ErrNotFound, a CmpOrRollback whose value differs with an
// error; results are written into tx's entries.
func (c *CADB) Update(tx *database.Tx) error {
	return c.run(true, func(ctx context.Context, ptx pgx.Tx) error {
		var buckets []string
		var keys [][]byte
		for _, op := range tx.Operations {
			if err := caApply(ctx, ptx, op); err != nil {
				return fmt.Errorf("pgstore: CA database: %s %s/%s: %w", op.Cmd, op.Bucket, op.Key, err)
			}
			switch name := string(CABucket(string(op.Bucket))); {
			case !c.s.followed[name]:
			case op.Cmd == database.Set || op.Cmd == database.Delete || op.Cmd == database.CmpAndSwap && op.Swapped:
				buckets, keys = append(buckets, name), append(keys, op.Key)
			}
		}
		if len(buckets) == 0 {
			return nil
		}
		return insertChanges(ctx, ptx, c.s.origin, buckets, keys)
	})
}

// run runs fn in one transaction, holding the writer lock when it writes.
func (c *CADB) run(write bool, fn func(context.Context, pgx.Tx) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), caTimeout)
	defer cancel()
	return pgx.BeginTxFunc(ctx, c.s.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if write {
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", writerLock); err != nil {
				return err
			}
		}
		return fn(ctx, tx)
	})
}

// caApply applies one operation of a database.Tx.
func caApply(ctx context.Context, tx pgx.Tx, op *database.TxEntry) error {
	table := string(op.Bucket)
	switch op.Cmd {
	case database.CreateTable:
		// The tables it is nested in too: "a/b/c" creates "a", "a/b" and "a/b/c".
		for i := range len(op.Bucket) + 1 {
			if i == len(op.Bucket) || op.Bucket[i] == '/' {
				if _, err := tx.Exec(ctx, "INSERT INTO hale_ca_tables (name) VALUES ($1) ON CONFLICT DO NOTHING", table[:i]); err != nil {
					return err
				}
			}
		}
		return nil
	case database.DeleteTable:
		tag, err := tx.Exec(ctx, "DELETE FROM hale_ca_tables WHERE name = $1 OR starts_with(name, $1 || '/')", table)
		if err == nil && tag.RowsAffected() == 0 {
			err = fmt.Errorf("table %s: %w", table, database.ErrNotFound)
		}
		return err
	}
	if err := caTableExists(ctx, tx, op.Bucket); err != nil {
		return err
	}
	switch op.Cmd {
	case database.Get:
		v, err := caGet(ctx, tx, table, op.Key)
		if err == nil && v == nil {
			err = database.ErrNotFound
		}
		op.Result = v
		return err
	case database.Set:
		return caPut(ctx, tx, table, op.Key, op.Value)
	case database.Delete:
		_, err := tx.Exec(ctx, "DELETE FROM hale_ca WHERE tbl = $1 AND key = $2", table, op.Key)
		return err
	case database.CmpAndSwap:
		current, err := caGet(ctx, tx, table, op.Key)
		if err != nil {
			return err
		}
		if !bytes.Equal(current, op.CmpValue) {
			op.Result, op.Swapped = current, false
			return nil
		}
		op.Result, op.Swapped = op.Value, true
		return caPut(ctx, tx, table, op.Key, op.Value)
	case database.CmpOrRollback:
		current, err := caGet(ctx, tx, table, op.Key)
		if err != nil {
			return err
		}
		if !bytes.Equal(current, op.Value) {
			return errors.New("value differs; rolled back")
		}
		return nil
	default:
		return fmt.Errorf("%w: %s", database.ErrOpNotSupported, op.Cmd)
	}
}

func caTableExists(ctx context.Context, tx pgx.Tx, table []byte) error {
	var one int
	err := tx.QueryRow(ctx, "SELECT 1 FROM hale_ca_tables WHERE name = $1", string(table)).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("table %s: %w", table, database.ErrNotFound)
	}
	return err
}

// caGet returns the value at key, nil when missing.
func caGet(ctx context.Context, tx pgx.Tx, table string, key []byte) ([]byte, error) {
	var v []byte
	err := tx.QueryRow(ctx, "SELECT value FROM hale_ca WHERE tbl = $1 AND key = $2", table, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err == nil && v == nil {
		v = []byte{}
	}
	return v, err
}

func caPut(ctx context.Context, tx pgx.Tx, table string, key, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	_, err := tx.Exec(ctx, `INSERT INTO hale_ca (tbl, key, value) VALUES ($1, $2, $3)
		ON CONFLICT (tbl, key) DO UPDATE SET value = EXCLUDED.value`, table, key, value)
	return err
}

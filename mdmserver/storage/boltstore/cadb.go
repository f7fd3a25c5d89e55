package boltstore

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/smallstep/nosql/database"
	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// CABucketPrefix prefixes the names of the bbolt buckets that hold the certificate authority's
// database (smallstep's tables: issued and revoked certificates, the CRL), keeping them apart
// from the other buckets of the file.
const CABucketPrefix = "ca_"

// CADB is the certificate authority's database on the Store's file: smallstep/nosql's DB
// interface, which the embedded smallstep authority keeps its certificates, revocations and CRL
// in. Table T is the bucket "ca_T"; a nested table "T/U" is the bucket U inside it, as
// smallstep's own bbolt driver nests them. Every call is its own bbolt transaction (Update one
// for all its operations), committed before it returns. It is safe for concurrent use.
type CADB struct {
	db *bbolt.DB
}

var _ database.DB = (*CADB)(nil)

// CADB returns the certificate authority's database on this store. Closing it does not close
// the store.
func (s *Store) CADB() *CADB { return &CADB{db: s.db} }

// caSep separates the levels of a nested table name, as in smallstep's bbolt driver.
var caSep = []byte("/")

// Open fails: a CADB is open from the start, on its Store's file; smallstep's authority never
// calls it on a database it was given.
func (c *CADB) Open(string, ...database.Option) error {
	return errors.New("boltstore: the CA database is opened with its store (Store.CADB), not by Open")
}

// Close does nothing: the file belongs to the Store, which closes it.
func (c *CADB) Close() error { return nil }

// CreateTable creates the table (and the tables it is nested in) if missing.
func (c *CADB) CreateTable(table []byte) error {
	return c.db.Update(func(tx *bbolt.Tx) error {
		_, err := caCreate(tx, table)
		return err
	})
}

// DeleteTable deletes a table and everything in it; a missing one is database.ErrNotFound.
func (c *CADB) DeleteTable(table []byte) error {
	return c.db.Update(func(tx *bbolt.Tx) error { return caDelete(tx, table) })
}

// Get returns a copy of the value at key; a missing table or key is database.ErrNotFound.
func (c *CADB) Get(table, key []byte) (value []byte, err error) {
	err = c.db.View(func(tx *bbolt.Tx) error {
		b, err := caTable(tx, table)
		if err != nil {
			return err
		}
		v := b.Get(key)
		if v == nil {
			return database.ErrNotFound
		}
		value = bytes.Clone(v)
		return nil
	})
	return value, err
}

// Set stores value at key in an existing table.
func (c *CADB) Set(table, key, value []byte) error {
	return c.db.Update(func(tx *bbolt.Tx) error {
		b, err := caTable(tx, table)
		if err != nil {
			return err
		}
		return b.Put(key, value)
	})
}

// Del deletes key from an existing table; a missing key is no error.
func (c *CADB) Del(table, key []byte) error {
	return c.db.Update(func(tx *bbolt.Tx) error {
		b, err := caTable(tx, table)
		if err != nil {
			return err
		}
		return b.Delete(key)
	})
}

// List returns copies of every entry of a table, in key order.
func (c *CADB) List(table []byte) ([]*database.Entry, error) {
	var out []*database.Entry
	err := c.db.View(func(tx *bbolt.Tx) error {
		b, err := caTable(tx, table)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				return nil // a nested table, not an entry
			}
			out = append(out, &database.Entry{Bucket: table, Key: bytes.Clone(k), Value: bytes.Clone(v)})
			return nil
		})
	})
	return out, err
}

// CmpAndSwap sets key to newValue if its value is oldValue (nil: absent), in one transaction.
// It returns the value now stored and whether it swapped; a failed compare is no error.
// Revocation relies on it: of two revocations of one serial, one swaps.
func (c *CADB) CmpAndSwap(table, key, oldValue, newValue []byte) (value []byte, swapped bool, err error) {
	err = c.db.Update(func(tx *bbolt.Tx) error {
		b, err := caTable(tx, table)
		if err != nil {
			return err
		}
		value, swapped, err = caSwap(b, key, oldValue, newValue)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return value, swapped, nil
}

// caSwap is CmpAndSwap inside a transaction. A value that does not match is returned as it is
// and nothing is written, as in smallstep's drivers.
func caSwap(b *bbolt.Bucket, key, oldValue, newValue []byte) ([]byte, bool, error) {
	current := b.Get(key)
	if !bytes.Equal(current, oldValue) {
		return bytes.Clone(current), false, nil
	}
	if err := b.Put(key, newValue); err != nil {
		return nil, false, err
	}
	return newValue, true, nil
}

// Update runs the operations of tx in one bbolt transaction: all of them commit, or none. A Get
// of a missing key fails it with database.ErrNotFound, a CmpOrRollback whose value differs with
// an error; results are written into tx's entries.
func (c *CADB) Update(tx *database.Tx) error {
	return c.db.Update(func(btx *bbolt.Tx) error {
		for _, op := range tx.Operations {
			if err := caApply(btx, op); err != nil {
				return fmt.Errorf("boltstore: CA database: %s %s/%s: %w", op.Cmd, op.Bucket, op.Key, err)
			}
		}
		return nil
	})
}

// caApply applies one operation of a database.Tx.
func caApply(btx *bbolt.Tx, op *database.TxEntry) error {
	switch op.Cmd {
	case database.CreateTable:
		_, err := caCreate(btx, op.Bucket)
		return err
	case database.DeleteTable:
		return caDelete(btx, op.Bucket)
	}
	b, err := caTable(btx, op.Bucket)
	if err != nil {
		return err
	}
	switch op.Cmd {
	case database.Get:
		v := b.Get(op.Key)
		if v == nil {
			return database.ErrNotFound
		}
		op.Result = bytes.Clone(v)
	case database.Set:
		return b.Put(op.Key, op.Value)
	case database.Delete:
		return b.Delete(op.Key)
	case database.CmpAndSwap:
		op.Result, op.Swapped, err = caSwap(b, op.Key, op.CmpValue, op.Value)
		return err
	case database.CmpOrRollback:
		if v := b.Get(op.Key); !bytes.Equal(v, op.Value) {
			return errors.New("value differs; rolled back")
		}
	default:
		return fmt.Errorf("%w: %s", database.ErrOpNotSupported, op.Cmd)
	}
	return nil
}

// caTable returns an existing table; a missing one is database.ErrNotFound.
func caTable(tx *bbolt.Tx, table []byte) (*bbolt.Bucket, error) {
	var b *bbolt.Bucket
	for i, name := range bytes.Split(table, caSep) {
		if i == 0 {
			b = tx.Bucket(append([]byte(CABucketPrefix), name...))
		} else {
			b = b.Bucket(name)
		}
		if b == nil {
			return nil, fmt.Errorf("table %s: %w", table, database.ErrNotFound)
		}
	}
	return b, nil
}

// caCreate creates a table and the tables it is nested in, if missing.
func caCreate(tx *bbolt.Tx, table []byte) (*bbolt.Bucket, error) {
	names := bytes.Split(table, caSep)
	b, err := tx.CreateBucketIfNotExists(append([]byte(CABucketPrefix), names[0]...))
	for i := 1; err == nil && i < len(names); i++ {
		b, err = b.CreateBucketIfNotExists(names[i])
	}
	if err != nil {
		return nil, fmt.Errorf("boltstore: CA database: create table %s: %w", table, err)
	}
	return b, nil
}

// caDelete deletes a table; a missing one is database.ErrNotFound.
func caDelete(tx *bbolt.Tx, table []byte) error {
	parent, name := []byte(nil), table
	if i := bytes.LastIndex(table, caSep); i >= 0 {
		parent, name = table[:i], table[i+1:]
	}
	var err error
	if parent == nil {
		err = tx.DeleteBucket(append([]byte(CABucketPrefix), name...))
	} else {
		var b *bbolt.Bucket
		if b, err = caTable(tx, parent); err == nil {
			err = b.DeleteBucket(name)
		}
	}
	if errors.Is(err, berrors.ErrBucketNotFound) {
		return fmt.Errorf("table %s: %w", table, database.ErrNotFound)
	}
	return err
}
